package tencent_test

import (
	"context"
	"encoding/json"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// Credentials the tests' emulators accept. The key is distinctive so the
// tests can look for it in logs and errors.
const (
	testSecretID  = "AKIDtestTencentSecretId00000000001"
	testSecretKey = "sk-TOPSECRET-tencent-key-5f3a9c"
	testRegion    = "ap-guangzhou"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer = testutil.SyncBuffer

// agentReport is one POST an emulated job made to the agent endpoint.
type agentReport struct {
	Path, Auth, Body string
}

// fakeAgent is the API's agent endpoint, recording reports.
type fakeAgent struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []agentReport
}

func newAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.got = append(a.got, agentReport{Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: string(body)})
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) reports() []agentReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]agentReport(nil), a.got...)
}

// waitFinished waits for the job's finished report and returns its body.
func (a *fakeAgent) waitFinished(t *testing.T, jobID string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range a.reports() {
			if r.Path == "/jobs/"+jobID+"/finished" {
				return r.Body
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s never reported finished; reports: %+v", jobID, a.reports())
	return ""
}

// env is a provider talking to an emulator over HTTP.
type env struct {
	em    *emulator.Emulator // the one serving; restart replaces it
	eo    emulator.Options
	srv   *httptest.Server
	p     *tencent.Provider
	cfg   tencent.Config // p's
	agent *fakeAgent
	logs  *syncBuffer
	clock *fakeClock // nil: the real clock
	emMu  sync.Mutex
}

type envOptions struct {
	clock  *fakeClock
	timing emulate.Timing
	cfg    func(*tencent.Config)
	emu    func(*emulator.Options)
}

var quick = emulate.Timing{Pending: 50 * time.Millisecond, Starting: 50 * time.Millisecond, Run: 200 * time.Millisecond}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{agent: newAgent(t), logs: &syncBuffer{}, clock: o.clock}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	timing := o.timing
	if timing == (emulate.Timing{}) {
		timing = quick
	}
	eo := emulator.Options{
		Credentials: map[string]string{testSecretID: testSecretKey},
		Timing:      timing,
		Logger:      logger,
		Tick:        5 * time.Millisecond,
		// Functional tests poll as fast as they like: no rate limit
		// unless a test sets one (describe_many_test.go does).
		RateLimits: map[string]emulate.Rate{},
	}
	if o.clock != nil {
		eo.Now = o.clock.Now
	}
	if o.emu != nil {
		o.emu(&eo)
	}
	e.eo = eo
	e.em = emulator.New(eo)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.serving().ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() { e.serving().Close() })
	t.Cleanup(func() {
		if live := e.serving().Live(); len(live) > 0 {
			t.Errorf("the emulator still holds live machines after the test: %v", live)
		}
	})
	cfg := tencent.Config{
		SecretID: testSecretID, SecretKey: testSecretKey,
		Endpoint: e.srv.URL, Regions: []string{testRegion},
		ImageID: "img-gpuflow1", Mode: gpuflow.ModeEmulated,
		CallTimeout: 5 * time.Second, PollInterval: 100 * time.Millisecond,
		Logger: logger,
	}
	if o.clock != nil {
		cfg.Now = o.clock.Now
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	p, err := tencent.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.p, e.cfg = p, cfg
	return e
}

// serving is the emulator answering at e.srv.
func (e *env) serving() *emulator.Emulator {
	e.emMu.Lock()
	defer e.emMu.Unlock()
	return e.em
}

// restart stops the emulator and starts a new one from its state file,
// behind the same URL: the emulator process killed and started again
// (Close writes nothing to the state file, as a kill would not).
func (e *env) restart(t *testing.T, between func()) {
	t.Helper()
	e.emMu.Lock()
	defer e.emMu.Unlock()
	e.em.Close()
	if between != nil {
		between()
	}
	e.em = emulator.New(e.eo)
}

// offer returns the provider's offer of gpuType × count in zone with the
// given vCPUs.
func (e *env) offer(t *testing.T, gpuType string, count int, zone string, vcpus int) gpuflow.Offer {
	t.Helper()
	offers, err := e.p.Offers(context.Background())
	if err != nil {
		t.Fatalf("Offers: %v", err)
	}
	for _, o := range offers {
		if o.GPUType == gpuType && o.GPUCount == count && o.Region == zone && o.VCPUs == vcpus {
			return o
		}
	}
	t.Fatalf("no %d x %s offer with %d vCPUs in %s among %+v", count, gpuType, vcpus, zone, offers)
	return gpuflow.Offer{}
}

// request is a provisioning request for job with the emulated job's env.
func (e *env) request(job, key string, o gpuflow.Offer, env map[string]string) gpuflow.ProvisionRequest {
	return gpuflow.ProvisionRequest{
		JobID: job, IdempotencyKey: key, Offer: o,
		Spec: gpuflow.JobSpec{
			Command: []string{"python", "train.py"}, Env: env,
			GPUType: o.GPUType, GPUCount: o.GPUCount, Strategy: gpuflow.StrategyBalanced,
		},
		Tags:  map[string]string{"team": "ml"},
		Agent: &gpuflow.AgentEndpoint{URL: e.agent.srv.URL + "/jobs/" + job, Token: "agent-token-" + job},
	}
}

// waitState polls Describe until the machine is in state.
func (e *env) waitState(t *testing.T, id string, state gpuflow.MachineState) *gpuflow.Machine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *gpuflow.Machine
	for time.Now().Before(deadline) {
		m, err := e.p.Describe(context.Background(), id)
		if err != nil {
			t.Fatalf("Describe %s: %v", id, err)
		}
		if m.State == state {
			return m
		}
		last = m
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("machine %s never reached %s; last %+v", id, state, last)
	return nil
}

// terminate terminates id, retrying while the instance is too young, and
// waits until it is gone.
func (e *env) terminate(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := e.p.Terminate(context.Background(), id)
		if err == nil {
			break
		}
		if gpuflow.ProviderErrorKindOf(err) != gpuflow.KindTransient || time.Now().After(deadline) {
			t.Fatalf("Terminate %s: %v", id, err)
		}
		if e.clock != nil {
			e.clock.Add(time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.clock != nil {
		e.clock.Add(time.Minute)
	}
	e.waitState(t, id, gpuflow.MachineGone)
}

// kindOf returns the ProviderError's kind and code, failing on other errors.
func kindOf(t *testing.T, err error) (gpuflow.ProviderErrorKind, string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	pe, ok := err.(*gpuflow.ProviderError)
	if !ok {
		t.Fatalf("error %T is not a *gpuflow.ProviderError: %v", err, err)
	}
	return pe.Kind, pe.Code
}

func mustJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON %q: %v", s, err)
	}
	return m
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
