// Package scheduler ranks provider offers for a job. It does no I/O: the
// caller passes the offers in and gets a decision back, with every rejected
// offer and the reason.
package scheduler

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/gpuflow/gpuflow"
)

// Candidate is an offer that fits the job, with its score in [0, 1].
type Candidate struct {
	Offer     gpuflow.Offer      `json:"offer"`
	Score     float64            `json:"score"`
	Breakdown map[string]float64 `json:"breakdown,omitempty"`
}

// Rejection is an offer that cannot serve the job, and why.
type Rejection struct {
	Offer  gpuflow.Offer `json:"offer"`
	Reason string        `json:"reason"`
}

// Decision is the ranked candidates (best first) and the rejected offers.
type Decision struct {
	Strategy   string      `json:"strategy"`
	Candidates []Candidate `json:"candidates"`
	Rejected   []Rejection `json:"rejected,omitempty"`
}

// Best returns the best candidate, if any.
func (d Decision) Best() (Candidate, bool) {
	if len(d.Candidates) == 0 {
		return Candidate{}, false
	}
	return d.Candidates[0], true
}

// ReasonsByProvider groups the rejection reasons per provider, for errors.
func (d Decision) ReasonsByProvider() map[string][]string {
	out := map[string][]string{}
	for _, r := range d.Rejected {
		if !slices.Contains(out[r.Offer.Provider], r.Reason) {
			out[r.Offer.Provider] = append(out[r.Offer.Provider], r.Reason)
		}
	}
	return out
}

// Rank checks every offer against spec and orders the ones that fit. Offers
// whose Key is in blocked are rejected. Offers come in provider preference
// order; for now the first fitting offer wins (a price score only breaks
// ties between equally preferred offers of one provider).
func Rank(spec gpuflow.JobSpec, offers []gpuflow.Offer, blocked map[string]string) Decision {
	d := Decision{Strategy: spec.Strategy}
	for _, o := range offers {
		if reason := reject(spec, o, blocked); reason != "" {
			d.Rejected = append(d.Rejected, Rejection{Offer: o, Reason: reason})
			continue
		}
		d.Candidates = append(d.Candidates, Candidate{Offer: o})
	}
	n := len(d.Candidates)
	for i := range d.Candidates {
		// First fit: earlier (more preferred) offers score higher.
		d.Candidates[i].Score = float64(n-i) / float64(n)
		d.Candidates[i].Breakdown = map[string]float64{"preference": d.Candidates[i].Score}
	}
	slices.SortStableFunc(d.Candidates, func(a, b Candidate) int { return cmp.Compare(b.Score, a.Score) })
	return d
}

func reject(spec gpuflow.JobSpec, o gpuflow.Offer, blocked map[string]string) string {
	switch {
	case !spec.AllowsProvider(o.Provider):
		return "provider not allowed by the job"
	case blocked[o.Key()] != "":
		return "blocked after a failure: " + blocked[o.Key()]
	}
	if spec.GPUCount == 0 {
		if o.GPUCount != 0 {
			return "job is CPU-only; offer has GPUs"
		}
	} else {
		if o.GPUCount == 0 {
			return "offer has no GPU"
		}
		if !gpuflow.SameGPUType(spec.GPUType, o.GPUType) {
			return fmt.Sprintf("gpu type %s, job wants %s", o.GPUType, spec.GPUType)
		}
		if o.GPUCount < spec.GPUCount {
			return fmt.Sprintf("at most %d GPUs, job wants %d", o.GPUCount, spec.GPUCount)
		}
	}
	if o.MemoryGB > 0 && spec.MemoryGB > o.MemoryGB {
		return fmt.Sprintf("%.0f GB memory, job wants %.0f", o.MemoryGB, spec.MemoryGB)
	}
	if o.VCPUs > 0 && spec.VCPUs > o.VCPUs {
		return fmt.Sprintf("%d vCPUs, job wants %d", o.VCPUs, spec.VCPUs)
	}
	price := o.PricePerHour
	if spec.Spot {
		if o.SpotPricePerHour <= 0 {
			return "no spot capacity"
		}
		price = o.SpotPricePerHour
	}
	if m := spec.MaxPricePerHour; m != nil && price*float64(max(spec.GPUCount, 1)) > *m {
		return fmt.Sprintf("price %.2f/h over max_price_per_hour %.2f", price, *m)
	}
	return ""
}

// AddRefused records providers that offered nothing for the job, with the
// reason (as returned by gpuflow.Providers.OffersFor).
func (d *Decision) AddRefused(refused map[string]string) {
	names := make([]string, 0, len(refused))
	for n := range refused {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		d.Rejected = append(d.Rejected, Rejection{Offer: gpuflow.Offer{Provider: n}, Reason: refused[n]})
	}
}
