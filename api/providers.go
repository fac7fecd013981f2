package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/workflows"
)

// providerView is one provider in "GET /api/gpu/providers".
type providerView struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name"`
	Description string   `json:"description"`
	Mode        string   `json:"mode"`
	Healthy     bool     `json:"healthy"`
	HealthError string   `json:"health_error,omitempty"`
	Queue       string   `json:"queue"`
	GPUTypes    []string `json:"gpu_types"`
}

// gpuView is one offer in "GET /api/gpu/providers/{name}/gpus".
type gpuView struct {
	GPUType          string  `json:"gpu_type"`
	GPUCount         int     `json:"gpu_count"`
	MemoryGB         float64 `json:"memory_gb"` // per GPU, as the seed showed
	HostMemoryGB     float64 `json:"host_memory_gb"`
	VCPUs            int     `json:"vcpus"`
	PricePerHour     float64 `json:"price_per_hour"`
	SpotPricePerHour float64 `json:"spot_price_per_hour"`
	Region           string  `json:"region,omitempty"`
	Available        bool    `json:"available"`
	// Stock is how many more such machines the provider can start; -1 when
	// it does not say.
	Stock int `json:"stock"`
	// Divisible: a job takes 1 to GPUCount of these GPUs and pays for those
	// (RunPod, the local host); otherwise the offer is an instance of
	// exactly GPUCount GPUs, rented whole. Prices are per GPU-hour either way.
	Divisible bool `json:"divisible"`
}

// handleProviders handles "GET /api/gpu/providers": every configured
// provider with its mode, health and GPU types, checked concurrently.
func (s *Server) handleProviders(c echo.Context) error {
	ctx := c.Request().Context()
	views := make([]providerView, len(s.cfg.Providers))
	var wg sync.WaitGroup
	for i, p := range s.cfg.Providers {
		wg.Go(func() {
			info := p.Info()
			v := providerView{
				Name: info.Name, DisplayName: info.DisplayName, Description: info.Description,
				Mode: info.Mode, Queue: workflows.ProviderTaskQueue(info.Name), GPUTypes: []string{},
			}
			hctx, cancel := context.WithTimeout(ctx, providerTimeout)
			defer cancel()
			if err := safeHealth(hctx, p); err != nil {
				v.HealthError = err.Error()
			} else {
				v.Healthy = true
			}
			if offers, err := safeOffers(hctx, p); err == nil {
				for _, o := range offers {
					if t := offerGPUType(o); !slices.Contains(v.GPUTypes, t) {
						v.GPUTypes = append(v.GPUTypes, t)
					}
				}
				slices.Sort(v.GPUTypes)
			}
			views[i] = v
		})
	}
	wg.Wait()
	for _, info := range s.cfg.Unconfigured {
		if s.cfg.Providers.Get(info.Name) != nil {
			continue
		}
		views = append(views, providerView{
			Name: info.Name, DisplayName: info.DisplayName, Description: info.Description,
			Mode: gpuflow.ModeUnconfigured, Queue: workflows.ProviderTaskQueue(info.Name), GPUTypes: []string{},
			HealthError: "not configured: no credentials",
		})
	}
	return c.JSON(http.StatusOK, map[string]any{"providers": views})
}

// handleProviderGPUs handles "GET /api/gpu/providers/{name}/gpus": what the
// provider offers now. 404 for an unknown provider, 503 when its offers
// cannot be read.
func (s *Server) handleProviderGPUs(c echo.Context) error {
	name := c.Param("name")
	p := s.cfg.Providers.Get(name)
	if p == nil && slices.ContainsFunc(s.cfg.Unconfigured, func(i gpuflow.ProviderInfo) bool { return i.Name == name }) {
		return c.JSON(http.StatusOK, map[string]any{"provider": name, "mode": gpuflow.ModeUnconfigured, "gpus": []gpuView{}})
	}
	if p == nil {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "unknown provider %q", name).
			WithDetails(map[string]any{"known": s.cfg.Providers.Names()})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), providerTimeout)
	defer cancel()
	offers, err := safeOffers(ctx, p)
	if err != nil {
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
			Message: "provider " + name + " cannot list its offers: " + err.Error(), Err: err}
	}
	gpus := make([]gpuView, 0, len(offers))
	for _, o := range offers {
		gpus = append(gpus, gpuView{
			GPUType: offerGPUType(o), GPUCount: o.GPUCount, MemoryGB: o.GPUMemoryGB, HostMemoryGB: o.MemoryGB,
			VCPUs: o.VCPUs, PricePerHour: o.PricePerHour, SpotPricePerHour: o.SpotPricePerHour,
			Region: o.Region, Available: o.Available != 0, Stock: o.Available,
			Divisible: o.ByTheGPU(),
		})
	}
	return c.JSON(http.StatusOK, map[string]any{"provider": name, "gpus": gpus})
}

// offerGPUType is the offer's GPU type, gpuflow.CPUOnly for a CPU-only slot.
func offerGPUType(o gpuflow.Offer) string {
	if o.GPUCount == 0 && o.GPUType == "" {
		return gpuflow.CPUOnly
	}
	return o.GPUType
}

// safeHealth calls p.Health, turning a panic into an error (see safeOffers).
func safeHealth(ctx context.Context, p gpuflow.Provider) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("provider %s panicked checking health: %v", p.Info().Name, r)
		}
	}()
	return p.Health(ctx)
}
