package runpod_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

func TestInfo(t *testing.T) {
	e := setup(t)
	info := e.p.Info()
	want := gpuflow.ProviderInfo{Name: "runpod", DisplayName: "RunPod", Description: "RunPod GPU cloud computing platform", Mode: gpuflow.ModeEmulated}
	if info != want {
		t.Errorf("info %+v, want %+v", info, want)
	}
	if got := e.p.PollInterval(); got != 20*time.Millisecond {
		t.Errorf("poll interval %v", got)
	}
	p, err := runpod.New(runpod.Config{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if p.Info().Mode != gpuflow.ModeLive {
		t.Errorf("default mode %q", p.Info().Mode)
	}
	if _, err := runpod.New(runpod.Config{APIKey: testKey, Cloud: "MOON"}); err == nil {
		t.Error("cloud MOON accepted")
	}
}

// TestLifecycle creates an on-demand pod, watches it through every state,
// sees its job report to the agent endpoint, and terminates it.
func TestLifecycle(t *testing.T) {
	e := setup(t)
	req := e.request("job-life", false)
	req.Spec.Env[emulate.EnvExitCode] = "3"
	m := e.provision(req)
	if m.ID == "" || m.Provider != runpod.Name || m.State != gpuflow.MachinePending {
		t.Fatalf("provisioned %+v", m)
	}
	if m.GPUType != "NVIDIA GeForce RTX 4090" || m.GPUCount != 1 || m.PricePerHour != 0.44 || m.Region == "" {
		t.Errorf("machine %+v", m)
	}
	if m.Tags[gpuflow.TagManaged] != "true" || m.Tags[gpuflow.TagJob] != "job-life" || m.Tags["team"] != "ml" {
		t.Errorf("tags %v", m.Tags)
	}
	seen := e.waitState(m.ID, gpuflow.MachineRunning)
	want := []gpuflow.MachineState{gpuflow.MachinePending, gpuflow.MachineStarting, gpuflow.MachineRunning}
	if !slices.Equal(seen, want) {
		t.Errorf("states %v, want %v", seen, want)
	}

	// What was sent: REST v2 create with the pod name, the runner running
	// the command as args, the job's env plus the agent endpoint, the
	// runner and the tags.
	creates := e.requests("POST", "/v2/pods")
	if len(creates) != 1 {
		t.Fatalf("%d creates", len(creates))
	}
	var body struct {
		Name  string            `json:"name"`
		Image string            `json:"image"`
		Args  string            `json:"args"`
		Cloud string            `json:"cloud"`
		Disk  int               `json:"disk"`
		Env   map[string]string `json:"env"`
		GPU   struct {
			ID    string `json:"id"`
			Count int    `json:"count"`
		} `json:"gpu"`
	}
	if err := json.Unmarshal(creates[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Name != runpod.PodName("job-life-a1") || body.Name != "gpuflow-job-life-a1" {
		t.Errorf("name %q", body.Name)
	}
	if body.Image != agentscript.DefaultImage || body.Args != `sh -c 'eval "$GPUFLOW_RUNNER"' gpuflow python train.py --name 'it'\''s'` || body.Cloud != "SECURE" || body.Disk != runpod.DefaultDiskGB {
		t.Errorf("body %+v", body)
	}
	if body.GPU.ID != "NVIDIA GeForce RTX 4090" || body.GPU.Count != 1 {
		t.Errorf("gpu %+v", body.GPU)
	}
	if body.Env["FOO"] != "bar" || body.Env[agentscript.EnvAgentURL] != req.Agent.URL || body.Env[agentscript.EnvAgentToken] != agentToken ||
		body.Env[agentscript.EnvJobID] != "job-life" || body.Env[runpod.EnvSpot] != "" ||
		body.Env[agentscript.EnvRunner] != agentscript.Runner() || !strings.HasPrefix(body.Env[agentscript.EnvStateDir], runpod.StateMount+"/") {
		t.Errorf("env %v", body.Env)
	}

	// The emulated job reports through the agent endpoint, with the token.
	eventually(t, "the job's exit code", func() bool { _, ok := e.agent.finished("job-life"); return ok })
	if code, _ := e.agent.finished("job-life"); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	var progress bool
	for _, c := range e.agent.Calls() {
		if c.Auth != "Bearer "+agentToken {
			t.Errorf("agent call %s with auth %q", c.Path, c.Auth)
		}
		progress = progress || c.Path == "/agent/jobs/job-life/progress"
	}
	if !progress {
		t.Error("no progress reported")
	}
	// RunPod restarts a container whose command ends: the pod still runs
	// until gpuflow terminates it.
	if m := e.describe(m.ID); m.State != gpuflow.MachineRunning {
		t.Errorf("after the job, the pod is %s", m.State)
	}
	e.terminate(m.ID)
	if err := e.p.Terminate(context.Background(), m.ID); err != nil {
		t.Errorf("second terminate: %v", err)
	}
}

func TestProvisionIsIdempotent(t *testing.T) {
	e := setup(t)
	req := e.request("job-idem", false)
	m1 := e.provision(req)
	m2 := e.provision(req)
	if m1.ID != m2.ID {
		t.Errorf("same key gave pods %s and %s", m1.ID, m2.ID)
	}
	if n := len(e.requests("POST", "/v2/pods")); n != 1 {
		t.Errorf("%d creates for one key", n)
	}
	other := req
	other.IdempotencyKey = "job-idem-a2"
	m3 := e.provision(other)
	if m3.ID == m1.ID {
		t.Error("a new attempt got the old pod")
	}
	if live := e.em.Live(); len(live) != 2 {
		t.Errorf("live pods %v", live)
	}
	e.terminate(m1.ID)
	e.terminate(m3.ID)
}

// TestProvisionFirstTryListsNothing: on an activity's first attempt no pod
// of its key can exist, so Provision skips the listing of every pod (at
// 3,333 pods the ramp of 10,000 jobs spent 20 % of its CPU decoding those
// listings); a retry of the same key still finds the pod the first made.
func TestProvisionFirstTryListsNothing(t *testing.T) {
	e := setup(t)
	req := e.request("job-first", false)
	req.FirstTry = true
	m1 := e.provision(req)
	if n := len(e.requests("GET", "/v2/pods")); n != 0 {
		t.Errorf("%d listings for a first try, want none", n)
	}
	req.FirstTry = false
	if m2 := e.provision(req); m2.ID != m1.ID {
		t.Errorf("the retry gave pod %s, want %s", m2.ID, m1.ID)
	}
	if n := len(e.requests("POST", "/v2/pods")); n != 1 {
		t.Errorf("%d creates for one key", n)
	}
	e.terminate(m1.ID)
}

// TestCreateLost: RunPod creates the pod and answers 500. The adapter finds
// it by name instead of failing, and a retry returns the same pod.
func TestCreateLost(t *testing.T) {
	for _, spot := range []bool{false, true} {
		t.Run(fmt.Sprintf("spot=%v", spot), func(t *testing.T) {
			e := setup(t)
			req := e.request("job-lost", spot)
			e.em.Faults().Set(emulate.Faults{CreateLost: 1})
			m := e.provision(req)
			live := e.em.Live()
			if len(live) != 1 || live[0] != m.ID {
				t.Fatalf("live %v, provisioned %s", live, m.ID)
			}
			if again := e.provision(req); again.ID != m.ID {
				t.Errorf("retry gave %s, want %s", again.ID, m.ID)
			}
			if live := e.em.Live(); len(live) != 1 {
				t.Errorf("live after retry %v", live)
			}
			if !strings.Contains(e.logs.String(), "create failed but the pod exists") {
				t.Error("the lost create was not logged")
			}
			e.terminate(m.ID)
		})
	}
}

// TestCreateTimeout: the create gets no answer in time but happens. The
// adapter's retry finds the pod by name: exactly one pod.
func TestCreateTimeout(t *testing.T) {
	e := setup(t, func(c *runpod.Config) { c.Timeout = 100 * time.Millisecond })
	req := e.request("job-timeout", true)
	e.onGraphQL(func() { e.em.Faults().Set(emulate.Faults{Slow: 300 * time.Millisecond}) })
	_, err := e.p.Provision(context.Background(), req)
	if pe := providerError(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "timeout" {
		t.Fatalf("slow create: %v", err)
	}
	eventually(t, "the slow create to land", func() bool { return len(e.em.Live()) == 1 })
	e.em.Faults().Set(emulate.Faults{})
	m := e.provision(req)
	if live := e.em.Live(); len(live) != 1 || live[0] != m.ID {
		t.Errorf("live %v, retry gave %s", live, m.ID)
	}
	e.terminate(m.ID)
}

// TestFaults: every fault switch comes back as the right error kind.
func TestFaults(t *testing.T) {
	cases := []struct {
		name   string
		faults emulate.Faults
		cfg    func(*runpod.Config)
		call   func(e *env) error
		kind   gpuflow.ProviderErrorKind
		check  func(t *testing.T, pe *gpuflow.ProviderError)
	}{
		{
			name: "no capacity", faults: emulate.Faults{NoCapacity: true},
			call: func(e *env) error { _, err := e.p.Provision(context.Background(), e.request("j", false)); return err },
			kind: gpuflow.KindNoCapacity,
			check: func(t *testing.T, pe *gpuflow.ProviderError) {
				if pe.Code != "400" || !strings.Contains(pe.Error(), "no longer any instances available") {
					t.Errorf("error %v", pe)
				}
			},
		},
		{
			name: "no capacity spot", faults: emulate.Faults{NoCapacity: true},
			call: func(e *env) error { _, err := e.p.Provision(context.Background(), e.request("j", true)); return err },
			kind: gpuflow.KindNoCapacity,
		},
		{
			name: "throttle", faults: emulate.Faults{Throttle: true},
			call: func(e *env) error { _, err := e.p.Describe(context.Background(), "abc"); return err },
			kind: gpuflow.KindTransient,
			check: func(t *testing.T, pe *gpuflow.ProviderError) {
				if pe.RetryAfter != time.Second || pe.Code != "429" {
					t.Errorf("retry after %v, code %q", pe.RetryAfter, pe.Code)
				}
			},
		},
		{
			name: "throttle graphql",
			call: func(e *env) error {
				// the name lookup is REST: throttle the rent alone
				e.onGraphQL(func() { e.em.Faults().Set(emulate.Faults{Throttle: true}) })
				_, err := e.p.Provision(context.Background(), e.request("j", true))
				return err
			},
			kind: gpuflow.KindTransient,
			check: func(t *testing.T, pe *gpuflow.ProviderError) {
				if pe.RetryAfter != time.Second || pe.Code != "graphql-429" {
					t.Errorf("retry after %v, code %q", pe.RetryAfter, pe.Code)
				}
			},
		},
		{
			name: "server error graphql",
			call: func(e *env) error {
				e.onGraphQL(func() { e.em.Faults().Set(emulate.Faults{ServerErrors: 1}) })
				_, err := e.p.Provision(context.Background(), e.request("j", true))
				return err
			},
			kind: gpuflow.KindTransient,
		},
		{
			name: "server error", faults: emulate.Faults{ServerErrors: 1},
			call: func(e *env) error { _, err := e.p.List(context.Background()); return err },
			kind: gpuflow.KindTransient,
			check: func(t *testing.T, pe *gpuflow.ProviderError) {
				if pe.Code != "500" {
					t.Errorf("code %q", pe.Code)
				}
			},
		},
		{
			name: "slow", faults: emulate.Faults{Slow: 300 * time.Millisecond},
			cfg:  func(c *runpod.Config) { c.Timeout = 50 * time.Millisecond },
			call: func(e *env) error { return e.p.Health(context.Background()) },
			kind: gpuflow.KindTransient,
			check: func(t *testing.T, pe *gpuflow.ProviderError) {
				if pe.Code != "timeout" {
					t.Errorf("code %q in %v", pe.Code, pe)
				}
			},
		},
		{
			name: "wrong key",
			cfg:  func(c *runpod.Config) { c.APIKey = "rpa_WRONG" },
			call: func(e *env) error { _, err := e.p.Provision(context.Background(), e.request("j", false)); return err },
			kind: gpuflow.KindAuth,
		},
		{
			name: "too many gpus",
			call: func(e *env) error {
				req := e.request("j", false)
				req.Spec.GPUCount = 9
				_, err := e.p.Provision(context.Background(), req)
				return err
			},
			kind: gpuflow.KindInvalidRequest,
		},
		{
			name: "cpu only",
			call: func(e *env) error {
				req := e.request("j", false)
				req.Spec.GPUCount = 0
				_, err := e.p.Provision(context.Background(), req)
				return err
			},
			kind: gpuflow.KindInvalidRequest,
		},
		{
			name: "no agent",
			call: func(e *env) error {
				req := e.request("j", false)
				req.Agent = nil
				_, err := e.p.Provision(context.Background(), req)
				return err
			},
			kind: gpuflow.KindInvalidRequest,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*runpod.Config)
			if tc.cfg != nil {
				mods = append(mods, tc.cfg)
			}
			e := setup(t, mods...)
			e.offer("NVIDIA GeForce RTX 4090") // warm the offer cache before the fault
			e.em.Faults().Set(tc.faults)
			err := tc.call(e)
			e.em.Faults().Set(emulate.Faults{})
			if err == nil {
				t.Fatal("no error")
			}
			pe := providerError(t, err)
			if pe.Kind != tc.kind {
				t.Errorf("kind %s, want %s: %v", pe.Kind, tc.kind, err)
			}
			if tc.check != nil {
				tc.check(t, pe)
			}
			if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), agentToken) {
				t.Errorf("a secret in the error: %v", err)
			}
			if live := e.em.Live(); len(live) != 0 {
				t.Errorf("pods after a failed call: %v", live)
			}
		})
	}
}

func TestSpotPreemption(t *testing.T) {
	e := setup(t)
	req := e.request("job-spot", true)
	req.MaxDuration = 2 * time.Hour
	before := time.Now()
	m := e.provision(req)
	if m.State != gpuflow.MachinePending || m.PricePerHour != 0.29 {
		t.Errorf("machine %+v", m)
	}
	var rents []emulator.Request
	for _, r := range e.requests("POST", "/graphql") {
		if strings.Contains(string(r.Body), "podRentInterruptable") {
			rents = append(rents, r)
		}
	}
	if len(rents) != 1 {
		t.Fatalf("%d rents", len(rents))
	}
	var gql struct {
		Query     string `json:"query"`
		Variables struct {
			Input map[string]any `json:"input"`
		} `json:"variables"`
	}
	if err := json.Unmarshal(rents[0].Body, &gql); err != nil {
		t.Fatal(err)
	}
	in := gql.Variables.Input
	if !strings.Contains(gql.Query, "podRentInterruptable") || in["bidPerGpu"] != 0.29 || in["gpuTypeId"] != "NVIDIA GeForce RTX 4090" ||
		in["name"] != "gpuflow-job-spot-a1" || in["cloudType"] != "SECURE" {
		t.Errorf("rent %s %v", gql.Query, redactBody(rents[0].Body))
	}
	after, err := time.Parse(time.RFC3339, fmt.Sprint(in["terminateAfter"]))
	if err != nil {
		t.Fatalf("terminateAfter %v: %v", in["terminateAfter"], err)
	}
	if lo, hi := before.Add(2*time.Hour+runpod.DefaultSafetyMargin), time.Now().Add(2*time.Hour+runpod.DefaultSafetyMargin+time.Second); after.Before(lo.Truncate(time.Second)) || after.After(hi) {
		t.Errorf("terminateAfter %v, want between %v and %v", after, lo, hi)
	}
	var spotEnv, token bool
	for _, kv := range in["env"].([]any) {
		kv := kv.(map[string]any)
		spotEnv = spotEnv || kv["key"] == runpod.EnvSpot && kv["value"] == "true"
		token = token || kv["key"] == agentscript.EnvAgentToken && kv["value"] == agentToken
	}
	if !spotEnv || !token {
		t.Errorf("env %v", in["env"])
	}

	e.waitState(m.ID, gpuflow.MachineRunning)
	if err := e.em.Preempt(m.ID); err != nil {
		t.Fatal(err)
	}
	got := e.describe(m.ID)
	if got.State != gpuflow.MachineFailed || !strings.Contains(got.Reason, "preempted") {
		t.Errorf("after preemption %+v", got)
	}
	if _, ok := e.agent.finished("job-spot"); ok {
		t.Error("a preempted job reported an exit code")
	}
	e.terminate(m.ID)
}

// TestSafetyTimer: RunPod removes a spot pod at terminateAfter even if
// gpuflow never terminates it.
func TestSafetyTimer(t *testing.T) {
	e := setup(t, func(c *runpod.Config) { c.SafetyMargin = 100 * time.Millisecond })
	req := e.request("job-timer", true)
	req.MaxDuration = 200 * time.Millisecond
	// terminateAfter has second precision, rounded up: the pod goes after
	// 300ms to 1.3s.
	m := e.provision(req)
	if got := e.describe(m.ID); got.State == gpuflow.MachineGone {
		t.Fatal("the safety timer fired early")
	}
	eventually(t, "the safety timer", func() bool { return e.describe(m.ID).State == gpuflow.MachineGone })
}

func TestTerminateFailures(t *testing.T) {
	e := setup(t)
	m := e.provision(e.request("job-tf", false))
	e.em.Faults().Set(emulate.Faults{TerminateFailures: 2})
	for i := range 2 {
		err := e.p.Terminate(context.Background(), m.ID)
		if err == nil {
			t.Fatalf("terminate %d succeeded", i)
		}
		if pe := providerError(t, err); pe.Kind != gpuflow.KindTransient {
			t.Errorf("terminate %d: kind %s", i, pe.Kind)
		}
		if got := e.describe(m.ID); got.State == gpuflow.MachineGone {
			t.Fatalf("gone after failed terminate %d", i)
		}
	}
	e.terminate(m.ID)
}

func TestTerminateAndDescribeUnknown(t *testing.T) {
	e := setup(t)
	if err := e.p.Terminate(context.Background(), "zzzzzzzzzzzzzz"); err != nil {
		t.Errorf("terminate unknown: %v", err)
	}
	if m := e.describe("zzzzzzzzzzzzzz"); m.State != gpuflow.MachineGone || m.ID != "zzzzzzzzzzzzzz" {
		t.Errorf("describe unknown: %+v", m)
	}
}

func TestList(t *testing.T) {
	e := setup(t)
	a := e.provision(e.request("job-a", false))
	b := e.provision(e.request("job-b", true))
	status, body := e.rawCall("POST", "/v2/pods", `{"name":"someone-else","image":"busybox","gpu":{"id":"NVIDIA GeForce RTX 4090","count":1}}`)
	if status != 201 {
		t.Fatalf("foreign pod: %d %s", status, body)
	}
	var foreign struct{ ID string }
	_ = json.Unmarshal(body, &foreign)
	ms, err := e.p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]string{}
	for _, m := range ms {
		if m.Tags[gpuflow.TagManaged] != "true" {
			t.Errorf("untagged machine %+v", m)
		}
		jobs[m.ID] = m.Tags[gpuflow.TagJob]
	}
	if len(ms) != 2 || jobs[a.ID] != "job-a" || jobs[b.ID] != "job-b" {
		t.Errorf("list %+v", ms)
	}
	e.terminate(a.ID)
	e.terminate(b.ID)
	if status, body := e.rawCall("DELETE", "/v2/pods/"+foreign.ID, ""); status != 204 {
		t.Errorf("delete foreign: %d %s", status, body)
	}
	if ms, err := e.p.List(context.Background()); err != nil || len(ms) != 0 {
		t.Errorf("list after terminate: %v %v", ms, err)
	}
}

func TestOffersLive(t *testing.T) {
	e := setup(t)
	offers, err := e.p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]gpuflow.Offer{}
	for _, o := range offers {
		byType[o.GPUType] = o
		if o.Provider != runpod.Name || o.Region != "" {
			t.Errorf("offer %+v", o)
		}
	}
	want := gpuflow.Offer{Provider: "runpod", GPUType: "NVIDIA GeForce RTX 4090", GPUCount: 8, GPUMemoryGB: 24,
		PricePerHour: 0.44, SpotPricePerHour: 0.29, Available: 10, Divisible: true}
	if got := byType["NVIDIA GeForce RTX 4090"]; got != want {
		t.Errorf("4090 offer %+v, want %+v", got, want)
	}
	if _, ok := byType["NVIDIA GeForce RTX 3090"]; ok {
		t.Error("a community-only GPU offered in the secure cloud")
	}
	if !slices.IsSortedFunc(offers, func(a, b gpuflow.Offer) int { return int(math.Copysign(1, a.PricePerHour-b.PricePerHour)) }) {
		t.Errorf("offers not cheapest first: %v", offers)
	}
	if !gpuflow.SameGPUType(want.GPUType, "RTX4090") {
		t.Error("the offer's GPU type does not match the job's")
	}
	// cached: no second catalogue read
	if _, err := e.p.Offers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.requests("GET", "/v2/catalog/gpus")); n != 1 {
		t.Errorf("%d catalogue reads", n)
	}
}

func TestOffersDataCentersAndFilter(t *testing.T) {
	e := setup(t, func(c *runpod.Config) {
		c.DataCenterIDs = []string{"EU-RO-1", "XX-NOPE-1"}
		c.GPUTypes = []string{"H100"}
	})
	offers, err := e.p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 4 { // two H100 types in the emulator's catalogue, two data centers each
		t.Fatalf("offers %+v", offers)
	}
	for _, o := range offers {
		if !gpuflow.SameGPUType(o.GPUType, "H100") {
			t.Errorf("filtered offer %+v", o)
		}
		if (o.Region == "EU-RO-1") != (o.Available == 10) || (o.Region == "XX-NOPE-1") != (o.Available == 0) {
			t.Errorf("stock of %+v", o)
		}
	}
	if offers[len(offers)-1].Available != 0 {
		t.Error("offers out of stock not last")
	}
	// Provision places in the offer's data center.
	m := e.provision(e.requestFor("job-dc", false, offers[0]))
	if m.Region != "EU-RO-1" || !gpuflow.SameGPUType(m.GPUType, "H100") {
		t.Errorf("machine %+v", m)
	}
	e.terminate(m.ID)
}

func TestOffersOutOfStock(t *testing.T) {
	e := setup(t)
	e.em.Faults().Set(emulate.Faults{NoCapacity: true})
	offers, err := e.p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offers {
		if o.Available != 0 {
			t.Errorf("offer in stock under no capacity: %+v", o)
		}
	}
}

func TestOffersFallback(t *testing.T) {
	e := setup(t)
	e.em.Faults().Set(emulate.Faults{ServerErrors: 100})
	offers, err := e.p.Offers(context.Background())
	e.em.Faults().Set(emulate.Faults{})
	if err != nil {
		t.Fatal(err)
	}
	var h100 *gpuflow.Offer
	for i, o := range offers {
		if o.Available != -1 || o.SpotPricePerHour != 0 {
			t.Errorf("fallback offer %+v", o)
		}
		if o.GPUType == "NVIDIA H100 80GB HBM3" {
			h100 = &offers[i]
		}
	}
	if h100 == nil || h100.PricePerHour != 3.99 || h100.GPUMemoryGB != 80 || h100.GPUCount != 8 {
		t.Errorf("H100 SXM fallback offer %+v", h100)
	}
	if !strings.Contains(e.logs.String(), "built-in catalogue") {
		t.Error("the fallback was not logged")
	}
	// not cached: the live catalogue answers again once it can
	live, err := e.p.Offers(context.Background())
	if err != nil || len(live) == 0 || live[0].Available == -1 {
		t.Errorf("offers after recovery %v %v", live, err)
	}
	// a provider without a key offers the catalogue without calling
	p, err := runpod.New(runpod.Config{BaseURL: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	n := len(e.em.Requests())
	if offers, err := p.Offers(context.Background()); err != nil || len(offers) == 0 {
		t.Errorf("offers without a key: %v %v", offers, err)
	}
	if len(e.em.Requests()) != n {
		t.Error("a call without a key")
	}
}

func TestHealth(t *testing.T) {
	e := setup(t)
	if err := e.p.Health(context.Background()); err != nil {
		t.Errorf("health: %v", err)
	}
	bad, err := runpod.New(runpod.Config{APIKey: "rpa_WRONG", BaseURL: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if pe := providerError(t, bad.Health(context.Background())); pe.Kind != gpuflow.KindAuth || pe.Code != "401" {
		t.Errorf("wrong key: %v", pe)
	}
	none, err := runpod.New(runpod.Config{BaseURL: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	req := e.request("j", false)
	n := len(e.em.Requests())
	if pe := providerError(t, none.Health(context.Background())); pe.Kind != gpuflow.KindAuth {
		t.Errorf("no key: %v", pe)
	}
	for _, call := range []func() error{
		func() error { _, err := none.Describe(context.Background(), "x"); return err },
		func() error { return none.Terminate(context.Background(), "x") },
		func() error { _, err := none.List(context.Background()); return err },
		func() error { _, err := none.Provision(context.Background(), req); return err },
	} {
		if pe := providerError(t, call()); pe.Kind != gpuflow.KindAuth {
			t.Errorf("no key: %v", pe)
		}
	}
	if len(e.em.Requests()) != n {
		t.Errorf("%d calls without a key", len(e.em.Requests())-n)
	}
}

// TestSecretsRedacted: the config never prints its key (the logs of every
// test are searched for the key and the agent token by setup).
func TestSecretsRedacted(t *testing.T) {
	cfg := runpod.Config{APIKey: testKey, BaseURL: "http://x"}
	var logs syncBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logs.String()} {
		if strings.Contains(s, testKey) {
			t.Errorf("key shown: %s", s)
		}
		if !strings.Contains(s, "redacted") {
			t.Errorf("no redaction mark: %s", s)
		}
	}
	e := setup(t, func(c *runpod.Config) { c.APIKey = testKey + "x" })
	_, err := e.p.List(context.Background())
	if err == nil || strings.Contains(err.Error(), testKey) {
		t.Errorf("error %v", err)
	}
}

func TestPodName(t *testing.T) {
	if got := runpod.PodName("3f1c-a1"); got != "gpuflow-3f1c-a1" {
		t.Errorf("plain key: %q", got)
	}
	long := strings.Repeat("k", 100)
	a, b := runpod.PodName(long), runpod.PodName(long+"x")
	if len(a) > 63 || a == b || !strings.HasPrefix(a, runpod.NamePrefix) {
		t.Errorf("long keys: %q %q", a, b)
	}
	if x, y := runpod.PodName("a/b"), runpod.PodName("a b"); x == y || strings.ContainsAny(x, "/ ") {
		t.Errorf("odd keys: %q %q", x, y)
	}
	if key := "a/b"; runpod.PodName(key) != runpod.PodName(strings.Clone(key)) {
		t.Error("not deterministic")
	}
}

// TestRequestsMatchSpec checks the client's requests, and the emulator's
// answers, against RunPod's published OpenAPI v2 spec.
func TestRequestsMatchSpec(t *testing.T) {
	s := loadSpec(t)
	if s == nil {
		t.Skipf("RunPod's OpenAPI v2 spec (%s) not found above %s: the request check needs the shared reference folder", specRel, mustGetwd())
	}
	t.Logf("spec: %s", s.path)
	// The validator is real: it refuses what RunPod refuses.
	for _, bad := range []string{
		`{"name":"x","image":"i","gpu":{"id":"NVIDIA A40","count":1},"interruptible":true}`,
		`{"name":"x","image":"i","gpu":{"id":"NVIDIA A40","count":0}}`,
		`{"name":"","image":"i","gpu":{"id":"NVIDIA A40"}}`,
		`{"name":"x","gpu":{"id":"NVIDIA A40"}}`,
		`{"name":"x","image":"i","env":[{"key":"A","value":"b"}],"gpu":{"id":"NVIDIA A40"}}`,
	} {
		if err := s.validate("CreatePodRequest", []byte(bad)); err == nil {
			t.Errorf("the spec validator accepted %s", bad)
		}
	}
	e := setup(t)
	req := e.request("job-spec", false)
	req.Spec.DiskGB = 20
	m := e.provision(req)
	spot := e.provision(e.request("job-spec-spot", true))
	e.waitState(m.ID, gpuflow.MachineRunning)
	if _, err := e.p.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	// the emulator's own endpoints the client does not use
	if status, body := e.rawCall("POST", "/v2/pods/"+m.ID+"/action", `{"action":"stop"}`); status != 200 {
		t.Errorf("stop: %d %s", status, body)
	}
	if status, _ := e.rawInvalid("POST", "/v2/pods/"+m.ID+"/action", `{"action":"fly"}`); status != 422 {
		t.Errorf("bad action: %d", status)
	}
	if status, _ := e.rawInvalid("POST", "/v2/pods", `{"name":"x","image":"i","gpu":{"id":"NVIDIA A40"},"bogus":1}`); status != 422 {
		t.Errorf("unknown field: %d", status)
	}
	e.terminate(m.ID)
	e.terminate(spot.ID)
	if n := s.checkRequests(t, e.em.Requests(), e.invalid...); n < 8 {
		t.Errorf("only %d bodies checked against the spec", n)
	}
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
