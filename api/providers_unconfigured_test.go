package api

import (
	"net/http"
	"testing"

	"github.com/gpuflow/gpuflow"
)

func TestProvidersUnconfigured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.cfg.Unconfigured = []gpuflow.ProviderInfo{
		{Name: "runpod", DisplayName: "RunPod"}, // configured in setup: listed once, as configured
		{Name: "alibaba", DisplayName: "Alibaba Cloud", Description: "Alibaba Cloud ECS GPU instances"},
	}
	rec := b.do(t, http.MethodGet, "/api/gpu/providers", "", b.as(aliceID))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	got := decode[struct {
		Providers []providerView `json:"providers"`
	}](t, rec)
	modes := map[string]string{}
	for _, p := range got.Providers {
		if _, dup := modes[p.Name]; dup {
			t.Fatalf("%s listed twice", p.Name)
		}
		modes[p.Name] = p.Mode
	}
	if modes["alibaba"] != gpuflow.ModeUnconfigured || modes["runpod"] != gpuflow.ModeLive {
		t.Fatalf("modes %v", modes)
	}
	rec = b.do(t, http.MethodGet, "/api/gpu/providers/alibaba/gpus", "", b.as(aliceID))
	if rec.Code != http.StatusOK || decode[map[string]any](t, rec)["mode"] != gpuflow.ModeUnconfigured {
		t.Fatalf("alibaba gpus: %d %s", rec.Code, rec.Body)
	}
}
