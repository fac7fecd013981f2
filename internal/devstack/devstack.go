// Package devstack runs the whole system in one process for `make run` and
// the integration tests: a private PostgreSQL (unless DATABASE_URL is set),
// the Temporal server and Web UI embedded, the worker and the API. Only the
// dev build of cmd/gpuflow and the tests link it: it pulls in the Temporal
// server, which the production binary must not contain.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/api"
	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devtemporal"
	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/worker"
	"github.com/gpuflow/gpuflow/workflows"
)

// Options adjust a stack beyond its Config.
type Options struct {
	// NoWorker starts everything but the worker (tests run workers apart).
	NoWorker bool
	// InMemoryTemporal keeps Temporal's state in memory instead of
	// <data dir>/temporal.db.
	InMemoryTemporal bool
	// NoUI skips the Temporal Web UI.
	NoUI bool
	// NoEmulators leaves clouds without credentials out instead of
	// emulating them.
	NoEmulators bool
	// TemporalClientAddr, when set, is where the stack's Temporal client
	// (the worker's, the API's and its relay's) dials instead of the
	// server's own address: tests put a proxy there to cut Temporal off.
	TemporalClientAddr string
	// ExternalTemporal dials the Temporal server already serving at the
	// configured address instead of embedding one (a benchmark runs the
	// server as a process of its own to measure it apart). The server must
	// have gpuflow's namespace and search attributes.
	ExternalTemporal bool
	// SuggestContinueAsNewAt, when positive, makes the Temporal server
	// suggest continue-as-new at this history length (events): the
	// history capture's knob to run a job's watch through continue-as-new.
	SuggestContinueAsNewAt int
}

// Stack is a running system.
type Stack struct {
	Config   app.Config
	Logger   *slog.Logger
	PG       *pgcluster.Cluster // nil when DATABASE_URL was given
	DB       *postgres.DB
	Temporal *devtemporal.Server
	Client   client.Client
	Worker   *worker.Worker
	API      *api.Server
	// Providers are the providers the worker and the API use.
	Providers gpuflow.Providers
	// Emulators are the in-process cloud emulators, by cloud name.
	Emulators map[string]*runningEmulator
	apiErr    chan error
	stopRelay func()
}

// EmbeddedTemporalOptions are the embedded Temporal server's options for cfg and
// opts (as Start uses them): on <data dir>/temporal.db unless
// InMemoryTemporal, with gpuflow's namespace and search attributes.
func EmbeddedTemporalOptions(cfg app.Config, opts Options, logger *slog.Logger) (devtemporal.Options, error) {
	tport, err := port(cfg.TemporalAddress)
	if err != nil {
		return devtemporal.Options{}, err
	}
	topts := devtemporal.Options{
		Host: host(cfg.TemporalAddress), Port: tport, Namespace: cfg.TemporalNamespace,
		SearchAttributes: workflows.SearchAttributeNames, Logger: logger.With("component", "temporal-server"),
		SuggestContinueAsNewAt: opts.SuggestContinueAsNewAt,
	}
	if !opts.InMemoryTemporal {
		topts.DBFile = filepath.Join(cfg.DataDir, "temporal.db")
	}
	if !opts.NoUI {
		if topts.UIPort, err = port(cfg.TemporalUIAddr); err != nil {
			return devtemporal.Options{}, err
		}
	}
	return topts, nil
}

// Start brings the stack up. Ports are checked before anything starts.
// On failure everything started so far is stopped again.
func Start(ctx context.Context, cfg app.Config, opts Options, logger *slog.Logger) (s *Stack, err error) {
	ports := []string{cfg.HTTPAddr}
	if !opts.ExternalTemporal {
		ports = append(ports, cfg.TemporalAddress)
	}
	for _, addr := range ports {
		if err := api.CheckPortFree(addr); err != nil {
			return nil, err
		}
	}
	if !opts.NoUI && !opts.ExternalTemporal {
		if err := api.CheckPortFree(cfg.TemporalUIAddr); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// `make run` keeps its ease: open registration, local jobs for
	// everyone, no per-user rate limits, unless the environment says.
	cfg = cfg.WithDevDefaults()
	if cfg.JWTSecret == "" {
		// A dev stack needs no setup: it makes a secret once and keeps it
		// in the data dir, so tokens survive restarts. Never logged.
		if cfg.JWTSecret, err = app.DevJWTSecret(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	// The deferred stop holds its own reference: every failing return
	// below sets s to nil.
	started := &Stack{Config: cfg, Logger: logger}
	s = started
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()

	// Temporal first: its file lock tells a second copy to go away before
	// it touches anything else.
	// The embedded server's own system workers are SDK workers of this
	// process and create the process's one sticky workflow cache: its size
	// must be set before they start, or the worker's bound
	// (GPUFLOW_WORKFLOW_CACHE) never applies and every running job stays
	// cached (measured: 9,997 of 10,000 cached with the bound at 2,000).
	if cfg.WorkflowCache > 0 {
		sdkworker.SetStickyWorkflowCacheSize(cfg.WorkflowCache)
	}
	if !opts.ExternalTemporal {
		topts, err := EmbeddedTemporalOptions(cfg, opts, logger)
		if err != nil {
			return nil, err
		}
		if s.Temporal, err = devtemporal.Start(ctx, topts); err != nil {
			return nil, err
		}
	}

	if cfg.DatabaseURL == "" {
		s.PG, err = pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(cfg.DataDir, "postgres"), Logger: logger.With("component", "postgres")})
		if err != nil {
			return nil, err
		}
		cfg.DatabaseURL = s.PG.URL()
		s.Config.DatabaseURL = cfg.DatabaseURL
	}
	if s.DB, err = app.OpenDB(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if err := app.Migrate(ctx, s.DB); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	ccfg := cfg
	if opts.TemporalClientAddr != "" {
		ccfg.TemporalAddress = opts.TemporalClientAddr
	}
	if s.Client, err = app.DialTemporal(ctx, ccfg, logger, reg); err != nil {
		return nil, err
	}
	if !opts.NoEmulators {
		if s.Emulators, err = startEmulators(&cfg, logger); err != nil {
			return nil, err
		}
		s.Config.Clouds = cfg.Clouds
	}
	ps, err := app.NewProviders(cfg, logger)
	if err != nil {
		return nil, err
	}
	s.Providers = ps
	// One registry for the worker and the API. (Each keeps its own
	// statistics feed: the dispatcher's also tracks provider health from
	// its passes, which must not make the API refuse submissions.)
	deps := app.Deps{DB: s.DB, Temporal: s.Client, Providers: ps, Logger: logger, Metrics: reg}
	if !opts.NoWorker {
		if s.Worker, err = app.StartWorker(ctx, cfg, deps); err != nil {
			return nil, err
		}
	}
	s.API = app.NewAPI(cfg, deps)
	s.stopRelay = app.StartRelay(context.WithoutCancel(ctx), cfg, deps)
	s.apiErr = make(chan error, 1)
	go func() { s.apiErr <- s.API.Start(cfg.HTTPAddr) }()
	if err := waitHTTP(ctx, "http://"+cfg.HTTPAddr+"/health", s.apiErr); err != nil {
		return nil, err
	}
	return s, nil
}

// APIURL is the API's base URL.
func (s *Stack) APIURL() string { return "http://" + s.Config.HTTPAddr }

// Stop stops everything in order: the API and its relay, the worker, the
// Temporal client and server, the database pool, PostgreSQL.
func (s *Stack) Stop() {
	if s.API != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.API.Shutdown(ctx)
		cancel()
	}
	if s.stopRelay != nil {
		s.stopRelay()
	}
	if s.Worker != nil {
		s.Worker.Stop()
	}
	if s.Client != nil {
		s.Client.Close()
	}
	stopEmulators(s.Emulators)
	if s.Temporal != nil {
		s.Temporal.Stop()
	}
	if s.DB != nil {
		s.DB.Close()
	}
	if s.PG != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := s.PG.Stop(ctx); err != nil {
			s.Logger.Warn("stop postgres", "err", err)
		}
		cancel()
	}
}

// Run starts the stack, prints where everything is, and stops it when ctx
// is done (Ctrl-C).
func Run(ctx context.Context, cfg app.Config, logger *slog.Logger) error {
	s, err := Start(ctx, cfg, Options{}, logger)
	if err != nil {
		return err
	}
	fmt.Printf(`gpuflow %s is running (all in one process; Ctrl-C stops it)
  API              %s
  API docs         %s/docs
  Temporal Web UI  %s
  Temporal gRPC    %s (namespace %s)
  PostgreSQL       %s
  data             %s
`, app.Version, s.APIURL(), s.APIURL(), s.Temporal.UIURL(), s.Temporal.FrontendAddr(), cfg.TemporalNamespace,
		redact(s.Config.DatabaseURL), cfg.DataDir)
	for _, p := range s.Providers {
		info := p.Info()
		where := ""
		if e := s.Emulators[info.Name]; e != nil {
			where = " at " + e.URL + " (faults: " + e.URL + "/_emulator/faults)"
		}
		fmt.Printf("  provider         %-8s %s%s\n", info.Name, info.Mode, where)
	}
	fmt.Println("  Create an account: curl -X POST " + s.APIURL() + `/auth/register -H 'Content-Type: application/json' -d '{"email":"you@example.com","password":"a-long-password"}'`)
	select {
	case <-ctx.Done():
	case err = <-s.apiErr:
		err = fmt.Errorf("api: %w", err)
	}
	fmt.Println("gpuflow: stopping")
	s.Stop()
	return err
}

func waitHTTP(ctx context.Context, url string, failed <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-failed:
			return fmt.Errorf("api: %w", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("api did not come up within 10s")
}

func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

func port(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// redact hides a password in a database URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
