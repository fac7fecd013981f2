package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/admission"
	"github.com/gpuflow/gpuflow/api"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/dispatch"
	"github.com/gpuflow/gpuflow/internal/telemetry"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/provider/local"
	"github.com/gpuflow/gpuflow/scheduler"
	"github.com/gpuflow/gpuflow/watcher"
	"github.com/gpuflow/gpuflow/web"
	"github.com/gpuflow/gpuflow/worker"
	"github.com/gpuflow/gpuflow/workflows"
)

// Version is the build's version, set with -ldflags "-X .../internal/app.Version=...".
var Version = "dev"

// OpenDB connects to PostgreSQL at cfg.DatabaseURL.
func OpenDB(ctx context.Context, cfg Config, logger *slog.Logger) (*postgres.DB, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set")
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, logger)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// Migrate applies the embedded migrations.
func Migrate(ctx context.Context, db *postgres.DB) error {
	if err := postgres.Migrate(ctx, db.Pool); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// DialTemporal connects a Temporal client to cfg.TemporalAddress. With a
// registry, the SDK's client and worker metrics (and the workflows' own,
// such as provisioning outcomes) are exported there, reported each second
// for as long as the process runs. (The client cannot be wrapped to stop
// them on Close: the SDK's worker insists on its own client type.)
func DialTemporal(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (client.Client, error) {
	opts := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    sdklog.NewStructuredLogger(logger.With("component", "temporal")),
	}
	if reg != nil {
		h, _, err := telemetry.NewTemporalMetrics(reg)
		if err != nil {
			return nil, fmt.Errorf("temporal metrics: %w", err)
		}
		opts.MetricsHandler = h
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	return c, nil
}

// NewProviders builds the configured providers, in preference order.
func NewProviders(cfg Config, logger *slog.Logger) (gpuflow.Providers, error) {
	var ps gpuflow.Providers
	if cfg.LocalEnabled {
		p, err := local.New(local.Config{Dir: cfg.LocalDir, CPUSlots: cfg.LocalCPUSlots, RunAs: cfg.LocalRunAs, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
		ps = append(ps, p)
	}
	clouds, err := newClouds(cfg.Clouds, logger)
	if err != nil {
		return nil, err
	}
	return append(ps, clouds...), nil
}

// Deps are the connections a process shares between the API and the worker.
type Deps struct {
	DB        *postgres.DB
	Temporal  client.Client
	Providers gpuflow.Providers
	Logger    *slog.Logger
	// Metrics is the process's Prometheus registry (nil: the API makes its
	// own and the Temporal client exports nothing).
	Metrics *prometheus.Registry
	// Stats are the scheduler's statistics from recorded provisioning
	// outcomes (nil: the dispatcher and the API each make their own).
	Stats *admission.Feed
}

// NewWorker builds the Temporal workers over deps. With a JWT secret it
// gives cloud machines an agent endpoint (cfg.AgentURL) and job tokens.
func NewWorker(cfg Config, deps Deps) (*worker.Worker, error) {
	disp := &dispatch.Dispatcher{
		Queue: deps.DB, Outcomes: deps.DB, Providers: deps.Providers, Signals: deps.Temporal,
		Config: admission.Config{Limits: cfg.Limits}, Stats: deps.Stats, Logger: deps.Logger,
	}
	if deps.Providers.Get(local.Name) == nil {
		// Local jobs belong to the worker on their host: one passing by
		// here waits for that worker's pass instead of failing.
		disp.Elsewhere = map[string]string{local.Name: "not on this worker (GPUFLOW_LOCAL_ENABLED=false); the job's host runs its own"}
	}
	hosts := hostBound(deps.Providers)
	acts := &activities.Activities{Jobs: deps.DB, Providers: deps.Providers, Workflows: deps.Temporal, JobWorkflowType: workflows.JobWorkflowName, ProviderAttribute: workflows.SearchAttrProvider, Logger: deps.Logger, Queue: disp,
		Watches: deps.DB, Hosts: hosts, WatcherFresh: 4 * cmp.Or(cfg.WatchInterval, watcher.DefaultInterval)}
	if cfg.JWTSecret != "" {
		tokens, err := auth.NewAgentTokens([]byte(cfg.JWTSecret), nil)
		if err != nil {
			return nil, fmt.Errorf("agent tokens: %w", err)
		}
		acts.Agents = agentIssuer{base: strings.TrimSuffix(cfg.AgentURL, "/"), tokens: tokens, grace: cfg.AgentReportGrace}
	}
	if deps.Metrics != nil {
		obs, err := queueMetrics(deps.Metrics)
		if err != nil {
			return nil, err
		}
		disp.Observe = obs
	}
	recheck := cmp.Or(cfg.QueueRecheck, dispatch.DefaultQueueRecheck)
	services := []func(context.Context){
		func(ctx context.Context) { disp.Run(ctx, deps.DB.ListenQueue, recheck, deps.Logger) },
	}
	for _, w := range watchers(cfg, deps, hosts) {
		services = append(services, w.Run)
	}
	return worker.New(deps.Temporal, acts, worker.Options{Services: services, WorkflowCacheSize: cfg.WorkflowCache}), nil
}

// hostBound names the host of each provider whose machines run on the
// worker's own host (the local provider): its watcher watches only the
// machines of that host.
func hostBound(ps gpuflow.Providers) map[string]string {
	hosts := map[string]string{}
	if ps.Get(local.Name) != nil {
		h, err := os.Hostname()
		hosts[local.Name] = cmp.Or(h, "localhost")
		if err != nil {
			hosts[local.Name] = "localhost"
		}
	}
	return hosts
}

// watchers builds one machine watcher per provider of this worker; across
// processes one of each runs at a time (the store's session lock).
func watchers(cfg Config, deps Deps, hosts map[string]string) []*watcher.Watcher {
	var out []*watcher.Watcher
	for _, p := range deps.Providers {
		name := p.Info().Name
		host := hosts[name]
		interval := cmp.Or(cfg.WatchInterval, watcher.DefaultInterval)
		if name == local.Name {
			interval = min(interval, watcher.LocalInterval)
		}
		out = append(out, &watcher.Watcher{
			Provider: p, Host: host, Store: deps.DB, Logs: deps.DB, Signals: deps.Temporal,
			Interval: interval, Logger: deps.Logger,
			Lock: func(ctx context.Context) (watcher.Lock, error) {
				l, err := deps.DB.WatchLock(ctx, name, host)
				if l == nil || err != nil {
					return nil, err
				}
				return l, nil
			},
		})
	}
	return out
}

// queueMetrics registers the dispatcher's metrics in reg and returns what
// records them after each pass.
func queueMetrics(reg prometheus.Registerer) (func(dispatch.PassStats), error) {
	admitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuflow_admissions_total", Help: "Jobs admitted from the queue, by strategy and chosen provider.",
	}, []string{"strategy", "provider"})
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gpuflow_queue_waiting_jobs", Help: "Jobs waiting in the queue after this process's last admission pass.",
	})
	passes := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gpuflow_admission_pass_duration_seconds", Help: "Admission passes: reading the queue, gathering offers, ranking, writing.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	for _, c := range []prometheus.Collector{admitted, waiting, passes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("queue metrics: %w", err)
		}
	}
	return func(s dispatch.PassStats) {
		passes.Observe(s.Duration.Seconds())
		waiting.Set(float64(s.Waiting))
		for _, a := range s.Admitted {
			admitted.WithLabelValues(a.Strategy, a.Provider).Inc()
		}
	}, nil
}

// agentIssuer gives a job's machine the API's agent endpoint and a token
// valid for that job alone.
type agentIssuer struct {
	base   string
	tokens *auth.AgentTokens
	grace  time.Duration
}

func (a agentIssuer) Endpoint(jobID string, ttl time.Duration) (*gpuflow.AgentEndpoint, error) {
	tok, err := a.tokens.Issue(jobID, ttl)
	if err != nil {
		return nil, err
	}
	return &gpuflow.AgentEndpoint{URL: a.base + "/agent/v1/jobs/" + jobID, Token: tok, ReportGrace: a.grace}, nil
}

// StartWorker starts the workers over deps and installs (or updates) the
// reconciler's schedule for this worker's providers.
func StartWorker(ctx context.Context, cfg Config, deps Deps) (*worker.Worker, error) {
	w, err := NewWorker(cfg, deps)
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, err
	}
	if len(deps.Providers) > 0 {
		if err := worker.EnsureReconcileSchedule(ctx, deps.Temporal, deps.Providers.Names(), cfg.ReconcileInterval, cfg.ReconcileGrace); err != nil {
			w.Stop()
			return nil, err
		}
	}
	return w, nil
}

// NewAPI builds the HTTP API over deps. What cfg leaves unset is closed:
// registration, local jobs beyond superusers and can_run_local, and the
// API's default rate limits (Config.WithDevDefaults opens them for dev).
func NewAPI(cfg Config, deps Deps) *api.Server {
	var agents api.AgentVerifier
	if t, err := auth.NewAgentTokens([]byte(cfg.JWTSecret), nil); err == nil {
		agents = t
	}
	var localUsers gpuflow.LocalPolicy
	if cfg.LocalUsers != nil {
		localUsers = *cfg.LocalUsers
	}
	var submitRate, cancelRate api.RateLimit
	if cfg.SubmitRate != nil {
		submitRate = *cfg.SubmitRate
	}
	if cfg.CancelRate != nil {
		cancelRate = *cfg.CancelRate
	}
	return api.New(api.Config{
		Limiter:            deps.DB,
		SubmitRate:         submitRate,
		CancelRate:         cancelRate,
		Agents:             agents,
		Jobs:               deps.DB,
		Temporal:           deps.Temporal,
		Namespace:          cfg.TemporalNamespace,
		Providers:          deps.Providers,
		TemporalUIURL:      cfg.TemporalUIURL,
		Version:            Version,
		Logger:             deps.Logger,
		Feed:               deps.DB, // Serve runs its listener; Shutdown stops it
		Metrics:            deps.Metrics,
		Queue:              deps.DB,
		Stats:              statsSource(deps),
		CORSAllowedOrigins: cfg.CORSAllowedOrigins,
		UI:                 web.Dist(),
		Auth: api.AuthConfig{
			Users:          deps.DB,
			Secret:         []byte(cfg.JWTSecret),
			TokenLifetime:  cfg.JWTLifetime,
			TrustedProxies: cfg.TrustedProxies,
			Registration:   cfg.Registration,
			Invitations:    deps.DB,
			Local:          localUsers,
		},
		HealthChecks: map[string]func(context.Context) error{
			"postgres": deps.DB.Ping,
			"temporal": func(ctx context.Context) error {
				_, err := deps.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			},
		},
	})
}

// statsRefresh is how stale the API's statistics may be: submissions and
// recommendations read recorded outcomes at most this often.
const statsRefresh = time.Second

// statsSource reads the recorded provisioning outcomes into the feed the
// API ranks with, at most once per statsRefresh.
func statsSource(deps Deps) func(context.Context) (map[string]scheduler.Snapshot, map[string]scheduler.Snapshot) {
	feed := deps.Stats
	if feed == nil {
		feed = admission.NewFeed()
	}
	var (
		mu   sync.Mutex
		last time.Time
	)
	return func(ctx context.Context) (map[string]scheduler.Snapshot, map[string]scheduler.Snapshot) {
		now := time.Now()
		mu.Lock()
		if now.Sub(last) >= statsRefresh {
			if err := dispatch.RefreshStats(ctx, deps.DB, feed, now); err != nil {
				deps.Logger.WarnContext(ctx, "reading provisioning outcomes failed; using older statistics", "err", err)
			} else {
				last = now
			}
		}
		mu.Unlock()
		return feed.Snapshot(now)
	}
}

// ServeAPI runs srv on cfg.HTTPAddr until ctx is done, then shuts it down
// gracefully.
func ServeAPI(ctx context.Context, cfg Config, srv *api.Server, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(cfg.HTTPAddr) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api on %s: %w", cfg.HTTPAddr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("api shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
