// Package topology runs gpuflow's production topology on one machine, each
// component a process of its own, for the chaos suite and `make topology`:
//
//   - one PostgreSQL cluster (internal/pgcluster) holding gpuflow's
//     database and Temporal's two;
//   - the Temporal server on that PostgreSQL (`gpuflow-dev temporal`: the
//     persistence production has, not SQLite), with its Web UI;
//   - the cloud emulators, with their fault switches (`gpuflow-dev
//     emulators`);
//   - `gpuflow migrate`, then two `gpuflow api` and two `gpuflow worker`,
//     worker-1 also this host's local provider;
//   - TCP proxies between the gpuflow processes and Temporal's frontend and
//     PostgreSQL, and between Temporal and PostgreSQL, so that an outage can
//     be injected (Cut, Restore) without stopping anything.
//
// api, worker and migrate are the production commands of the dev build,
// configured only through the environment they read (internal/app.Config).
// Every component can be killed (SIGKILL) and restarted on the same ports;
// its log is D/logs/NAME.log. It links no Temporal server: the processes do.
package topology

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/freeport"
	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/gpuflow/gpuflow/internal/tcpproxy"
	"github.com/gpuflow/gpuflow/internal/waitfor"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Namespace is the Temporal namespace the topology uses.
const Namespace = "default"

// Names of the components, as Process.Name and in D/logs/NAME.log.
const (
	NameTemporal  = "temporal"
	NameEmulators = "emulators"
	NameMigrate   = "migrate"
	NameAPI1      = "api-1"
	NameAPI2      = "api-2"
	NameWorker1   = "worker-1" // also the local host
	NameWorker2   = "worker-2"
)

// Options configure Start.
type Options struct {
	// Dir holds everything: postgres/, emulators/ (their state), data/NAME
	// (each process's GPUFLOW_DATA_DIR), local-jobs/ (the local provider's
	// job directories), logs/, jwt-secret. Required. Starting again on the
	// same Dir keeps every job, user and machine.
	Dir string
	// Binary is the dev build of cmd/gpuflow to run. Empty: Start builds
	// Repo's into Repo/bin/gpuflow-dev (go build -tags dev) first.
	Binary string
	// ServiceBinary runs migrate, the APIs and the workers (default
	// Binary): the upgrade drill starts them from an older build, then
	// moves them to the new one (SetServiceBinary).
	ServiceBinary string
	// Repo is the module's root to build from (default: found upwards from
	// the working directory).
	Repo string
	// UI serves the Temporal Web UI (from the temporal process).
	UI bool
	// LocalCPUSlots is worker-1's GPUFLOW_LOCAL_CPU_SLOTS (default 4).
	LocalCPUSlots int
	// Env is added to the environment of every api, worker and migrate
	// process, after the topology's own (so it wins), e.g.
	// "GPUFLOW_WATCH_INTERVAL=2s".
	Env []string
	// Logger receives progress (default: discard).
	Logger *slog.Logger
}

// Topology is a running topology. Its fields are set by Start and never
// change; stop it with Stop.
type Topology struct {
	// Dir is Options.Dir, absolute.
	Dir string
	// Binary is the gpuflow-dev binary every process runs.
	Binary string
	// Postgres is the cluster: Crash (pg_ctl stop -m immediate), Restart
	// (on the same port) and Running. Both Temporal databases and
	// gpuflow's are on it.
	Postgres *pgcluster.Cluster
	// Temporal is the Temporal server process; Emulators the emulators'.
	Temporal  *Process
	Emulators *Process
	// APIs are api-1 and api-2; Workers worker-1 (also the local host)
	// and worker-2.
	APIs    [2]*Process
	Workers [2]*Process
	// TemporalProxy stands between the api and worker processes and
	// Temporal's frontend; PostgresProxy between them (and migrate) and
	// PostgreSQL; TemporalPostgresProxy between the Temporal server and
	// PostgreSQL. Cut one to make what is behind it unreachable.
	TemporalProxy         *tcpproxy.Proxy
	PostgresProxy         *tcpproxy.Proxy
	TemporalPostgresProxy *tcpproxy.Proxy

	binMu        sync.Mutex
	serviceBin   string            // migrate's, the APIs' and the workers' binary
	emulatorURLs map[string]string // by cloud name
	temporalAddr string            // the frontend itself, without the proxy
	uiURL        string
	env          []string // the api, worker and migrate environment
	logger       *slog.Logger
}

// Start builds the binary (unless Options.Binary names one), starts
// PostgreSQL, the proxies, Temporal, the emulators, runs migrate, then
// starts the two workers and the two APIs, each once the one before is
// ready. On failure everything started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Topology, err error) {
	if opts.Dir == "" {
		return nil, errors.New("topology: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.LocalCPUSlots == 0 {
		opts.LocalCPUSlots = 4
	}
	for _, d := range []string{"logs", "emulators", "data", "local-jobs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("topology: %w", err)
		}
	}
	t := &Topology{Dir: dir, Binary: opts.Binary, logger: logger}
	if t.Binary == "" {
		if t.Binary, err = Build(ctx, opts.Repo, logger); err != nil {
			return nil, err
		}
	}
	if err := checkEmulatorsCommand(ctx, t.Binary); err != nil {
		return nil, err
	}
	t.serviceBin = cmp.Or(opts.ServiceBinary, t.Binary)
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()

	logger.Info("topology: starting postgres", "dir", filepath.Join(dir, "postgres"))
	if t.Postgres, err = pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dir, "postgres"), Logger: logger.With("component", "postgres")}); err != nil {
		return nil, err
	}
	pgAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(t.Postgres.Port()))
	if t.PostgresProxy, err = tcpproxy.Listen("127.0.0.1:0", pgAddr); err != nil {
		return nil, err
	}
	if t.TemporalPostgresProxy, err = tcpproxy.Listen("127.0.0.1:0", pgAddr); err != nil {
		return nil, err
	}

	ports, err := freeport.Pick(11)
	if err != nil {
		return nil, err
	}
	t.temporalAddr = loopback(ports[0])
	if t.TemporalProxy, err = tcpproxy.Listen("127.0.0.1:0", t.temporalAddr); err != nil {
		return nil, err
	}
	uiPort := 0
	if opts.UI {
		uiPort = ports[1]
		t.uiURL = "http://" + loopback(uiPort)
	}
	t.Temporal = t.newProcess(NameTemporal, t.uiURL, []string{"temporal",
		"--db", pgURL(t.TemporalPostgresProxy.Addr(), "temporal"),
		"--port", strconv.Itoa(ports[0]), "--ui-port", strconv.Itoa(uiPort), "--namespace", Namespace,
	}, baseEnv("LOG_LEVEL=info"), t.temporalReady)

	t.emulatorURLs = map[string]string{}
	emuArgs := []string{"emulators", "--state", filepath.Join(dir, "emulators")}
	for i, cloud := range app.Clouds {
		addr := loopback(ports[2+i])
		t.emulatorURLs[cloud] = "http://" + addr
		emuArgs = append(emuArgs, "--"+cloud, addr)
	}
	t.Emulators = t.newProcess(NameEmulators, "", emuArgs, baseEnv("LOG_LEVEL=info"), t.emulatorsReady)

	secret, err := jwtSecret(filepath.Join(dir, "jwt-secret"))
	if err != nil {
		return nil, err
	}
	t.env = baseEnv(
		"DATABASE_URL="+pgURL(t.PostgresProxy.Addr(), pgcluster.Database),
		"TEMPORAL_ADDRESS="+t.TemporalProxy.Addr(),
		"TEMPORAL_NAMESPACE="+Namespace,
		"JWT_SECRET="+secret,
		"GPUFLOW_LOCAL_DIR="+filepath.Join(dir, "local-jobs"),
		"GPUFLOW_LOCAL_CPU_SLOTS="+strconv.Itoa(opts.LocalCPUSlots),
		// Tests and the chaos suite register their own users and run local
		// jobs as them; production's defaults would refuse both.
		"GPUFLOW_REGISTRATION=open",
		"GPUFLOW_LOCAL_USERS=*",
		"LOG_LEVEL=info",
	)
	if t.uiURL != "" {
		t.env = append(t.env, "TEMPORAL_UI_URL="+t.uiURL)
	}
	for _, cloud := range app.Clouds {
		t.env = append(t.env, app.EmulatorURLEnv[cloud]+"="+t.emulatorURLs[cloud])
	}
	t.env = append(t.env, opts.Env...)

	apiAddrs := [2]string{loopback(ports[5]), loopback(ports[6])}
	for i, name := range []string{NameAPI1, NameAPI2} {
		env := append(t.processEnv(name, apiAddrs[i], true), "METRICS_ADDR=off")
		t.APIs[i] = t.newProcess(name, "http://"+apiAddrs[i], []string{"api"}, env, httpReady("http://"+apiAddrs[i]+"/health"))
		t.APIs[i].bin = t.serviceBin
	}
	for i, name := range []string{NameWorker1, NameWorker2} {
		metrics := loopback(ports[7+i])
		// Each worker's cloud machines report to one API (the agent
		// retries until that API answers again after a kill).
		env := append(t.processEnv(name, apiAddrs[i], i == 0), "METRICS_ADDR="+metrics)
		t.Workers[i] = t.newProcess(name, "http://"+metrics, []string{"worker"}, env, httpReady("http://"+metrics+"/metrics"))
		t.Workers[i].bin = t.serviceBin
	}

	logger.Info("topology: starting temporal and the emulators")
	if err := t.Temporal.Start(ctx); err != nil {
		return nil, err
	}
	if err := t.Emulators.Start(ctx); err != nil {
		return nil, err
	}
	if err := t.Migrate(ctx); err != nil {
		return nil, err
	}
	for _, p := range append(t.Workers[:], t.APIs[:]...) {
		logger.Info("topology: starting " + p.Name)
		if err := p.Start(ctx); err != nil {
			return nil, err
		}
	}
	logger.Info("topology: running", "apis", t.APIURLs(), "logs", t.LogDir())
	return t, nil
}

// processEnv is the environment of the gpuflow process name: the shared
// one plus its own data dir, HTTP address (an API's own; a worker's API,
// where its cloud machines' agents report) and whether it runs local jobs.
func (t *Topology) processEnv(name, httpAddr string, local bool) []string {
	env := append([]string(nil), t.env...)
	// Options.Env comes last in t.env and must still win: put ours first.
	own := []string{
		"GPUFLOW_DATA_DIR=" + filepath.Join(t.Dir, "data", name),
		"HTTP_ADDR=" + httpAddr,
		"GPUFLOW_AGENT_URL=http://" + httpAddr,
		"GPUFLOW_LOCAL_ENABLED=" + strconv.FormatBool(local),
	}
	return append(own, env...)
}

func (t *Topology) newProcess(name, url string, args, env []string, ready func(context.Context) error) *Process {
	return &Process{Name: name, URL: url, bin: t.Binary, args: args, env: env,
		logPath: filepath.Join(t.Dir, "logs", name+".log"), ready: ready}
}

// Migrate runs `gpuflow migrate` (D/logs/migrate.log) and waits for it.
func (t *Topology) Migrate(ctx context.Context) error {
	p := t.newProcess(NameMigrate, "", []string{"migrate"}, t.processEnv(NameMigrate, "127.0.0.1:0", false), nil)
	p.bin = t.serviceBinary()
	if err := p.Start(ctx); err != nil {
		return err
	}
	return p.Wait(ctx)
}

// SetServiceBinary makes bin the binary of migrate, the APIs and the
// workers from their next start on (Migrate, Process.Start or Restart):
// the upgrade drill's rolling upgrade.
func (t *Topology) SetServiceBinary(bin string) {
	t.binMu.Lock()
	t.serviceBin = bin
	t.binMu.Unlock()
	for _, p := range append(t.APIs[:], t.Workers[:]...) {
		p.setBinary(bin)
	}
}

func (t *Topology) serviceBinary() string {
	t.binMu.Lock()
	defer t.binMu.Unlock()
	return t.serviceBin
}

// Stop stops everything, each with SIGTERM (SIGKILL after 10 s): the APIs,
// the workers, the emulators, Temporal, the proxies, PostgreSQL (fast
// shutdown). It is safe to call on a topology Start left half made.
func (t *Topology) Stop() {
	for _, p := range []*Process{t.APIs[0], t.APIs[1], t.Workers[0], t.Workers[1], t.Emulators, t.Temporal} {
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
	for _, p := range []*tcpproxy.Proxy{t.TemporalProxy, t.PostgresProxy, t.TemporalPostgresProxy} {
		if p != nil {
			p.Close()
		}
	}
	if t.Postgres != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := t.Postgres.Stop(ctx); err != nil {
			t.logger.Warn("topology: stop postgres", "err", err)
		}
	}
}

// Processes are the long-running components: temporal, emulators, api-1,
// api-2, worker-1, worker-2.
func (t *Topology) Processes() []*Process {
	return []*Process{t.Temporal, t.Emulators, t.APIs[0], t.APIs[1], t.Workers[0], t.Workers[1]}
}

// Process returns the component called name, or nil.
func (t *Topology) Process(name string) *Process {
	for _, p := range t.Processes() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// APIURLs are the two APIs' base URLs.
func (t *Topology) APIURLs() []string { return []string{t.APIs[0].URL, t.APIs[1].URL} }

// TemporalUIURL is the Temporal Web UI's URL ("" without Options.UI).
func (t *Topology) TemporalUIURL() string { return t.uiURL }

// TemporalAddress is Temporal's frontend as the gpuflow processes reach it
// (through TemporalProxy).
func (t *Topology) TemporalAddress() string { return t.TemporalProxy.Addr() }

// TemporalDirectAddress is Temporal's frontend itself, past the proxy.
func (t *Topology) TemporalDirectAddress() string { return t.temporalAddr }

// DatabaseURL is gpuflow's database as its processes reach it (through
// PostgresProxy).
func (t *Topology) DatabaseURL() string { return pgURL(t.PostgresProxy.Addr(), pgcluster.Database) }

// DirectDatabaseURL is gpuflow's database past the proxy.
func (t *Topology) DirectDatabaseURL() string { return t.Postgres.URL() }

// EmulatorURLs are the emulators' base URLs by cloud name (runpod,
// tencent, alibaba).
func (t *Topology) EmulatorURLs() map[string]string {
	out := make(map[string]string, len(t.emulatorURLs))
	for k, v := range t.emulatorURLs {
		out[k] = v
	}
	return out
}

// LogDir is D/logs.
func (t *Topology) LogDir() string { return filepath.Join(t.Dir, "logs") }

// Env is the environment the api and worker processes share (JWT_SECRET
// included: keep it out of logs).
func (t *Topology) Env() []string { return append([]string(nil), t.env...) }

// CutTemporal makes Temporal's frontend unreachable for the gpuflow
// processes (connections in flight are closed, new ones refused);
// RestoreTemporal ends that.
func (t *Topology) CutTemporal()     { t.TemporalProxy.Cut() }
func (t *Topology) RestoreTemporal() { t.TemporalProxy.Restore() }

// CutPostgres makes PostgreSQL unreachable for everyone: the gpuflow
// processes and the Temporal server; RestorePostgres ends that.
func (t *Topology) CutPostgres() {
	t.PostgresProxy.Cut()
	t.TemporalPostgresProxy.Cut()
}
func (t *Topology) RestorePostgres() {
	t.PostgresProxy.Restore()
	t.TemporalPostgresProxy.Restore()
}

// SetFaults sets the fault switches of cloud's emulator (PUT
// /_emulator/faults).
func (t *Topology) SetFaults(ctx context.Context, cloud string, f emulate.Faults) error {
	base, ok := t.emulatorURLs[cloud]
	if !ok {
		return fmt.Errorf("topology: no emulator for %q", cloud)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/_emulator/faults", strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("topology: set %s faults: %w", cloud, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("topology: set %s faults: %s", cloud, resp.Status)
	}
	return nil
}

// temporalReady waits until the frontend answers for the namespace.
func (t *Topology) temporalReady(ctx context.Context) error {
	return waitfor.Until(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := client.DialContext(dctx, client.Options{HostPort: t.temporalAddr, Namespace: Namespace,
			Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WorkflowService().DescribeNamespace(dctx, &workflowservice.DescribeNamespaceRequest{Namespace: Namespace})
		return err
	})
}

// emulatorsReady waits until every emulator answers its faults endpoint.
func (t *Topology) emulatorsReady(ctx context.Context) error {
	for _, cloud := range app.Clouds {
		if err := httpReady(t.emulatorURLs[cloud] + "/_emulator/faults")(ctx); err != nil {
			return fmt.Errorf("%s emulator: %w", cloud, err)
		}
	}
	return nil
}

// httpReady returns a probe that polls url until it answers 200.
func httpReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		return waitfor.HTTP200(ctx, url, 100*time.Millisecond, 2*time.Second)
	}
}

// checkEmulatorsCommand fails clearly when bin has no `emulators` command.
func checkEmulatorsCommand(ctx context.Context, bin string) error {
	out, err := exec.CommandContext(ctx, bin, "emulators", "--help").CombinedOutput() // #nosec G204 -- the topology's own binary
	if err != nil || !strings.Contains(string(out), "--state") {
		return fmt.Errorf("topology: %s has no `emulators` command (the cloud emulators as a process of their own: "+
			"gpuflow-dev emulators --state DIR --runpod ADDR --tencent ADDR --alibaba ADDR); "+
			"build it from a tree that has it: %v\n%s", bin, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Build builds the dev binary of repo (default: the module root found from
// the working directory) into repo/bin/gpuflow-dev and returns its path.
func Build(ctx context.Context, repo string, logger *slog.Logger) (string, error) {
	if repo == "" {
		var err error
		if repo, err = findRepo(); err != nil {
			return "", err
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("topology: build needs the go command: %w", err)
	}
	out := filepath.Join(repo, "bin", "gpuflow-dev")
	if logger != nil {
		logger.Info("topology: building " + out)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "dev", "-o", out, "./cmd/gpuflow") // #nosec G204 -- the go tool on PATH building this module
	cmd.Dir = repo
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("topology: go build -tags dev ./cmd/gpuflow: %w\n%s", err, b)
	}
	return out, nil
}

// findRepo walks up from the working directory to gpuflow's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod")) // #nosec G304 -- go.mod of a parent directory
		if err == nil && strings.Contains(string(b), "module github.com/gpuflow/gpuflow\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("topology: not inside the gpuflow module; set Options.Repo or Options.Binary")
		}
		dir = parent
	}
}

// baseEnv is this process's environment without anything gpuflow reads
// (no live cloud credentials, no DATABASE_URL of another system), plus
// extra.
func baseEnv(extra ...string) []string {
	drop := map[string]bool{}
	for _, k := range app.EnvVars {
		drop[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// jwtSecret reads the topology's JWT secret from path, making one first if
// missing, so tokens survive restarts.
func jwtSecret(path string) (string, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- inside the topology's own directory
	if err == nil && len(strings.TrimSpace(string(b))) >= app.MinJWTSecretLen {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

func loopback(port int) string { return freeport.Loopback(port) }

// pgURL is the URL of database on the cluster's superuser at addr.
func pgURL(addr, database string) string {
	return "postgres://" + pgcluster.Superuser + "@" + addr + "/" + database + "?sslmode=disable"
}
