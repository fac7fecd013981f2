package admission

import (
	"sync"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// StatsWindow is how far back a process reads provisioning outcomes when
// it starts: six half-lives of the longer (reliability) memory, after which
// an outcome weighs less than 1/64.
const StatsWindow = 6 * scheduler.DefaultReliabilityHalfLife

// Feed turns recorded provisioning outcomes into the scheduler's decayed
// statistics, per provider and per offer. Outcomes are applied in id
// order, each once. Safe for concurrent use.
type Feed struct {
	mu        sync.Mutex
	providers *scheduler.Tracker
	offers    *scheduler.Tracker
	last      int64
}

// NewFeed returns an empty feed with the default half-lives (see
// scheduler.Stats: capacity and reliability records per provider; per
// offer, capacity decays with scheduler.DefaultOfferHalfLife).
func NewFeed() *Feed {
	return &Feed{
		providers: scheduler.NewTracker(scheduler.DefaultHalfLife),
		offers:    scheduler.NewTracker(scheduler.DefaultOfferHalfLife),
	}
}

// LastID is the id of the last outcome applied (0: none).
func (f *Feed) LastID() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Apply records outcomes newer than the last applied; unknown outcome
// names are skipped.
func (f *Feed) Apply(outs []gpuflow.ProvisionOutcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range outs {
		if o.ID <= f.last {
			continue
		}
		f.last = o.ID
		oc, ok := ParseOutcome(o.Outcome)
		if !ok {
			continue
		}
		f.providers.Observe(o.Provider, oc, o.Duration, o.At)
		if o.OfferKey != "" {
			f.offers.Observe(o.OfferKey, oc, o.Duration, o.At)
		}
	}
}

// SetHealth records whether a provider answered (its offers, a health
// check) at at. An unhealthy provider is not chosen until it answers again
// or starts a machine.
func (f *Feed) SetHealth(provider string, healthy bool, at time.Time) {
	f.providers.SetHealth(provider, healthy, at)
}

// Snapshot returns the providers' and the offers' records at at.
func (f *Feed) Snapshot(at time.Time) (providers, offers map[string]scheduler.Snapshot) {
	return f.providers.Snapshot(at, nil), f.offers.Snapshot(at, nil)
}

// ParseOutcome is the inverse of scheduler.Outcome's String.
func ParseOutcome(s string) (scheduler.Outcome, bool) {
	for o := scheduler.Started; o <= scheduler.SpotFinished; o++ {
		if o.String() == s {
			return o, true
		}
	}
	return 0, false
}
