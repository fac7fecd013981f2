package admission

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// BenchmarkPlan is one admission pass: every waiting job ranked over 200
// offers (three clouds' catalogues and the local host), in order, with the
// room and the owners' limits kept.
func BenchmarkPlan(b *testing.B) {
	types := []string{"A100", "H100", "A10", "L4", "RTX 4090"}
	provs := []string{"runpod", "tencent", "alibaba", "local"}
	rng := rand.New(rand.NewPCG(7, 7))
	var offers []gpuflow.Offer
	for i := range 200 {
		offers = append(offers, gpuflow.Offer{
			Provider: provs[i%4], GPUType: types[i%5], GPUCount: 1 << (i % 4), Region: fmt.Sprintf("r%d", i/20),
			PricePerHour: 0.5 + rng.Float64()*3, SpotPricePerHour: 0.3 + rng.Float64(), VCPUs: 16, MemoryGB: 128,
			Available: rng.IntN(4),
		})
	}
	for _, waiting := range []int{10, 100, 1000} {
		entries := make([]gpuflow.QueueEntry, waiting)
		for i := range entries {
			e := entry(fmt.Sprintf("j%04d", i), rng.IntN(11), time.Duration(i)*time.Second)
			e.OwnerID = fmt.Sprintf("u%d", i%20)
			e.Spec.GPUType, e.Spec.GPUCount = types[i%5], 1+i%2
			entries[i] = e
		}
		b.Run(fmt.Sprintf("waiting=%d", waiting), func(b *testing.B) {
			p := Planner{Config: Config{Limits: gpuflow.Limits{MaxRunning: 4, MaxSpendPerHour: 20}}}
			in := Input{Now: t0, Offers: offers, Entries: entries}
			b.ReportAllocs()
			for b.Loop() {
				p.Plan(in)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(waiting), "µs/job")
		})
	}
}
