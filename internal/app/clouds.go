package app

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/tencent"
)

// Cloud names, in the order NewProviders prefers them after local.
const (
	CloudRunPod  = "runpod"
	CloudTencent = "tencent"
	CloudAlibaba = "alibaba"
)

// Clouds lists the cloud providers gpuflow knows.
var Clouds = []string{CloudRunPod, CloudTencent, CloudAlibaba}

// CloudConfig holds the cloud credentials and endpoints. A cloud with
// credentials runs live; without them it is left out — or, when an
// emulator's endpoint is in Emulators (the dev command starts them), it runs
// emulated against that emulator with the emulator's test keys.
type CloudConfig struct {
	RunPodAPIKey  string
	RunPodBaseURL string

	TencentSecretID  string
	TencentSecretKey string
	TencentEndpoint  string
	TencentRegions   []string
	TencentImageID   string

	AlibabaAccessKeyID     string
	AlibabaAccessKeySecret string
	AlibabaEndpoint        string
	AlibabaRegions         []string
	AlibabaImageID         string

	// Emulators maps a cloud's name to its emulator's base URL.
	Emulators map[string]string
}

func cloudConfigFromEnv(getenv func(string) string) (CloudConfig, error) {
	secret := secretReader{getenv: getenv}
	c := CloudConfig{
		RunPodAPIKey:     secret.read("RUNPOD_API_KEY"),
		RunPodBaseURL:    getenv("RUNPOD_BASE_URL"),
		TencentSecretID:  secret.read("TENCENTCLOUD_SECRET_ID"),
		TencentSecretKey: secret.read("TENCENTCLOUD_SECRET_KEY"),
		TencentEndpoint:  getenv("TENCENTCLOUD_ENDPOINT"),
		TencentRegions:   splitList(getenv("TENCENTCLOUD_REGIONS")),
		TencentImageID:   getenv("TENCENTCLOUD_IMAGE_ID"),

		AlibabaAccessKeyID:     secret.read("ALIBABA_CLOUD_ACCESS_KEY_ID"),
		AlibabaAccessKeySecret: secret.read("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
		AlibabaEndpoint:        getenv("ALIBABA_CLOUD_ENDPOINT"),
		AlibabaRegions:         splitList(getenv("ALIBABA_CLOUD_REGIONS")),
		AlibabaImageID:         getenv("ALIBABA_CLOUD_IMAGE_ID"),
	}
	for name, env := range EmulatorURLEnv {
		if u := strings.TrimSpace(getenv(env)); u != "" {
			if c.Emulators == nil {
				c.Emulators = map[string]string{}
			}
			c.Emulators[name] = strings.TrimSuffix(u, "/")
		}
	}
	return c, secret.err
}

// secretReader reads a secret from NAME, or from the file NAME_FILE names
// (a mounted secret), trimming the final newline. The first failure sticks.
type secretReader struct {
	getenv func(string) string
	err    error
}

func (r *secretReader) read(name string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	path := r.getenv(name + "_FILE")
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the secret file the operator named in NAME_FILE
	if err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("%s_FILE: %w", name, err)
		}
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}

// EmulatorURLEnv names, by cloud, the variable holding the base URL of that
// cloud's emulator: a cloud without credentials then runs emulated against
// it (a cloud with credentials ignores it). The topology
// (internal/topology) sets them for its api and worker processes, whose
// emulators run in a process of their own.
var EmulatorURLEnv = map[string]string{
	CloudRunPod:  "RUNPOD_EMULATOR_URL",
	CloudTencent: "TENCENTCLOUD_EMULATOR_URL",
	CloudAlibaba: "ALIBABA_CLOUD_EMULATOR_URL",
}

// cloudEnvVars are the variables cloudConfigFromEnv reads.
var cloudEnvVars = []string{
	"RUNPOD_API_KEY", "RUNPOD_API_KEY_FILE", "RUNPOD_BASE_URL",
	"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_ID_FILE", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SECRET_KEY_FILE",
	"TENCENTCLOUD_ENDPOINT", "TENCENTCLOUD_REGIONS", "TENCENTCLOUD_IMAGE_ID",
	"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID_FILE", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE",
	"ALIBABA_CLOUD_ENDPOINT", "ALIBABA_CLOUD_REGIONS", "ALIBABA_CLOUD_IMAGE_ID",
	"RUNPOD_EMULATOR_URL", "TENCENTCLOUD_EMULATOR_URL", "ALIBABA_CLOUD_EMULATOR_URL",
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Live reports whether the cloud has credentials.
func (c CloudConfig) Live(name string) bool {
	switch name {
	case CloudRunPod:
		return c.RunPodAPIKey != ""
	case CloudTencent:
		return c.TencentSecretID != "" && c.TencentSecretKey != ""
	case CloudAlibaba:
		return c.AlibabaAccessKeyID != "" && c.AlibabaAccessKeySecret != ""
	}
	return false
}

// newClouds builds the cloud providers that are live or emulated.
func newClouds(c CloudConfig, logger *slog.Logger) (gpuflow.Providers, error) {
	var ps gpuflow.Providers
	if c.Live(CloudRunPod) || c.Emulators[CloudRunPod] != "" {
		cfg := runpod.Config{APIKey: c.RunPodAPIKey, BaseURL: c.RunPodBaseURL, Mode: gpuflow.ModeLive, Logger: logger}
		if !c.Live(CloudRunPod) {
			cfg.APIKey, cfg.BaseURL, cfg.Mode = "gpuflow-emulator-key", c.Emulators[CloudRunPod], gpuflow.ModeEmulated
			cfg.PollInterval = emulatedPoll
		}
		p, err := runpod.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("runpod: %w", err)
		}
		ps = append(ps, p)
	}
	if c.Live(CloudTencent) || c.Emulators[CloudTencent] != "" {
		cfg := tencent.Config{SecretID: c.TencentSecretID, SecretKey: c.TencentSecretKey, Endpoint: c.TencentEndpoint,
			Regions: c.TencentRegions, ImageID: c.TencentImageID, Mode: gpuflow.ModeLive, Logger: logger}
		if !c.Live(CloudTencent) {
			cfg.SecretID, cfg.SecretKey = TencentEmulatorID, TencentEmulatorKey
			cfg.Endpoint, cfg.ImageID, cfg.Mode = c.Emulators[CloudTencent], "img-gpuflow1", gpuflow.ModeEmulated
			cfg.PollInterval = emulatedPoll
		}
		p, err := tencent.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("tencent: %w", err)
		}
		ps = append(ps, p)
	}
	if c.Live(CloudAlibaba) || c.Emulators[CloudAlibaba] != "" {
		cfg := alibaba.Config{AccessKeyID: c.AlibabaAccessKeyID, AccessKeySecret: c.AlibabaAccessKeySecret,
			Endpoint: c.AlibabaEndpoint, Regions: c.AlibabaRegions, ImageID: c.AlibabaImageID, Mode: gpuflow.ModeLive, Logger: logger}
		if !c.Live(CloudAlibaba) {
			cfg.AccessKeyID, cfg.AccessKeySecret = AlibabaEmulatorID, AlibabaEmulatorSecret
			cfg.Endpoint, cfg.Mode = c.Emulators[CloudAlibaba], gpuflow.ModeEmulated
		}
		p, err := alibaba.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("alibaba: %w", err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Keys the emulated clouds are started with by the dev command: well-known
// test values that only ever reach the in-process emulators.
const (
	TencentEmulatorID  = "AKIDgpuflowDevEmulator00000000000000"
	TencentEmulatorKey = "gpuflowDevEmulatorKey00000000000"

	AlibabaEmulatorID     = "LTAI5tGpuflowDevEmulator"
	AlibabaEmulatorSecret = "gpuflow-dev-emulator-secret" // #nosec G101 -- the dev-mode emulator's fixed, published key pair: only the local emulator accepts it
)

// emulatedPoll is how often watchers look at an emulated machine: emulated
// machines change state within a second.
const emulatedPoll = 250 * time.Millisecond

// CloudInfos describes every cloud for the API, whether configured or not.
var CloudInfos = []gpuflow.ProviderInfo{
	{Name: CloudRunPod, DisplayName: "RunPod", Description: "RunPod GPU cloud computing platform"},
	{Name: CloudTencent, DisplayName: "Tencent Cloud", Description: "Tencent Cloud TKE GPU computing"},
	{Name: CloudAlibaba, DisplayName: "Alibaba Cloud", Description: "Alibaba Cloud ECS GPU instances"},
}
