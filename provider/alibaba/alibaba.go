// Package alibaba rents GPU machines from Alibaba Cloud ECS with the
// official SDK (ecs-20140526/v7 on darabonba-openapi/v2).
//
// A job runs on a pay-as-you-go ECS GPU instance (spot with SpotAsPriceGo
// when the job asks for spot) whose user data is the gpuflow boot script
// (agentscript): the instance pulls the job's image, runs it, and reports
// progress, output and its exit code to the API's agent endpoint. The ECS
// API offers no console output, so the provider implements no LogSource:
// the agent uploads the logs.
//
// Machine ids are "<region>:<instance id>" (ECS ids are regional).
// Creation is idempotent through ClientToken (derived from the request's
// idempotency key) and a tag carrying the token; every instance is tagged
// gpuflow-managed=true and gpuflow-job=<job id>, and carries an
// AutoReleaseTime past the job's maximum duration, so ECS releases it even
// if gpuflow is gone.
//
// Offers come from DescribeAvailableResource (stock per zone) and
// DescribePrice (on-demand and SpotAsPriceGo prices), cached briefly, with
// the embedded catalog.json as the fallback when the API cannot be reached.
package alibaba

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/desccache"
)

// Name is the provider's name.
const Name = "alibaba"

// Defaults of Config fields left zero.
const (
	DefaultRegion             = "cn-hangzhou"
	DefaultImageID            = "ubuntu_22_04_x64_20G_alibase_20240101.vhd"
	DefaultSystemDiskCategory = "cloud_essd"
	DefaultSystemDiskGB       = 100
	DefaultBandwidthOut       = 10 // Mbit/s: the boot script pulls images and calls the agent
	DefaultUSDPerCNY          = 0.14
	DefaultTimeout            = 30 * time.Second
	DefaultConnectTimeout     = 10 * time.Second
	DefaultOffersTTL          = 30 * time.Second
	DefaultReleaseMargin      = time.Hour
	DefaultMaxDuration        = 24 * time.Hour
	DefaultCreateRetries      = 3
	livePollInterval          = 5 * time.Second
	emulatedPollInterval      = 500 * time.Millisecond
)

// Config configures the provider. Credentials are never logged: String and
// LogValue redact them.
type Config struct {
	// AccessKeyID and AccessKeySecret are a RAM user's AccessKey pair.
	AccessKeyID     string
	AccessKeySecret string
	// Regions to offer machines in, in preference order; the first also
	// answers Health. Empty means DefaultRegion.
	Regions []string
	// Endpoint overrides the API endpoint with a base URL such as
	// "http://127.0.0.1:41234" (the emulator); empty means the SDK's
	// regional endpoints (https://ecs.<region>.aliyuncs.com).
	Endpoint string
	// ImageID is the instance image. It must provide the NVIDIA driver,
	// Docker and the NVIDIA container toolkit (the boot script runs the job
	// with "docker run --gpus all"). Empty means DefaultImageID.
	ImageID string
	// SecurityGroupIDs maps a region to the security group of its
	// instances; VSwitchIDs maps a zone to the vSwitch of its instances.
	// When VSwitchIDs is set, only zones with a vSwitch are offered.
	SecurityGroupIDs map[string]string
	VSwitchIDs       map[string]string
	// KeyPairName, when set, is attached to the instances (for debugging).
	KeyPairName string
	// SystemDiskCategory and SystemDiskGB size the system disk (a job's
	// disk_gb raises the size). Defaults: cloud_essd, 100 GB.
	SystemDiskCategory string
	SystemDiskGB       int
	// BandwidthOut is the public bandwidth in Mbit/s; 0 means
	// DefaultBandwidthOut, negative means no public IP.
	BandwidthOut int
	// USDPerCNY converts CNY prices (the China site's DescribePrice
	// currency) to USD; 0 means DefaultUSDPerCNY.
	USDPerCNY float64
	// Timeout bounds one API call, ConnectTimeout the connection.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	// OffersTTL is how long live offers are reused.
	OffersTTL time.Duration
	// ReleaseMargin is added past a job's maximum duration for the
	// instance's AutoReleaseTime.
	ReleaseMargin time.Duration
	// PollInterval is the advised Describe period; 0 means 5 s live and
	// 500 ms emulated.
	PollInterval time.Duration
	// CreateRetries is how many times RunInstances is repeated (with the
	// same ClientToken) after an answer lost to a 5xx or a timeout.
	CreateRetries int
	// Mode is gpuflow.ModeLive (default) or gpuflow.ModeEmulated.
	Mode string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
}

// String describes the config with its secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("alibaba.Config{AccessKeyID:%s AccessKeySecret:%s Regions:%v Endpoint:%q Mode:%q}",
		redactKeyID(c.AccessKeyID), redactSecret(c.AccessKeySecret), c.Regions, c.Endpoint, c.Mode)
}

// LogValue logs the config with its secret redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", redactKeyID(c.AccessKeyID)),
		slog.String("access_key_secret", redactSecret(c.AccessKeySecret)),
		slog.Any("regions", c.Regions),
		slog.String("endpoint", c.Endpoint),
		slog.String("mode", c.Mode),
	)
}

// GoString keeps %#v from printing the secret.
func (c Config) GoString() string { return c.String() }

func redactSecret(s string) string {
	if s == "" {
		return "(unset)"
	}
	return "[REDACTED]"
}

// redactKeyID shows only the start of the AccessKey id, enough to tell
// keys apart.
func redactKeyID(s string) string {
	if s == "" {
		return "(unset)"
	}
	if len(s) <= 8 {
		return "****"
	}
	return s[:4] + "****"
}

// Provider rents ECS GPU instances. It implements gpuflow.Provider and
// gpuflow.PollHinter, and is safe for concurrent use.
type Provider struct {
	cfg     Config
	regions []string
	clients map[string]*regionAPI // by region; nil without credentials
	catalog catalog
	now     func() time.Time
	log     *slog.Logger

	offersMu sync.Mutex
	offers   []gpuflow.Offer
	offersAt time.Time

	// created remembers instances this process just created: ECS may list
	// a new instance a moment after RunInstances answers, and Describe
	// must not call it gone meanwhile.
	createdMu sync.Mutex
	created   map[string]time.Time

	// described keeps the full descriptions of Running on-demand
	// instances, so that DescribeMany asks for their status only.
	described *desccache.Cache
}

var (
	_ gpuflow.Provider   = (*Provider)(nil)
	_ gpuflow.PollHinter = (*Provider)(nil)
)

// New returns a provider for cfg. It makes no API call; Health does.
// Without credentials it is still returned, and every call fails with an
// auth error.
func New(cfg Config) (*Provider, error) {
	switch cfg.Mode {
	case "":
		cfg.Mode = gpuflow.ModeLive
	case gpuflow.ModeLive, gpuflow.ModeEmulated:
	default:
		return nil, fmt.Errorf("alibaba: mode %q: want %q or %q", cfg.Mode, gpuflow.ModeLive, gpuflow.ModeEmulated)
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{DefaultRegion}
	}
	for _, r := range cfg.Regions {
		if r == "" || strings.ContainsAny(r, ":/ ") {
			return nil, fmt.Errorf("alibaba: invalid region %q", r)
		}
	}
	cfg.ImageID = cmp.Or(cfg.ImageID, DefaultImageID)
	cfg.SystemDiskCategory = cmp.Or(cfg.SystemDiskCategory, DefaultSystemDiskCategory)
	cfg.SystemDiskGB = cmp.Or(cfg.SystemDiskGB, DefaultSystemDiskGB)
	cfg.BandwidthOut = cmp.Or(cfg.BandwidthOut, DefaultBandwidthOut)
	// Both go to the API as int32 (and a disk larger than the API allows
	// would be refused at every create).
	if cfg.SystemDiskGB < 0 || cfg.SystemDiskGB > maxSystemDisk {
		return nil, fmt.Errorf("alibaba: system disk %d GB: want at most %d", cfg.SystemDiskGB, maxSystemDisk)
	}
	if cfg.BandwidthOut > math.MaxInt32 {
		return nil, fmt.Errorf("alibaba: bandwidth %d Mbit/s is out of range", cfg.BandwidthOut)
	}
	if cfg.USDPerCNY <= 0 {
		cfg.USDPerCNY = DefaultUSDPerCNY
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout)
	cfg.OffersTTL = cmp.Or(cfg.OffersTTL, DefaultOffersTTL)
	cfg.ReleaseMargin = cmp.Or(cfg.ReleaseMargin, DefaultReleaseMargin)
	if cfg.CreateRetries <= 0 {
		cfg.CreateRetries = DefaultCreateRetries
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = livePollInterval
		if cfg.Mode == gpuflow.ModeEmulated {
			cfg.PollInterval = emulatedPollInterval
		}
	}
	cat, err := loadCatalog()
	if err != nil {
		return nil, fmt.Errorf("alibaba: %w", err)
	}
	p := &Provider{
		cfg:     cfg,
		regions: slices.Clone(cfg.Regions),
		catalog: cat,
		now:     cfg.Now,
		log:     cfg.Logger,
		created: map[string]time.Time{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.described = desccache.New(0, p.now)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", Name)
	if cfg.AccessKeyID != "" && cfg.AccessKeySecret != "" {
		hc := newHTTPClient(cfg.Timeout, cfg.ConnectTimeout)
		p.clients = map[string]*regionAPI{}
		for _, region := range p.regions {
			a := &regionAPI{newClient: func() (*ecs.Client, error) { return newClient(cfg, region, hc) }}
			c, err := a.newClient() // check the config once
			if err != nil {
				return nil, fmt.Errorf("alibaba: client for %s: %w", region, err)
			}
			a.put(c)
			p.clients[region] = a
		}
	}
	// Only the clients' constructor keeps the secret.
	p.cfg.AccessKeySecret = redactSecret(cfg.AccessKeySecret)
	return p, nil
}

// String describes the provider without its credentials.
func (p *Provider) String() string {
	return fmt.Sprintf("alibaba.Provider{mode:%s regions:%v}", p.cfg.Mode, p.regions)
}

// newClient builds the SDK client of one region. SDK errors stay typed
// (DisableSDKError) so throttling keeps its retry-after.
func newClient(cfg Config, region string, hc *httpClient) (*ecs.Client, error) {
	oc := &openapi.Config{
		AccessKeyId:     tea.String(cfg.AccessKeyID),
		AccessKeySecret: tea.String(cfg.AccessKeySecret),
		RegionId:        tea.String(region),
		ReadTimeout:     tea.Int(int(cfg.Timeout.Milliseconds())),
		ConnectTimeout:  tea.Int(int(cfg.ConnectTimeout.Milliseconds())),
		HttpClient:      hc,
	}
	if cfg.Endpoint != "" {
		scheme, host, ok := strings.Cut(cfg.Endpoint, "://")
		if !ok || host == "" {
			return nil, fmt.Errorf("endpoint %q: want scheme://host[:port]", cfg.Endpoint)
		}
		oc.Protocol = tea.String(scheme)
		oc.Endpoint = tea.String(strings.TrimSuffix(host, "/"))
	}
	c, err := ecs.NewClient(oc)
	if err != nil {
		return nil, err
	}
	c.Client.DisableSDKError = tea.Bool(true)
	return c, nil
}

// httpClient is the SDK's HTTP client: one pooled transport for every
// call. (The SDK's default client rewrites its timeout on each call, which
// races between concurrent calls.)
type httpClient struct{ c *http.Client }

func newHTTPClient(timeout, connect time.Duration) *httpClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 16
	return &httpClient{c: &http.Client{Transport: tr, Timeout: timeout}}
}

// Call sends the SDK's request; the per-request transport it builds is
// not used.
func (h *httpClient) Call(req *http.Request, _ *http.Transport) (*http.Response, error) {
	return h.c.Do(req) // #nosec G704 -- the SDK's signed request to the configured Alibaba endpoint, never a URL from a user
}

// Info describes the provider.
func (p *Provider) Info() gpuflow.ProviderInfo {
	return gpuflow.ProviderInfo{
		Name:        Name,
		DisplayName: "Alibaba Cloud",
		Description: "Alibaba Cloud ECS GPU instances",
		Mode:        p.cfg.Mode,
	}
}

// PollInterval is how often a machine's state is worth asking for.
func (p *Provider) PollInterval() time.Duration { return p.cfg.PollInterval }

// errNoCredentials is returned by every call of a provider without keys.
func errNoCredentials() error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindAuth, Code: "InvalidCredentials",
		Message: "no AccessKey configured"}
}

// client returns the region's SDK client.
func (p *Provider) client(region string) (*regionAPI, error) {
	if p.clients == nil {
		return nil, errNoCredentials()
	}
	c, ok := p.clients[region]
	if !ok {
		return nil, &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindInvalidRequest,
			Message: fmt.Sprintf("region %q is not configured", region)}
	}
	return c, nil
}

// Health checks the credentials with a cheap authenticated call
// (DescribeInstances, one result) in the first region.
func (p *Provider) Health(ctx context.Context) error {
	c, err := p.client(p.regions[0])
	if err != nil {
		return err
	}
	_, err = c.DescribeInstances(ctx, &ecs.DescribeInstancesRequest{
		RegionId: tea.String(p.regions[0]),
		PageSize: tea.Int32(1),
	})
	if err != nil {
		return p.classify(ctx, "health check", err)
	}
	return nil
}

// errNotConfigured reports a request outside the configured regions.
var errNotConfigured = errors.New("not a configured region or zone")
