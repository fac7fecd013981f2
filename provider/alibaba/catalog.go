package alibaba

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gpuflow/gpuflow"
)

//go:embed catalog.json
var catalogJSON []byte

// instanceType is an ECS GPU instance type gpuflow knows how to offer.
type instanceType struct {
	Name             string  `json:"instance_type"`
	GPUType          string  `json:"gpu_type"`
	GPUCount         int     `json:"gpu_count"`
	GPUMemoryGB      float64 `json:"gpu_memory_gb"`
	VCPUs            int     `json:"vcpus"`
	MemoryGB         float64 `json:"memory_gb"`
	PricePerHour     float64 `json:"price_per_hour"`      // USD per instance-hour (estimate)
	SpotPricePerHour float64 `json:"spot_price_per_hour"` // USD per instance-hour; 0: no spot
	Estimate         bool    `json:"estimate"`
}

// catalog is the built-in catalogue (catalog.json): the instance types
// gpuflow offers, with estimated prices used when DescribePrice fails.
type catalog struct {
	Source   string         `json:"source"`
	Date     string         `json:"date"`
	Currency string         `json:"currency"`
	Types    []instanceType `json:"instance_types"`
}

func loadCatalog() (catalog, error) {
	var c catalog
	if err := json.Unmarshal(catalogJSON, &c); err != nil {
		return c, fmt.Errorf("catalog.json: %w", err)
	}
	if c.Source == "" || c.Date == "" || c.Currency != "USD" || len(c.Types) == 0 {
		return c, errors.New("catalog.json: source, date, USD currency and instance types are required")
	}
	for i, t := range c.Types {
		if t.Name == "" || t.GPUCount <= 0 || t.PricePerHour <= 0 {
			return c, fmt.Errorf("catalog.json: instance type %d is incomplete", i)
		}
		c.Types[i].GPUType = gpuflow.NormalizeGPUType(t.GPUType)
	}
	return c, nil
}

// byName returns the instance type called name.
func (c catalog) byName(name string) (instanceType, bool) {
	for _, t := range c.Types {
		if t.Name == name {
			return t, true
		}
	}
	return instanceType{}, false
}

// forOffer returns the instance type behind an offer: the same GPU type
// and count, and the same vCPUs and memory when the offer states them.
// Failing an exact match, the smallest type with that GPU type and count
// that is at least as large as the offer.
func (c catalog) forOffer(o gpuflow.Offer) (instanceType, bool) {
	gpu := gpuflow.NormalizeGPUType(o.GPUType)
	var best instanceType
	found := false
	for _, t := range c.Types {
		if t.GPUType != gpu || t.GPUCount != o.GPUCount {
			continue
		}
		if (o.VCPUs == 0 || o.VCPUs == t.VCPUs) && (o.MemoryGB == 0 || o.MemoryGB == t.MemoryGB) {
			return t, true
		}
		if t.VCPUs < o.VCPUs || t.MemoryGB < o.MemoryGB {
			continue
		}
		if !found || t.VCPUs < best.VCPUs || (t.VCPUs == best.VCPUs && t.MemoryGB < best.MemoryGB) {
			best, found = t, true
		}
	}
	return best, found
}

// offer builds the offer of t in a region or zone, with per-instance USD
// prices divided per GPU.
func (t instanceType) offer(where string, price, spot float64, available int) gpuflow.Offer {
	return gpuflow.Offer{
		Provider:         Name,
		GPUType:          t.GPUType,
		GPUCount:         t.GPUCount,
		MemoryGB:         t.MemoryGB,
		GPUMemoryGB:      t.GPUMemoryGB,
		VCPUs:            t.VCPUs,
		PricePerHour:     roundPrice(price / float64(t.GPUCount)),
		SpotPricePerHour: roundPrice(spot / float64(t.GPUCount)),
		Region:           where,
		Available:        available,
	}
}

// roundPrice rounds a price to 1/10000 USD, hiding float32 noise.
func roundPrice(v float64) float64 {
	const unit = 10000
	if v <= 0 {
		return 0
	}
	return float64(int64(v*unit+0.5)) / unit
}
