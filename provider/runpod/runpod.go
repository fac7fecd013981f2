package runpod

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Provider rents RunPod pods. It implements gpuflow.Provider,
// gpuflow.BatchDescriber and gpuflow.PollHinter, and is safe for
// concurrent use.
type Provider struct {
	cfg Config
	c   *client
	log *slog.Logger
	now func() time.Time
	cat *catalog

	fetchMu  sync.Mutex // one catalogue read at a time
	offerMu  sync.Mutex // guards the fields below
	offers   []gpuflow.Offer
	offersAt time.Time
	known    map[string]knownGPU // GPU types last read live, by id

	// Shared pod listings (listing.go).
	listMu   sync.Mutex
	listNext *listRound // the round new callers join
	listing  bool       // a goroutine runs the rounds
}

var (
	_ gpuflow.Provider   = (*Provider)(nil)
	_ gpuflow.PollHinter = (*Provider)(nil)
)

// New returns a provider for cfg. It makes no call: Health checks the
// credentials.
func New(cfg Config) (*Provider, error) {
	cfg.BaseURL = strings.TrimRight(cmp.Or(cfg.BaseURL, DefaultBaseURL), "/")
	if _, err := url.ParseRequestURI(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("runpod: base url: %w", err)
	}
	cfg.GraphQLURL = cmp.Or(cfg.GraphQLURL, cfg.BaseURL+"/graphql")
	if _, err := url.ParseRequestURI(cfg.GraphQLURL); err != nil {
		return nil, fmt.Errorf("runpod: graphql url: %w", err)
	}
	cfg.Cloud = strings.ToUpper(cmp.Or(cfg.Cloud, DefaultCloud))
	if cfg.Cloud != "SECURE" && cfg.Cloud != "COMMUNITY" {
		return nil, fmt.Errorf("runpod: cloud %q: want SECURE or COMMUNITY", cfg.Cloud)
	}
	cfg.DiskGB = cmp.Or(max(cfg.DiskGB, 0), DefaultDiskGB)
	cfg.Timeout = cmp.Or(max(cfg.Timeout, 0), DefaultTimeout)
	cfg.OffersTTL = cmp.Or(max(cfg.OffersTTL, 0), DefaultOffersTTL)
	cfg.PollInterval = cmp.Or(max(cfg.PollInterval, 0), DefaultPollInterval)
	cfg.SafetyMargin = cmp.Or(max(cfg.SafetyMargin, 0), DefaultSafetyMargin)
	cfg.Mode = cmp.Or(cfg.Mode, gpuflow.ModeLive)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	cat, err := loadCatalog()
	if err != nil {
		return nil, fmt.Errorf("runpod: %w", err)
	}
	return &Provider{
		cfg: cfg,
		c:   &client{base: cfg.BaseURL, gql: cfg.GraphQLURL, key: cfg.APIKey, http: hc, timeout: cfg.Timeout},
		log: cfg.Logger.With("provider", Name),
		now: cfg.Now,
		cat: cat,
	}, nil
}

// Info describes the provider.
func (p *Provider) Info() gpuflow.ProviderInfo {
	return gpuflow.ProviderInfo{
		Name:        Name,
		DisplayName: "RunPod",
		Description: "RunPod GPU cloud computing platform",
		Mode:        p.cfg.Mode,
	}
}

// PollInterval is how often a pod's state is worth reading.
func (p *Provider) PollInterval() time.Duration { return p.cfg.PollInterval }

// errNoKey is returned by every call when no API key is configured.
var errNoKey = errors.New("no API key configured")

func (p *Provider) checkKey() error {
	if p.cfg.APIKey == "" {
		return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindAuth, Message: "credentials", Err: errNoKey}
	}
	return nil
}

// Health checks that an API key is configured and that RunPod accepts it
// (GET /v2/pods).
func (p *Provider) Health(ctx context.Context) error {
	if err := p.checkKey(); err != nil {
		return err
	}
	if _, err := p.c.listPods(ctx); err != nil {
		return classify("list pods", err, false)
	}
	return nil
}
