package activities

import (
	"context"

	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// SelectInput asks for the best offer for a job.
type SelectInput struct {
	Spec gpuflow.JobSpec `json:"spec"`
	// Blocked maps offer keys to the reason they are excluded for this job.
	Blocked map[string]string `json:"blocked,omitempty"`
}

// SelectResult is the chosen offer and the decision behind it.
type SelectResult struct {
	Offer        gpuflow.Offer         `json:"offer"`
	Mode         string                `json:"mode"`
	Score        float64               `json:"score"`
	Breakdown    map[string]float64    `json:"breakdown,omitempty"`
	Alternatives []scheduler.Candidate `json:"alternatives,omitempty"`
}

// SelectOffer gathers the offers of every provider the job allows and ranks
// them. With no candidate it fails with ErrTypeUnschedulable and the reasons
// per provider.
func (a *Activities) SelectOffer(ctx context.Context, in *SelectInput) (*SelectResult, error) {
	offers, refused := a.Providers.OffersFor(ctx, in.Spec)
	d := scheduler.Rank(in.Spec, offers, in.Blocked)
	d.AddRefused(refused)
	best, ok := d.Best()
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError("no provider can serve the job", ErrTypeUnschedulable, nil, d.ReasonsByProvider())
	}
	res := &SelectResult{Offer: best.Offer, Score: best.Score, Breakdown: best.Breakdown}
	if p := a.Providers.Get(best.Offer.Provider); p != nil {
		res.Mode = p.Info().Mode
	}
	if len(d.Candidates) > 1 {
		res.Alternatives = d.Candidates[1:min(len(d.Candidates), 6)]
	}
	return res, nil
}
