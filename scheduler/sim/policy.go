package sim

import (
	"cmp"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Outcome is what an attempt or a spot run came to, as a policy learns it.
type Outcome uint8

// Outcomes reported to Policy.Observe.
const (
	Started      Outcome = iota + 1 // the machine runs; took: since the request
	NoCapacity                      // the cloud had no capacity; took: until the error
	Failed                          // any other failure; took: until the error
	Preempted                       // a spot machine was reclaimed; took: how long it ran
	SpotFinished                    // a spot machine ran to the job's end; took: how long
)

// Request asks a policy for an offer to try for a job.
type Request struct {
	Spec gpuflow.JobSpec
	// Offers are what the clouds advertise now (stock as of their last
	// refresh). The slice is replaced, never changed, when Version changes.
	Offers  []gpuflow.Offer
	Version uint64
	// Blocked are the offers that failed for this job: since it last
	// waited, for the baselines; in the last two minutes, for Ranking
	// policies.
	Blocked map[string]string
	Now     time.Time
}

// Policy chooses offers. It sees only what gpuflow would see: the
// advertised offers, its own attempts' outcomes and health checks.
type Policy interface {
	Name() string
	// Choose returns the offer to try, or false to wait and look again.
	Choose(req *Request) (gpuflow.Offer, bool)
	// Observe reports an outcome on an offer (its provider, GPU type and
	// region) that ended at at.
	Observe(offer gpuflow.Offer, o Outcome, took time.Duration, at time.Time)
	// Health reports a health check of provider at at.
	Health(provider string, healthy bool, at time.Time)
}

// Cheapest is the baseline of SkyPilot and dstack: the fitting offers by
// price (spot price for spot jobs), cheapest first, failing over to the
// next on an error. SkipSoldOut also skips offers that advertise no stock
// (dstack hides offers it knows are unavailable; SkyPilot's catalogue has
// no stock). It keeps no statistics.
type Cheapest struct {
	SkipSoldOut bool

	version uint64
	family  []string // normalized GPU type per offer
}

// Name names the baseline.
func (c *Cheapest) Name() string {
	if c.SkipSoldOut {
		return "cheapest-first, skips sold out"
	}
	return "cheapest-first (baseline)"
}

// Choose returns the cheapest fitting offer that is not blocked.
func (c *Cheapest) Choose(req *Request) (gpuflow.Offer, bool) {
	if c.family == nil || c.version != req.Version {
		c.version = req.Version
		c.family = c.family[:0]
		for _, o := range req.Offers {
			c.family = append(c.family, gpuflow.NormalizeGPUType(o.GPUType))
		}
	}
	spec := &req.Spec
	want := gpuflow.NormalizeGPUType(spec.GPUType)
	best, found := -1, false
	price := func(o *gpuflow.Offer) float64 {
		if spec.Spot {
			return o.SpotPricePerHour
		}
		return o.PricePerHour
	}
	for i := range req.Offers {
		o := &req.Offers[i]
		if c.family[i] != want || o.GPUCount < spec.GPUCount || (o.MemoryGB > 0 && o.MemoryGB < spec.MemoryGB) ||
			(o.VCPUs > 0 && o.VCPUs < spec.VCPUs) || !spec.AllowsProvider(o.Provider) || price(o) <= 0 ||
			(c.SkipSoldOut && o.Available == 0) {
			continue
		}
		if _, blocked := req.Blocked[o.Key()]; blocked {
			continue
		}
		if !found || cmp.Or(cmp.Compare(price(o), price(&req.Offers[best])), strings.Compare(o.Key(), req.Offers[best].Key())) < 0 {
			best, found = i, true
		}
	}
	if !found {
		return gpuflow.Offer{}, false
	}
	return req.Offers[best], true
}

// Observe ignores outcomes: the baseline learns nothing.
func (*Cheapest) Observe(gpuflow.Offer, Outcome, time.Duration, time.Time) {}

// Health ignores health checks.
func (*Cheapest) Health(string, bool, time.Time) {}

var _ Policy = (*Cheapest)(nil)
