package activities

import (
	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// SelectResult is the chosen offer and the decision behind it.
type SelectResult struct {
	Offer         gpuflow.Offer         `json:"offer"`
	Mode          string                `json:"mode"`
	Strategy      string                `json:"strategy,omitempty"`
	Score         float64               `json:"score"`
	Breakdown     map[string]float64    `json:"breakdown,omitempty"`
	PricePerHour  float64               `json:"price_per_hour,omitempty"`
	EstimatedCost float64               `json:"estimated_cost,omitempty"`
	StartSeconds  float64               `json:"start_estimate_s,omitempty"`
	Alternatives  []scheduler.Candidate `json:"alternatives,omitempty"`
}
