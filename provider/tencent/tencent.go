package tencent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/desccache"
)

// Provider identity, as the API shows it.
const (
	Name        = "tencent"
	DisplayName = "Tencent Cloud"
	Description = "Tencent Cloud TKE GPU computing"
)

// Provider rents Tencent Cloud CVM GPU instances. It implements
// gpuflow.Provider, gpuflow.BatchDescriber and gpuflow.PollHinter and is
// safe for concurrent use.
type Provider struct {
	cfg     Config // defaults applied; holds the secrets: never log it whole
	regions []string
	clients map[string]*cvm.Client
	log     *slog.Logger
	now     func() time.Time

	// cache holds the last catalogue; refreshMu serializes refreshes so
	// readers (Describe's prices) never wait on the network.
	cache     atomic.Pointer[offerCache]
	refreshMu sync.Mutex

	// What this process knows of instances beyond the API's answers (see
	// doc.go): keyed by machine id.
	mu       sync.Mutex
	created  map[string]time.Time // created here, when
	released map[string]time.Time // terminated here, when
	spot     map[string]time.Time // seen as SPOTPAID, when
	pruned   time.Time            // when the maps were last pruned

	// described keeps the full descriptions of RUNNING instances, so that
	// DescribeMany asks for their state only.
	described *desccache.Cache
}

var (
	_ gpuflow.Provider   = (*Provider)(nil)
	_ gpuflow.PollHinter = (*Provider)(nil)
)

// New returns a provider for cfg. It checks the config's shape; whether the
// credentials work is Health's business.
func New(cfg Config) (*Provider, error) {
	cfg.Regions = slices.Clone(cfg.Regions)
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{DefaultRegion}
	}
	for _, r := range cfg.Regions {
		if r == "" || strings.ContainsAny(r, " :/") {
			return nil, fmt.Errorf("tencent: invalid region %q", r)
		}
	}
	cfg.Currency = strings.ToUpper(cmp.Or(cfg.Currency, CurrencyUSD))
	if cfg.Currency != CurrencyUSD && cfg.Currency != CurrencyCNY {
		return nil, fmt.Errorf("tencent: currency must be USD or CNY, not %q", cfg.Currency)
	}
	if cfg.CNYPerUSD <= 0 {
		cfg.CNYPerUSD = DefaultCNYPerUSD
	}
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultCallTimeout)
	cfg.OffersTTL = cmp.Or(cfg.OffersTTL, DefaultOffersTTL)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.TimerMargin = cmp.Or(cfg.TimerMargin, DefaultTimerMargin)
	cfg.DiskType = cmp.Or(cfg.DiskType, DefaultDiskType)
	cfg.DiskGB = cmp.Or(cfg.DiskGB, DefaultDiskGB)
	cfg.BandwidthOutMbps = cmp.Or(cfg.BandwidthOutMbps, DefaultBandwidthOut)
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	cfg.Retries = max(cfg.Retries, 0)
	cfg.Mode = cmp.Or(cfg.Mode, gpuflow.ModeLive)
	p := &Provider{
		cfg:      cfg,
		regions:  cfg.Regions,
		clients:  map[string]*cvm.Client{},
		log:      cfg.Logger,
		now:      cfg.Now,
		created:  map[string]time.Time{},
		released: map[string]time.Time{},
		spot:     map[string]time.Time{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", Name)
	if p.now == nil {
		p.now = time.Now
	}
	p.described = desccache.New(0, p.now)
	var scheme, host string
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("tencent: endpoint must be http(s)://host[:port], not %q", cfg.Endpoint)
		}
		scheme, host = strings.ToUpper(u.Scheme), u.Host+strings.TrimSuffix(u.Path, "/")
	}
	cred := common.NewCredential(cfg.SecretID, cfg.SecretKey)
	for _, region := range cfg.Regions {
		cpf := profile.NewClientProfile()
		cpf.Language = "en-US"
		cpf.HttpProfile.ReqTimeout = int(math.Ceil(cfg.CallTimeout.Seconds()))
		if host != "" {
			cpf.HttpProfile.Scheme = scheme
			cpf.HttpProfile.Endpoint = host
		}
		// Retries are ours (with the same ClientToken), not the SDK's.
		cpf.NetworkFailureMaxRetries = 0
		cpf.RateLimitExceededMaxRetries = 0
		c, err := cvm.NewClient(cred, region, cpf)
		if err != nil {
			return nil, fmt.Errorf("tencent: client for %s: %w", region, err)
		}
		p.clients[region] = c
	}
	p.log.Info("tencent provider ready", "mode", cfg.Mode, "regions", cfg.Regions, "endpoint", cmp.Or(cfg.Endpoint, "https://cvm.tencentcloudapi.com"))
	return p, nil
}

// Info describes the provider.
func (p *Provider) Info() gpuflow.ProviderInfo {
	return gpuflow.ProviderInfo{Name: Name, DisplayName: DisplayName, Description: Description, Mode: p.cfg.Mode}
}

// PollInterval is how often a machine's state is worth asking for.
func (p *Provider) PollInterval() time.Duration { return p.cfg.PollInterval }

// Health checks the configuration and makes one cheap authenticated call
// (DescribeInstancesStatus, Limit 1) in every region.
func (p *Provider) Health(ctx context.Context) error {
	if p.cfg.SecretID == "" || p.cfg.SecretKey == "" {
		return errorf(gpuflow.KindAuth, "no credentials configured (SecretID and SecretKey)")
	}
	for _, region := range p.regions {
		if p.imageFor(region) == "" {
			return errorf(gpuflow.KindInvalidRequest, "no image configured for region %s", region)
		}
		req := cvm.NewDescribeInstancesStatusRequest()
		req.Limit = ptr(int64(1))
		cctx, cancel := p.callContext(ctx)
		_, err := p.clients[region].DescribeInstancesStatusWithContext(cctx, req)
		cancel()
		if err != nil {
			return classify("health check in "+region, err)
		}
	}
	return nil
}

// callContext bounds one API call.
func (p *Provider) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.CallTimeout)
}

func (p *Provider) imageFor(region string) string {
	return cmp.Or(p.cfg.RegionImageIDs[region], p.cfg.ImageID)
}

// machineID returns the machine id of an instance in region.
func (p *Provider) machineID(region, instanceID string) string {
	if region == p.regions[0] {
		return instanceID
	}
	return region + ":" + instanceID
}

// errUnknownRegion marks a machine id naming a region not configured.
var errUnknownRegion = errors.New("region not configured")

// parseID splits a machine id into its region, the region's client, the
// instance id and the canonical machine id.
func (p *Provider) parseID(machineID string) (region string, c *cvm.Client, instanceID, canonical string, err error) {
	region, instanceID = p.regions[0], machineID
	if r, rest, ok := strings.Cut(machineID, ":"); ok {
		region, instanceID = r, rest
	}
	c = p.clients[region]
	if c == nil {
		return "", nil, "", "", fmt.Errorf("machine %s: %w", machineID, errUnknownRegion)
	}
	return region, c, instanceID, p.machineID(region, instanceID), nil
}

// regionOf returns the region of a zone ("ap-guangzhou-6" → "ap-guangzhou").
func regionOf(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// remember records id in m at now and, at most once a minute, forgets
// entries older than a day (a sweep remembers every spot instance it
// sees: pruning on each call would make it quadratic).
func (p *Provider) remember(m map[string]time.Time, id string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	m[id] = now
	if now.Sub(p.pruned) < time.Minute && now.After(p.pruned) {
		return
	}
	p.pruned = now
	for _, m := range []map[string]time.Time{p.created, p.released, p.spot} {
		for k, t := range m {
			if now.Sub(t) > 24*time.Hour {
				delete(m, k)
			}
		}
	}
}

func (p *Provider) known(m map[string]time.Time, id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := m[id]
	return t, ok
}
