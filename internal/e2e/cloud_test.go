package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
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

// TestCloudSpotPreemptionRecovers: a running spot pod is preempted; the
// workflow notices, tears it down and provisions again, and the job
// succeeds with the restart recorded.
func TestCloudSpotPreemptionRecovers(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"train"}, "gpu_type": "RTX4090", "gpu_count": 1, "provider": "runpod",
		"spot": true, "max_restarts": 2, "env": map[string]string{emulate.EnvRunSeconds: "4"}})
	j := c.waitStatus(id, "running", 60*time.Second)
	machine := j["instance_id"].(string)
	if err := s.Emulators["runpod"].Preempt(machine); err != nil {
		t.Fatalf("preempt %s: %v", machine, err)
	}
	j = c.waitStatus(id, "succeeded", 90*time.Second)
	attempts := j["attempts"].([]any)
	if len(attempts) != 2 || attempts[0].(map[string]any)["outcome"] != "preempted" || j["instance_id"] == machine {
		t.Fatalf("attempts %v, machine %v (first %s)", attempts, j["instance_id"], machine)
	}
}

// TestCloudFaults: a create that succeeds but answers 500 leaves exactly one
// machine (none is left behind when the job ends), and a terminate refused
// five times is retried until the machine is gone.
func TestCloudFaults(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	tc := s.Emulators["tencent"]

	tc.Faults().Set(emulate.Faults{CreateLost: 1})
	id := c.submit(map[string]any{"command": []string{"train"}, "gpu_type": "T4", "gpu_count": 1, "provider": "tencent",
		"env": map[string]string{emulate.EnvRunSeconds: "0.5"}})
	c.waitStatus(id, "running", 60*time.Second)
	if live := tc.Live(); len(live) != 1 {
		t.Fatalf("after a lost create answer the emulator holds %v, want exactly one machine", live)
	}
	c.waitStatus(id, "succeeded", 60*time.Second)

	tc.Faults().Set(emulate.Faults{TerminateFailures: 5})
	id = c.submit(map[string]any{"command": []string{"train"}, "gpu_type": "T4", "gpu_count": 1, "provider": "tencent",
		"env": map[string]string{emulate.EnvRunSeconds: "0.5"}})
	c.waitStatus(id, "succeeded", 120*time.Second)
	if live := tc.Live(); len(live) != 0 {
		t.Fatalf("job succeeded while its machine %v lives", live)
	}
	if left := tc.Faults().Get().TerminateFailures; left != 0 {
		t.Fatalf("%d terminate failures left unused", left)
	}
}

// TestSecretsStayOut: a full job on each emulated cloud with known fake
// keys; no key, nor the JWT secret, appears in any log line or API answer.
func TestSecretsStayOut(t *testing.T) {
	cfg := testConfig(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := devstack.Start(context.Background(), cfg, devstack.Options{InMemoryTemporal: true, NoUI: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	assertNoLiveMachines(t, s)
	t.Cleanup(func() {
		if t.Failed() {
			l := logs.String()
			t.Logf("last logs:\n%s", l[max(0, len(l)-20000):])
		}
	})
	c := newAPI(t, s.APIURL())
	var answers strings.Builder
	for _, spec := range []map[string]any{
		{"command": []string{"t"}, "gpu_type": "T4", "gpu_count": 1, "provider": "tencent"},
		{"command": []string{"t"}, "gpu_type": "A10", "gpu_count": 1, "provider": "alibaba"},
		{"command": []string{"t"}, "gpu_type": "RTX4090", "gpu_count": 1, "provider": "runpod"},
	} {
		spec["env"] = map[string]string{emulate.EnvRunSeconds: "0.3"}
		id := c.submit(spec)
		answers.WriteString(fmtJSON(c.waitStatus(id, "succeeded", 60*time.Second)))
		_, ev := c.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
		answers.WriteString(fmtJSON(ev) + c.logs(id))
	}
	_, prov := c.do(http.MethodGet, "/api/gpu/providers", nil)
	answers.WriteString(fmtJSON(prov))
	secrets := map[string]string{
		"tencent secret key": app.TencentEmulatorKey, "alibaba secret": app.AlibabaEmulatorSecret,
		"runpod key": "gpuflow-emulator-key", "jwt secret": s.Config.JWTSecret,
	}
	for name, secret := range secrets {
		if secret == "" {
			t.Fatalf("%s unknown", name)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the %s appears in the logs", name)
		}
		if strings.Contains(answers.String(), secret) {
			t.Errorf("the %s appears in an API answer", name)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("no logs captured")
	}
}
