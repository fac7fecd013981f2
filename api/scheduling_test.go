package api

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

type recsAnswer struct {
	GPUType         string                     `json:"gpu_type"`
	GPUCount        int                        `json:"gpu_count"`
	Recommendations map[string]*recommendation `json:"recommendations"`
	Reasons         map[string][]string        `json:"reasons"`
}

func TestRecommendations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A second, dearer RTX4090 provider's worth of offers on runpod.
	b.runpod.offers = append(b.runpod.offers,
		gpuflow.Offer{Provider: "runpod", GPUType: "RTX4090", GPUCount: 2, MemoryGB: 64, GPUMemoryGB: 24, VCPUs: 16,
			PricePerHour: 0.99, Region: "EU", Available: 10})
	b.tencent.offers = append(b.tencent.offers,
		gpuflow.Offer{Provider: "tencent", GPUType: "RTX4090", GPUCount: 1, MemoryGB: 32, PricePerHour: 0.59, Region: "ap-guangzhou", Available: 0})

	rec := b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_type=RTX4090&gpu_count=1", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	got := decode[recsAnswer](t, rec)
	if got.GPUType != "RTX4090" || got.GPUCount != 1 || len(got.Recommendations) != 4 {
		t.Fatalf("answer %+v", got)
	}
	for _, st := range gpuflow.Strategies {
		r := got.Recommendations[st]
		if r == nil {
			t.Fatalf("%s: no recommendation", st)
		}
		if r.Score < 0 || r.Score > 1 || r.GPUType != "RTX4090" || r.Provider == "" || r.PricePerHour <= 0 {
			t.Errorf("%s: %+v", st, r)
		}
		if len(r.Alternatives) != 2 { // three RTX4090 offers fit
			t.Errorf("%s: %d alternatives, want 2", st, len(r.Alternatives))
		}
		for _, a := range r.Alternatives {
			if a.Score > r.Score {
				t.Errorf("%s: alternative %+v beats the pick %+v", st, a, r)
			}
		}
	}
	// The strategies differ as the scheduler says: cost picks tencent's
	// cheapest offer (0.59/h), availability runpod's well-stocked one.
	if c := got.Recommendations["cost"]; c.Provider != "tencent" || c.PricePerHour != 0.59 || c.Breakdown.Cost != 1 {
		t.Errorf("cost: %+v", c)
	}
	if a := got.Recommendations["availability"]; a.Provider != "runpod" || a.Breakdown.Availability != a.Score {
		t.Errorf("availability: %+v", a)
	}
	if len(got.Reasons["runpod"]) == 0 || len(got.Reasons["local"]) == 0 {
		t.Errorf("reasons %v", got.Reasons)
	}

	// No offer fits: every strategy is null, the reasons say why.
	rec = b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_type=H100&gpu_count=8", "")
	none := decode[recsAnswer](t, rec)
	for _, st := range gpuflow.Strategies {
		if r, ok := none.Recommendations[st]; !ok || r != nil {
			t.Errorf("%s: %+v (present %v), want null", st, r, ok)
		}
	}
	if len(none.Reasons) == 0 {
		t.Error("no reasons")
	}

	// CPU-only: the local provider.
	rec = b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_count=0", "")
	if cpu := decode[recsAnswer](t, rec); cpu.Recommendations["balanced"] == nil || cpu.Recommendations["balanced"].GPUType != gpuflow.CPUOnly {
		t.Errorf("cpu: %s", rec.Body)
	}

	for _, q := range []string{"", "?gpu_count=1", "?gpu_type=RTX4090&gpu_count=9", "?gpu_type=RTX4090&gpu_count=-1",
		"?gpu_type=RTX4090&gpu_count=one", "?gpu_type=%3Cscript%3E", "?gpu_type=" + strings.Repeat("A", 65)} {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations"+q, ""), http.StatusBadRequest, "validation_failed")
	}
	wantError(t, b.do(t, http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_type=RTX4090", "", anonymous),
		http.StatusUnauthorized, "unauthorized")
}

// metricsAnswer is the route's own answer type: the test reads what the
// handler writes.
type metricsAnswer = metricsView

func TestSchedulingMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tencent.healthErr = errors.New("credentials rejected")

	m := decode[metricsAnswer](t, b.do(t, http.MethodGet, "/api/gpu/scheduling/metrics", ""))
	if m.Decisions.Total != 0 || m.Latency.Avg != nil || m.Latency.P99 != nil {
		t.Errorf("before any decision: %+v", m)
	}
	if h := m.Providers["runpod"]; !h.Healthy || h.Mode != gpuflow.ModeLive {
		t.Errorf("runpod health %+v", h)
	}
	if h := m.Providers["tencent"]; h.Healthy || h.Error != "credentials rejected" {
		t.Errorf("tencent health %+v", h)
	}
	if len(m.Providers) != 3 {
		t.Errorf("providers %v", m.Providers)
	}

	b.expectStart(t)
	b.expectStart(t)
	for _, body := range []string{
		`{"command":["python"],"gpu_type":"RTX4090"}`,
		`{"command":["python"],"gpu_type":"RTX4090","strategy":"cost"}`,
		`{"command":["python"],"gpu_type":"H100","gpu_count":8}`, // unschedulable
	} {
		b.submit(t, body)
	}
	m = decode[metricsAnswer](t, b.do(t, http.MethodGet, "/api/gpu/scheduling/metrics", ""))
	d := m.Decisions
	if d.Total != 3 || d.Unschedulable != 1 || d.ByStrategy["balanced"] != 2 || d.ByStrategy["cost"] != 1 ||
		d.ByStrategy["performance"] != 0 || d.ByProvider["runpod"] != 2 || d.ByProvider["tencent"] != 0 {
		t.Errorf("decisions %+v", d)
	}
	if m.Latency.Avg == nil || m.Latency.P99 == nil || m.Latency.Max == nil || *m.Latency.P99 > *m.Latency.Max ||
		*m.Latency.Avg > *m.Latency.Max {
		t.Errorf("latency %+v", m.Latency)
	}
}

func TestLatencyHistogram(t *testing.T) {
	t.Parallel()
	m := newSchedMetrics([]string{"runpod"})
	for range 990 {
		m.observe("balanced", "runpod", true, 3*time.Millisecond) // bucket ≤ 5 ms
	}
	for range 10 {
		m.observe("balanced", "runpod", true, 700*time.Millisecond) // bucket ≤ 1000 ms
	}
	var v metricsView
	m.snapshot(&v)
	if *v.Latency.P99 != 5 || *v.Latency.Max != 700 {
		t.Errorf("p99 %v max %v, want 5 and 700", *v.Latency.P99, *v.Latency.Max)
	}
	if avg := *v.Latency.Avg; avg < 9.96 || avg > 9.98 { // (990×3 + 10×700)/1000
		t.Errorf("avg %v", avg)
	}
	m.observe("balanced", "runpod", true, 700*time.Millisecond)
	m.snapshot(&v)
	if *v.Latency.P99 != 700 { // 11 of 1001 are slow: the p99 is in their bucket, capped at the max
		t.Errorf("p99 %v, want 700", *v.Latency.P99)
	}
}
