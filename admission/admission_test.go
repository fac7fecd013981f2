package admission

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func cpuOffer(slots int) gpuflow.Offer {
	return gpuflow.Offer{Provider: "local", GPUType: gpuflow.CPUOnly, Region: "local", VCPUs: 8, MemoryGB: 32, Available: slots}
}

func entry(id string, prio int, at time.Duration) gpuflow.QueueEntry {
	return gpuflow.QueueEntry{JobID: id, OwnerID: "u1", WorkflowID: "job-" + id, Priority: prio, SubmittedAt: t0.Add(at),
		Spec: gpuflow.JobSpec{Command: []string{"true"}, Strategy: gpuflow.StrategyBalanced}}
}

func admitted(r Result) string {
	var ids []string
	for id := range r.Admitted {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

func TestPriorityThenSubmissionOrder(t *testing.T) {
	var p Planner
	in := Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(2)}, Entries: []gpuflow.QueueEntry{
		entry("a-low-first", 1, 0), entry("b-high-late", 9, 3*time.Second), entry("c-mid", 5, time.Second), entry("d-high-early", 9, 2*time.Second),
	}}
	r := p.Plan(in)
	if got := admitted(r); got != "b-high-late,d-high-early" {
		t.Fatalf("admitted %s", got)
	}
	for _, id := range []string{"a-low-first", "c-mid"} {
		if !strings.HasPrefix(r.Waiting[id], "waiting for capacity") {
			t.Fatalf("%s: reason %q", id, r.Waiting[id])
		}
	}
	// One slot frees: the mid priority job goes next, not the older low one.
	in.Entries = []gpuflow.QueueEntry{entry("a-low-first", 1, 0), entry("c-mid", 5, time.Second)}
	in.Offers = []gpuflow.Offer{cpuOffer(1)}
	if got := admitted(p.Plan(in)); got != "c-mid" {
		t.Fatalf("admitted %s", got)
	}
	// Same priority: submission order.
	in.Entries = []gpuflow.QueueEntry{entry("y", 5, 2*time.Second), entry("x", 5, time.Second)}
	if got := admitted(p.Plan(in)); got != "x" {
		t.Fatalf("admitted %s", got)
	}
}

func TestHeldRoomAndPooledGPUs(t *testing.T) {
	var p Planner
	gpus := gpuflow.Offer{Provider: "local", GPUType: "A100", GPUCount: 4, Region: "local", VCPUs: 32, MemoryGB: 256, Available: 3, PerGPU: true}
	two := entry("two", 5, 0)
	two.Spec.GPUType, two.Spec.GPUCount = "A100", 2
	one := entry("one", 5, time.Second)
	one.Spec.GPUType, one.Spec.GPUCount = "A100", 1
	other := entry("other", 5, 2*time.Second)
	other.Spec.GPUType, other.Spec.GPUCount = "A100", 1
	// An admitted job, not yet provisioned, holds one GPU: 2 are left.
	held := entry("held", 5, -time.Second)
	held.Admitted, held.OfferKey, held.Units = true, StockKey(gpus), 1
	r := p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{gpus}, Entries: []gpuflow.QueueEntry{held, two, one, other}})
	if got := admitted(r); got != "two" {
		t.Fatalf("admitted %s; waiting %v", got, r.Waiting)
	}
	if c := r.Admitted["two"]; c.Units != 2 || c.StockKey != "local/A100/local/4" {
		t.Fatalf("choice %+v", c)
	}
}

func TestBigJobIsNotStarvedBySmallOnes(t *testing.T) {
	var p Planner
	gpus := gpuflow.Offer{Provider: "local", GPUType: "A100", GPUCount: 4, Region: "local", Available: 1, PerGPU: true}
	big := entry("big", 9, 0)
	big.Spec.GPUType, big.Spec.GPUCount = "A100", 2
	small := entry("small", 1, time.Second)
	small.Spec.GPUType, small.Spec.GPUCount = "A100", 1
	cpu := entry("cpu", 1, 2*time.Second)
	r := p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{gpus, cpuOffer(1)}, Entries: []gpuflow.QueueEntry{big, small, cpu}})
	// The free GPU is kept for the big job; the CPU job uses what the big one cannot.
	if got := admitted(r); got != "cpu" {
		t.Fatalf("admitted %s; waiting %v", got, r.Waiting)
	}
}

func TestOwnerLimits(t *testing.T) {
	offers := []gpuflow.Offer{{Provider: "runpod", GPUType: "A40", GPUCount: 1, Region: "US", PricePerHour: 0.4, Available: 10}}
	gpuJob := func(id, owner string, at time.Duration) gpuflow.QueueEntry {
		e := entry(id, 5, at)
		e.OwnerID, e.Spec.GPUType, e.Spec.GPUCount = owner, "A40", 1
		return e
	}
	t.Run("running", func(t *testing.T) {
		p := Planner{Config: Config{Limits: gpuflow.Limits{MaxRunning: 2}}}
		r := p.Plan(Input{Now: t0, Offers: offers, Usage: map[string]gpuflow.Usage{"u1": {Running: 1, SpendPerHour: 0.4}},
			Entries: []gpuflow.QueueEntry{gpuJob("a", "u1", 0), gpuJob("b", "u1", time.Second), gpuJob("c", "u2", 2*time.Second)}})
		if got := admitted(r); got != "a,c" {
			t.Fatalf("admitted %s", got)
		}
		if r.Waiting["b"] != "owner limit: 2 of 2 jobs running" {
			t.Fatalf("reason %q", r.Waiting["b"])
		}
	})
	t.Run("spend", func(t *testing.T) {
		p := Planner{Config: Config{Limits: gpuflow.Limits{MaxSpendPerHour: 1}}}
		r := p.Plan(Input{Now: t0, Offers: offers, Usage: map[string]gpuflow.Usage{"u1": {Running: 1, SpendPerHour: 0.4}},
			Entries: []gpuflow.QueueEntry{gpuJob("a", "u1", 0), gpuJob("b", "u1", time.Second), gpuJob("c", "u1", 2*time.Second)}})
		if got := admitted(r); got != "a" {
			t.Fatalf("admitted %s", got)
		}
		if !strings.HasPrefix(r.Waiting["b"], "owner spend limit: $0.80/h running") || r.Waiting["c"] != "waiting behind the owner's earlier job: b" || ReasonKind(r.Waiting["b"]) != "owner spend limit" {
			t.Fatalf("reasons %v", r.Waiting)
		}
	})
}

func TestBlocksAndUnschedulable(t *testing.T) {
	var p Planner
	e := entry("a", 5, 0)
	e.Blocked = map[string]gpuflow.Block{cpuOffer(1).Key(): {Reason: "no capacity", At: t0.Add(-time.Minute)}}
	r := p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{e}})
	if len(r.Admitted) != 0 || !strings.Contains(r.Waiting["a"], "failed for this job") {
		t.Fatalf("blocked: %+v", r)
	}
	// The block expires.
	r = p.Plan(Input{Now: t0.Add(DefaultBlockTTL), Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{e}})
	if admitted(r) != "a" {
		t.Fatalf("after the block: %+v", r)
	}
	// A job backing off an offer blocks it until the block's Until.
	e.Blocked = map[string]gpuflow.Block{cpuOffer(1).Key(): {Reason: "no capacity", At: t0, Until: t0.Add(time.Hour), Count: 6}}
	r = p.Plan(Input{Now: t0.Add(59 * time.Minute), Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{e}})
	if len(r.Admitted) != 0 || !strings.HasSuffix(r.Waiting["a"], "trying again after "+t0.Add(time.Hour).UTC().Format(time.RFC3339)) {
		t.Fatalf("backed off: %+v", r)
	}
	r = p.Plan(Input{Now: t0.Add(time.Hour), Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{e}})
	if admitted(r) != "a" {
		t.Fatalf("after the backoff: %+v", r)
	}
	// Nothing fits at all: unschedulable, with reasons.
	g := entry("g", 5, 0)
	g.Spec.GPUType, g.Spec.GPUCount = "H100", 1
	r = p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{g},
		Refused: map[string]string{"runpod": "provider not allowed by the job"}})
	if got := fmt.Sprint(r.Unschedulable["g"]); !strings.Contains(got, "runpod") || !strings.Contains(got, "local") {
		t.Fatalf("unschedulable %v", r.Unschedulable)
	}
	// ...but while a provider the job allows cannot list its offers, it waits.
	r = p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{g},
		Refused: map[string]string{"runpod": gpuflow.OffersUnavailable + "timeout", "tencent": "no offers"}})
	if r.Waiting["g"] != "provider unavailable: runpod, tencent" || len(r.Unschedulable) != 0 {
		t.Fatalf("provider down: %+v", r)
	}
	// Checks see each job's own command and environment (no shared verdicts).
	ok, bad := entry("ok", 5, 0), entry("bad", 5, time.Second)
	ok.Spec.Env = map[string]string{"PATH": "/good"}
	bad.Spec.Env = map[string]string{"PATH": "/bad"}
	r = p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(5)}, Entries: []gpuflow.QueueEntry{bad, ok},
		Check: func(s gpuflow.JobSpec) map[string]string {
			if s.Env["PATH"] == "/bad" {
				return map[string]string{"local": "command not found"}
			}
			return nil
		}})
	if admitted(r) != "ok" || r.Unschedulable["bad"] == nil {
		t.Fatalf("per-job checks: %+v", r)
	}
	// A provider that refuses the spec is not used.
	r = p.Plan(Input{Now: t0, Offers: []gpuflow.Offer{cpuOffer(1)}, Entries: []gpuflow.QueueEntry{entry("b", 5, 0)},
		Check: func(gpuflow.JobSpec) map[string]string { return map[string]string{"local": "no docker"} }})
	if len(r.Admitted) != 0 || !strings.Contains(fmt.Sprint(r.Unschedulable["b"]), "no docker") {
		t.Fatalf("refused: %+v", r)
	}
}

func TestStatisticsSteerTheChoice(t *testing.T) {
	offers := []gpuflow.Offer{
		{Provider: "tencent", GPUType: "A10", GPUCount: 1, Region: "ap-guangzhou", PricePerHour: 0.9, Available: 5},
		{Provider: "alibaba", GPUType: "A10", GPUCount: 1, Region: "cn-hangzhou", PricePerHour: 1.0, Available: 5},
	}
	e := entry("a", 5, 0)
	e.Spec.GPUType, e.Spec.GPUCount, e.Spec.Strategy = "A10", 1, gpuflow.StrategyAvailability
	var p Planner
	if c := p.Plan(Input{Now: t0, Offers: offers, Entries: []gpuflow.QueueEntry{e}}).Admitted["a"]; c.Best.Offer.Provider != "tencent" {
		t.Fatalf("without statistics: %s", c.Best.Offer.Provider)
	}
	f := NewFeed()
	var outs []gpuflow.ProvisionOutcome
	for i := range 8 {
		outs = append(outs, gpuflow.ProvisionOutcome{ID: int64(i + 1), Provider: "tencent", OfferKey: offers[0].Key(),
			Outcome: scheduler.NoCapacity.String(), Duration: 30 * time.Second, At: t0.Add(-time.Duration(8-i) * time.Minute)})
	}
	f.Apply(outs)
	f.Apply(outs) // applied once
	prov, off := f.Snapshot(t0)
	if prov["tencent"].NoCapacity < 7 || prov["tencent"].NoCapacity > 8 || f.LastID() != 8 {
		t.Fatalf("feed: %+v, last %d", prov["tencent"], f.LastID())
	}
	c := p.Plan(Input{Now: t0, Offers: offers, Entries: []gpuflow.QueueEntry{e}, Stats: prov, OfferStats: off}).Admitted["a"]
	if c.Best.Offer.Provider != "alibaba" || len(c.Alternatives) != 1 {
		t.Fatalf("with tencent failing: %+v", c)
	}
}

// Properties over random queues: no offer is over-committed, an owner's
// limits hold, and the same input gives the same answer.
func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{"A100", "H100", "A10"}
	for iter := range 300 {
		var offers []gpuflow.Offer
		for _, ty := range types {
			offers = append(offers, gpuflow.Offer{Provider: "local", GPUType: ty, GPUCount: 8, Region: "local", Available: rng.IntN(5), PerGPU: true})
			offers = append(offers, gpuflow.Offer{Provider: "runpod", GPUType: ty, GPUCount: 1, Region: "US", PricePerHour: 1 + rng.Float64(), Available: rng.IntN(3) - 1})
		}
		var entries []gpuflow.QueueEntry
		for i := range rng.IntN(30) {
			e := entry(fmt.Sprintf("j%02d", i), rng.IntN(11), time.Duration(rng.IntN(100))*time.Second)
			e.OwnerID = fmt.Sprintf("u%d", rng.IntN(3))
			e.Spec.GPUType, e.Spec.GPUCount = types[rng.IntN(3)], 1+rng.IntN(2)
			if rng.IntN(4) == 0 {
				e.Spec.Providers = []string{"local"}
			}
			entries = append(entries, e)
		}
		lim := gpuflow.Limits{MaxRunning: 1 + rng.IntN(4), MaxSpendPerHour: float64(rng.IntN(6))}
		p := Planner{Config: Config{Limits: lim}}
		in := Input{Now: t0, Offers: offers, Entries: entries}
		r := p.Plan(in)
		used := map[string]int{}
		perOwner := map[string]gpuflow.Usage{}
		for _, e := range entries {
			c, ok := r.Admitted[e.JobID]
			if !ok {
				if r.Waiting[e.JobID] == "" && r.Unschedulable[e.JobID] == nil {
					t.Fatalf("iter %d: %s neither admitted nor waiting", iter, e.JobID)
				}
				continue
			}
			used[c.StockKey] += c.Units
			u := perOwner[e.OwnerID]
			u.Running++
			u.SpendPerHour += c.Best.PricePerHour
			perOwner[e.OwnerID] = u
		}
		for _, o := range offers {
			if o.Available >= 0 && used[StockKey(o)] > o.Available {
				t.Fatalf("iter %d: %s over-committed: %d of %d", iter, StockKey(o), used[StockKey(o)], o.Available)
			}
		}
		for owner, u := range perOwner {
			if u.Running > lim.MaxRunning || lim.MaxSpendPerHour > 0 && u.SpendPerHour > lim.MaxSpendPerHour+1e-9 {
				t.Fatalf("iter %d: owner %s over the limits %+v: %+v", iter, owner, lim, u)
			}
		}
		again := (&Planner{Config: Config{Limits: lim}}).Plan(in)
		if fmt.Sprint(again) != fmt.Sprint(r) {
			t.Fatalf("iter %d: not deterministic", iter)
		}
	}
}
