package runpod

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gpuflow/gpuflow"
)

//go:embed catalog.json
var catalogJSON []byte

// catalogGPU is one GPU type of the built-in catalogue (catalog.json).
type catalogGPU struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	MemoryGB       float64 `json:"memory_gb"`
	MaxCount       int     `json:"max_count"`
	SecurePrice    float64 `json:"secure_price"`
	CommunityPrice float64 `json:"community_price"`
	Source         string  `json:"source"`
	Date           string  `json:"date"`
}

type catalog struct {
	Provider string       `json:"provider"`
	Currency string       `json:"currency"`
	GPUs     []catalogGPU `json:"gpus"`
}

func loadCatalog() (*catalog, error) {
	var c catalog
	if err := json.Unmarshal(catalogJSON, &c); err != nil {
		return nil, fmt.Errorf("built-in catalogue: %w", err)
	}
	if c.Currency != "USD" {
		return nil, fmt.Errorf("built-in catalogue: currency %q, want USD", c.Currency)
	}
	return &c, nil
}

// knownGPU is what the provider knows of a GPU type, live or from the
// catalogue, per GPU in the configured cloud.
type knownGPU struct {
	ID       string
	MemoryGB float64
	MaxCount int
	Price    float64
	Spot     float64
}

// Nominal stock per availability level: RunPod says a level, not a count.
var stockOf = map[string]int{"NONE": 0, "LOW": 1, "MEDIUM": 3, "HIGH": 10}

func stock(level string) int {
	if n, ok := stockOf[strings.ToUpper(level)]; ok {
		return n
	}
	return -1
}

// Offers lists a GPU type per offer (one per configured data center when
// DataCenterIDs is set), from the live catalogue (GET /v2/catalog/gpus with
// AVAILABILITY for pods in the configured cloud) and, for spot prices,
// GraphQL gpuTypes. Live offers are reused for OffersTTL. When the
// catalogue cannot be read, the built-in catalogue answers (stock -1, no
// spot). Offers in stock come first, then by price.
func (p *Provider) Offers(ctx context.Context) ([]gpuflow.Offer, error) {
	// One read of the catalogue at a time: concurrent callers wait for it
	// and take its result from the cache.
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	if offers, ok := p.cachedOffers(); ok {
		return offers, nil
	}
	if p.cfg.APIKey == "" {
		return p.fallbackOffers(), nil
	}
	gpus, err := p.c.listGPUTypes(ctx, p.cfg.Cloud)
	if err != nil {
		if ctx.Err() != nil {
			return nil, classify("list gpu types", err, false)
		}
		p.log.WarnContext(ctx, "live gpu catalogue unavailable; offering the built-in catalogue", "err", classify("list gpu types", err, false))
		return p.fallbackOffers(), nil
	}
	spot := map[string]float64{}
	if prices, err := p.c.spotPrices(ctx); err != nil {
		p.log.WarnContext(ctx, "spot prices unavailable; offering no spot", "err", classify("gpu spot prices", err, false))
	} else {
		for _, sp := range prices {
			v := sp.SecureSpotPrice
			if p.cfg.Cloud == "COMMUNITY" {
				v = sp.CommunitySpotPrice
			}
			if v != nil && *v > 0 {
				spot[sp.ID] = *v
			}
		}
	}
	known := map[string]knownGPU{}
	var offers []gpuflow.Offer
	for _, g := range gpus {
		price, most, in := g.Price.Secure, g.MaxCount.Secure, g.Secure
		if p.cfg.Cloud == "COMMUNITY" {
			price, most, in = g.Price.Community, g.MaxCount.Community, g.Community
		}
		if !in || price <= 0 || most <= 0 || !p.wanted(g.ID) {
			continue
		}
		k := knownGPU{ID: g.ID, MemoryGB: g.Memory, MaxCount: most, Price: price, Spot: spot[g.ID]}
		known[g.ID] = k
		if len(p.cfg.DataCenterIDs) == 0 {
			offers = append(offers, p.offer(k, "", stock(g.Availability)))
			continue
		}
		for _, dc := range p.cfg.DataCenterIDs {
			n := -1
			if g.Availability != "" { // availability was included: a data center not listed has none
				n = 0
				for _, d := range g.DataCenters {
					if d.ID == dc {
						n = stock(d.Availability)
					}
				}
			}
			offers = append(offers, p.offer(k, dc, n))
		}
	}
	sortOffers(offers)
	p.offerMu.Lock()
	p.offers, p.offersAt, p.known = offers, p.now(), known
	p.offerMu.Unlock()
	return slices.Clone(offers), nil
}

func (p *Provider) cachedOffers() ([]gpuflow.Offer, bool) {
	p.offerMu.Lock()
	defer p.offerMu.Unlock()
	if p.offersAt.IsZero() || p.now().Sub(p.offersAt) >= p.cfg.OffersTTL {
		return nil, false
	}
	return slices.Clone(p.offers), true
}

func (p *Provider) offer(k knownGPU, region string, available int) gpuflow.Offer {
	return gpuflow.Offer{
		Provider:         Name,
		GPUType:          k.ID,
		GPUCount:         k.MaxCount,
		Divisible:        true, // a pod takes 1 to MaxCount of them, priced per GPU
		GPUMemoryGB:      k.MemoryGB,
		PricePerHour:     k.Price,
		SpotPricePerHour: k.Spot,
		Region:           region,
		Available:        available,
	}
}

// sortOffers puts offers in stock first, then the cheaper.
func sortOffers(offers []gpuflow.Offer) {
	slices.SortStableFunc(offers, func(a, b gpuflow.Offer) int {
		return cmp.Or(
			cmp.Compare(btoi(a.Available == 0), btoi(b.Available == 0)),
			cmp.Compare(a.PricePerHour, b.PricePerHour),
			cmp.Compare(a.GPUType, b.GPUType),
			cmp.Compare(a.Region, b.Region),
		)
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// wanted reports whether the configuration offers GPU type id.
func (p *Provider) wanted(id string) bool {
	if len(p.cfg.GPUTypes) == 0 {
		return true
	}
	for _, t := range p.cfg.GPUTypes {
		if strings.EqualFold(t, id) || gpuflow.SameGPUType(t, id) {
			return true
		}
	}
	return false
}

// catalogKnown is the built-in catalogue in the configured cloud.
func (p *Provider) catalogKnown() []knownGPU {
	var out []knownGPU
	for _, g := range p.cat.GPUs {
		price := g.SecurePrice
		if p.cfg.Cloud == "COMMUNITY" {
			price = g.CommunityPrice
		}
		if price <= 0 || g.MaxCount <= 0 {
			continue
		}
		out = append(out, knownGPU{ID: g.ID, MemoryGB: g.MemoryGB, MaxCount: g.MaxCount, Price: price})
	}
	return out
}

// fallbackOffers are the built-in catalogue's offers. They are not cached,
// so the next call tries the live catalogue again.
func (p *Provider) fallbackOffers() []gpuflow.Offer {
	var offers []gpuflow.Offer
	for _, k := range p.catalogKnown() {
		if !p.wanted(k.ID) {
			continue
		}
		if len(p.cfg.DataCenterIDs) == 0 {
			offers = append(offers, p.offer(k, "", -1))
		}
		for _, dc := range p.cfg.DataCenterIDs {
			offers = append(offers, p.offer(k, dc, -1))
		}
	}
	sortOffers(offers)
	return offers
}

// resolveGPU finds the RunPod GPU type a request asks for: the offer's GPU
// type (a RunPod id when the offer came from Offers) or, failing that, the
// job's, matched exactly and then by canonical name, against the live
// catalogue first and the built-in one second.
func (p *Provider) resolveGPU(req gpuflow.ProvisionRequest) (knownGPU, bool) {
	p.offerMu.Lock()
	live := make([]knownGPU, 0, len(p.known))
	for _, k := range p.known {
		live = append(live, k)
	}
	p.offerMu.Unlock()
	slices.SortFunc(live, func(a, b knownGPU) int { return cmp.Compare(a.Price, b.Price) })
	all := append(live, p.catalogKnown()...)
	for _, name := range []string{req.Offer.GPUType, req.Spec.GPUType} {
		if name == "" {
			continue
		}
		for _, k := range all {
			if strings.EqualFold(k.ID, name) {
				return k, true
			}
		}
		for _, k := range all {
			if gpuflow.SameGPUType(k.ID, name) {
				return k, true
			}
		}
	}
	return knownGPU{}, false
}
