package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// Config is what the API server needs. cmd/ builds it.
type Config struct {
	// Jobs stores jobs, their events and logs.
	Jobs gpuflow.JobStore
	// Temporal starts and signals job workflows.
	Temporal client.Client
	// Namespace is the Temporal namespace (for Web UI links); "default" when empty.
	Namespace string
	// Providers are the configured providers, in preference order.
	Providers gpuflow.Providers
	// TemporalUIURL is the base URL of the Temporal Web UI, e.g.
	// http://127.0.0.1:8233; empty leaves links out.
	TemporalUIURL string
	// Version is the build's version, shown by GET /.
	Version string
	// Logger logs requests (debug) and failures; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HealthChecks are run by GET /health, by name (e.g. "postgres",
	// "temporal"); each gets healthCheckTimeout.
	HealthChecks map[string]func(context.Context) error
	// Auth configures accounts and tokens; every route but the public ones
	// needs a token.
	Auth AuthConfig
	// Feed is the job event feed every process writes to: the WebSocket
	// and followed logs read it. nil: the WebSocket answers 503 and
	// followed logs poll the store.
	Feed EventFeed
	// WebSocket tunes GET /api/gpu/ws; zero fields get defaults.
	WebSocket WebSocketConfig
	// Unconfigured are providers gpuflow knows but this process has no
	// credentials for: listed with mode "unconfigured", never scheduled.
	Unconfigured []gpuflow.ProviderInfo
	// Agents verifies the job-scoped tokens of cloud machines reporting to
	// /agent/v1/jobs/:id; nil answers 503 there.
	Agents AgentVerifier
	// CORSAllowedOrigins are the browser origins (scheme://host[:port], or
	// "*" for any) whose pages may call the API. Empty: no CORS headers at
	// all, so only same-origin pages can read answers.
	CORSAllowedOrigins []string
	// Queue tells where a queued job waits and why; nil: not shown.
	Queue interface {
		QueuePosition(ctx context.Context, jobID string) (int, string, error)
	}
	// Metrics is the registry GET /metrics serves, shared with the
	// process's Temporal client (nil: a registry of the API's own).
	Metrics *prometheus.Registry
	// Stats returns the scheduler's statistics per provider and per offer,
	// from recorded provisioning outcomes; nil ranks with the priors.
	Stats func(context.Context) (providers, offers map[string]scheduler.Snapshot)
	// UI is the built web dashboard (index.html, assets/), served under
	// /ui/; nil: /ui/ answers 404.
	UI fs.FS
	// Limiter counts each user's submissions and cancels; nil counts in
	// this process's memory (each replica alone). *postgres.DB shares the
	// counts between replicas.
	Limiter RateLimiter
	// SubmitRate and CancelRate bound each user's submissions and cancels
	// (429 with Retry-After past them). Zero: 120 a minute each; a
	// negative Limit: no limit.
	SubmitRate, CancelRate RateLimit
}

// Limits and intervals of the API.
const (
	maxSubmitBody      = 1 << 20 // 1 MiB
	maxCancelBody      = 64 << 10
	maxLogPage         = 1 << 20 // 1 MiB
	defaultListLimit   = 50
	maxListLimit       = 200
	healthCheckTimeout = 2 * time.Second
	providerTimeout    = 10 * time.Second
	logPollInterval    = 250 * time.Millisecond
)

// Server is the HTTP API server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	echo    *echo.Echo
	http    *http.Server
	logPoll time.Duration // how often a followed log is polled
	auth    *authState
	live    *liveFeed // the WebSocket and the event feed
	prom    *promMetrics
	rates   userRates
	metrics *schedMetrics
	started time.Time // when New ran, for the metrics
	// idemWait is how long a duplicate submission waits for the first one's
	// job to be recorded (idempotencyWait).
	idemWait time.Duration
}

// New returns a server for cfg with every route registered.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, logPoll: logPollInterval,
		metrics: newSchedMetrics(cfg.Providers.Names()), idemWait: idempotencyWait}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now().UTC()
	s.rates = newUserRates(cfg)
	if s.cfg.Namespace == "" {
		s.cfg.Namespace = "default"
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard)
	e.HTTPErrorHandler = s.handleError
	s.prom = newPromMetrics(s)
	e.Use(s.prom.middleware, s.logRequests, s.recoverPanics)
	if len(cfg.CORSAllowedOrigins) > 0 {
		e.Use(corsMiddleware(cfg.CORSAllowedOrigins)) // before authentication (routes)
	}
	s.echo = e
	s.initLive()
	s.routes()
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: followed logs stream for as long as the job runs.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s
}

func (s *Server) routes() {
	e := s.echo
	s.registerAuthRoutes(e)
	s.registerAgentRoutes(e)
	e.GET("/", s.handleRoot)
	e.GET("/health", s.handleHealth)
	e.GET("/metrics", echo.WrapHandler(s.prom.handler()))

	g := e.Group("/api/gpu")
	g.GET("/providers", s.handleProviders)
	g.GET("/providers/:name/gpus", s.handleProviderGPUs)
	g.POST("/jobs/submit", s.handleSubmit)
	g.GET("/tasks", s.handleListTasks)
	g.GET("/tasks/:id", s.handleGetTask)
	g.POST("/tasks/:id/cancel", s.handleCancelTask)
	g.GET("/tasks/:id/logs", s.handleTaskLogs)
	g.GET("/scheduling/recommendations", s.handleRecommendations)
	g.GET("/scheduling/metrics", s.handleSchedulingMetrics)
	s.registerFeedRoutes(e, g)
	s.registerDocRoutes(e)
	s.registerUIRoutes(e)
}

// Handler returns the server's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.echo }

// Start listens on addr and serves until Shutdown, then returns
// http.ErrServerClosed.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ln)
}

// Serve serves on ln until Shutdown, then returns http.ErrServerClosed. It
// also runs the event feed (RunFeed) in the background.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("api listening", "addr", ln.Addr().String())
	s.startFeed()
	return s.http.Serve(ln)
}

// Shutdown stops the event feed, closes every WebSocket (1001), ends
// followed logs, stops accepting connections and waits for active requests
// to finish, or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopLive()
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down api: %w", err)
	}
	return nil
}

// CheckPortFree reports whether addr can be listened on, so that a taken
// port is reported ("address 127.0.0.1:8080 is in use") before anything
// else starts.
func CheckPortFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("address %s is in use", addr)
		}
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if err := ln.Close(); err != nil {
		return fmt.Errorf("close probe listener on %s: %w", addr, err)
	}
	return nil
}

// logRequests logs every request at debug: method, path (never the query
// string, which may carry a token), status and duration. It hands errors to
// the error handler itself so that the logged status is the one sent.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req := c.Request()
		s.log.DebugContext(req.Context(), "http request",
			"method", req.Method, "path", req.URL.Path, "route", c.Path(),
			"status", c.Response().Status, "bytes", c.Response().Size,
			"duration_ms", time.Since(start).Milliseconds())
		return nil
	}
}

// recoverPanics turns a handler panic into an internal error, logged with
// its stack.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = &gpuflow.Error{Code: gpuflow.EINTERNAL, Message: "internal error",
					Err: fmt.Errorf("panic: %v\n%s", r, debug.Stack())}
			}
		}()
		return next(c)
	}
}
