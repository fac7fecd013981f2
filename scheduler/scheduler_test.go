package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gpuflow/gpuflow"
)

func ptr[T any](v T) *T { return &v }

func TestRank(t *testing.T) {
	t.Parallel()
	offers := []gpuflow.Offer{
		{Provider: "local", GPUType: gpuflow.CPUOnly, GPUCount: 0, VCPUs: 2, Available: 2},
		{Provider: "local", GPUType: "A100", GPUCount: 2, MemoryGB: 64, Region: "local", Available: 1},
		{Provider: "runpod", GPUType: "RTX4090", GPUCount: 8, MemoryGB: 32, PricePerHour: 0.69, Region: "eu", Available: -1},
		{Provider: "runpod", GPUType: "A100", GPUCount: 8, MemoryGB: 128, PricePerHour: 1.89, SpotPricePerHour: 1.1, Region: "us", Available: 3},
	}
	for _, tc := range []struct {
		name    string
		spec    gpuflow.JobSpec
		blocked map[string]string
		want    []string // Key()s of the candidates, best first
		reason  string   // a rejection reason that must appear
	}{
		{name: "CPUOnly", spec: gpuflow.JobSpec{GPUCount: 0}, want: []string{"local/CPU/"}, reason: "job is CPU-only"},
		{name: "GPUTypeMatchesNormalized", spec: gpuflow.JobSpec{GPUType: "nvidia-a100-80gb", GPUCount: 1}, want: []string{"local/A100/local", "runpod/A100/us"}, reason: "gpu type"},
		{name: "TooManyGPUs", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 4}, want: []string{"runpod/A100/us"}, reason: "at most 2 GPUs"},
		{name: "ProviderPinned", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, Provider: "runpod"}, want: []string{"runpod/A100/us"}, reason: "not allowed"},
		{name: "Memory", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, MemoryGB: 100}, want: []string{"runpod/A100/us"}, reason: "GB memory"},
		{name: "MaxPrice", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 2, MaxPricePerHour: ptr(3.0)}, want: []string{"local/A100/local"}, reason: "over max_price_per_hour"},
		{name: "Spot", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, Spot: true}, want: []string{"runpod/A100/us"}, reason: "no spot capacity"},
		{name: "Blocked", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1}, blocked: map[string]string{"local/A100/local": "no capacity"}, want: []string{"runpod/A100/us"}, reason: "blocked after a failure"},
		{name: "Nothing", spec: gpuflow.JobSpec{GPUType: "H100", GPUCount: 1}, want: nil, reason: "gpu type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := Rank(tc.spec, offers, tc.blocked)
			var got []string
			for _, c := range d.Candidates {
				got = append(got, c.Offer.Key())
				if c.Score < 0 || c.Score > 1 {
					t.Errorf("score %v out of [0,1]", c.Score)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("candidates %v, want %v", got, tc.want)
			}
			if len(got)+len(d.Rejected) != len(offers) {
				t.Fatalf("%d candidates + %d rejections != %d offers", len(got), len(d.Rejected), len(offers))
			}
			found := false
			for _, r := range d.Rejected {
				found = found || strings.Contains(r.Reason, tc.reason)
			}
			if !found {
				t.Fatalf("no rejection mentions %q: %+v", tc.reason, d.Rejected)
			}
			if b, ok := d.Best(); ok != (len(tc.want) > 0) || (ok && b.Offer.Key() != tc.want[0]) {
				t.Fatalf("Best() = %v, %v", b, ok)
			}
		})
	}
}

func TestReasonsByProvider(t *testing.T) {
	t.Parallel()
	d := Rank(gpuflow.JobSpec{GPUType: "H100", GPUCount: 1}, []gpuflow.Offer{
		{Provider: "a", GPUType: "A100", GPUCount: 1}, {Provider: "a", GPUType: "A100", GPUCount: 1, Region: "x"},
	}, nil)
	d.AddRefused(map[string]string{"b": "offers unavailable: timeout"})
	r := d.ReasonsByProvider()
	if len(r["a"]) != 1 || len(r["b"]) != 1 {
		t.Fatalf("reasons %v: want one distinct reason each", r)
	}
}

// BenchmarkRank is one decision over 200 offers.
func BenchmarkRank(b *testing.B) {
	types := []string{"A100", "H100", "RTX4090", "L4", "T4"}
	offers := make([]gpuflow.Offer, 200)
	for i := range offers {
		offers[i] = gpuflow.Offer{Provider: []string{"runpod", "tencent", "alibaba", "local"}[i%4], GPUType: types[i%len(types)],
			GPUCount: 1 + i%8, MemoryGB: 64, VCPUs: 16, PricePerHour: 0.5 + float64(i%17)/10, Region: fmt.Sprint("r", i%7), Available: i % 5}
	}
	spec := gpuflow.JobSpec{GPUType: "A100", GPUCount: 2, MemoryGB: 32, Strategy: gpuflow.StrategyBalanced}
	b.ReportAllocs()
	for b.Loop() {
		if d := Rank(spec, offers, nil); len(d.Candidates) == 0 {
			b.Fatal("no candidate")
		}
	}
}
