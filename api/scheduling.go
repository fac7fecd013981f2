package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// maxAlternatives is how many runners-up a recommendation lists.
const maxAlternatives = 5

// gpuTypePattern is what a gpu_type query parameter may look like.
var gpuTypePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$`)

// recommendation is the best offer for one strategy.
type recommendation struct {
	Provider      string              `json:"provider"`
	Score         float64             `json:"score"`
	GPUType       string              `json:"gpu_type"`
	GPUCount      int                 `json:"gpu_count"`
	Region        string              `json:"region"`
	PricePerHour  float64             `json:"price_per_hour"`
	EstimatedCost float64             `json:"estimated_cost"`
	StartEstimate float64             `json:"start_estimate_s"`
	StartMeasured bool                `json:"start_measured"`
	Breakdown     scheduler.Breakdown `json:"breakdown"`
	Alternatives  []alternative       `json:"alternatives"`
}

// alternative is a runner-up of a recommendation.
type alternative struct {
	Provider     string              `json:"provider"`
	Score        float64             `json:"score"`
	GPUType      string              `json:"gpu_type"`
	GPUCount     int                 `json:"gpu_count"`
	Region       string              `json:"region"`
	PricePerHour float64             `json:"price_per_hour"`
	Breakdown    scheduler.Breakdown `json:"breakdown"`
}

// alternativeOf shows a runner-up for a job that asks for `asked` GPUs:
// its gpu_count is what the job would rent there (Offer.GPUsRented).
func alternativeOf(c scheduler.Candidate, asked int) alternative {
	return alternative{Provider: c.Offer.Provider, Score: c.Score, GPUType: offerGPUType(c.Offer),
		GPUCount: c.Offer.GPUsRented(asked), Region: c.Offer.Region, PricePerHour: c.PricePerHour, Breakdown: c.Criteria}
}

// handleRecommendations handles "GET /api/gpu/scheduling/recommendations":
// for each strategy, the offer the scheduler would pick now for a job of
// gpu_count (default 1) gpu_type GPUs, with its score breakdown and the
// next best offers; null for a strategy without candidates, the reasons
// (per provider) beside. The offers are collected as a submission's are
// (collectOffers: concurrent, with a timeout per provider), so that the
// answer is what a submission would get. 400 for a bad gpu_type or
// gpu_count.
func (s *Server) handleRecommendations(c echo.Context) error {
	count := defaultGPUCount
	if v := c.QueryParam("gpu_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > gpuflow.MaxGPUCount {
			return invalidField("gpu_count", fmt.Sprintf("gpu_count must be an integer between 0 and %d", gpuflow.MaxGPUCount))
		}
		count = n
	}
	gpuType := c.QueryParam("gpu_type")
	switch {
	case count > 0 && gpuType == "":
		return invalidField("gpu_type", "gpu_type is required unless gpu_count is 0")
	case gpuType != "" && !gpuTypePattern.MatchString(gpuType):
		return invalidField("gpu_type", "gpu_type must be 1 to 64 letters, digits, spaces or ._+-, starting with a letter or digit")
	}
	if count == 0 {
		gpuType = ""
	}
	// A job of this shape: what it runs is checked at submission, so it
	// gets a placeholder command here (without one the local provider
	// would refuse it, and a CPU-only job would have no recommendation).
	spec := gpuflow.JobSpec{GPUType: gpuType, GPUCount: count, Priority: defaultPriority,
		EstimatedDuration: defaultEstimatedDuration, Command: []string{"true"}}

	offers, reasons := s.collectOffers(c.Request().Context(), spec)
	if host := s.hostProviders(); len(host) > 0 && !s.mayRunLocal(userFrom(c)) {
		// Not a choice for this account: recommend only what it may submit.
		offers = slices.DeleteFunc(offers, func(o gpuflow.Offer) bool { return slices.Contains(host, o.Provider) })
		for _, h := range host {
			reasons[h] = []string{"this account may not run jobs on the worker's host"}
		}
	}
	recs := make(map[string]*recommendation, len(gpuflow.Strategies))
	for i, st := range gpuflow.Strategies {
		spec.Strategy = st
		d := s.rank(c.Request().Context(), spec, offers)
		if i == 0 { // rejections do not depend on the strategy
			for p, rs := range d.ReasonsByProvider() {
				reasons[p] = append(reasons[p], rs...)
			}
		}
		best, ok := d.Best()
		if !ok {
			recs[st] = nil
			continue
		}
		r := &recommendation{
			Provider: best.Offer.Provider, Score: best.Score, GPUType: offerGPUType(best.Offer),
			GPUCount: best.Offer.GPUsRented(count), Region: best.Offer.Region, PricePerHour: best.PricePerHour,
			EstimatedCost: best.EstimatedCost, StartEstimate: best.StartSeconds, StartMeasured: best.StartMeasured,
			Breakdown:    best.Criteria,
			Alternatives: []alternative{},
		}
		for _, alt := range d.Candidates[1:min(len(d.Candidates), 1+maxAlternatives)] {
			r.Alternatives = append(r.Alternatives, alternativeOf(alt, count))
		}
		recs[st] = r
	}
	return c.JSON(http.StatusOK, map[string]any{
		"gpu_type": gpuType, "gpu_count": count, "recommendations": recs, "reasons": reasons,
	})
}

// invalidField is EINVALID for one query or body field.
func invalidField(field, msg string) error {
	return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
		WithDetails(map[string]any{"fields": map[string]any{field: msg}})
}

// latencyBoundsMS are the upper bounds of the decision latency histogram's
// buckets, in milliseconds; a last bucket holds the rest.
var latencyBoundsMS = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// schedMetrics counts this process's scheduling decisions since it
// started. It is safe for concurrent use.
type schedMetrics struct {
	total         atomic.Int64
	unschedulable atomic.Int64
	byStrategy    map[string]*atomic.Int64 // fixed keys: gpuflow.Strategies
	byProvider    map[string]*atomic.Int64 // fixed keys: the configured providers
	buckets       []atomic.Int64           // len(latencyBoundsMS)+1
	sumMicros     atomic.Int64
	maxMicros     atomic.Int64
}

func newSchedMetrics(providers []string) *schedMetrics {
	m := &schedMetrics{byStrategy: map[string]*atomic.Int64{}, byProvider: map[string]*atomic.Int64{},
		buckets: make([]atomic.Int64, len(latencyBoundsMS)+1)}
	for _, st := range gpuflow.Strategies {
		m.byStrategy[st] = new(atomic.Int64)
	}
	for _, p := range providers {
		m.byProvider[p] = new(atomic.Int64)
	}
	return m
}

// observe records one planning of a submission: its strategy, the chosen
// provider when planned, and how long it took.
func (m *schedMetrics) observe(strategy, provider string, planned bool, took time.Duration) {
	m.total.Add(1)
	if c := m.byStrategy[strategy]; c != nil {
		c.Add(1)
	}
	if !planned {
		m.unschedulable.Add(1)
	} else if c := m.byProvider[provider]; c != nil {
		c.Add(1)
	}
	us := took.Microseconds()
	m.sumMicros.Add(us)
	for {
		cur := m.maxMicros.Load()
		if us <= cur || m.maxMicros.CompareAndSwap(cur, us) {
			break
		}
	}
	ms := float64(us) / 1000
	i := 0
	for i < len(latencyBoundsMS) && ms > latencyBoundsMS[i] {
		i++
	}
	m.buckets[i].Add(1)
}

// metricsView is the answer of "GET /api/gpu/scheduling/metrics".
type metricsView struct {
	Decisions struct {
		Total         int64            `json:"total"`
		Unschedulable int64            `json:"unschedulable"`
		ByStrategy    map[string]int64 `json:"by_strategy"`
		ByProvider    map[string]int64 `json:"by_provider"`
	} `json:"decisions"`
	Latency struct {
		Avg *float64 `json:"avg"`
		P99 *float64 `json:"p99"`
		Max *float64 `json:"max"`
	} `json:"decision_latency_ms"`
	Providers map[string]providerHealth `json:"providers"`
	// Provisioning is each provider's record from the recorded outcomes of
	// every worker, decayed (an outcome an hour old counts half), as the
	// scheduler ranks with it.
	Provisioning map[string]provisioningView `json:"provisioning"`
	Since        time.Time                   `json:"since"`
}

type provisioningView struct {
	Attempts       float64  `json:"attempts"`
	Started        float64  `json:"started"`
	CapacityErrors float64  `json:"capacity_errors"`
	Failed         float64  `json:"failed"`
	SuccessRate    *float64 `json:"success_rate"`
	MeanStartS     *float64 `json:"mean_time_to_provision_s"`
	Preemptions    float64  `json:"preemptions"`
	SpotHours      float64  `json:"spot_hours"`
}

func provisioningOf(st scheduler.Snapshot) provisioningView {
	v := provisioningView{Attempts: st.Attempts(), Started: st.Started, CapacityErrors: st.NoCapacity,
		Failed: st.Failed, Preemptions: st.Preemptions, SpotHours: st.SpotHours}
	if v.Attempts > 0 {
		rate := st.Started / v.Attempts
		v.SuccessRate = &rate
	}
	if st.Started > 0 {
		m := st.MeanStart.Seconds()
		v.MeanStartS = &m
	}
	return v
}

type providerHealth struct {
	Healthy   bool    `json:"healthy"`
	Mode      string  `json:"mode"`
	Error     string  `json:"error,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

// snapshot fills v's decision figures. The p99 is the upper bound of the
// bucket holding the 99th percentile (the largest latency seen when lower).
func (m *schedMetrics) snapshot(v *metricsView) {
	v.Decisions.Total = m.total.Load()
	v.Decisions.Unschedulable = m.unschedulable.Load()
	v.Decisions.ByStrategy = map[string]int64{}
	for k, c := range m.byStrategy {
		v.Decisions.ByStrategy[k] = c.Load()
	}
	v.Decisions.ByProvider = map[string]int64{}
	for k, c := range m.byProvider {
		v.Decisions.ByProvider[k] = c.Load()
	}
	counts := make([]int64, len(m.buckets))
	var n int64
	for i := range m.buckets {
		counts[i] = m.buckets[i].Load()
		n += counts[i]
	}
	if n == 0 {
		return
	}
	maxMS := float64(m.maxMicros.Load()) / 1000
	avg := float64(m.sumMicros.Load()) / 1000 / float64(n)
	rank := int64(math.Ceil(0.99 * float64(n)))
	p99 := maxMS
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			if i < len(latencyBoundsMS) {
				p99 = min(latencyBoundsMS[i], maxMS)
			}
			break
		}
	}
	v.Latency.Avg, v.Latency.P99, v.Latency.Max = &avg, &p99, &maxMS
}

// handleSchedulingMetrics handles "GET /api/gpu/scheduling/metrics": the
// scheduling decisions this API process made since it started (by
// strategy and chosen provider, and how long planning took), each
// provider's health now, and each provider's provisioning record (success
// rate, capacity errors, time to provision) from every worker's outcomes.
func (s *Server) handleSchedulingMetrics(c echo.Context) error {
	var v metricsView
	s.metrics.snapshot(&v)
	v.Since = s.started
	v.Providers = map[string]providerHealth{}
	v.Provisioning = map[string]provisioningView{}
	if s.cfg.Stats != nil {
		provs, _ := s.cfg.Stats(c.Request().Context())
		for name, st := range provs {
			v.Provisioning[name] = provisioningOf(st)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range s.cfg.Providers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.Request().Context(), healthCheckTimeout)
			defer cancel()
			info := p.Info()
			start := time.Now()
			err := safeHealth(ctx, p)
			h := providerHealth{Healthy: err == nil, Mode: info.Mode,
				LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				h.Error = err.Error()
			}
			mu.Lock()
			v.Providers[info.Name] = h
			mu.Unlock()
		})
	}
	wg.Wait()
	return c.JSON(http.StatusOK, v)
}
