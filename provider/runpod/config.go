package runpod

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Config.
const (
	DefaultBaseURL      = "https://api.runpod.io"
	DefaultCloud        = "SECURE"
	DefaultDiskGB       = 50
	DefaultTimeout      = 30 * time.Second
	DefaultOffersTTL    = 30 * time.Second
	DefaultPollInterval = 5 * time.Second
	DefaultSafetyMargin = 30 * time.Minute
	// DefaultMaxDuration bounds a pod's life when the request gives none.
	DefaultMaxDuration = 24 * time.Hour
)

// Config configures the RunPod provider.
type Config struct {
	// APIKey is the RunPod API key. Required for every call; never logged.
	APIKey string
	// BaseURL is the REST base, without /v2 (default https://api.runpod.io);
	// point it at the emulator in tests and `make run`.
	BaseURL string
	// GraphQLURL is the GraphQL endpoint; empty means BaseURL + "/graphql".
	GraphQLURL string
	// Cloud is the cloud tier pods are placed in and priced for: SECURE
	// (default) or COMMUNITY.
	Cloud string
	// DataCenterIDs, when set, limits placement to these data centers; the
	// offers then come one per GPU type and data center, with the data
	// center as the offer's region.
	DataCenterIDs []string
	// GPUTypes, when set, limits the offers to these GPU types (RunPod ids
	// such as "NVIDIA H100 80GB HBM3", or names such as "H100").
	GPUTypes []string
	// DiskGB is the container disk of a pod whose job gives none (default 50).
	DiskGB int
	// Timeout bounds each API call (default 30s).
	Timeout time.Duration
	// OffersTTL is how long live offers are reused (default 30s).
	OffersTTL time.Duration
	// PollInterval is the provider's hint for how often to describe a pod
	// (default 5s).
	PollInterval time.Duration
	// SafetyMargin is added to a request's MaxDuration for the provider-side
	// terminateAfter timer of spot pods (default 30m).
	SafetyMargin time.Duration
	// Mode is gpuflow.ModeLive or gpuflow.ModeEmulated, shown by Info.
	Mode string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// HTTPClient sends the requests; nil means a client of its own.
	// Timeouts come from Timeout, per call.
	HTTPClient *http.Client
}

func redact(s string) string {
	if s == "" {
		return "unset"
	}
	return "[redacted]"
}

// String describes the configuration with the API key redacted.
func (c Config) String() string {
	return fmt.Sprintf("runpod.Config{BaseURL: %q, GraphQLURL: %q, Cloud: %q, DataCenterIDs: %q, Mode: %q, APIKey: %s}",
		c.BaseURL, c.GraphQLURL, c.Cloud, c.DataCenterIDs, c.Mode, redact(c.APIKey))
}

// GoString is String, so %#v redacts the key too.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration with the API key redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("graphql_url", c.GraphQLURL),
		slog.String("cloud", c.Cloud),
		slog.Any("data_center_ids", c.DataCenterIDs),
		slog.String("mode", c.Mode),
		slog.String("api_key", redact(c.APIKey)),
	)
}
