package alibaba_test

import (
	"encoding/json"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// agentToken is the per-job secret the boot script carries; it must never
// show in logs or errors.
const agentToken = "agent-token-9f8e7d6c5b4a-secret"

// clock is a settable clock shared by the emulator and the provider.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 10, 17, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer = testutil.SyncBuffer

// fakeAgent is the API's agent endpoint, recording what jobs report.
type fakeAgent struct {
	srv      *httptest.Server
	mu       sync.Mutex
	progress []int
	logs     strings.Builder
	badAuth  int
	finished chan int
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{finished: make(chan int, 8)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+agentToken {
			a.mu.Lock()
			a.badAuth++
			a.mu.Unlock()
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		job, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/jobs/"), "/")
		_ = job
		a.mu.Lock()
		defer a.mu.Unlock()
		switch path {
		case "progress":
			var p struct{ Percent int }
			_ = json.Unmarshal(body, &p)
			a.progress = append(a.progress, p.Percent)
		case "logs":
			a.logs.Write(body)
		case "finished":
			var f struct {
				ExitCode int `json:"exit_code"`
			}
			_ = json.Unmarshal(body, &f)
			a.finished <- f.ExitCode
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) endpoint(jobID string) *gpuflow.AgentEndpoint {
	return &gpuflow.AgentEndpoint{URL: a.srv.URL + "/jobs/" + jobID, Token: agentToken}
}

// env is a provider wired to an emulator over HTTP.
type env struct {
	t     *testing.T
	clock *clock
	emu   *emulator.Emulator
	srv   *httptest.Server
	p     *alibaba.Provider
	cfg   alibaba.Config // p's
	agent *fakeAgent
	logs  *syncBuffer
	eo    emulator.Options
	emuMu sync.Mutex // guards emu, which restart replaces
}

// serving is the emulator answering at e.srv.
func (e *env) serving() *emulator.Emulator {
	e.emuMu.Lock()
	defer e.emuMu.Unlock()
	return e.emu
}

// restart stops the emulator and starts a new one from its state file,
// behind the same URL: the emulator process killed and started again
// (Close writes nothing to the state file, as a kill would not). between
// runs while none is up.
func (e *env) restart(between func()) {
	e.emuMu.Lock()
	defer e.emuMu.Unlock()
	e.emu.Close()
	if between != nil {
		between()
	}
	e.emu = emulator.New(e.eo)
}

// fastTiming keeps emulated phases short; tests move the clock past them.
var fastTiming = emulate.Timing{Pending: 10 * time.Second, Starting: 20 * time.Second, Run: 300 * time.Millisecond}

type envOption func(*emulator.Options, *alibaba.Config)

// newEnv starts an emulator and a provider pointed at it, and checks at
// the end that the emulator holds no live instance.
func newEnv(t *testing.T, options ...envOption) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Functional tests poll as fast as they like: no rate limit unless a
	// test sets one (describe_many_test.go does).
	eo := emulator.Options{Timing: fastTiming, Now: e.clock.Now, Logger: logger, RateLimits: map[string]emulate.Rate{}}
	cfg := alibaba.Config{
		AccessKeyID:     emulator.TestAccessKeyID,
		AccessKeySecret: emulator.TestAccessKeySecret,
		Regions:         []string{"cn-hangzhou"},
		Mode:            gpuflow.ModeEmulated,
		Now:             e.clock.Now,
		Logger:          logger,
		Timeout:         5 * time.Second,
		CreateRetries:   2,
	}
	for _, o := range options {
		o(&eo, &cfg)
	}
	e.eo = eo
	e.emu = emulator.New(eo)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.serving().ServeHTTP(w, r) }))
	t.Cleanup(func() {
		e.srv.Close()
		e.serving().Close()
	})
	t.Cleanup(func() {
		if live := e.serving().Live(); len(live) != 0 {
			t.Errorf("emulator still holds live instances after the test: %v", live)
		}
	})
	if cfg.Endpoint == "" {
		cfg.Endpoint = e.srv.URL
	}
	p, err := alibaba.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.p, e.cfg = p, cfg
	e.agent = newFakeAgent(t)
	return e
}

// request asks for one A10 in zone cn-hangzhou-i.
func (e *env) request(jobID string, spot bool) gpuflow.ProvisionRequest {
	return gpuflow.ProvisionRequest{
		JobID:          jobID,
		IdempotencyKey: jobID + "-a1",
		Offer: gpuflow.Offer{Provider: alibaba.Name, GPUType: "A10", GPUCount: 1, VCPUs: 8, MemoryGB: 30,
			PricePerHour: 1.5, SpotPricePerHour: 0.45, Region: "cn-hangzhou-i"},
		Spec: gpuflow.JobSpec{
			Command:  []string{"python", "train.py", "--epochs", "1"},
			GPUType:  "A10",
			GPUCount: 1,
			Spot:     spot,
			Strategy: gpuflow.StrategyBalanced,
			Env:      map[string]string{emulate.EnvExitCode: "3", emulate.EnvRunSeconds: "0.2"},
		},
		Tags:  map[string]string{gpuflow.TagManaged: "true", gpuflow.TagJob: jobID},
		Agent: e.agent.endpoint(jobID),
	}
}

// toRunning moves the clock past the Pending and Starting phases.
func (e *env) toRunning() { e.clock.Advance(fastTiming.Pending + fastTiming.Starting + time.Second) }

// kindOf returns the *gpuflow.ProviderError in err, failing the test when
// there is none.
func kindOf(t *testing.T, err error) *gpuflow.ProviderError {
	t.Helper()
	pe, ok := err.(*gpuflow.ProviderError)
	if !ok {
		t.Fatalf("error %v (%T) is not a *gpuflow.ProviderError", err, err)
	}
	return pe
}
