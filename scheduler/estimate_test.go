package scheduler

import (
	"math"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// TestStartEstimateIsMeasured: the start estimate a decision reports is
// what gpuflow measured. A local CPU offer that started a machine in 0.2 s
// is estimated at about 0.2 s after that one run (not the priors' minutes),
// and the estimate says whether it rests on a measurement. The
// availability criterion still weighs the cautious, prior-blended figure.
func TestStartEstimateIsMeasured(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	offers := []gpuflow.Offer{{Provider: "local", GPUType: "CPU", GPUCount: 0, VCPUs: 2, MemoryGB: 8, Region: "local", Available: 2}}
	spec := gpuflow.JobSpec{GPUCount: 0, Strategy: gpuflow.StrategyBalanced, Command: []string{"true"}}
	var r Ranker
	var d Decision

	r.Rank(Input{Spec: spec, Offers: Prepare(offers)}, &d)
	before := d.Candidates[0]
	if before.StartMeasured {
		t.Errorf("no run yet, but the estimate says it is measured")
	}
	if before.StartSeconds < 60 {
		t.Errorf("unmeasured estimate %.1f s: want the priors' minutes", before.StartSeconds)
	}

	perProvider, perOffer := NewTracker(time.Hour), NewTracker(15*time.Minute)
	perProvider.Observe("local", Started, 200*time.Millisecond, now)
	perOffer.Observe(offers[0].Key(), Started, 200*time.Millisecond, now)
	r.Rank(Input{Spec: spec, Offers: Prepare(offers), Stats: perProvider.Snapshot(now, nil),
		OfferStats: perOffer.Snapshot(now, nil)}, &d)
	after := d.Candidates[0]
	if !after.StartMeasured {
		t.Errorf("after a run, the estimate says it is not measured")
	}
	if math.Abs(after.StartSeconds-0.2) > 0.01 {
		t.Errorf("estimate %.3f s after one 0.2 s start: want 0.2 s", after.StartSeconds)
	}
	// The criterion stays cautious: one run is little evidence.
	if after.Criteria.Availability > 0.99 || after.Criteria.Availability <= before.Criteria.Availability {
		t.Errorf("availability %.3f (before %.3f): want higher than before, still below 1",
			after.Criteria.Availability, before.Criteria.Availability)
	}

	// Measured on the provider alone (another offer of it ran): its start
	// time counts, the offer's capacity is still judged by its stock.
	r.Rank(Input{Spec: spec, Offers: Prepare(offers), Stats: perProvider.Snapshot(now, nil)}, &d)
	if c := d.Candidates[0]; !c.StartMeasured || c.StartSeconds > 30 {
		t.Errorf("provider-measured estimate %.1f s (measured %v): want well under the priors", c.StartSeconds, c.StartMeasured)
	}
}
