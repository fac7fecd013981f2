package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	c, err := Start(ctx, opts)
	if errors.Is(err, ErrServerNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// cleanupCluster stops c at the end of the test and removes its data
// directory when it lives outside the test's temporary directory.
func cleanupCluster(t *testing.T, c **Cluster) {
	t.Cleanup(func() {
		if *c == nil {
			return
		}
		if err := (*c).Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if d := (*c).DataDir(); strings.Contains(d, "gpuflow-pg-") {
			_ = os.RemoveAll(d)
		}
	})
}

func query(t *testing.T, url, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestStartStopRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, Options{Dir: dir})
	cleanupCluster(t, &c)

	if !strings.HasPrefix(c.URL(), "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(c.URL(), "/gpuflow?sslmode=disable") {
		t.Errorf("URL() = %q", c.URL())
	}
	query(t, c.URL(), "CREATE TABLE kept (v text)")
	query(t, c.URL(), "INSERT INTO kept VALUES ('hello')")

	// Starting again while it runs adopts the running server.
	again := startCluster(t, Options{Dir: dir})
	if again.Port() != c.Port() || again.DataDir() != c.DataDir() {
		t.Errorf("second Start: port %d dir %s, want %d %s", again.Port(), again.DataDir(), c.Port(), c.DataDir())
	}

	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "PG_VERSION")); err != nil {
		t.Fatalf("data dir gone after Stop: %v", err)
	}

	c = startCluster(t, Options{Dir: dir})
	if got := query(t, c.URL(), "SELECT v FROM kept"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("after restart: rows %q, want [hello]", got)
	}
}

func TestRestartAfterKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, Options{Dir: dir})
	cleanupCluster(t, &c)
	query(t, c.URL(), "CREATE TABLE kept (v int)")
	query(t, c.URL(), "INSERT INTO kept VALUES (42)")

	pid, _, ok := c.readPID()
	if !ok || pid <= 0 {
		t.Fatalf("no postmaster.pid in %s", c.DataDir())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postmaster %d: %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still alive after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "postmaster.pid")); err != nil {
		t.Fatalf("want a stale postmaster.pid left behind: %v", err)
	}

	c = startCluster(t, Options{Dir: dir})
	if got := query(t, c.URL(), "SELECT v FROM kept"); len(got) != 1 || got[0] != "42" {
		t.Errorf("after kill and restart: rows %q, want [42]", got)
	}
}

func TestEphemeral(t *testing.T) {
	c := startCluster(t, Options{Ephemeral: true})
	cleanupCluster(t, &c)
	if got := query(t, c.URL(), "SELECT current_database()"); len(got) != 1 || got[0] != Database {
		t.Errorf("current_database() = %q", got)
	}
	if got := query(t, c.URL(), "SHOW listen_addresses"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("listen_addresses = %q", got)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.DataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ephemeral dir %s still there after Stop (err %v)", c.DataDir(), err)
	}
}

func TestFixedPort(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, Options{Ephemeral: true, Port: port})
	cleanupCluster(t, &c)
	if c.Port() != port || !strings.Contains(c.URL(), fmt.Sprintf(":%d/", port)) {
		t.Errorf("port %d, URL %s; want port %d", c.Port(), c.URL(), port)
	}
}

func TestDirUsableInPlace(t *testing.T) {
	parent, err := os.MkdirTemp("", "pgcluster-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "a", "pg") // "a" is created searchable
	c := startCluster(t, Options{Dir: dir})
	cleanupCluster(t, &c)
	if c.DataDir() != dir {
		t.Errorf("DataDir() = %s, want %s", c.DataDir(), dir)
	}
	if _, err := os.Stat(filepath.Join(dir, LocationFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("location file written for a usable dir (err %v)", err)
	}
}

func TestRelocatedWhenUnreachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root relocates clusters")
	}
	locked := t.TempDir() // mode 0700, root's
	if err := os.Chmod(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(locked, "pg")
	c := startCluster(t, Options{Dir: dir})
	cleanupCluster(t, &c)
	if c.DataDir() == dir || !strings.Contains(c.DataDir(), "gpuflow-pg-") {
		t.Fatalf("DataDir() = %s, want a relocated dir", c.DataDir())
	}
	loc, err := os.ReadFile(filepath.Join(dir, LocationFile))
	if err != nil || strings.TrimSpace(string(loc)) != c.DataDir() {
		t.Errorf("location file = %q (err %v), want %s", loc, err, c.DataDir())
	}
}

func TestServerNotFound(t *testing.T) {
	oldPath, oldGlob := searchPath, libGlob
	t.Cleanup(func() { searchPath, libGlob = oldPath, oldGlob })
	empty := t.TempDir()
	searchPath = func() string { return empty }
	libGlob = filepath.Join(empty, "*", "bin")

	_, err := Start(context.Background(), Options{Ephemeral: true})
	if !errors.Is(err, ErrServerNotFound) {
		t.Fatalf("Start: %v, want ErrServerNotFound", err)
	}
	want := "PostgreSQL server not found: install it (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestFindBinariesPrefersHighestVersion(t *testing.T) {
	oldPath, oldGlob := searchPath, libGlob
	t.Cleanup(func() { searchPath, libGlob = oldPath, oldGlob })
	root := t.TempDir()
	for _, v := range []string{"9.6", "14", "16"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if v == "16" && name == "postgres" {
				continue // incomplete install: skipped
			}
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	searchPath = func() string { return "" }
	libGlob = filepath.Join(root, "*", "bin")
	got, err := findBinaries()
	if want := filepath.Join(root, "14", "bin"); err != nil || got != want {
		t.Errorf("findBinaries() = %s, %v; want %s", got, err, want)
	}
}

func TestRootWithoutPostgresUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root needs the postgres user")
	}
	if _, err := findBinaries(); err != nil {
		t.Skip(err)
	}
	old := osUser
	t.Cleanup(func() { osUser = old })
	osUser = "gpuflow-no-such-user"
	_, err := Start(context.Background(), Options{Ephemeral: true})
	if err == nil || !strings.Contains(err.Error(), "refuses to run as root") ||
		!strings.Contains(err.Error(), `no "gpuflow-no-such-user" user`) || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("Start = %v, want an error that says to create the user or set DATABASE_URL", err)
	}
}

func TestCrashAndRestartKeepPortAndData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, Options{Dir: dir})
	cleanupCluster(t, &c)
	query(t, c.URL(), "CREATE TABLE kept (v int)")
	query(t, c.URL(), "INSERT INTO kept VALUES (7)")
	port := c.Port()
	ctx := t.Context()

	if err := c.Crash(ctx); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if c.Running() {
		t.Fatal("running after Crash")
	}
	if conn, err := pgx.Connect(ctx, c.URL()); err == nil {
		conn.Close(ctx)
		t.Fatal("connected after Crash")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart after Crash: %v", err)
	}
	if c.Port() != port || !c.Running() {
		t.Fatalf("after Restart: port %d running %v, want port %d running", c.Port(), c.Running(), port)
	}
	if got := query(t, c.URL(), "SELECT v FROM kept"); len(got) != 1 || got[0] != "7" {
		t.Errorf("after crash and restart: rows %q, want [7]", got)
	}
	// A restart of a running server keeps the port too.
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := query(t, c.URL(), "SELECT v FROM kept"); c.Port() != port || len(got) != 1 {
		t.Errorf("after restart: port %d rows %q", c.Port(), got)
	}
}
