// Package pgcluster runs a private PostgreSQL cluster from the server
// binaries installed on the machine (initdb, pg_ctl, postgres), for
// development and tests: it creates the cluster on first use, starts it on a
// loopback port, creates the gpuflow database and stops it again.
//
// PostgreSQL refuses to run as root. When the process runs as root, the
// cluster runs as the "postgres" OS user instead; if that user cannot enter
// the requested directory (say, a checkout under /root), the cluster lives in
// a directory it can use and a small file in the requested directory records
// where, so later starts find it again.
package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpuflow/gpuflow/internal/freeport"
)

// Database is the database Start creates and URL points at.
const Database = "gpuflow"

// Superuser is the cluster's superuser role; it authenticates by trust on
// the loopback interface only.
const Superuser = "postgres"

// osUser is the OS account the cluster runs as when the process is root (a
// variable for tests).
var osUser = "postgres"

// LocationFile is the file, inside Options.Dir, that records where the
// cluster lives when it cannot live in Dir itself.
const LocationFile = "gpuflow-pg-location"

// logFile is the server log, inside the data directory.
const logFile = "server.log"

// ErrServerNotFound is returned by Start when no PostgreSQL server binaries
// are installed.
var ErrServerNotFound = errors.New("PostgreSQL server not found: install it (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL")

// Places searched for the server binaries after PATH; variables so that
// tests can point them elsewhere.
var (
	searchPath = func() string { return os.Getenv("PATH") }
	libGlob    = "/usr/lib/postgresql/*/bin"
)

// Options configure Start.
type Options struct {
	// Dir is the cluster's directory; it is created if missing. Ignored when
	// Ephemeral is set.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
	// Ephemeral puts the cluster in a new temporary directory that Stop
	// removes, and trades durability for speed (fsync off). For tests.
	Ephemeral bool
}

// Cluster is a running PostgreSQL cluster started by Start.
type Cluster struct {
	bin     string // directory holding initdb, pg_ctl and postgres
	dataDir string
	sockDir string
	port    int
	cred    *syscall.Credential // nil: run as ourselves
	opts    Options
	logger  *slog.Logger

	mu      sync.Mutex
	stopped bool
}

// Start creates the cluster if its directory holds none, starts it unless it
// is running already, and creates the gpuflow database if missing. It
// returns ErrServerNotFound when PostgreSQL is not installed.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, opts: opts, logger: logger}
	if os.Geteuid() == 0 {
		if c.cred, err = lookupCredential(); err != nil {
			return nil, err
		}
	}
	if err := c.prepareDir(ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		if opts.Ephemeral {
			_ = os.RemoveAll(c.dataDir)
		}
		return nil, err
	}
	if err := c.createDatabase(ctx); err != nil {
		_ = c.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	logger.InfoContext(ctx, "postgres started", "data_dir", c.dataDir, "port", c.port)
	return c, nil
}

// URL is the connection URL of the gpuflow database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.port, Database)
}

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory: Options.Dir, the place recorded
// in its location file, or the temporary directory of an ephemeral cluster.
func (c *Cluster) DataDir() string { return c.dataDir }

// Stop shuts the server down (fast mode: sessions are disconnected) and, for
// an ephemeral cluster, removes its directory. Stopping twice is a no-op.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	_, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w", "-t", "60")
	if err != nil && !c.running() {
		err = nil // already down (say, killed): nothing left to stop
	}
	if err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	c.stopped = true
	c.logger.InfoContext(ctx, "postgres stopped", "data_dir", c.dataDir)
	if c.opts.Ephemeral {
		if err := os.RemoveAll(c.dataDir); err != nil {
			return fmt.Errorf("remove ephemeral cluster: %w", err)
		}
	}
	return nil
}

// Crash stops the server at once, as a power cut would (pg_ctl stop -m
// immediate: no checkpoint, sessions dropped, recovery from the WAL at the
// next start). Start it again with Restart.
func (c *Cluster) Crash(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgcluster: crash of a stopped cluster")
	}
	out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "immediate", "-w", "-t", "60")
	if err != nil && c.running() {
		return fmt.Errorf("crash postgres: %w\n%s", err, out)
	}
	c.logger.InfoContext(ctx, "postgres crashed (immediate stop)", "data_dir", c.dataDir)
	return nil
}

// Restart stops the server (fast mode) if it is running and starts it again
// on the same port, so that every client's URL stays valid. After Crash it
// just starts it (recovering from the WAL).
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgcluster: restart of a stopped cluster")
	}
	if c.running() {
		if out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w", "-t", "60"); err != nil && c.running() {
			return fmt.Errorf("stop postgres: %w\n%s", err, out)
		}
	}
	c.opts.Port = c.port // the same port again
	if err := c.start(ctx); err != nil {
		return err
	}
	c.logger.InfoContext(ctx, "postgres restarted", "data_dir", c.dataDir, "port", c.port)
	return nil
}

// Running reports whether the server is up.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stopped && c.running()
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// pg_ctl's directory on PATH (symlinks resolved) first, then the highest
// version under /usr/lib/postgresql.
func findBinaries() (string, error) {
	for _, dir := range filepath.SplitList(searchPath()) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "pg_ctl")
		if !isExecutable(p) {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if d := filepath.Dir(real); hasBinaries(d) {
				return d, nil
			}
		}
		if hasBinaries(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(libGlob)
	slices.SortFunc(dirs, func(a, b string) int { return compareVersions(versionOf(b), versionOf(a)) })
	for _, d := range dirs {
		if hasBinaries(d) {
			return d, nil
		}
	}
	return "", ErrServerNotFound
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if !isExecutable(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// versionOf extracts "15" or "9.6" from /usr/lib/postgresql/<ver>/bin.
func versionOf(binDir string) []int {
	var v []int
	for _, part := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return v
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int { return slices.Compare(a, b) }

func lookupCredential() (*syscall.Credential, error) {
	u, err := user.Lookup(osUser)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no %q user to run it as: create one (useradd --system %s) or set DATABASE_URL: %w", osUser, osUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: bad uid %q: %w", osUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: bad gid %q: %w", osUser, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// prepareDir settles the data directory and makes it the cluster user's.
func (c *Cluster) prepareDir(ctx context.Context) error {
	switch {
	case c.opts.Ephemeral:
		dir, err := os.MkdirTemp("", "gpuflow-pg-*")
		if err != nil {
			return fmt.Errorf("create ephemeral cluster dir: %w", err)
		}
		c.dataDir = dir
	case c.opts.Dir == "":
		return errors.New("pgcluster: Options.Dir is required unless Ephemeral is set")
	default:
		dir, err := filepath.Abs(c.opts.Dir)
		if err != nil {
			return fmt.Errorf("cluster dir: %w", err)
		}
		// Parents we create stay searchable, so that the cluster user can
		// reach dir; dir itself becomes that user's, mode 0700.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create cluster dir: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cluster dir: %w", err)
		}
		c.dataDir = dir
		loc, err := os.ReadFile(filepath.Join(dir, LocationFile))
		switch {
		case err == nil:
			c.dataDir = strings.TrimSpace(string(loc))
			if !filepath.IsAbs(c.dataDir) {
				return fmt.Errorf("cluster dir: %s does not hold an absolute path", filepath.Join(dir, LocationFile))
			}
			if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
				return fmt.Errorf("create cluster dir: %w", err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("cluster dir: %w", err)
		case c.cred != nil && !c.canEnter(ctx, dir):
			if err := c.relocate(dir); err != nil {
				return err
			}
		}
	}
	if err := os.Chmod(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("cluster dir: %w", err)
	}
	if c.cred != nil {
		if err := chownTree(c.dataDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("give cluster dir to %s: %w", osUser, err)
		}
	}
	// A unix socket path may be at most 107 bytes long.
	c.sockDir = c.dataDir
	if len(c.dataDir)+len("/.s.PGSQL.65535.lock") > 100 {
		c.sockDir = os.TempDir()
	}
	return nil
}

// relocate moves the cluster of dir, which the cluster user cannot enter,
// into a directory it can use, and records that directory in dir.
func (c *Cluster) relocate(dir string) error {
	sum := sha256.Sum256([]byte(dir))
	base := "/var/tmp"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = os.TempDir()
	}
	c.dataDir = filepath.Join(base, "gpuflow-pg-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("create cluster dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, LocationFile), []byte(c.dataDir+"\n"), 0o600); err != nil {
		return fmt.Errorf("record cluster location: %w", err)
	}
	c.logger.Info("postgres user cannot enter the cluster dir; cluster lives elsewhere",
		"dir", dir, "data_dir", c.dataDir)
	return nil
}

// canEnter reports whether the cluster user can reach dir: it tries, as that
// user, to search dir's parent (the dir itself becomes the user's).
func (c *Cluster) canEnter(ctx context.Context, dir string) bool {
	sh, err := exec.LookPath("sh")
	if err != nil {
		sh = "/bin/sh"
	}
	cmd := exec.CommandContext(ctx, sh, "-c", `test -x "$1"`, "sh", filepath.Dir(dir))
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd.Run() == nil
}

func chownTree(root string, uid, gid int) error {
	if fi, err := os.Stat(root); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			if _, err := os.Stat(filepath.Join(root, "PG_VERSION")); err == nil {
				return nil // a cluster made by that user: already its own
			}
		}
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// start initialises the cluster if needed and starts it, or adopts a server
// already running on it.
func (c *Cluster) start(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		c.logger.InfoContext(ctx, "initialising postgres cluster", "data_dir", c.dataDir)
		args := []string{"-D", c.dataDir, "--auth=trust", "-U", Superuser, "--encoding=UTF8", "--locale=C"}
		if c.opts.Ephemeral {
			args = append(args, "--no-sync")
		}
		out, err := c.run(ctx, "initdb", args...)
		if err != nil {
			return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, out)
		}
	} else if err != nil {
		return fmt.Errorf("cluster dir: %w", err)
	}

	if port, ok := c.runningPort(); ok {
		if c.opts.Port == 0 || c.opts.Port == port {
			c.port = port
			c.logger.InfoContext(ctx, "postgres already running", "data_dir", c.dataDir, "port", port)
			return nil
		}
		if out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w"); err != nil {
			return fmt.Errorf("stop postgres running on port %d: %w\n%s", port, err, out)
		}
	}

	// Retry what a kill -9 or a lost port race leaves behind: the old
	// server's children still holding shared memory, a taken port.
	deadline := time.Now().Add(30 * time.Second)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		c.removeStalePID()
		c.port = c.opts.Port
		if c.port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			c.port = p
		}
		logTail, err := c.pgCtlStart(ctx)
		if err == nil {
			return nil
		}
		if !retryable(logTail) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("start postgres in %s: %w\n%s", c.dataDir, err, tailLines(logTail, 30))
		}
		c.logger.InfoContext(ctx, "postgres did not start; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func retryable(log string) bool {
	return strings.Contains(log, "shared memory block") ||
		strings.Contains(log, "already in use") ||
		strings.Contains(log, "lock file")
}

// pgCtlStart runs pg_ctl start -w and returns what the server logged.
func (c *Cluster) pgCtlStart(ctx context.Context) (string, error) {
	logPath := filepath.Join(c.dataDir, logFile)
	var before int64
	if fi, err := os.Stat(logPath); err == nil {
		before = fi.Size()
	}
	opts := []string{
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-k", shellQuote(c.sockDir),
		"-c", "max_connections=200",
	}
	if c.opts.Ephemeral {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.dataDir, "-l", logPath,
		"-o", strings.Join(opts, " "))
	if err == nil {
		return "", nil
	}
	tail := string(out)
	if f, ferr := os.Open(logPath); ferr == nil {
		if _, ferr := f.Seek(before, io.SeekStart); ferr == nil {
			b, _ := io.ReadAll(io.LimitReader(f, 16<<10))
			tail += string(b)
		}
		_ = f.Close()
	}
	return tail, err
}

// runningPort reports the port of a live server on the data directory.
func (c *Cluster) runningPort() (int, bool) {
	pid, port, ok := c.readPID()
	if !ok || !alive(pid) {
		return 0, false
	}
	return port, port > 0
}

// running reports whether postmaster.pid names a live server process.
func (c *Cluster) running() bool {
	pid, _, ok := c.readPID()
	return ok && alive(pid)
}

// removeStalePID removes a postmaster.pid whose process is gone. PostgreSQL
// does that itself, except when the pid now belongs to another process of
// its user or to a zombie no one reaps (a killed server, in a container
// whose init does not reap orphans).
func (c *Cluster) removeStalePID() {
	pid, _, ok := c.readPID()
	if ok && !alive(pid) {
		_ = os.Remove(filepath.Join(c.dataDir, "postmaster.pid"))
	}
}

// readPID reads the pid and port from the data directory's postmaster.pid.
func (c *Cluster) readPID() (pid, port int, ok bool) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0, false
	}
	lines := strings.Split(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, 0, true // garbage: stale
	}
	if len(lines) > 3 {
		port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pid, port, true
}

// alive reports whether pid is a running (not zombie) postgres process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil { // no /proc: ask the kernel
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	if state := s[i+2]; state == 'Z' || state == 'X' {
		return false
	}
	comm := s[strings.IndexByte(s, '(')+1 : i]
	return strings.Contains(comm, "postgres") || strings.Contains(comm, "postmaster")
}

// freePort picks a free loopback port for the server (see package
// freeport: not one an outgoing connection can take before it binds).
func freePort() (int, error) {
	ports, err := freeport.Pick(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// createDatabase creates the gpuflow database unless it exists.
func (c *Cluster) createDatabase(ctx context.Context) error {
	url := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", Superuser, c.port)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return CreateDatabase(ctx, conn, Database)
}

// CreateDatabase creates database through conn (to any other database of
// the server) unless it exists; one created meanwhile by another caller
// counts as existing.
func CreateDatabase(ctx context.Context, conn *pgx.Conn, database string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", database, err)
	}
	if exists {
		return nil
	}
	_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
		err = nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	return nil
}

// run runs one of the server binaries, as the cluster user when we are
// root, with a clean environment, and returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=" + c.bin + string(os.PathListSeparator) + "/usr/local/bin:/usr/bin:/bin",
		"LC_ALL=C",
		"TZ=UTC",
	}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(cmd.Env, "HOME="+c.dataDir, "USER="+osUser)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the server running with our pipes' write ends
	// closed (it redirects to the log), so Wait returns once pg_ctl exits.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return bytes.TrimSpace(out.Bytes()), err
}

// shellQuote quotes s for the shell pg_ctl hands -o to.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
