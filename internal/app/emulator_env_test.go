package app

import (
	"log/slog"
	"testing"

	"github.com/gpuflow/gpuflow"
)

func TestEmulatorURLsFromEnv(t *testing.T) {
	env := map[string]string{
		"RUNPOD_EMULATOR_URL":        "http://127.0.0.1:9001/",
		"TENCENTCLOUD_EMULATOR_URL":  "http://127.0.0.1:9002",
		"ALIBABA_CLOUD_EMULATOR_URL": "http://127.0.0.1:9003",
		// A cloud with credentials runs live whatever its emulator URL.
		"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
	}
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{CloudRunPod: "http://127.0.0.1:9001", CloudTencent: "http://127.0.0.1:9002", CloudAlibaba: "http://127.0.0.1:9003"}
	for name, u := range want {
		if got := cfg.Clouds.Emulators[name]; got != u {
			t.Errorf("Emulators[%s] = %q, want %q", name, got, u)
		}
	}
	for _, v := range EmulatorURLEnv {
		found := false
		for _, e := range EnvVars {
			found = found || e == v
		}
		if !found {
			t.Errorf("%s not in EnvVars", v)
		}
	}
	cfg.LocalEnabled = false
	ps, err := NewProviders(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, p := range ps {
		modes[p.Info().Name] = p.Info().Mode
	}
	if modes[CloudRunPod] != gpuflow.ModeEmulated || modes[CloudTencent] != gpuflow.ModeEmulated || modes[CloudAlibaba] != gpuflow.ModeLive {
		t.Errorf("modes = %v, want runpod and tencent emulated, alibaba live", modes)
	}
}
