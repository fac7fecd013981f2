// Package telemetry exports the Temporal Go SDK's own client and worker
// metrics (temporal_request_total,
// temporal_workflow_task_execution_latency_seconds, ...) in Prometheus
// format, counters suffixed _total and timers _seconds.
//
// The SDK emits metrics through client.MetricsHandler. Its documented path to
// Prometheus is a uber-go/tally scope with tally's Prometheus reporter behind
// it, wrapped by go.temporal.io/sdk/contrib/tally. That contrib module is not
// available to this build, so this package holds the same small adapter
// (WithTags → Scope.Tagged, Counter/Gauge/Timer → the scope's) over a root
// scope configured the way Prometheus needs: "_" as separator, names, label
// keys and label values sanitized with tally's prometheus.DefaultSanitizerOpts
// (so a task queue "gpu-jobs" is exported as task_queue="gpu_jobs"), timers as
// histograms in seconds, a 1 s report interval, and tally's internal
// cardinality gauges left out.
//
// Label caveat: Prometheus allows one set of label names per metric name in a
// registry, but a metric name may be recorded under handlers carrying
// different tag keys. The SDK (v1.50) itself sets the same keys everywhere,
// filling unused ones with "none", but code that adds its own tags through
// WithTags (e.g. on workflow.GetMetricsHandler) can break that. Tally's
// reporter registers a vector per (name, label names); when the registry
// refuses the second one, the reporter's default is to panic. Here the refusal is
// instead logged once per metric name through slog.Default() and every refused registration is counted in
// gpuflow_temporal_metrics_dropped_series_total: the series registered first
// keeps working, later samples under the conflicting label names are dropped.
// A series counted there is the place to look when an SDK metric seems to be
// missing.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
)

// reportInterval is how often counters and gauges accumulated in the tally
// scope are pushed into the Prometheus vectors (timers go straight through).
const reportInterval = time.Second

// latencyBuckets are the histogram upper bounds, in seconds, for SDK timers:
// 1 ms up to 60 s, the latter covering long polls.
var latencyBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 20, 30, 60,
}

// NewTemporalMetrics returns a client.MetricsHandler (for client.Options)
// whose metrics are registered in reg, and an io.Closer that flushes pending
// counter and gauge values into reg and stops the background reporting. Call
// Close after the Temporal client and workers have stopped.
//
// It fails when reg already holds metrics from an earlier call.
func NewTemporalMetrics(reg prometheus.Registerer) (client.MetricsHandler, io.Closer, error) {
	if reg == nil {
		return nil, nil, errors.New("telemetry: nil prometheus.Registerer")
	}
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gpuflow_temporal_metrics_dropped_series_total",
		Help: "Temporal SDK metric series dropped because Prometheus refused their registration (same name already registered with other label names, or as another type).",
	})
	if err := reg.Register(dropped); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register Temporal metrics: %w", err)
	}
	onErr := &registerErrors{dropped: dropped, seen: map[string]bool{}}
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:              reg,
		DefaultTimerType:        tallyprom.HistogramTimerType,
		DefaultHistogramBuckets: latencyBuckets,
		OnRegisterError:         onErr.handle,
	})
	sanitize := tallyprom.DefaultSanitizerOpts
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:         reporter,
		Separator:              tallyprom.DefaultSeparator,
		SanitizeOptions:        &sanitize,
		OmitCardinalityMetrics: true,
	}, reportInterval)
	return metricsHandler{scope: scope}, closer, nil
}

// registerErrors is tally's OnRegisterError hook: it counts every refused
// registration and logs the first refusal for each metric name. Tally calls
// it once per tagged scope and metric name, so a conflicting name recorded
// under many label values would otherwise log at every new value.
type registerErrors struct {
	dropped prometheus.Counter
	mu      sync.Mutex
	seen    map[string]bool // metric names already logged
}

// fqNameInError finds the metric name in client_golang's registration
// errors, which carry it only in their text: `... Desc{fqName: "name", ...`.
var fqNameInError = regexp.MustCompile(`fqName: "([^"]*)"`)

func (r *registerErrors) handle(err error) {
	r.dropped.Inc()
	msg := err.Error()
	key := msg
	if m := fqNameInError.FindStringSubmatch(msg); m != nil {
		key = m[1]
	}
	r.mu.Lock()
	first := !r.seen[key]
	r.seen[key] = true
	r.mu.Unlock()
	if first {
		slog.Default().Warn("telemetry: Prometheus refused a Temporal SDK metric; its samples under these label names are dropped",
			"error", msg)
	}
}

// metricsHandler adapts a tally scope to client.MetricsHandler, like
// go.temporal.io/sdk/contrib/tally. tally.Counter, tally.Gauge and
// tally.Timer already have the Inc, Update and Record methods the SDK calls.
type metricsHandler struct{ scope tally.Scope }

var _ client.MetricsHandler = metricsHandler{}

func (h metricsHandler) WithTags(tags map[string]string) client.MetricsHandler {
	return metricsHandler{scope: h.scope.Tagged(tags)}
}

// Counter names end in _total and timers (histograms in seconds) in
// _seconds, as Prometheus' naming conventions ask (what the SDK's contrib
// calls its Prometheus naming scope): temporal_request becomes
// temporal_request_total, temporal_activity_execution_latency becomes
// temporal_activity_execution_latency_seconds.
func (h metricsHandler) Counter(name string) client.MetricsCounter {
	return h.scope.Counter(withSuffix(name, "_total"))
}

func (h metricsHandler) Gauge(name string) client.MetricsGauge { return h.scope.Gauge(name) }

func (h metricsHandler) Timer(name string) client.MetricsTimer {
	return h.scope.Timer(withSuffix(name, "_seconds"))
}

func withSuffix(name, suffix string) string {
	if strings.HasSuffix(name, suffix) {
		return name
	}
	return name + suffix
}

// Handler serves the metrics in g in the Prometheus text exposition format.
// A failing collector is logged through slog.Default() and the remaining
// metrics are still served.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      promLogger{},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

type promLogger struct{}

func (promLogger) Println(v ...any) {
	slog.Default().Error("telemetry: gathering metrics", "error", fmt.Sprint(v...))
}

// Serve listens on addr and serves GET /metrics (Handler(g)), and nothing
// else, until ctx is done; it then shuts the server down, letting in-flight
// scrapes finish for up to shutdownTimeout. It returns nil after a shutdown
// caused by ctx, otherwise the listen or serve error. A nil logger logs
// nowhere.
func Serve(ctx context.Context, addr string, g prometheus.Gatherer, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("telemetry: listen on %s: %w", addr, err)
	}
	return serve(ctx, ln, g, logger)
}

const shutdownTimeout = 5 * time.Second

// serve is Serve on an open listener, which it closes.
func serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(g))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("metrics server listening", "addr", ln.Addr().String())

	select {
	case err := <-errc: // Serve never returns nil; ErrServerClosed only after Shutdown.
		return fmt.Errorf("telemetry: serve metrics: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	<-errc // http.ErrServerClosed, returned as soon as Shutdown closes the listener
	if err != nil {
		_ = srv.Close() // scrapes still running after shutdownTimeout
		return fmt.Errorf("telemetry: shut down metrics server: %w", err)
	}
	logger.Info("metrics server stopped", "addr", ln.Addr().String())
	return nil
}
