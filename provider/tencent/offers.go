package tencent

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
)

// Charge types.
const (
	chargePostpaid = "POSTPAID_BY_HOUR"
	chargeSpot     = "SPOTPAID"
)

// fallbackTTL is how long the built-in catalogue stands in before the live
// call is tried again.
const fallbackTTL = 5 * time.Second

// gpuFamily is what an instance family carries: DescribeZoneInstanceConfigInfos
// gives GPU counts but not the GPU model.
type gpuFamily struct {
	GPUType     string  // canonical, as gpuflow.NormalizeGPUType
	GPUMemoryGB float64 // per GPU
}

// families maps Tencent GPU instance families (pass-through GPUs) to their
// GPU. Rows of other families are skipped; vGPU rows (GpuCount < 1) too.
var families = map[string]gpuFamily{
	"GN6":    {"P4", 8},
	"GN6S":   {"P4", 8},
	"GN7":    {"T4", 16},
	"GI3X":   {"T4", 16},
	"GN8":    {"P40", 24},
	"GN10X":  {"V100", 32},
	"GN10Xp": {"V100", 32},
	"GT4":    {"A100", 40},
	"PNV4":   {"A10", 24},
}

// item is one instance type in one zone: the catalogue behind offers and
// the choice of instance type in Provision. Prices are USD per
// instance-hour.
type item struct {
	Zone         string
	InstanceType string
	Family       string
	GPUType      string
	GPUCount     int
	GPUMemoryGB  float64
	VCPUs        int
	MemoryGB     float64
	Price        float64
	SpotPrice    float64 // 0: no spot
	Available    int
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// offer is the item as a gpuflow offer, priced per GPU-hour.
func (it item) offer() gpuflow.Offer {
	n := float64(max(it.GPUCount, 1))
	return gpuflow.Offer{
		Provider: Name, GPUType: it.GPUType, GPUCount: it.GPUCount,
		MemoryGB: it.MemoryGB, GPUMemoryGB: it.GPUMemoryGB, VCPUs: it.VCPUs,
		PricePerHour: round4(it.Price / n), SpotPricePerHour: round4(it.SpotPrice / n),
		Region: it.Zone, Available: it.Available,
	}
}

//go:embed catalog.json
var catalogJSON []byte

// builtinCatalog is the embedded catalogue's shape.
type builtinCatalog struct {
	Source        string `json:"source"`
	Date          string `json:"date"`
	Currency      string `json:"currency"`
	InstanceTypes []struct {
		InstanceType     string   `json:"instance_type"`
		Family           string   `json:"family"`
		GPUType          string   `json:"gpu_type"`
		GPUCount         int      `json:"gpu_count"`
		GPUMemoryGB      float64  `json:"gpu_memory_gb"`
		VCPUs            int      `json:"vcpus"`
		MemoryGB         float64  `json:"memory_gb"`
		PricePerHour     float64  `json:"price_per_hour"`
		SpotPricePerHour float64  `json:"spot_price_per_hour"`
		Zones            []string `json:"zones"`
		Source           string   `json:"source"`
		Date             string   `json:"date"`
	} `json:"instance_types"`
}

func loadCatalog() (builtinCatalog, error) {
	var c builtinCatalog
	if err := json.Unmarshal(catalogJSON, &c); err != nil {
		return c, fmt.Errorf("built-in catalogue: %w", err)
	}
	return c, nil
}

// toUSD converts a price in the account's currency.
func (p *Provider) toUSD(price float64, currency string) float64 {
	if strings.EqualFold(currency, CurrencyCNY) {
		return price / p.cfg.CNYPerUSD
	}
	return price
}

// fallbackItems returns the built-in catalogue's items in region.
func (p *Provider) fallbackItems(region string) []item {
	c, err := loadCatalog()
	if err != nil {
		p.log.Error("built-in catalogue unreadable", "err", err)
		return nil
	}
	var out []item
	for _, t := range c.InstanceTypes {
		for _, z := range t.Zones {
			if regionOf(z) != region || !p.zoneAllowed(z) {
				continue
			}
			out = append(out, item{
				Zone: z, InstanceType: t.InstanceType, Family: t.Family,
				GPUType: gpuflow.NormalizeGPUType(t.GPUType), GPUCount: t.GPUCount, GPUMemoryGB: t.GPUMemoryGB,
				VCPUs: t.VCPUs, MemoryGB: t.MemoryGB,
				Price: p.toUSD(t.PricePerHour, c.Currency), SpotPrice: p.toUSD(t.SpotPricePerHour, c.Currency),
				Available: -1,
			})
		}
	}
	return out
}

func (p *Provider) zoneAllowed(zone string) bool {
	return len(p.cfg.Zones) == 0 || slices.Contains(p.cfg.Zones, zone)
}

// Offers lists the GPU instance types of the configured regions, priced per
// GPU-hour in USD, with their stock. It answers from the built-in
// catalogue for regions whose live call fails.
func (p *Provider) Offers(ctx context.Context) ([]gpuflow.Offer, error) {
	items, err := p.catalogue(ctx)
	if err != nil {
		return nil, err
	}
	offers := make([]gpuflow.Offer, len(items))
	for i, it := range items {
		offers[i] = it.offer()
	}
	return offers, nil
}

// offerCache is a catalogue and when it was read.
type offerCache struct {
	items []item
	at    time.Time
	live  bool // false: the built-in catalogue stood in somewhere
}

func (p *Provider) fresh(c *offerCache) bool {
	if c == nil {
		return false
	}
	ttl := p.cfg.OffersTTL
	if !c.live {
		ttl = min(ttl, fallbackTTL)
	}
	return p.now().Sub(c.at) < ttl
}

// catalogue returns the current items, from the cache when fresh.
func (p *Provider) catalogue(ctx context.Context) ([]item, error) {
	if c := p.cache.Load(); p.fresh(c) {
		return c.items, nil
	}
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if c := p.cache.Load(); p.fresh(c) {
		return c.items, nil
	}
	items := []item{}
	live := true
	for _, region := range p.regions {
		got, err := p.liveItems(ctx, region)
		if err != nil {
			if ctx.Err() != nil {
				return nil, classify("list offers", ctx.Err())
			}
			p.log.Warn("live offers unavailable; using the built-in catalogue", "region", region, "err", err)
			got, live = p.fallbackItems(region), false
		}
		items = append(items, got...)
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.GPUType, b.GPUType), cmp.Compare(a.GPUCount, b.GPUCount),
			cmp.Compare(a.Price, b.Price), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.InstanceType, b.InstanceType))
	})
	p.cache.Store(&offerCache{items: items, at: p.now(), live: live})
	return items, nil
}

// cachedItem returns the cached item of an instance type in a zone,
// without calling the API.
func (p *Provider) cachedItem(zone, instanceType string) (item, bool) {
	c := p.cache.Load()
	if c == nil {
		return item{}, false
	}
	for _, it := range c.items {
		if it.Zone == zone && it.InstanceType == instanceType {
			return it, true
		}
	}
	return item{}, false
}

// liveItems asks DescribeZoneInstanceConfigInfos for the GPU families'
// on-demand and spot rows in region and merges them per zone and type.
func (p *Provider) liveItems(ctx context.Context, region string) ([]item, error) {
	req := cvm.NewDescribeZoneInstanceConfigInfosRequest()
	req.Filters = []*cvm.Filter{
		{Name: ptr("instance-family"), Values: ptrs(slices.Sorted(maps.Keys(families)))},
		{Name: ptr("instance-charge-type"), Values: ptrs([]string{chargePostpaid, chargeSpot})},
	}
	var zones []string
	for _, z := range p.cfg.Zones {
		if regionOf(z) == region {
			zones = append(zones, z)
		}
	}
	if len(zones) > 0 {
		req.Filters = append(req.Filters, &cvm.Filter{Name: ptr("zone"), Values: ptrs(zones)})
	}
	cctx, cancel := p.callContext(ctx)
	defer cancel()
	resp, err := p.clients[region].DescribeZoneInstanceConfigInfosWithContext(cctx, req)
	if err != nil {
		return nil, classify("describe zone instance configs in "+region, err)
	}
	byKey := map[string]*item{}
	var keys []string
	for _, row := range resp.Response.InstanceTypeQuotaSet {
		if row == nil {
			continue
		}
		fam, ok := families[deref(row.InstanceFamily)]
		gpus := deref(row.GpuCount)
		zone := deref(row.Zone)
		if !ok || gpus < 1 || zone == "" || !p.zoneAllowed(zone) {
			continue
		}
		key := zone + "/" + deref(row.InstanceType)
		it := byKey[key]
		if it == nil {
			it = &item{
				Zone: zone, InstanceType: deref(row.InstanceType), Family: deref(row.InstanceFamily),
				GPUType: fam.GPUType, GPUCount: int(math.Round(gpus)), GPUMemoryGB: fam.GPUMemoryGB,
				VCPUs: int(deref(row.Cpu)), MemoryGB: float64(deref(row.Memory)), Available: -1,
			}
			byKey[key] = it
			keys = append(keys, key)
		}
		price := p.toUSD(unitPrice(row.Price), p.cfg.Currency)
		switch deref(row.InstanceChargeType) {
		case chargePostpaid:
			it.Price = price
			it.Available = stock(row)
		case chargeSpot:
			if stock(row) != 0 {
				it.SpotPrice = price
			}
		}
	}
	var out []item
	for _, k := range keys {
		if it := byKey[k]; it.Price > 0 {
			out = append(out, *it)
		}
	}
	return out, nil
}

// unitPrice is the hourly price of a postpaid row: the discounted one when
// the API gives it.
func unitPrice(ip *cvm.ItemPrice) float64 {
	if ip == nil {
		return 0
	}
	if d := deref(ip.UnitPriceDiscount); d > 0 {
		return d
	}
	return deref(ip.UnitPrice)
}

// stock maps a row's Status and StatusCategory to Offer.Available: 0 when
// sold out, 1 when "UnderStock" (about to sell out), -1 (unknown count)
// otherwise.
func stock(row *cvm.InstanceTypeQuotaItem) int {
	switch {
	case deref(row.Status) == "SOLD_OUT", deref(row.StatusCategory) == "WithoutStock":
		return 0
	case deref(row.StatusCategory) == "UnderStock":
		return 1
	}
	return -1
}

func ptrs(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}
