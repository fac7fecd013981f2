package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/gpuflow/gpuflow/internal/testutil"
)

// Legacy (pre-UTF-8) Prometheus name rules, which every exported name must
// follow so that any scraper and PromQL without quoting accept it.
var (
	validMetricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	validLabelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func newMetrics(t *testing.T) (*prometheus.Registry, client.MetricsHandler, io.Closer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, closer, err := NewTemporalMetrics(reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = closer.Close() })
	return reg, h, closer
}

// gather returns reg's metric families by name, after checking every name
// and label name is Prometheus-valid.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		assert.Regexp(t, validMetricName, mf.GetName())
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				assert.Regexp(t, validLabelName, lp.GetName(), "label of %s", mf.GetName())
			}
		}
		byName[mf.GetName()] = mf
	}
	return byName
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// captureDefaultLog points slog.Default at a buffer for the test.
func captureDefaultLog(t *testing.T) *testutil.SyncBuffer {
	t.Helper()
	var buf testutil.SyncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &buf
}

func TestCounterGaugeTimerWithTags(t *testing.T) {
	reg, h, closer := newMetrics(t)

	ns := h.WithTags(map[string]string{"namespace": "default", "task_queue": "gpu-jobs"})
	ns.Counter("temporal_request").Inc(2)
	ns.Counter("temporal_request").Inc(3)
	worker := ns.WithTags(map[string]string{"worker_type": "ActivityWorker"})
	worker.Gauge("temporal_num_pollers").Update(4)
	worker.WithTags(map[string]string{"worker_type": "WorkflowWorker"}).Gauge("temporal_num_pollers").Update(2)
	ns.Timer("temporal_request_latency").Record(3 * time.Millisecond)
	ns.Timer("temporal_request_latency").Record(1500 * time.Millisecond)
	h.Counter("temporal.sticky-cache.hit").Inc(1) // SDK-style name that is not Prometheus-valid as is

	require.NoError(t, closer.Close()) // flushes the counters and gauges
	mfs := gather(t, reg)

	req := mfs["temporal_request_total"]
	require.NotNil(t, req)
	assert.Equal(t, dto.MetricType_COUNTER, req.GetType())
	require.Len(t, req.GetMetric(), 1)
	// Label values are sanitized too: "-" becomes "_".
	assert.Equal(t, map[string]string{"namespace": "default", "task_queue": "gpu_jobs"}, labels(req.GetMetric()[0]))
	assert.Equal(t, 5.0, req.GetMetric()[0].GetCounter().GetValue())

	pollers := mfs["temporal_num_pollers"]
	require.NotNil(t, pollers)
	assert.Equal(t, dto.MetricType_GAUGE, pollers.GetType())
	byWorker := map[string]float64{}
	for _, m := range pollers.GetMetric() {
		l := labels(m)
		assert.Equal(t, "default", l["namespace"])
		assert.Equal(t, "gpu_jobs", l["task_queue"])
		byWorker[l["worker_type"]] = m.GetGauge().GetValue()
	}
	assert.Equal(t, map[string]float64{"ActivityWorker": 4, "WorkflowWorker": 2}, byWorker)

	lat := mfs["temporal_request_latency_seconds"]
	require.NotNil(t, lat)
	assert.Equal(t, dto.MetricType_HISTOGRAM, lat.GetType())
	require.Len(t, lat.GetMetric(), 1)
	hist := lat.GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(2), hist.GetSampleCount())
	assert.InDelta(t, 1.503, hist.GetSampleSum(), 1e-9) // seconds
	var bounds []float64
	cumulative := map[float64]uint64{}
	for _, b := range hist.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		cumulative[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	assert.Equal(t, latencyBuckets, bounds)
	assert.Equal(t, uint64(0), cumulative[0.001])
	assert.Equal(t, uint64(1), cumulative[0.005])
	assert.Equal(t, uint64(1), cumulative[1])
	assert.Equal(t, uint64(2), cumulative[2.5])

	hit := mfs["temporal_sticky_cache_hit_total"]
	require.NotNil(t, hit, "sanitized name")
	assert.Equal(t, 1.0, hit.GetMetric()[0].GetCounter().GetValue())

	assert.Equal(t, 0.0, mfs["gpuflow_temporal_metrics_dropped_series_total"].GetMetric()[0].GetCounter().GetValue())
	for name := range mfs {
		assert.False(t, strings.HasPrefix(name, "tally_"), "tally's internal metric %s exported", name)
	}
}

func TestSameNameDifferentTagsDoesNotPanic(t *testing.T) {
	logs := captureDefaultLog(t)
	reg, h, closer := newMetrics(t)

	first := h.WithTags(map[string]string{"operation": "StartWorkflowExecution"})
	first.Counter("temporal_request").Inc(1)
	assert.NotPanics(t, func() {
		// Same name, other label names: Prometheus refuses the second vector.
		h.WithTags(map[string]string{"operation": "PollActivityTaskQueue", "task_queue": "q1"}).
			Counter("temporal_request").Inc(7)
		h.WithTags(map[string]string{"operation": "PollActivityTaskQueue", "task_queue": "q2"}).
			Counter("temporal_request").Inc(7)
		// Same name as another type.
		h.Gauge("temporal_request_total").Update(1)
	})
	first.Counter("temporal_request").Inc(1)
	h.WithTags(map[string]string{"operation": "GetSystemInfo"}).Counter("temporal_request").Inc(1)

	require.NoError(t, closer.Close())
	mfs := gather(t, reg)

	req := mfs["temporal_request_total"]
	require.NotNil(t, req)
	assert.Equal(t, dto.MetricType_COUNTER, req.GetType())
	byOp := map[string]float64{}
	for _, m := range req.GetMetric() {
		l := labels(m)
		require.Len(t, l, 1, "only the first label set survives: %v", l)
		byOp[l["operation"]] = m.GetCounter().GetValue()
	}
	assert.Equal(t, map[string]float64{"StartWorkflowExecution": 2, "GetSystemInfo": 1}, byOp)

	// Three refused registrations, all counted, logged once for the name.
	assert.Equal(t, 3.0, mfs["gpuflow_temporal_metrics_dropped_series_total"].GetMetric()[0].GetCounter().GetValue())
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "Prometheus refused a Temporal SDK metric"), out)
	assert.Contains(t, out, `fqName: \"temporal_request_total\"`)
}

func TestSecondRegistrationOnSameRegistryFails(t *testing.T) {
	reg, _, _ := newMetrics(t)
	_, _, err := NewTemporalMetrics(reg)
	require.Error(t, err)
	_, _, err = NewTemporalMetrics(nil)
	require.Error(t, err)
}

// The adapter satisfies client.MetricsHandler for a real SDK client, and the
// SDK's own metrics reach the registry: a lazy client's first call fails to
// connect (nothing listens on port 1; no Temporal server is needed) and the
// SDK records that request.
func TestSDKClientAcceptsHandler(t *testing.T) {
	reg, h, closer := newMetrics(t)
	c, err := client.NewLazyClient(client.Options{
		HostPort:       "127.0.0.1:1",
		MetricsHandler: h,
		Logger:         sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = c.CheckHealth(ctx, nil)
	require.Error(t, err)
	c.Close()

	require.NoError(t, closer.Close())
	mfs := gather(t, reg)
	req := mfs["temporal_request_total"]
	require.NotNil(t, req, "SDK request counter not exported")
	require.NotEmpty(t, req.GetMetric())
	m := req.GetMetric()[0]
	assert.Equal(t, "GetSystemInfo", labels(m)["operation"])
	assert.Equal(t, "temporal_go", labels(m)["client_name"])
	assert.GreaterOrEqual(t, m.GetCounter().GetValue(), 1.0)
	require.NotNil(t, mfs["temporal_request_failure_total"])
	assert.Equal(t, "UNAVAILABLE", labels(mfs["temporal_request_failure_total"].GetMetric()[0])["status_code"])
	assert.Equal(t, 0.0, mfs["gpuflow_temporal_metrics_dropped_series_total"].GetMetric()[0].GetCounter().GetValue())
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "temporal_workflow_completed", Help: "test"})
	reg.MustRegister(jobs)
	jobs.Add(3)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "# TYPE temporal_workflow_completed counter\ntemporal_workflow_completed 3\n")

	resp, err = http.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp, err = http.Post(base+"/metrics", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	cancel()
	require.NoError(t, <-done)
	_, err = http.Get(base + "/metrics")
	assert.Error(t, err, "server still answering after ctx was cancelled")
}

func TestServeAddr(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, Serve(ctx, "127.0.0.1:0", prometheus.NewRegistry(), nil))
	require.Error(t, Serve(t.Context(), "127.0.0.1:-1", prometheus.NewRegistry(), nil))
}

func TestHandler(t *testing.T) {
	reg, h, closer := newMetrics(t)
	h.WithTags(map[string]string{"namespace": "default"}).Counter("temporal_request").Inc(1)
	require.NoError(t, closer.Close())

	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	lines := strings.Split(string(body), "\n")
	assert.True(t, slices.Contains(lines, `temporal_request_total{namespace="default"} 1`), string(body))
}
