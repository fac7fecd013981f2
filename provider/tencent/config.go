package tencent

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults.
const (
	DefaultRegion       = "ap-guangzhou"
	DefaultCallTimeout  = 30 * time.Second
	DefaultOffersTTL    = 30 * time.Second
	DefaultPollInterval = 3 * time.Second
	DefaultTimerMargin  = 30 * time.Minute
	DefaultMaxDuration  = 24 * time.Hour
	DefaultCNYPerUSD    = 7.2
	DefaultDiskGB       = 50
	DefaultDiskType     = "CLOUD_PREMIUM"
	DefaultBandwidthOut = 10
	DefaultRetries      = 3
)

// Currencies Tencent Cloud bills in.
const (
	CurrencyUSD = "USD" // international site
	CurrencyCNY = "CNY" // China site
)

// Subnet places instances of one zone in a VPC subnet.
type Subnet struct {
	VpcID    string
	SubnetID string
}

// Config configures the Tencent Cloud provider. SecretID and SecretKey are
// secrets: String and LogValue redact them.
type Config struct {
	SecretID  string `json:"-"`
	SecretKey string `json:"-"`
	// Endpoint overrides the API endpoint, as scheme://host[:port] (e.g.
	// the emulator's "http://127.0.0.1:8081"); empty means
	// https://cvm.tencentcloudapi.com.
	Endpoint string
	// Regions to rent in, the first being the default; empty means
	// ap-guangzhou.
	Regions []string
	// Zones, when set, limits offers to these zones.
	Zones []string
	// ImageID is the image instances boot (a GPU image with the NVIDIA
	// driver, Docker and the NVIDIA container toolkit); RegionImageIDs
	// overrides it per region (image ids are regional).
	ImageID        string
	RegionImageIDs map[string]string
	// Subnets places instances per zone; zones without one use the
	// default VPC.
	Subnets map[string]Subnet
	// SecurityGroupIDs and KeyIDs are passed to RunInstances when set.
	SecurityGroupIDs []string
	KeyIDs           []string
	// DiskType and DiskGB are the system disk's (default CLOUD_PREMIUM,
	// 50 GB; a job's disk_gb raises the size).
	DiskType string
	DiskGB   int
	// BandwidthOutMbps is the public bandwidth cap (default 10): the agent
	// reports over the internet and images are pulled from it.
	BandwidthOutMbps int
	// Currency is the account's billing currency, "USD" (default) or
	// "CNY"; CNYPerUSD converts CNY prices (default 7.2).
	Currency  string
	CNYPerUSD float64
	// CallTimeout bounds each API call (default 30s).
	CallTimeout time.Duration
	// OffersTTL is how long live offers are reused (default 30s).
	OffersTTL time.Duration
	// PollInterval is the polling hint for watchers (default 3s).
	PollInterval time.Duration
	// TimerMargin is how long after the request's MaxDuration the
	// instance's ActionTimer terminates it (default 30m).
	TimerMargin time.Duration
	// Retries is how many times Provision retries RunInstances after a
	// transient failure, with the same ClientToken (default 3; -1: none).
	Retries int
	// Mode is gpuflow.ModeLive or gpuflow.ModeEmulated, shown by Info.
	Mode string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// String describes the config with its secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("tencent.Config{SecretID:%s SecretKey:%s Endpoint:%q Regions:%v ImageID:%q Currency:%q Mode:%q}",
		redact(c.SecretID), redact(c.SecretKey), c.Endpoint, c.Regions, c.ImageID, c.Currency, c.Mode)
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

// LogValue logs the config with its secrets redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("secret_id", redact(c.SecretID)),
		slog.String("secret_key", redact(c.SecretKey)),
		slog.String("endpoint", c.Endpoint),
		slog.Any("regions", c.Regions),
		slog.String("image_id", c.ImageID),
		slog.String("currency", c.Currency),
		slog.String("mode", c.Mode),
	)
}
