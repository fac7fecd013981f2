package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// assertNoLiveMachines checks, when the test ends, that no emulator still
// holds a machine: no leak, whatever happened.
func assertNoLiveMachines(t *testing.T, s *devstack.Stack) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(30 * time.Second)
		for name, e := range s.Emulators {
			for len(e.Live()) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if live := e.Live(); len(live) > 0 {
				t.Errorf("%s emulator still holds machines %v", name, live)
			}
		}
	})
}

// TestCloudJobThroughAgent: a GPU job runs on the emulated Tencent cloud
// through the real SDK; the emulated machine's job reports progress, output
// and its exit code to the API's agent endpoint with its job token, and the
// workflow tears the machine down.
func TestCloudJobThroughAgent(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())

	id := c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": "T4", "gpu_count": 1,
		"provider": "tencent", "env": map[string]string{emulate.EnvRunSeconds: "1"}})
	j := c.waitStatus(id, "succeeded", 60*time.Second)
	if j["provider"] != "tencent" || j["exit_code"].(float64) != 0 {
		t.Fatalf("job %v", j)
	}
	if logs := c.logs(id); !strings.Contains(logs, "emulated job "+id) {
		t.Fatalf("logs %q", logs)
	}
	code, ev := c.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
	if code != http.StatusOK || !strings.Contains(fmtJSON(ev), "job.progress") {
		t.Fatalf("events %d %v", code, ev)
	}

	// The same on the emulated Alibaba cloud, through the real ECS SDK.
	id = c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": "A10", "gpu_count": 1,
		"provider": "alibaba", "env": map[string]string{emulate.EnvRunSeconds: "0.5"}})
	if j := c.waitStatus(id, "succeeded", 60*time.Second); j["provider"] != "alibaba" {
		t.Fatalf("job %v", j)
	}

	// The exit code the machine reports decides the outcome.
	id = c.submit(map[string]any{"command": []string{"false"}, "gpu_type": "T4", "gpu_count": 1,
		"provider": "tencent", "env": map[string]string{emulate.EnvRunSeconds: "0.5", emulate.EnvExitCode: "3"}})
	if j := c.waitStatus(id, "failed", 60*time.Second); j["exit_code"].(float64) != 3 {
		t.Fatalf("job %v", j)
	}
}

// TestCloudNoCapacityFailsOver: with Tencent out of capacity the job runs
// on RunPod, and the failed attempt is recorded.
func TestCloudNoCapacityFailsOver(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	s.Emulators["tencent"].Faults().Set(emulate.Faults{NoCapacity: true})

	id := c.submit(map[string]any{"command": []string{"train"}, "gpu_type": "A100", "gpu_count": 1,
		"providers": []string{"tencent", "runpod"}, "strategy": "cost", "env": map[string]string{emulate.EnvRunSeconds: "0.5"}})
	j := c.waitStatus(id, "succeeded", 60*time.Second)
	if j["provider"] != "runpod" {
		t.Fatalf("job ran on %v: %v", j["provider"], j)
	}
	for _, a := range j["attempts"].([]any) {
		at := a.(map[string]any)
		if at["provider"] == "tencent" && at["outcome"] != "no capacity" {
			t.Fatalf("tencent attempt %v", at)
		}
	}
}

// TestCloudCancelDuringProvisioning: a job cancelled while its machine is
// being created still has that machine torn down.
func TestCloudCancelDuringProvisioning(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	s.Emulators["runpod"].Faults().Set(emulate.Faults{Slow: time.Second})
	id := c.submit(map[string]any{"command": []string{"train"}, "gpu_type": "RTX4090", "gpu_count": 1, "provider": "runpod"})
	c.waitStatus(id, "provisioning", 30*time.Second)
	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", nil); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", code, out)
	}
	c.waitStatus(id, "cancelled", 60*time.Second)
}
