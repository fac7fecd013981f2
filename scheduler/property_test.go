package scheduler

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"testing/quick"
	"time"

	"github.com/gpuflow/gpuflow"
)

// gpuNames are vendor spellings, several per family, so that families with
// variants of different speed (H100 SXM/PCIe/NVL, A100 40/80 GB) and
// unknown types (A10G) show up.
var gpuNames = []string{
	"NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "H100 NVL", "H100",
	"NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "A100",
	"NVIDIA GeForce RTX 4090", "L4", "nvidia-l40s", "Tesla T4", "NVIDIA A10G",
}

var providerNames = []string{"alibaba", "local", "runpod", "tencent"}

// scenario is a random decision's input.
type scenario struct {
	in  Input
	cfg Config
}

// genScenario draws a decision: up to 60 offers, a job that some of them
// fit, blocked keys, provider statistics and unconfigured providers.
func genScenario(r *rand.Rand) scenario {
	offers := make([]gpuflow.Offer, r.IntN(60))
	for i := range offers {
		o := gpuflow.Offer{
			Provider:     providerNames[r.IntN(len(providerNames))],
			GPUType:      gpuNames[r.IntN(len(gpuNames))],
			GPUCount:     []int{1, 2, 4, 8}[r.IntN(4)],
			MemoryGB:     float64(r.IntN(5) * 32),
			GPUMemoryGB:  float64([]int{0, 24, 40, 80}[r.IntN(4)]),
			VCPUs:        r.IntN(4) * 8,
			PricePerHour: float64(r.IntN(400)) / 100,
			Region:       []string{"", "eu", "us", "ap"}[r.IntN(4)],
			Available:    r.IntN(8) - 1,
		}
		if r.IntN(3) > 0 {
			o.SpotPricePerHour = o.PricePerHour * r.Float64()
		}
		if r.IntN(10) == 0 {
			o.GPUType, o.GPUCount = gpuflow.CPUOnly, 0
		}
		offers[i] = o
	}
	spec := gpuflow.JobSpec{
		GPUType:           gpuNames[r.IntN(len(gpuNames))],
		GPUCount:          r.IntN(9),
		MemoryGB:          float64(r.IntN(4) * 24),
		VCPUs:             r.IntN(3) * 8,
		Spot:              r.IntN(3) == 0,
		Strategy:          gpuflow.Strategies[r.IntN(len(gpuflow.Strategies))],
		EstimatedDuration: r.IntN(600),
	}
	if r.IntN(3) == 0 {
		spec.MaxPricePerHour = ptr(float64(r.IntN(1000)) / 100)
	}
	if r.IntN(4) == 0 {
		spec.Providers = []string{providerNames[r.IntN(4)], providerNames[r.IntN(4)]}
	}
	blocked := map[string]string{}
	for _, o := range offers {
		if r.IntN(8) == 0 {
			blocked[o.Key()] = "no capacity"
		}
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tr := NewTracker(time.Duration(1+r.IntN(120)) * time.Minute)
	for range r.IntN(40) {
		p := providerNames[r.IntN(len(providerNames))]
		at := now.Add(-time.Duration(r.IntN(7200)) * time.Second)
		tr.Observe(p, Outcome(1+r.IntN(5)), time.Duration(r.IntN(3600))*time.Second, at)
		if r.IntN(10) == 0 {
			tr.SetHealth(p, r.IntN(2) == 0, at)
		}
	}
	var unconfigured []string
	if r.IntN(5) == 0 {
		unconfigured = []string{providerNames[r.IntN(4)]}
	}
	cfg := Config{}
	if r.IntN(2) == 0 {
		cfg.Balanced = Weights{Cost: r.Float64(), Performance: r.Float64(), Availability: r.Float64()}
	}
	return scenario{
		in:  Input{Spec: spec, Offers: Prepare(offers), Blocked: blocked, Stats: tr.Snapshot(now, nil), Unconfigured: unconfigured},
		cfg: cfg,
	}
}

func (s scenario) rank() Decision {
	r := Ranker{Config: s.cfg}
	var d Decision
	r.Rank(s.in, &d)
	return d
}

// forScenarios runs check on n seeded random scenarios and quick.Check's
// own draws.
func forScenarios(t *testing.T, check func(t *testing.T, s scenario) bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		if s := genScenario(r); !check(t, s) {
			t.Fatalf("failed for %+v", s.in.Spec)
		}
	}
	f := func(seed uint64) bool { return check(t, genScenario(rand.New(rand.NewPCG(seed, 7)))) }
	if err := quick.Check(f, &quick.Config{MaxCount: 300}); err != nil {
		t.Fatal(err)
	}
}

func in01(f float64) bool { return f >= 0 && f <= 1 }

func TestPropertyScoresInUnitInterval(t *testing.T) {
	t.Parallel()
	forScenarios(t, func(t *testing.T, s scenario) bool {
		d := s.rank()
		for _, c := range d.Candidates {
			if !in01(c.Score) || !in01(c.Criteria.Cost) || !in01(c.Criteria.Performance) || !in01(c.Criteria.Availability) {
				t.Errorf("out of [0,1]: %+v", c)
				return false
			}
		}
		for i := 1; i < len(d.Candidates); i++ {
			if d.Candidates[i].Score > d.Candidates[i-1].Score {
				t.Errorf("not sorted at %d", i)
				return false
			}
		}
		return true
	})
}

// TestPropertyRejectedNeverChosen checks that every offer is either a
// candidate or rejected, never both, and that candidates respect the job:
// allowed, configured, healthy provider, not blocked, under the price cap.
func TestPropertyRejectedNeverChosen(t *testing.T) {
	t.Parallel()
	forScenarios(t, func(t *testing.T, s scenario) bool {
		d := s.rank()
		offers := s.in.Offers.Offers()
		if len(d.Candidates)+len(d.Rejected) != len(offers) {
			t.Errorf("%d + %d != %d offers", len(d.Candidates), len(d.Rejected), len(offers))
			return false
		}
		seen := map[int]bool{}
		for _, c := range d.Candidates {
			seen[c.Index] = true
			o := c.Offer
			if o != offers[c.Index] {
				t.Errorf("candidate offer differs from input %d", c.Index)
				return false
			}
			spec := s.in.Spec
			if _, blocked := s.in.Blocked[o.Key()]; blocked || !spec.AllowsProvider(o.Provider) ||
				slices.Contains(s.in.Unconfigured, o.Provider) || s.in.Stats[o.Provider].Unhealthy {
				t.Errorf("chose an excluded offer %+v", o)
				return false
			}
			if m := spec.MaxPricePerHour; m != nil && c.PricePerHour > *m {
				t.Errorf("chose %v/h over the cap %v", c.PricePerHour, *m)
				return false
			}
			if spec.GPUCount > 0 && (!gpuflow.SameGPUType(o.GPUType, spec.GPUType) || o.GPUCount < spec.GPUCount) {
				t.Errorf("chose a misfit %+v for %+v", o, spec)
				return false
			}
		}
		rejected := 0
		for _, rj := range d.Rejected {
			if rj.Code == "" || rj.Reason() == "" {
				t.Errorf("rejection without reason %+v", rj)
				return false
			}
			for k := range offers {
				if offers[k] == rj.Offer && !seen[k] {
					rejected++
					break
				}
			}
		}
		if len(d.Rejected) > 0 && rejected == 0 {
			t.Error("rejections do not match the offers")
			return false
		}
		return true
	})
}

// TestPropertyDeterministic: the same input gives the same decision, and
// shuffling the offers gives the same ranking.
func TestPropertyDeterministic(t *testing.T) {
	t.Parallel()
	shuffle := rand.New(rand.NewPCG(3, 4))
	forScenarios(t, func(t *testing.T, s scenario) bool {
		a, b := s.rank(), s.rank()
		if !reflect.DeepEqual(a, b) {
			t.Error("two runs differ")
			return false
		}
		offers := slices.Clone(s.in.Offers.Offers())
		shuffle.Shuffle(len(offers), func(i, j int) { offers[i], offers[j] = offers[j], offers[i] })
		s2 := s
		s2.in.Offers = Prepare(offers)
		c := s2.rank()
		if len(c.Candidates) != len(a.Candidates) {
			t.Errorf("shuffled: %d candidates, want %d", len(c.Candidates), len(a.Candidates))
			return false
		}
		for i := range a.Candidates {
			if a.Candidates[i].Offer != c.Candidates[i].Offer || a.Candidates[i].Score != c.Candidates[i].Score {
				t.Errorf("shuffled: candidate %d is %+v, want %+v", i, c.Candidates[i].Offer, a.Candidates[i].Offer)
				return false
			}
		}
		return true
	})
}

// TestPropertyCheaperNeverWorseOnCost adds a copy of a candidate at a
// lower price: it never scores worse on cost than the original, and the
// original scores no better than before.
func TestPropertyCheaperNeverWorseOnCost(t *testing.T) {
	t.Parallel()
	forScenarios(t, func(t *testing.T, s scenario) bool {
		d := s.rank()
		if len(d.Candidates) == 0 {
			return true
		}
		orig := d.Candidates[len(d.Candidates)/2]
		cheaper := orig.Offer
		cheaper.PricePerHour *= 0.7
		cheaper.SpotPricePerHour *= 0.7
		cheaper.Region += "-cheap" // another key, so that blocking treats both alike
		offers := append(slices.Clone(s.in.Offers.Offers()), cheaper)
		s2 := s
		s2.in.Offers = Prepare(offers)
		d2 := s2.rank()
		var co, cc *Candidate
		for i := range d2.Candidates {
			switch d2.Candidates[i].Index {
			case orig.Index:
				co = &d2.Candidates[i]
			case len(offers) - 1:
				cc = &d2.Candidates[i]
			}
		}
		if co == nil || cc == nil {
			t.Errorf("lost a candidate: %v %v", co, cc)
			return false
		}
		if cc.Criteria.Cost < co.Criteria.Cost || co.Criteria.Cost > orig.Criteria.Cost {
			t.Errorf("cheaper %v vs %v (before %v)", cc.Criteria.Cost, co.Criteria.Cost, orig.Criteria.Cost)
			return false
		}
		if s.in.Spec.Strategy == gpuflow.StrategyCost && cc.Score < co.Score {
			t.Errorf("cost strategy: cheaper scores %v < %v", cc.Score, co.Score)
			return false
		}
		return true
	})
}

// TestPropertyFasterNeverWorseOnPerformance swaps a candidate's GPU for a
// faster variant of its family (H100 PCIe → SXM, A100 40 → 80 GB).
func TestPropertyFasterNeverWorseOnPerformance(t *testing.T) {
	t.Parallel()
	faster := map[string]string{"NVIDIA H100 PCIe": "NVIDIA H100 80GB HBM3", "H100 NVL": "H100", "A100": "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe": "NVIDIA A100-SXM4-80GB"}
	forScenarios(t, func(t *testing.T, s scenario) bool {
		d := s.rank()
		for _, orig := range d.Candidates {
			name, ok := faster[orig.Offer.GPUType]
			if !ok {
				continue
			}
			f := orig.Offer
			f.GPUType = name
			f.Region += "-fast"
			offers := append(slices.Clone(s.in.Offers.Offers()), f)
			s2 := s
			s2.in.Offers = Prepare(offers)
			d2 := s2.rank()
			var co, cf *Candidate
			for i := range d2.Candidates {
				switch d2.Candidates[i].Index {
				case orig.Index:
					co = &d2.Candidates[i]
				case len(offers) - 1:
					cf = &d2.Candidates[i]
				}
			}
			if co == nil || cf == nil || cf.Criteria.Performance < co.Criteria.Performance || cf.Throughput < co.Throughput {
				t.Errorf("faster %+v vs %+v", cf, co)
				return false
			}
			if s.in.Spec.Strategy == gpuflow.StrategyPerformance && cf.Score < co.Score {
				t.Errorf("performance strategy: faster scores %v < %v", cf.Score, co.Score)
				return false
			}
			return true
		}
		return true
	})
}

// TestPropertyMoreStockNeverWorseOnAvailability raises a candidate's
// advertised stock.
func TestPropertyMoreStockNeverWorseOnAvailability(t *testing.T) {
	t.Parallel()
	forScenarios(t, func(t *testing.T, s scenario) bool {
		d := s.rank()
		if len(d.Candidates) == 0 {
			return true
		}
		orig := d.Candidates[0]
		offers := slices.Clone(s.in.Offers.Offers())
		offers[orig.Index].Available = max(orig.Offer.Available, 0) + 3
		s2 := s
		s2.in.Offers = Prepare(offers)
		for _, c := range s2.rank().Candidates {
			if c.Index == orig.Index {
				if c.Criteria.Availability < orig.Criteria.Availability {
					t.Errorf("more stock: availability %v < %v", c.Criteria.Availability, orig.Criteria.Availability)
					return false
				}
				return true
			}
		}
		t.Error("lost the candidate")
		return false
	})
}
