package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpuflow/gpuflow"
)

// JobCounter is implemented by job stores that can count jobs by status
// (for the jobs-by-state gauge, read at each scrape).
type JobCounter interface {
	CountJobsByStatus(ctx context.Context) (map[gpuflow.JobStatus]int64, error)
}

// promMetrics are the API process's Prometheus metrics, served at /metrics.
// Labels never hold a user id or a job id: routes are Echo's templates.
type promMetrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	planning  prometheus.Histogram
}

func newPromMetrics(s *Server) *promMetrics {
	m := &promMetrics{reg: s.cfg.Metrics}
	if m.reg == nil {
		m.reg = prometheus.NewRegistry()
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuflow_http_requests_total", Help: "HTTP requests by route template, method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gpuflow_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpuflow_scheduling_decisions_total", Help: "Scheduling decisions at submit, by strategy and chosen provider (\"none\": unschedulable).",
	}, []string{"strategy", "provider"})
	m.planning = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gpuflow_scheduling_decision_duration_seconds", Help: "Time to gather offers and rank them at submit.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	m.reg.MustRegister(m.requests, m.latency, m.decisions, m.planning,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpuflow_websocket_connections", Help: "Open WebSocket connections."},
			func() float64 { return float64(s.wsStats().Connections) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpuflow_websocket_messages_sent_total", Help: "Messages sent to WebSocket clients."},
			func() float64 { return float64(s.wsStats().MessagesSent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpuflow_websocket_dropped_clients_total", Help: "WebSocket clients closed for being too slow."},
			func() float64 { return float64(s.wsStats().DroppedClients) }),
		&jobsCollector{s: s, desc: prometheus.NewDesc("gpuflow_jobs", "Jobs by status.", []string{"status"}, nil)},
	)
	return m
}

// observeDecision records one planned submission.
func (m *promMetrics) observeDecision(strategy, provider string, planned bool, took time.Duration) {
	if !planned {
		provider = "none"
	}
	m.decisions.WithLabelValues(strategy, provider).Inc()
	m.planning.Observe(took.Seconds())
}

// middleware counts and times every request by its route template.
func (m *promMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err) // answer now, so the status below is the one sent
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(c.Response().Status)).Inc()
		m.latency.WithLabelValues(route, c.Request().Method).Observe(time.Since(start).Seconds())
		return nil
	}
}

func (m *promMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// jobsCollector reads jobs by status from the store at each scrape.
type jobsCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (j *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- j.desc }

func (j *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	jc, ok := j.s.cfg.Jobs.(JobCounter)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := jc.CountJobsByStatus(ctx)
	if err != nil {
		j.s.log.Warn("count jobs for metrics", "err", err)
		return
	}
	for _, st := range gpuflow.AllStatuses {
		ch <- prometheus.MustNewConstMetric(j.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// wsStats is the WebSocket hub's figures (zero before the feed runs).
func (s *Server) wsStats() wsStats {
	if s.live == nil || s.live.hub == nil {
		return wsStats{}
	}
	return s.live.hub.stats()
}
