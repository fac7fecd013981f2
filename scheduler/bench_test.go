package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// benchOffers are 200 offers of four providers, five GPU types (vendor
// spellings, so names must be resolved), seven regions.
func benchOffers() []gpuflow.Offer {
	types := []string{"NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090", "L4", "Tesla T4", "A100", "NVIDIA H100 PCIe"}
	offers := make([]gpuflow.Offer, 200)
	for i := range offers {
		offers[i] = gpuflow.Offer{Provider: []string{"runpod", "tencent", "alibaba", "local"}[i%4], GPUType: types[i%len(types)],
			GPUCount: 1 + i%8, MemoryGB: 64, VCPUs: 16, PricePerHour: 0.5 + float64(i%17)/10, SpotPricePerHour: 0.2 + float64(i%13)/10,
			Region: fmt.Sprint("r", i%7), Available: i%5 - 1}
	}
	return offers
}

var benchSpec = gpuflow.JobSpec{GPUType: "A100", GPUCount: 2, MemoryGB: 32, Strategy: gpuflow.StrategyBalanced, EstimatedDuration: 120}

func benchStats(now time.Time) map[string]Snapshot {
	tr := NewTracker(time.Hour)
	for i := range 50 {
		at := now.Add(-time.Duration(i) * time.Minute)
		tr.Observe("runpod", NoCapacity, 3*time.Second, at)
		tr.Observe("tencent", Started, 4*time.Minute, at)
		tr.Observe("alibaba", Started, 2*time.Minute, at)
	}
	return tr.Snapshot(now, nil)
}

// benchOfferStats are records of a quarter of the offers.
func benchOfferStats(now time.Time, offers []gpuflow.Offer) map[string]Snapshot {
	tr := NewTracker(15 * time.Minute)
	for i, o := range offers {
		if i%4 == 0 {
			tr.Observe(o.Key(), Outcome(1+i%3), time.Duration(i)*time.Second, now.Add(-time.Duration(i)*time.Second))
		}
	}
	return tr.Snapshot(now, nil)
}

// BenchmarkRank is one decision over 200 offers through the package-level
// Rank: it prepares the offers and allocates the decision every time.
func BenchmarkRank(b *testing.B) {
	offers := benchOffers()
	blocked := map[string]string{"runpod/NVIDIA A100-SXM4-80GB/r0": "no capacity"}
	b.ReportAllocs()
	for b.Loop() {
		if d := Rank(benchSpec, offers, blocked); len(d.Candidates) == 0 {
			b.Fatal("no candidate")
		}
	}
}

// BenchmarkRankPrepared is one decision over 200 prepared offers with
// provider and offer statistics and blocked offers, reusing the Ranker and the
// Decision: the steady state of a scheduler deciding for job after job.
func BenchmarkRankPrepared(b *testing.B) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	offers := benchOffers()
	in := Input{Spec: benchSpec, Offers: Prepare(offers), Stats: benchStats(now), OfferStats: benchOfferStats(now, offers),
		Blocked: map[string]string{"runpod/NVIDIA A100-SXM4-80GB/r0": "no capacity"}}
	var r Ranker
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		if r.Rank(in, &d); len(d.Candidates) == 0 {
			b.Fatal("no candidate")
		}
	}
}

// BenchmarkPrepare is indexing 200 offers whose GPU names were seen before.
func BenchmarkPrepare(b *testing.B) {
	offers := benchOffers()
	var x Index
	b.ReportAllocs()
	for b.Loop() {
		x.Reset(offers)
	}
}

// TestRankAllocations keeps the hot path allocation-light: at most 20
// allocations for a fresh decision over 200 offers, none when the ranker,
// index and decision are reused.
func TestRankAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector adds allocations")
	}
	offers := benchOffers()
	blocked := map[string]string{"runpod/NVIDIA A100-SXM4-80GB/r0": "no capacity"}
	Rank(benchSpec, offers, blocked) // warm the GPU name cache
	if n := testing.AllocsPerRun(50, func() { Rank(benchSpec, offers, blocked) }); n > 20 {
		t.Errorf("Rank: %v allocations, want at most 20", n)
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	in := Input{Spec: benchSpec, Offers: Prepare(offers), Stats: benchStats(now), OfferStats: benchOfferStats(now, offers), Blocked: blocked}
	var r Ranker
	var d Decision
	r.Rank(in, &d)
	if n := testing.AllocsPerRun(50, func() { r.Rank(in, &d) }); n > 0 {
		t.Errorf("Ranker.Rank reused: %v allocations, want 0", n)
	}
}
