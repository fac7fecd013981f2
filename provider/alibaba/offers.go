package alibaba

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"
	"golang.org/x/sync/errgroup"

	"github.com/gpuflow/gpuflow"
)

// Stock values of DescribeAvailableResource.
const (
	stockAvailable = "Available"
	spotStrategy   = "SpotAsPriceGo"
)

// priceFetches bounds concurrent DescribePrice calls.
const priceFetches = 4

// Offers lists the catalogue's GPU instance types per zone with the stock
// DescribeAvailableResource reports (Available -1 when in stock: ECS does
// not count, 0 when sold out) and the prices DescribePrice quotes, per
// GPU-hour in USD (CNY quotes are converted with Config.USDPerCNY; the
// price covers the instance and its system disk). Live offers are reused
// for Config.OffersTTL. A region whose API cannot be reached is offered
// from the built-in catalogue (per region, estimated prices, Available
// -1); rejected credentials are an error.
func (p *Provider) Offers(ctx context.Context) ([]gpuflow.Offer, error) {
	if p.clients == nil {
		return nil, errNoCredentials()
	}
	p.offersMu.Lock()
	defer p.offersMu.Unlock()
	if p.offers != nil && p.now().Sub(p.offersAt) < p.cfg.OffersTTL {
		return slices.Clone(p.offers), nil
	}
	var all []gpuflow.Offer
	for _, region := range p.regions {
		offers, err := p.regionOffers(ctx, region)
		if err != nil {
			if ctx.Err() != nil {
				return nil, p.classify(ctx, "offers", ctx.Err())
			}
			if gpuflow.ProviderErrorKindOf(err) == gpuflow.KindAuth {
				return nil, err
			}
			p.log.WarnContext(ctx, "live offers unavailable; using the built-in catalogue",
				"region", region, "err", err, "catalog_date", p.catalog.Date)
			offers = p.catalogOffers(region)
		}
		all = append(all, offers...)
	}
	sortOffers(all)
	p.offers, p.offersAt = all, p.now()
	return slices.Clone(all), nil
}

// catalogOffers are the fallback offers of a region.
func (p *Provider) catalogOffers(region string) []gpuflow.Offer {
	out := make([]gpuflow.Offer, 0, len(p.catalog.Types))
	for _, t := range p.catalog.Types {
		out = append(out, t.offer(region, t.PricePerHour, t.SpotPricePerHour, -1))
	}
	return out
}

// sortOffers puts offers in stock first, then the cheapest.
func sortOffers(offers []gpuflow.Offer) {
	slices.SortStableFunc(offers, func(a, b gpuflow.Offer) int {
		inStock := func(o gpuflow.Offer) int {
			if o.Available != 0 {
				return 0
			}
			return 1
		}
		return cmp.Or(
			cmp.Compare(inStock(a), inStock(b)),
			cmp.Compare(a.PricePerHour, b.PricePerHour),
			cmp.Compare(a.Region, b.Region),
			cmp.Compare(a.GPUType, b.GPUType),
			cmp.Compare(a.VCPUs, b.VCPUs),
		)
	})
}

// zoneStock is one instance type's stock in one zone.
type zoneStock struct {
	zone, instanceType string
	available          bool
}

// regionOffers asks ECS for the region's stock and prices.
func (p *Provider) regionOffers(ctx context.Context, region string) ([]gpuflow.Offer, error) {
	c, err := p.client(region)
	if err != nil {
		return nil, err
	}
	stock, err := p.stock(ctx, c, region, "", false)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range stock {
		if !slices.Contains(names, s.instanceType) {
			names = append(names, s.instanceType)
		}
	}
	type quote struct{ price, spot float64 }
	quotes := make([]quote, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(priceFetches)
	for i, name := range names {
		t, _ := p.catalog.byName(name)
		g.Go(func() error {
			q := quote{price: t.PricePerHour, spot: t.SpotPricePerHour}
			if v, err := p.price(gctx, c, region, name, false); err == nil {
				q.price = v
			} else if gctx.Err() == nil {
				p.log.DebugContext(gctx, "on-demand price unavailable; using the catalogue's", "instance_type", name, "err", err)
			}
			switch v, err := p.price(gctx, c, region, name, true); {
			case err == nil:
				q.spot = v
			case gpuflow.ProviderErrorKindOf(err) == gpuflow.KindInvalidRequest:
				q.spot = 0 // not sold as spot here
			}
			quotes[i] = q
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []gpuflow.Offer
	for _, s := range stock {
		t, _ := p.catalog.byName(s.instanceType)
		q := quotes[slices.Index(names, s.instanceType)]
		available := 0
		if s.available {
			available = -1
		}
		out = append(out, t.offer(s.zone, q.price, q.spot, available))
	}
	return out, nil
}

// stock lists, per zone, the catalogue's instance types ECS sells in the
// region (optionally one type, and spot only): DescribeAvailableResource.
// Zones without a configured vSwitch are left out when vSwitches are
// configured.
func (p *Provider) stock(ctx context.Context, c *regionAPI, region, instanceType string, spot bool) ([]zoneStock, error) {
	req := &ecs.DescribeAvailableResourceRequest{
		RegionId:            tea.String(region),
		DestinationResource: tea.String("InstanceType"),
		InstanceChargeType:  tea.String("PostPaid"),
		ResourceType:        tea.String("instance"),
	}
	if instanceType != "" {
		req.InstanceType = tea.String(instanceType)
	}
	if spot {
		req.SpotStrategy = tea.String(spotStrategy)
	}
	resp, err := c.DescribeAvailableResource(ctx, req)
	if err != nil {
		return nil, p.classify(ctx, "describe available resources in "+region, err)
	}
	var out []zoneStock
	if resp.Body == nil || resp.Body.AvailableZones == nil {
		return out, nil
	}
	for _, z := range resp.Body.AvailableZones.AvailableZone {
		if z == nil || z.AvailableResources == nil {
			continue
		}
		zone := tea.StringValue(z.ZoneId)
		if len(p.cfg.VSwitchIDs) > 0 && p.cfg.VSwitchIDs[zone] == "" {
			continue
		}
		zoneOpen := tea.StringValue(z.Status) == stockAvailable
		for _, r := range z.AvailableResources.AvailableResource {
			if r == nil || tea.StringValue(r.Type) != "InstanceType" || r.SupportedResources == nil {
				continue
			}
			for _, s := range r.SupportedResources.SupportedResource {
				if s == nil {
					continue
				}
				name := tea.StringValue(s.Value)
				if _, ok := p.catalog.byName(name); !ok {
					continue
				}
				out = append(out, zoneStock{zone: zone, instanceType: name,
					available: zoneOpen && tea.StringValue(s.Status) == stockAvailable})
			}
		}
	}
	return out, nil
}

// price asks DescribePrice for one instance-hour of an instance type with
// the system disk Provision gives it, in USD.
func (p *Provider) price(ctx context.Context, c *regionAPI, region, instanceType string, spot bool) (float64, error) {
	req := &ecs.DescribePriceRequest{
		RegionId:     tea.String(region),
		ResourceType: tea.String("instance"),
		InstanceType: tea.String(instanceType),
		PriceUnit:    tea.String("Hour"),
		Period:       tea.Int32(1),
		Amount:       tea.Int32(1),
		SystemDisk: &ecs.DescribePriceRequestSystemDisk{
			Category: tea.String(p.cfg.SystemDiskCategory),
			Size:     tea.Int32(int32(p.cfg.SystemDiskGB)), // #nosec G115 -- New checks SystemDiskGB is at most maxSystemDisk
		},
	}
	if spot {
		req.SpotStrategy = tea.String(spotStrategy)
	}
	resp, err := c.DescribePrice(ctx, req)
	if err != nil {
		return 0, p.classify(ctx, "describe price of "+instanceType, err)
	}
	if resp.Body == nil || resp.Body.PriceInfo == nil || resp.Body.PriceInfo.Price == nil {
		return 0, p.classify(ctx, "describe price of "+instanceType, errEmptyAnswer)
	}
	pr := resp.Body.PriceInfo.Price
	v := float64(tea.Float32Value(pr.TradePrice))
	switch cur := strings.ToUpper(tea.StringValue(pr.Currency)); cur {
	case "", "USD":
	case "CNY":
		v *= p.cfg.USDPerCNY
	default:
		return 0, p.classify(ctx, "describe price of "+instanceType, &unknownCurrencyError{cur})
	}
	return v, nil
}

type unknownCurrencyError struct{ currency string }

func (e *unknownCurrencyError) Error() string {
	return "unknown currency " + strconv.Quote(e.currency)
}
