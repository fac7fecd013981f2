package runpod_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

// flakyAgent is an agent endpoint whose finished reports fail with 503
// while down is set; it keeps the exit codes it acknowledged. Whether it
// was down is judged when a report is sent, not when its handler runs: a
// report the killed container sent while the endpoint was down fails,
// however late the server gets to it (under load its handler can run
// after down is cleared).
type flakyAgent struct {
	srv      *httptest.Server
	mu       sync.Mutex
	down     bool
	attempts int
	finished []int
	logs     string
}

// headerSentDown marks a report sent while the flaky agent was down.
const headerSentDown = "X-Test-Sent-Down"

func newFlakyAgent(t *testing.T) *flakyAgent {
	a := &flakyAgent{down: true}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/finished"):
			a.attempts++
			if r.Header.Get(headerSentDown) != "" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			var f struct {
				ExitCode int `json:"exit_code"`
			}
			_ = json.Unmarshal(b, &f)
			a.finished = append(a.finished, f.ExitCode)
		case strings.HasSuffix(r.URL.Path, "/logs"):
			a.logs += string(b)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// client is the emulated runner's HTTP client: it marks each report sent
// while the agent is down.
func (a *flakyAgent) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		a.mu.Lock()
		down := a.down
		a.mu.Unlock()
		if down {
			r = r.Clone(r.Context())
			r.Header.Set(headerSentDown, "1")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (a *flakyAgent) get() (attempts int, finished []int, logs string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attempts, append([]int(nil), a.finished...), a.logs
}

// TestRunPodJobRunsOnceAndReportsOnce: on the emulator, which restarts a
// container whose command ends as RunPod does, a job exiting 0 (on-demand)
// and one exiting 3 (spot) each run once and report one finished with
// their code, although the container restarts before the report is
// acknowledged, after it, and across a stop and a start.
func TestRunPodJobRunsOnceAndReportsOnce(t *testing.T) {
	for _, tc := range []struct {
		code int
		spot bool
	}{{0, false}, {3, true}} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			agent := newFlakyAgent(t)
			em := emulator.New(emulator.Options{APIKey: testKey, Timing: testTiming, AgentClient: agent.client(),
				AgentBackoff: emulate.Backoff{Min: 2 * time.Millisecond, Max: 20 * time.Millisecond}, AgentLogInterval: 5 * time.Millisecond})
			srv := httptest.NewServer(em)
			t.Cleanup(func() { em.Close(); srv.Close() })
			p, err := runpod.New(runpod.Config{APIKey: testKey, BaseURL: srv.URL, Mode: gpuflow.ModeEmulated, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			offers, err := p.Offers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var offer gpuflow.Offer
			for _, o := range offers {
				if o.GPUType == "NVIDIA GeForce RTX 4090" {
					offer = o
				}
			}
			job := "job-" + strconv.Itoa(tc.code)
			m, err := p.Provision(ctx, gpuflow.ProvisionRequest{
				JobID: job, IdempotencyKey: job + "-a1", Offer: offer,
				Spec: gpuflow.JobSpec{Command: []string{"python", "train.py"}, GPUType: "RTX4090", GPUCount: 1, Spot: tc.spot,
					Env: map[string]string{emulate.EnvExitCode: strconv.Itoa(tc.code), emulate.EnvRunSeconds: "0.05"}},
				Agent: &gpuflow.AgentEndpoint{URL: agent.srv.URL + "/agent/v1/jobs/" + job, Token: agentToken},
			})
			if err != nil {
				t.Fatal(err)
			}
			action := func(a string) {
				t.Helper()
				req, _ := http.NewRequest("POST", srv.URL+"/v2/pods/"+m.ID+"/action", strings.NewReader(`{"action":"`+a+`"}`))
				req.Header.Set("Authorization", "Bearer "+testKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %v %v", a, resp, err)
				}
				resp.Body.Close()
			}
			// The job ends while the API is down; the container restarts.
			eventually(t, "a finished report", func() bool { n, _, _ := agent.get(); return n > 0 })
			action("restart")
			eventually(t, "the container's second start", func() bool { return em.ContainerStarts(m.ID) == 2 })
			agent.mu.Lock()
			agent.down = false
			agent.mu.Unlock()
			eventually(t, "the acknowledged report", func() bool { return em.RunnerDone(m.ID) })
			// Restarts after it change nothing.
			action("restart")
			action("stop")
			action("start")
			eventually(t, "the container's fourth start", func() bool { return em.ContainerStarts(m.ID) == 4 })
			if d, err := p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineRunning {
				t.Errorf("describe: %+v %v", d, err)
			}
			if n := em.CommandRuns(m.ID); n != 1 {
				t.Errorf("the command ran %d times, want once", n)
			}
			if err := p.Terminate(ctx, m.ID); err != nil {
				t.Fatal(err)
			}
			_, finished, logs := agent.get()
			if len(finished) != 1 || finished[0] != tc.code {
				t.Errorf("finished reports acknowledged %v, want exactly [%d]", finished, tc.code)
			}
			if want := "emulated job " + job + " started\nemulated job " + job + " exiting with " + strconv.Itoa(tc.code) + "\n"; logs != want {
				t.Errorf("output %q, want %q", logs, want)
			}
		})
	}
}

func TestRunPodNeedsACommand(t *testing.T) {
	e := setup(t)
	req := e.request("job-image", false)
	req.Spec.Command, req.Spec.Image = nil, "example/trainer:1"
	_, err := e.p.Provision(context.Background(), req)
	if pe := providerError(t, err); pe.Kind != gpuflow.KindInvalidRequest {
		t.Errorf("image-only job: %v", err)
	}
}
