// Package emulate holds what the cloud emulators share: fault switches, the
// machine clock, and the emulated job that runs on an emulated machine and
// reports to the agent endpoint as a real machine's boot script would.
//
// The emulators are production code, clearly named: `make run` starts them
// in process and points the providers at them (mode "emulated"), and the
// tests drive the real SDKs against them.
package emulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Faults are the switches a test (or the dev command) flips on an emulator.
// Counters count down as they fire.
type Faults struct {
	// NoCapacity makes creates fail with the provider's no-capacity error.
	NoCapacity bool `json:"no_capacity"`
	// Throttle makes every call fail with the provider's throttling error.
	Throttle bool `json:"throttle"`
	// ServerErrors makes the next N calls answer a 5xx.
	ServerErrors int `json:"server_errors"`
	// Slow delays every answer.
	Slow time.Duration `json:"slow"`
	// CreateLost makes the next N creates succeed but answer a 500.
	CreateLost int `json:"create_lost"`
	// TerminateFailures makes the next N terminates fail (retryably).
	TerminateFailures int `json:"terminate_failures"`
}

// Switches guards an emulator's Faults.
type Switches struct {
	mu sync.Mutex
	f  Faults
}

// Set replaces the faults.
func (s *Switches) Set(f Faults) {
	s.mu.Lock()
	s.f = f
	s.mu.Unlock()
}

// Get returns the current faults.
func (s *Switches) Get() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f
}

// Take reports whether the counter chosen by pick is positive, and
// decrements it if so.
func (s *Switches) Take(pick func(*Faults) *int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := pick(&s.f)
	if *n > 0 {
		*n--
		return true
	}
	return false
}

// Handler serves GET/PUT of the faults as JSON, for the dev command.
func (s *Switches) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			var f Faults
			if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.Set(f)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Get())
	})
}

// Timing is how long an emulated machine spends in each phase.
type Timing struct {
	Pending  time.Duration // accepted → booting
	Starting time.Duration // booting → running
	Run      time.Duration // how long an emulated job runs unless its env says otherwise
}

// DefaultTiming keeps the emulators quick for `make run` and tests.
var DefaultTiming = Timing{Pending: 300 * time.Millisecond, Starting: 500 * time.Millisecond, Run: 2 * time.Second}

// Job env variables an emulated job obeys (set them in the job's env).
const (
	EnvExitCode   = "GPUFLOW_EMULATOR_EXIT_CODE"   // the exit code (default 0)
	EnvRunSeconds = "GPUFLOW_EMULATOR_RUN_SECONDS" // how long it runs (default Timing.Run)
)

// JobPlan is what an emulated job will do.
type JobPlan struct {
	ExitCode int
	Run      time.Duration
}

// PlanJob reads the job's env for its exit code and duration.
func PlanJob(env map[string]string, t Timing) JobPlan {
	p := JobPlan{Run: t.Run}
	if v, err := strconv.Atoi(env[EnvExitCode]); err == nil {
		p.ExitCode = v
	}
	if v, err := strconv.ParseFloat(env[EnvRunSeconds], 64); err == nil && v >= 0 {
		p.Run = time.Duration(v * float64(time.Second))
	}
	return p
}

// Agent reports an emulated job's progress, output and exit code to the
// agent endpoint, as the boot script does on a real machine.
type Agent struct {
	URL, Token string
	Client     *http.Client
}

// Post sends one report; path is "progress", "finished" or "logs".
func (a Agent) Post(ctx context.Context, path string, body []byte) error {
	if a.URL == "" {
		return nil
	}
	c := a.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if path != "logs" {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("agent %s: %s", path, resp.Status)
	}
	return nil
}

// RunJob plays an emulated job: output lines, progress, then the exit code,
// each reported through a (retried a few times on failure). It returns when
// the job has ended or ctx is done (the machine was terminated).
func RunJob(ctx context.Context, a Agent, plan JobPlan, jobID string) {
	post := func(path string, body []byte) {
		for i := range 5 {
			if a.Post(ctx, path, body) == nil || ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(100*(i+1)) * time.Millisecond):
			}
		}
	}
	post("logs", fmt.Appendf(nil, "emulated job %s started\n", jobID))
	post("progress", []byte(`{"percent":0,"message":"started"}`))
	select {
	case <-ctx.Done():
		return
	case <-time.After(plan.Run / 2):
	}
	post("progress", []byte(`{"percent":50,"message":"half way"}`))
	select {
	case <-ctx.Done():
		return
	case <-time.After(plan.Run - plan.Run/2):
	}
	post("logs", fmt.Appendf(nil, "emulated job %s exiting with %d\n", jobID, plan.ExitCode))
	post("finished", fmt.Appendf(nil, `{"exit_code":%d}`, plan.ExitCode))
}
