package scheduler

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func ptr[T any](v T) *T { return &v }

func keys(cs []Candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Offer.Key())
	}
	return out
}

// TestRankPricesTheMachineRented: a Tencent or Alibaba instance type is
// rented whole, so a 1-GPU job on an 8-GPU instance pays for 8 GPUs; a
// RunPod pod (Divisible) takes only the GPUs asked for. The price ranks
// the offers, caps them (max_price_per_hour) and is the job's cost.
func TestRankPricesTheMachineRented(t *testing.T) {
	t.Parallel()
	offers := []gpuflow.Offer{
		{Provider: "tencent", GPUType: "V100", GPUCount: 1, PricePerHour: 2.2, Region: "gz-3", Available: 1},
		{Provider: "tencent", GPUType: "V100", GPUCount: 8, PricePerHour: 2.2, Region: "gz-6", Available: 9},
		{Provider: "runpod", GPUType: "V100", GPUCount: 8, PricePerHour: 2.5, Available: 9, Divisible: true},
	}
	price := func(d *Decision) map[string]float64 {
		out := map[string]float64{}
		for _, c := range d.Candidates {
			out[c.Offer.Key()] = math.Round(c.PricePerHour*100) / 100
		}
		return out
	}
	one := gpuflow.JobSpec{GPUType: "V100", GPUCount: 1, Strategy: gpuflow.StrategyCost, EstimatedDuration: 60}
	d := Rank(one, offers, nil)
	want := map[string]float64{"tencent/V100/gz-3": 2.2, "tencent/V100/gz-6": 17.6, "runpod/V100/": 2.5}
	if got := price(&d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("1-GPU job: prices %v, want %v", got, want)
	}
	if fmt.Sprint(keys(d.Candidates)) != "[tencent/V100/gz-3 runpod/V100/ tencent/V100/gz-6]" {
		t.Fatalf("cost order %v: the 8-GPU instance is the dearest for one GPU", keys(d.Candidates))
	}

	capped := one
	capped.MaxPricePerHour = ptr(5.0)
	d = Rank(capped, offers, nil)
	if fmt.Sprint(keys(d.Candidates)) != "[tencent/V100/gz-3 runpod/V100/]" || len(d.Rejected) != 1 ||
		d.Rejected[0].Code != ReasonMaxPrice || d.Rejected[0].Have != 17.6 {
		t.Fatalf("max price 5: candidates %v, rejected %+v", keys(d.Candidates), d.Rejected)
	}

	eight := one
	eight.GPUCount = 8
	d = Rank(eight, offers, nil)
	want = map[string]float64{"tencent/V100/gz-6": 17.6, "runpod/V100/": 20}
	if got := price(&d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("8-GPU job: prices %v, want %v", got, want)
	}
}

func TestRank(t *testing.T) {
	t.Parallel()
	offers := []gpuflow.Offer{
		{Provider: "local", GPUType: gpuflow.CPUOnly, GPUCount: 0, VCPUs: 2, Available: 2},
		{Provider: "local", GPUType: "A100", GPUCount: 2, MemoryGB: 64, Region: "local", Available: 1},
		{Provider: "runpod", GPUType: "RTX4090", GPUCount: 8, MemoryGB: 32, PricePerHour: 0.69, Region: "eu", Available: -1, Divisible: true},
		{Provider: "runpod", GPUType: "A100", GPUCount: 8, MemoryGB: 128, PricePerHour: 1.89, SpotPricePerHour: 1.1, Region: "us", Available: 3, Divisible: true},
	}
	for _, tc := range []struct {
		name    string
		spec    gpuflow.JobSpec
		blocked map[string]string
		want    []string // Key()s of the candidates, best first
		code    ReasonCode
		reason  string // a rejection reason that must appear
	}{
		{name: "CPUOnly", spec: gpuflow.JobSpec{GPUCount: 0}, want: []string{"local/CPU/"}, code: ReasonCPUOnlyJob, reason: "job is CPU-only"},
		{name: "GPUTypeMatchesNormalized", spec: gpuflow.JobSpec{GPUType: "nvidia-a100-80gb", GPUCount: 1}, want: []string{"local/A100/local", "runpod/A100/us"}, code: ReasonGPUType, reason: "gpu type RTX4090, job wants nvidia-a100-80gb"},
		{name: "TooManyGPUs", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 4}, want: []string{"runpod/A100/us"}, code: ReasonGPUCount, reason: "at most 2 GPUs, job wants 4"},
		{name: "ProviderPinned", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, Provider: "runpod"}, want: []string{"runpod/A100/us"}, code: ReasonProviderNotAllowed, reason: "not allowed"},
		{name: "ProvidersList", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, Providers: []string{"local"}}, want: []string{"local/A100/local"}, code: ReasonProviderNotAllowed, reason: "not allowed"},
		{name: "Memory", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, MemoryGB: 100}, want: []string{"runpod/A100/us"}, code: ReasonMemory, reason: "64 GB memory, job wants 100"},
		{name: "VCPUs", spec: gpuflow.JobSpec{GPUCount: 0, VCPUs: 4}, want: nil, code: ReasonVCPUs, reason: "2 vCPUs, job wants 4"},
		{name: "MaxPrice", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 2, MaxPricePerHour: ptr(3.0)}, want: []string{"local/A100/local"}, code: ReasonMaxPrice, reason: "price 3.78/h over max_price_per_hour 3.00"},
		{name: "Spot", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1, Spot: true}, want: []string{"runpod/A100/us"}, code: ReasonNoSpot, reason: "no spot capacity"},
		{name: "Blocked", spec: gpuflow.JobSpec{GPUType: "A100", GPUCount: 1}, blocked: map[string]string{"local/A100/local": "no capacity"}, want: []string{"runpod/A100/us"}, code: ReasonBlocked, reason: "blocked after a failure: no capacity"},
		{name: "Nothing", spec: gpuflow.JobSpec{GPUType: "H100", GPUCount: 1}, want: nil, code: ReasonGPUType, reason: "gpu type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := Rank(tc.spec, offers, tc.blocked)
			got := keys(d.Candidates)
			for _, c := range d.Candidates {
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
				found = found || r.Code == tc.code && strings.Contains(r.Reason(), tc.reason)
			}
			if !found {
				t.Fatalf("no %s rejection mentions %q: %+v", tc.code, tc.reason, d.Rejected)
			}
			if b, ok := d.Best(); ok != (len(tc.want) > 0) || (ok && b.Offer.Key() != tc.want[0]) {
				t.Fatalf("Best() = %v, %v", b, ok)
			}
		})
	}
}

// TestStrategies checks that each strategy prefers what it says, on three
// A100 offers: cheap but sold out, dear and fast, mid-priced with stock.
func TestStrategies(t *testing.T) {
	t.Parallel()
	offers := []gpuflow.Offer{
		{Provider: "a", GPUType: "NVIDIA A100 40GB PCIe", GPUCount: 8, PricePerHour: 1.0, Region: "r", Available: 0},
		{Provider: "b", GPUType: "NVIDIA A100-SXM4-80GB", GPUCount: 8, PricePerHour: 2.4, Region: "r", Available: 2},
		{Provider: "c", GPUType: "A100", GPUCount: 8, PricePerHour: 1.2, Region: "r", Available: 9},
	}
	for strategy, want := range map[string]string{
		gpuflow.StrategyCost:         "a",
		gpuflow.StrategyPerformance:  "b",
		gpuflow.StrategyAvailability: "c",
		gpuflow.StrategyBalanced:     "c",
	} {
		d := Rank(gpuflow.JobSpec{GPUType: "A100", GPUCount: 2, Strategy: strategy, EstimatedDuration: 90}, offers, nil)
		best, ok := d.Best()
		if !ok || best.Offer.Provider != want {
			t.Errorf("%s: best %+v, want provider %s", strategy, best, want)
		}
		if d.EstimatedHours != 1.5 {
			t.Errorf("%s: estimated hours %v, want 1.5", strategy, d.EstimatedHours)
		}
		if got := best.EstimatedCost; got != best.PricePerHour*1.5 {
			t.Errorf("%s: estimated cost %v, want price × 1.5 h = %v", strategy, got, best.PricePerHour*1.5)
		}
	}
}

// TestStatsSteerAvailability checks that observed failures, slow starts,
// preemptions and failed health checks change the decision.
func TestStatsSteerAvailability(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	offers := []gpuflow.Offer{
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, SpotPricePerHour: 0.20, Available: -1},
		{Provider: "b", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, SpotPricePerHour: 0.22, Available: -1},
	}
	x := Prepare(offers)
	tr := NewTracker(time.Hour)
	var r Ranker
	var d Decision
	rank := func(spec gpuflow.JobSpec) string {
		r.Rank(Input{Spec: spec, Offers: x, Stats: tr.Snapshot(now, nil)}, &d)
		b, ok := d.Best()
		if !ok {
			t.Fatalf("no candidate: %+v", d.Rejected)
		}
		return b.Offer.Provider
	}
	spec := gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Strategy: gpuflow.StrategyAvailability}
	if got := rank(spec); got != "a" {
		t.Fatalf("no stats: best %s, want a (tie broken by provider)", got)
	}
	for i := range 5 {
		tr.Observe("a", Failed, 3*time.Minute, now.Add(-time.Duration(i)*time.Minute))
		tr.Observe("b", Started, 2*time.Minute, now.Add(-time.Duration(i)*time.Minute))
	}
	if got := rank(spec); got != "b" {
		t.Fatalf("a's launches fail, b's start: best %s, want b", got)
	}
	if d.Candidates[0].Criteria.Availability <= d.Candidates[1].Criteria.Availability {
		t.Fatalf("availability %v not above %v", d.Candidates[0].Criteria, d.Candidates[1].Criteria)
	}
	// Twelve reliability half-lives later (the longer memory) all is
	// forgotten: back to the tie.
	later := now.Add(12 * DefaultReliabilityHalfLife)
	r.Rank(Input{Spec: spec, Offers: x, Stats: tr.Snapshot(later, nil)}, &d)
	if a, b := d.Candidates[0].Criteria.Availability, d.Candidates[1].Criteria.Availability; a-b > 0.01 || b-a > 0.01 {
		t.Fatalf("after 12 half-lives availability %v vs %v: want about equal", a, b)
	}

	// Spot: b's machines are preempted often, so a costs less in expectation.
	spot := gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Spot: true, EstimatedDuration: 240, Strategy: gpuflow.StrategyCost}
	tr.Observe("a", Preempted, 2*time.Hour, now)
	for range 10 {
		tr.Observe("a", SpotFinished, 4*time.Hour, now)
	}
	if got := rank(spot); got != "a" {
		t.Fatalf("spot before b's preemptions: best %s, want a (cheaper)", got)
	}
	tr2 := NewTracker(time.Hour)
	for range 6 {
		tr2.Observe("a", Preempted, 20*time.Minute, now)
	}
	tr2.Observe("b", SpotFinished, 40*time.Hour, now)
	r.Rank(Input{Spec: spot, Offers: x, Stats: tr2.Snapshot(now, nil)}, &d)
	if b, _ := d.Best(); b.Offer.Provider != "b" {
		t.Fatalf("a preempted 6 times in 2 spot hours: best %s, want b; %+v", b.Offer.Provider, d.Candidates)
	}

	// Unhealthy and unconfigured providers are rejected.
	tr.SetHealth("b", false, now)
	r.Rank(Input{Spec: spec, Offers: x, Stats: tr.Snapshot(now, nil), Unconfigured: []string{"a"}}, &d)
	if len(d.Candidates) != 0 || len(d.Rejected) != 2 {
		t.Fatalf("want both rejected: %+v", d)
	}
	codes := map[ReasonCode]bool{}
	for _, rj := range d.Rejected {
		codes[rj.Code] = true
	}
	if !codes[ReasonUnhealthy] || !codes[ReasonNotConfigured] {
		t.Fatalf("codes %v, want unhealthy and not_configured", codes)
	}
}

func TestRejectionReasons(t *testing.T) {
	t.Parallel()
	o := gpuflow.Offer{Provider: "p", GPUType: "T4"}
	for _, tc := range []struct {
		r    Rejection
		want string
	}{
		{Rejection{Offer: o, Code: ReasonProviderNotAllowed}, "provider not allowed by the job"},
		{Rejection{Offer: o, Code: ReasonNotConfigured}, "provider not configured"},
		{Rejection{Offer: o, Code: ReasonCPUOnlyJob}, "job is CPU-only; offer has GPUs"},
		{Rejection{Offer: o, Code: ReasonNoGPU}, "offer has no GPU"},
		{Rejection{Offer: o, Code: ReasonGPUType, Detail: "H100"}, "gpu type T4, job wants H100"},
		{Rejection{Offer: o, Code: ReasonGPUCount, Have: 1, Want: 2}, "at most 1 GPUs, job wants 2"},
		{Rejection{Offer: o, Code: ReasonMemory, Have: 16, Want: 32}, "16 GB memory, job wants 32"},
		{Rejection{Offer: o, Code: ReasonVCPUs, Have: 4, Want: 8}, "4 vCPUs, job wants 8"},
		{Rejection{Offer: o, Code: ReasonNoSpot}, "no spot capacity"},
		{Rejection{Offer: o, Code: ReasonSpotOnly}, "offer is spot only; job is not"},
		{Rejection{Offer: o, Code: ReasonMaxPrice, Have: 2.5, Want: 2}, "price 2.50/h over max_price_per_hour 2.00"},
		{Rejection{Offer: o, Code: ReasonUnhealthy}, "provider unhealthy: its last health check failed"},
		{Rejection{Offer: o, Code: ReasonBlocked, Detail: "no capacity"}, "blocked after a failure: no capacity"},
		{Rejection{Offer: o, Code: ReasonRefused, Detail: "offers unavailable: timeout"}, "offers unavailable: timeout"},
	} {
		if got := tc.r.Reason(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.r.Code, got, tc.want)
		}
	}
	// Spot-only offers are rejected for on-demand jobs.
	d := Rank(gpuflow.JobSpec{GPUType: "T4", GPUCount: 1}, []gpuflow.Offer{{Provider: "p", GPUType: "T4", GPUCount: 1, SpotPricePerHour: 0.1}}, nil)
	if len(d.Rejected) != 1 || d.Rejected[0].Code != ReasonSpotOnly {
		t.Fatalf("rejected %+v, want spot_only", d.Rejected)
	}
}

func TestReasonsByProvider(t *testing.T) {
	t.Parallel()
	d := Rank(gpuflow.JobSpec{GPUType: "H100", GPUCount: 1}, []gpuflow.Offer{
		{Provider: "a", GPUType: "A100", GPUCount: 1}, {Provider: "a", GPUType: "A100", GPUCount: 1, Region: "x"},
	}, nil)
	d.AddRefused(map[string]string{"b": "offers unavailable: timeout"})
	r := d.ReasonsByProvider()
	if len(r["a"]) != 1 || len(r["b"]) != 1 || r["b"][0] != "offers unavailable: timeout" {
		t.Fatalf("reasons %v: want one distinct reason each", r)
	}
}

func TestDecisionJSON(t *testing.T) {
	t.Parallel()
	d := Rank(gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Strategy: gpuflow.StrategyBalanced}, []gpuflow.Offer{
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Available: 1},
		{Provider: "a", GPUType: "T4", GPUCount: 1, PricePerHour: 0.3, Available: 1},
	}, nil)
	best, ok := d.Best()
	if !ok || best.Breakdown["cost"] != best.Criteria.Cost || best.Breakdown["availability"] != best.Criteria.Availability ||
		best.Breakdown["performance"] != best.Criteria.Performance {
		t.Fatalf("Best breakdown %v, criteria %+v", best.Breakdown, best.Criteria)
	}
	if d.Candidates[0].Breakdown != nil {
		t.Fatal("Rank filled a breakdown map: it should leave that to Best")
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Weights    map[string]float64 `json:"weights"`
		Candidates []struct {
			Breakdown map[string]float64 `json:"breakdown"`
		} `json:"candidates"`
		Rejected []struct {
			Code   string `json:"code"`
			Reason string `json:"reason"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Candidates) != 1 || len(back.Candidates[0].Breakdown) != 3 || back.Weights["cost"] != DefaultBalanced.Cost {
		t.Fatalf("json %s", b)
	}
	if len(back.Rejected) != 1 || back.Rejected[0].Code != "gpu_type" || back.Rejected[0].Reason != "gpu type T4, job wants L4" {
		t.Fatalf("json %s", b)
	}
}

func TestLookupGPU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mem  float64
		want string
	}{
		{"NVIDIA H100 80GB HBM3", 80, "H100 SXM"},
		{"H100", 0, "H100 SXM"},
		{"NVIDIA H100 PCIe", 80, "H100 PCIe"},
		{"NVIDIA H100 NVL", 94, "H100 NVL"},
		{"NVIDIA A100-SXM4-80GB", 80, "A100 SXM 80GB"},
		{"NVIDIA A100 80GB PCIe", 80, "A100 PCIe 80GB"},
		{"A100", 0, "A100 40GB"},
		{"A100", 80, "A100 SXM 80GB"},
		{"NVIDIA GeForce RTX 4090", 24, "RTX4090"},
		{"Tesla T4", 16, "T4"},
		{"nvidia-l40s", 48, "L40S"},
		{"NVIDIA RTX A6000", 48, "A6000"},
	} {
		m, ok := LookupGPU(tc.name, tc.mem)
		if !ok || m.Name != tc.want {
			t.Errorf("LookupGPU(%q, %v) = %q, %v; want %q", tc.name, tc.mem, m.Name, ok, tc.want)
		}
	}
	if _, ok := LookupGPU("NVIDIA A10G", 24); ok {
		t.Error("A10G has no datasheet figures: want unknown")
	}
	for _, m := range GPUModels {
		if m.TFLOPS <= 0 || m.BandwidthTBs <= 0 || m.MemoryGB <= 0 || m.Source == "" {
			t.Errorf("%s: incomplete entry %+v", m.Name, m)
		}
	}
	if h, _ := LookupGPU("H100", 0); h.Throughput() != 1 {
		t.Errorf("H100 SXM throughput %v, want 1 (the reference)", h.Throughput())
	}
	pcie, _ := LookupGPU("H100 PCIe", 0)
	sxm, _ := LookupGPU("H100 SXM", 0)
	if pcie.Throughput() >= sxm.Throughput() {
		t.Errorf("H100 PCIe %v not slower than SXM %v", pcie.Throughput(), sxm.Throughput())
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var s Stats // default half-life: 1 h
	s.Observe(Started, 2*time.Minute, t0)
	s.Observe(Started, 4*time.Minute, t0)
	s.Observe(NoCapacity, 10*time.Second, t0)
	snap := s.Snapshot(t0.Add(time.Hour))
	if !near(snap.Started, 1) || !near(snap.NoCapacity, 0.5) || !near(snap.Attempts(), 1.5) {
		t.Fatalf("one half-life later: %+v, want started 1, no_capacity 0.5", snap)
	}
	if snap.MeanStart != 3*time.Minute || snap.StartStdDev != time.Minute || snap.MeanNoCapacity != 10*time.Second || snap.MeanFail != 0 {
		t.Fatalf("times %+v", snap)
	}
	// The reliability record decays with its own, longer half-life (6 h).
	if want := 2 * math.Exp2(-1.0/6); !near(snap.Launches, want) || snap.LaunchFailures != 0 {
		t.Fatalf("launches %v (failures %v), want %v", snap.Launches, snap.LaunchFailures, want)
	}
	// Snapshot is pure: asking twice, or for an earlier time, changes nothing.
	if again := s.Snapshot(t0.Add(time.Hour)); again != snap {
		t.Fatalf("snapshot changed: %+v vs %+v", again, snap)
	}
	if early := s.Snapshot(t0.Add(-time.Hour)); !near(early.Started, 2) {
		t.Fatalf("snapshot before the last observation: %+v, want undecayed", early)
	}
	// A late observation (made an hour before the last) counts half.
	s.Observe(Failed, time.Second, t0.Add(-time.Hour))
	if f := s.Snapshot(t0).Failed; !near(f, 0.5) {
		t.Fatalf("late failure weighs %v, want 0.5", f)
	}
	// The mean time to start weighs recent observations more.
	var m Stats
	m.Observe(Started, time.Minute, t0)
	m.Observe(Started, 3*time.Minute, t0.Add(time.Hour))
	if got := m.Snapshot(t0.Add(time.Hour)).MeanStart; got <= 2*time.Minute {
		t.Fatalf("mean start %v, want above the plain mean 2m", got)
	}

	// Health: a failed check marks the provider unhealthy until a later
	// check passes or a machine starts; older reports are ignored.
	var h Stats
	h.SetHealth(false, t0)
	if !h.Snapshot(t0).Unhealthy {
		t.Fatal("want unhealthy")
	}
	h.SetHealth(true, t0.Add(-time.Minute))
	if !h.Snapshot(t0).Unhealthy {
		t.Fatal("an older check overrode a newer one")
	}
	h.Observe(Started, time.Minute, t0.Add(time.Minute))
	if h.Snapshot(t0.Add(time.Minute)).Unhealthy {
		t.Fatal("a started machine should clear unhealthy")
	}

	// Spot exposure.
	var sp Stats
	sp.Observe(Preempted, 30*time.Minute, t0)
	sp.Observe(SpotFinished, 90*time.Minute, t0)
	if got := sp.Snapshot(t0); got.Preemptions != 1 || got.SpotHours != 2 {
		t.Fatalf("spot %+v", got)
	}
	if got := sp.Snapshot(t0.Add(DefaultReliabilityHalfLife)); !near(got.Preemptions, 0.5) || !near(got.SpotHours, 1) {
		t.Fatalf("spot one reliability half-life later %+v, want halved", got)
	}

	// Two memories: capacity errors are forgotten within hours, a launch
	// that failed (a hung pod) is remembered for the reliability half-life.
	var two Stats
	two.Observe(NoCapacity, 5*time.Second, t0)
	two.Observe(Failed, 10*time.Minute, t0)
	two.Observe(Started, 2*time.Minute, t0)
	later := two.Snapshot(t0.Add(3 * time.Hour))
	if !near(later.NoCapacity, 0.125) || !near(later.Failed, 0.125) || !near(later.Launches, 2*math.Sqrt(0.5)) || !near(later.LaunchFailures, math.Sqrt(0.5)) {
		t.Fatalf("three hours later %+v: want capacity counts at 1/8, launches at 1/sqrt(2)", later)
	}
	if later.MeanFail != 10*time.Minute || later.MeanStart != 2*time.Minute {
		t.Fatalf("three hours later: mean fail %v, mean start %v", later.MeanFail, later.MeanStart)
	}
	short := Stats{HalfLife: 2 * time.Hour, ReliabilityHalfLife: time.Hour} // never shorter than HalfLife
	short.Observe(Failed, time.Minute, t0)
	if got := short.Snapshot(t0.Add(2 * time.Hour)); !near(got.LaunchFailures, 0.5) {
		t.Fatalf("reliability half-life below HalfLife: %+v", got)
	}

	tr := NewTracker(0)
	tr.Observe("a", Started, time.Minute, t0)
	trr := NewTracker(time.Hour, 2*time.Hour)
	trr.Observe("a", Failed, time.Minute, t0)
	if got := trr.Snapshot(t0.Add(2*time.Hour), nil)["a"]; !near(got.LaunchFailures, 0.5) || !near(got.Failed, 0.25) {
		t.Fatalf("tracker with a reliability half-life: %+v", got)
	}
	tr.SetHealth("b", false, t0)
	dst := map[string]Snapshot{"stale": {}}
	got := tr.Snapshot(t0, dst)
	if len(got) != 2 || got["a"].Started != 1 || !got["b"].Unhealthy {
		t.Fatalf("tracker snapshot %+v", got)
	}
	for _, o := range []Outcome{Started, NoCapacity, Failed, Preempted, SpotFinished, 0} {
		if o.String() == "" {
			t.Fatalf("outcome %d has no name", o)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestOfferStats: an offer's own failures steer the decision away from it
// but not from its provider's other offers; a provider whose start times
// vary more is less available at the same mean.
func TestOfferStats(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	offers := []gpuflow.Offer{
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r1", Available: -1},
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r2", Available: -1},
		{Provider: "b", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r1", Available: -1},
	}
	spec := gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Strategy: gpuflow.StrategyAvailability}
	perOffer := NewTracker(15 * time.Minute)
	for range 4 {
		perOffer.Observe(offers[0].Key(), Failed, 10*time.Minute, now)
	}
	var r Ranker
	var d Decision
	r.Rank(Input{Spec: spec, Offers: Prepare(offers), OfferStats: perOffer.Snapshot(now, nil)}, &d)
	if got := keys(d.Candidates); fmt.Sprint(got) != "[a/L4/r2 b/L4/r1 a/L4/r1]" {
		t.Fatalf("order %v: want the failing offer last, its sibling first", got)
	}

	perProvider := NewTracker(time.Hour)
	for i := range 20 {
		perProvider.Observe("a", Started, 3*time.Minute, now)                        // always 3 min
		perProvider.Observe("b", Started, time.Duration(1+4*(i%2))*time.Minute, now) // 1 or 5 min
	}
	r.Rank(Input{Spec: spec, Offers: Prepare(offers), Stats: perProvider.Snapshot(now, nil)}, &d)
	if b := d.Candidates[len(d.Candidates)-1]; b.Offer.Provider != "b" {
		t.Fatalf("order %v: want b, the erratic one, last", keys(d.Candidates))
	}
}

// TestTailRisk: an offer that starts sooner on average but hangs one launch
// in ten until a 10-minute boot timeout is less available than a steady
// one: the rare long failure is what makes a job start late.
func TestTailRisk(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	offers := []gpuflow.Offer{
		{Provider: "fast", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r", Available: -1},
		{Provider: "steady", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r", Available: -1},
	}
	tr := NewTracker(time.Hour)
	for i := range 30 {
		at := now.Add(-time.Duration(i) * time.Minute)
		if i%10 == 0 {
			tr.Observe("fast", Failed, 10*time.Minute, at)
		} else {
			tr.Observe("fast", Started, 90*time.Second, at)
		}
		tr.Observe("steady", Started, 4*time.Minute, at)
	}
	snap := tr.Snapshot(now, nil)
	var r Ranker
	var d Decision
	r.Rank(Input{Spec: gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Strategy: gpuflow.StrategyAvailability}, Offers: Prepare(offers), Stats: snap}, &d)
	if got := keys(d.Candidates); fmt.Sprint(got) != "[steady/L4/r fast/L4/r]" {
		t.Fatalf("order %v: want the steady offer first; %+v", got, d.Candidates)
	}
	// On the mean alone the fast one would win.
	f, st := snap["fast"], snap["steady"]
	meanFast := f.MeanStart.Seconds() + f.LaunchFailures/(f.Launches-f.LaunchFailures)*(f.MeanFail.Seconds())
	if meanFast >= st.MeanStart.Seconds() {
		t.Fatalf("test setup: fast's mean wait %vs not below steady's %v", meanFast, st.MeanStart)
	}
}

// TestCapacityPerOffer: capacity is an offer's own. A storm of capacity
// errors on one of a provider's offers (a job retrying a sold-out pool)
// does not make its other offers look sold out; the offer itself is
// avoided.
func TestCapacityPerOffer(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	offers := []gpuflow.Offer{
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r1", Available: 4},
		{Provider: "a", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r2", Available: 4},
		{Provider: "b", GPUType: "L4", GPUCount: 1, PricePerHour: 0.5, Region: "r1", Available: 4},
	}
	perProvider, perOffer := NewTracker(time.Hour), NewTracker(15*time.Minute)
	for i := range 50 {
		at := now.Add(-time.Duration(i) * 10 * time.Second)
		perProvider.Observe("a", NoCapacity, 30*time.Second, at)
		perOffer.Observe(offers[0].Key(), NoCapacity, 30*time.Second, at)
	}
	var r Ranker
	var d Decision
	r.Rank(Input{Spec: gpuflow.JobSpec{GPUType: "L4", GPUCount: 1, Strategy: gpuflow.StrategyAvailability}, Offers: Prepare(offers),
		Stats: perProvider.Snapshot(now, nil), OfferStats: perOffer.Snapshot(now, nil)}, &d)
	avail := map[string]float64{}
	for _, c := range d.Candidates {
		avail[c.Offer.Key()] = c.Criteria.Availability
	}
	if a1, a2, b := avail["a/L4/r1"], avail["a/L4/r2"], avail["b/L4/r1"]; a1 >= a2/2 || math.Abs(a2-b) > 0.01 {
		t.Fatalf("availability a/r1 %v, a/r2 %v, b/r1 %v: want a/r1 far below, a/r2 as b/r1", a1, a2, b)
	}
}
