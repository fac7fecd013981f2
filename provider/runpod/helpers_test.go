package runpod_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

const (
	testKey    = "rpa_TESTKEY_3f9c1d2e8b7a6c5d4e3f2a1b"
	agentToken = "agt_SECRET_9b8a7c6d5e4f3a2b1c0d"
)

var testTiming = emulate.Timing{Pending: 120 * time.Millisecond, Starting: 200 * time.Millisecond, Run: 300 * time.Millisecond}

// syncBuffer collects log output from several goroutines.
type syncBuffer = testutil.SyncBuffer

// agentCall is one report an emulated job sent to the fake agent endpoint.
type agentCall struct {
	Path, Auth string
	Body       []byte
}

// fakeAgent stands for gpuflow's agent endpoint.
type fakeAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []agentCall
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, agentCall{Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: b})
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) endpoint(jobID string) *gpuflow.AgentEndpoint {
	return &gpuflow.AgentEndpoint{URL: a.srv.URL + "/agent/jobs/" + jobID, Token: agentToken}
}

func (a *fakeAgent) Calls() []agentCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// finished returns the exit code a job reported, if it did.
func (a *fakeAgent) finished(jobID string) (int, bool) {
	for _, c := range a.Calls() {
		if c.Path == "/agent/jobs/"+jobID+"/finished" {
			var f struct {
				ExitCode int `json:"exit_code"`
			}
			if json.Unmarshal(c.Body, &f) == nil {
				return f.ExitCode, true
			}
		}
	}
	return 0, false
}

// env is a provider wired to its emulator over httptest.
type env struct {
	t     *testing.T
	em    *emulator.Emulator
	srv   *httptest.Server
	p     *runpod.Provider
	cfg   runpod.Config
	agent *fakeAgent
	logs  *syncBuffer
	// gqlHook runs once, before the next GraphQL request reaches the
	// emulator (to set a fault for GraphQL alone).
	gqlHook atomic.Pointer[func()]
	// invalid are request bodies the test sends to be refused.
	invalid []string
	eo      emulator.Options
	emMu    sync.Mutex // guards em, which restart replaces
}

// serving is the emulator answering at e.srv.
func (e *env) serving() *emulator.Emulator {
	e.emMu.Lock()
	defer e.emMu.Unlock()
	return e.em
}

// restart stops the emulator and starts a new one from its state file,
// behind the same URL: the emulator process killed and started again
// (Close writes nothing to the state file, as a kill would not). between
// runs while none is up.
func (e *env) restart(between func()) {
	e.emMu.Lock()
	defer e.emMu.Unlock()
	e.em.Close()
	if between != nil {
		between()
	}
	e.em = emulator.New(e.eo)
}

// onGraphQL runs f before the next GraphQL request is served.
func (e *env) onGraphQL(f func()) { e.gqlHook.Store(&f) }

// setup starts an emulator and a provider pointed at it. After the test it
// checks that the emulator holds no pod, that every request and answer
// matched RunPod's spec (when the spec is there), and that no secret
// reached the logs.
func setup(t *testing.T, mods ...func(*runpod.Config)) *env {
	t.Helper()
	return setupEmulator(t, nil, mods...)
}

// setupEmulator is setup with the emulator's options changed by emu.
func setupEmulator(t *testing.T, emu func(*emulator.Options), mods ...func(*runpod.Config)) *env {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Functional tests poll as fast as they like: no rate limit unless a
	// test sets one (describe_many_test.go does).
	eo := emulator.Options{APIKey: testKey, Timing: testTiming, Logger: logger, RateLimits: map[string]emulate.Rate{}}
	if emu != nil {
		emu(&eo)
	}
	e := &env{t: t, em: emulator.New(eo), eo: eo, agent: newFakeAgent(t), logs: logs}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook := e.gqlHook.Swap(nil); hook != nil && r.URL.Path == "/graphql" {
			(*hook)()
		} else if hook != nil {
			e.gqlHook.CompareAndSwap(nil, hook)
		}
		e.serving().ServeHTTP(w, r)
	}))
	srv := e.srv
	t.Cleanup(func() {
		e.serving().Close()
		srv.Close()
	})
	e.cfg = runpod.Config{
		APIKey: testKey, BaseURL: srv.URL, Mode: gpuflow.ModeEmulated, Logger: logger,
		Timeout: 5 * time.Second, PollInterval: 20 * time.Millisecond,
	}
	for _, m := range mods {
		m(&e.cfg)
	}
	p, err := runpod.New(e.cfg)
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	e.p = p
	t.Cleanup(func() {
		em := e.serving()
		if live := em.Live(); len(live) > 0 {
			t.Errorf("the emulator still holds %d pods after the test: %v", len(live), live)
		}
		if s := loadSpec(t); s != nil {
			s.checkRequests(t, em.Requests(), e.invalid...)
		}
		out := logs.String()
		for _, secret := range []string{testKey, agentToken} {
			if strings.Contains(out, secret) {
				t.Errorf("a secret reached the logs:\n%s", out)
			}
		}
	})
	return e
}

// offer returns the provider's live offer for gpuType.
func (e *env) offer(gpuType string) gpuflow.Offer {
	e.t.Helper()
	offers, err := e.p.Offers(context.Background())
	if err != nil {
		e.t.Fatalf("offers: %v", err)
	}
	for _, o := range offers {
		if o.GPUType == gpuType {
			return o
		}
	}
	e.t.Fatalf("no offer for %s in %v", gpuType, offers)
	return gpuflow.Offer{}
}

// request is a provision request for one RTX 4090 running a command.
func (e *env) request(jobID string, spot bool) gpuflow.ProvisionRequest {
	return e.requestFor(jobID, spot, e.offer("NVIDIA GeForce RTX 4090"))
}

// requestFor is a provision request for one GPU of the offer.
func (e *env) requestFor(jobID string, spot bool, o gpuflow.Offer) gpuflow.ProvisionRequest {
	return gpuflow.ProvisionRequest{
		JobID:          jobID,
		IdempotencyKey: jobID + "-a1",
		Offer:          o,
		Spec: gpuflow.JobSpec{
			Command: []string{"python", "train.py", "--name", "it's"}, GPUType: "RTX4090", GPUCount: 1, Spot: spot,
			Env: map[string]string{"FOO": "bar"},
		},
		Tags:  map[string]string{"team": "ml"},
		Agent: e.agent.endpoint(jobID),
	}
}

func (e *env) provision(req gpuflow.ProvisionRequest) *gpuflow.Machine {
	e.t.Helper()
	m, err := e.p.Provision(context.Background(), req)
	if err != nil {
		e.t.Fatalf("provision %s: %v", req.JobID, err)
	}
	return m
}

func (e *env) describe(id string) *gpuflow.Machine {
	e.t.Helper()
	m, err := e.p.Describe(context.Background(), id)
	if err != nil {
		e.t.Fatalf("describe %s: %v", id, err)
	}
	return m
}

// terminate deletes the pod and confirms it is gone.
func (e *env) terminate(id string) {
	e.t.Helper()
	if err := e.p.Terminate(context.Background(), id); err != nil {
		e.t.Fatalf("terminate %s: %v", id, err)
	}
	if m := e.describe(id); m.State != gpuflow.MachineGone {
		e.t.Fatalf("after terminate, %s is %s", id, m.State)
	}
}

// waitState polls the pod until it reaches want, returning the states seen
// on the way (each once, in order).
func (e *env) waitState(id string, want gpuflow.MachineState) []gpuflow.MachineState {
	e.t.Helper()
	var seen []gpuflow.MachineState
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := e.describe(id)
		if len(seen) == 0 || seen[len(seen)-1] != m.State {
			seen = append(seen, m.State)
		}
		if m.State == want {
			return seen
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pod %s did not reach %s; states seen %v", id, want, seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requests returns the recorded requests matching method and path.
func (e *env) requests(method, path string) []emulator.Request {
	var out []emulator.Request
	for _, r := range e.em.Requests() {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// kindOf asserts err is a *gpuflow.ProviderError and returns it.
func providerError(t *testing.T, err error) *gpuflow.ProviderError {
	t.Helper()
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *gpuflow.ProviderError", err, err)
	}
	if pe.Provider != runpod.Name {
		t.Errorf("provider %q in %v", pe.Provider, err)
	}
	return pe
}

// rawInvalid sends a request the emulator must refuse; the spec check
// skips its body.
func (e *env) rawInvalid(method, path, body string) (int, []byte) {
	e.t.Helper()
	e.invalid = append(e.invalid, body)
	return e.rawCall(method, path, body)
}

// rawCall sends a request to the emulator as a client would.
func (e *env) rawCall(method, path, body string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
