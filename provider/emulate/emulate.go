// Package emulate holds what the cloud emulators share: fault switches, the
// machine clock, and the emulated job that runs on an emulated machine and
// reports to the agent endpoint as a real machine's agent
// (provider/agentscript) does: every report retried with backoff until the
// API acknowledges it, output spooled and shipped in chunks, the finished
// report last.
//
// The emulators are production code, clearly named: `make run` starts them
// in process and points the providers at them (mode "emulated"), and the
// tests drive the real SDKs against them.
package emulate

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
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
	ExitCode int           `json:"exit_code"`
	Run      time.Duration `json:"run_ns"`
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

// Backoff is the agent's retry schedule: the first wait is Min, each next
// one doubles up to Max, and each is drawn in [d/2, d].
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is the real agent's (agentscript.RetryMin, RetryMax).
var DefaultBackoff = Backoff{Min: agentscript.RetryMin, Max: agentscript.RetryMax}

// DefaultLogInterval is how often the real agent ships new output.
const DefaultLogInterval = 5 * time.Second

// maxRetryAfter bounds how long a Retry-After may make the agent wait.
const maxRetryAfter = 5 * time.Minute

// Errors of Agent.Report.
var (
	// ErrRefused: the API refused the report with a 4xx that can never
	// succeed (400, 401, 403, 404, 409, 410, 413, 422).
	ErrRefused = errors.New("agent report refused")
	// ErrDeadline: the agent's deadline, or its report grace after the
	// job's end, passed before the API acknowledged the report.
	ErrDeadline = errors.New("agent deadline passed")
)

// permanent are the answers the agent does not retry.
var permanent = []int{400, 401, 403, 404, 409, 410, 413, 422}

// Agent reports an emulated job's progress, output and exit code to the
// agent endpoint, as the agent on a real machine does.
type Agent struct {
	URL, Token string
	Client     *http.Client
	// Backoff is the retry schedule; zero means DefaultBackoff.
	Backoff Backoff
	// Deadline ends the retries (the job's allowed life, EnvDeadline);
	// zero means none.
	Deadline time.Time
	// LogInterval is how often new output is shipped while the job runs;
	// zero means DefaultLogInterval.
	LogInterval time.Duration
	// Grace is the report grace (agentscript.EnvReportGrace): once the
	// job has ended (Reporter.Finish), its reports are retried this long;
	// zero means agentscript.DefaultReportGrace.
	Grace time.Duration
	// Now is the clock the deadline is read on; nil means time.Now.
	Now func() time.Time

	// giveUp is when the report grace ends, in Unix nanoseconds (0: the
	// job has not ended), shared by the copies a Reporter hands out.
	giveUp *atomic.Int64
}

// now reads a's clock.
func (a Agent) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// givenUp reports whether the agent stops retrying at t: past its deadline
// or its report grace.
func (a Agent) givenUp(t time.Time) bool {
	if !a.Deadline.IsZero() && !t.Before(a.Deadline) {
		return true
	}
	return a.giveUp != nil && a.giveUp.Load() != 0 && t.UnixNano() >= a.giveUp.Load()
}

// AgentFromEnv is the agent a machine's environment describes
// (agentscript's variables), sending with client.
func AgentFromEnv(env map[string]string, client *http.Client) Agent {
	return Agent{URL: env[agentscript.EnvAgentURL], Token: env[agentscript.EnvAgentToken], Client: client,
		Deadline: agentscript.ParseDeadline(env[agentscript.EnvDeadline]),
		Grace:    agentscript.ParseReportGrace(env[agentscript.EnvReportGrace])}
}

// Post sends one request; path is "progress", "finished" or "logs". It
// returns the answer's status (0 when none came) and its Retry-After.
func (a Agent) Post(ctx context.Context, path string, body []byte, header http.Header) (int, time.Duration, error) {
	c := a.Client
	if c == nil {
		c = &http.Client{Timeout: 60 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/"+path, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if path == "logs" {
		req.Header.Set("Content-Type", "text/plain")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	var ra time.Duration
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		ra = min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, ra, fmt.Errorf("agent %s: %s", path, resp.Status)
	}
	return resp.StatusCode, 0, nil
}

// Report sends one report until the API acknowledges it with a 2xx,
// retrying refused connections, timeouts, 429 and 5xx with a.Backoff. It
// returns nil once acknowledged, an error wrapping ErrRefused for a 4xx
// that can never succeed, ErrDeadline past a.Deadline or the report grace,
// or ctx's error (the machine is gone). An agent without a URL reports
// nothing.
func (a Agent) Report(ctx context.Context, path string, body []byte, header http.Header) error {
	if a.URL == "" {
		return nil
	}
	b := a.Backoff
	if b.Min <= 0 {
		b = DefaultBackoff
	}
	b.Max = max(b.Max, b.Min)
	delay := b.Min
	for {
		status, ra, err := a.Post(ctx, path, body, header)
		switch {
		case err == nil:
			return nil
		case slices.Contains(permanent, status):
			return fmt.Errorf("%w: %w", ErrRefused, err)
		case ctx.Err() != nil:
			return ctx.Err()
		case a.givenUp(a.now()):
			return fmt.Errorf("%w: %w", ErrDeadline, err)
		}
		wait := delay/2 + rand.N(delay/2+1)
		wait = max(wait, ra)
		if a.giveUp != nil && a.giveUp.Load() != 0 {
			// The last try comes when the report grace ends.
			wait = min(wait, max(time.Unix(0, a.giveUp.Load()).Sub(a.now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, b.Max)
	}
}

// Spool is a job's output as the agent keeps it: what the job wrote and
// how much of it the API has acknowledged. A spool outlives the reporter
// shipping it (the RunPod runner keeps its spool on the pod's volume).
type Spool struct {
	mu      sync.Mutex
	data    []byte
	shipped int
	done    bool
	wake    chan struct{}
}

// Write appends the job's output.
func (s *Spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.data = append(s.data, p...)
	s.mu.Unlock()
	return len(p), nil
}

// Bytes returns everything the job wrote.
func (s *Spool) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.data)
}

// end marks the output complete and wakes the shipper.
func (s *Spool) end() {
	s.mu.Lock()
	s.done = true
	w := s.wake
	s.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// logChunk is the most output one logs report carries (agent.sh's
// GPUFLOW_LOG_CHUNK).
const logChunk = 256 << 10

// ship posts what the API has not acknowledged, in chunks, each with its
// offset.
func (s *Spool) ship(ctx context.Context, a Agent) error {
	for {
		s.mu.Lock()
		off := s.shipped
		chunk := slices.Clone(s.data[off:min(len(s.data), off+logChunk)])
		s.mu.Unlock()
		if len(chunk) == 0 {
			return nil
		}
		h := http.Header{agentscript.HeaderLogOffset: {strconv.Itoa(off)}}
		if err := a.Report(ctx, "logs", chunk, h); err != nil {
			return err
		}
		s.mu.Lock()
		s.shipped = off + len(chunk)
		s.mu.Unlock()
	}
}

// Reporter is the agent at work while a job runs: it ships the spool every
// LogInterval and sends the latest progress (a newer one replaces one not
// yet sent), each report retried until acknowledged.
type Reporter struct {
	a        Agent
	out      *Spool
	ctx      context.Context
	stopProg context.CancelFunc
	shipped  chan error

	mu      sync.Mutex
	pending []byte
	kick    chan struct{}
	progWG  sync.WaitGroup
}

// StartReporter starts shipping out and sending progress for a job on the
// machine whose life is ctx.
func StartReporter(ctx context.Context, a Agent, out *Spool) *Reporter {
	if a.giveUp == nil {
		a.giveUp = new(atomic.Int64)
	}
	r := &Reporter{a: a, out: out, ctx: ctx, shipped: make(chan error, 1), kick: make(chan struct{}, 1)}
	var pctx context.Context
	pctx, r.stopProg = context.WithCancel(ctx)
	wake := make(chan struct{}, 1)
	out.mu.Lock()
	out.wake = wake
	out.mu.Unlock()
	interval := durationOr(a.LogInterval, DefaultLogInterval)
	go func() {
		var failed error
		for {
			out.mu.Lock()
			done := out.done
			out.mu.Unlock()
			if failed == nil {
				failed = out.ship(ctx, a)
			}
			if done || ctx.Err() != nil {
				r.shipped <- failed
				return
			}
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
			case <-wake:
			case <-t.C:
			}
			t.Stop()
		}
	}()
	r.progWG.Go(func() {
		for {
			select {
			case <-pctx.Done():
				return
			case <-r.kick:
			}
			r.mu.Lock()
			body := r.pending
			r.pending = nil
			r.mu.Unlock()
			if body != nil && a.Report(pctx, "progress", body, nil) != nil && pctx.Err() != nil {
				return
			}
		}
	})
	return r
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Progress reports the job's progress (coalesced with any not yet sent).
func (r *Reporter) Progress(percent float64, message string) {
	b, _ := json.Marshal(map[string]any{"percent": percent, "message": message}) // always encodes
	r.mu.Lock()
	r.pending = b
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Finish ends the job with its exit code: progress not yet sent is
// dropped, the rest of the output is shipped, then the finished report
// {"exit_code":code} is sent until acknowledged, all within the agent's
// report grace. It returns nil once the finished report was acknowledged,
// else the error of the shipping or of the report (ctx's error when the
// machine is gone).
func (r *Reporter) Finish(code int) error {
	r.Stop()
	r.a.giveUp.CompareAndSwap(0, r.a.now().Add(durationOr(r.a.Grace, agentscript.DefaultReportGrace)).UnixNano())
	r.out.end()
	shipErr := <-r.shipped
	err := r.a.Report(r.ctx, "finished", fmt.Appendf(nil, `{"exit_code":%d}`, code), nil)
	if err == nil || r.ctx.Err() != nil {
		return err
	}
	return cmp.Or(shipErr, err)
}

// Stop stops sending progress (the job was interrupted or has ended).
func (r *Reporter) Stop() {
	r.stopProg()
	r.progWG.Wait()
}

// PlayJob plays an emulated job's timeline on a machine whose life is ctx:
// output lines to out and progress to progress, over plan.Run. It returns
// false when ctx ended first (the machine stopped or was terminated).
func PlayJob(ctx context.Context, plan JobPlan, jobID string, out *Spool, progress func(float64, string)) bool {
	BeginJob(out, jobID)
	return PlayJobFrom(ctx, plan, jobID, out, progress, 0)
}

// BeginJob writes the line an emulated job starts its output with.
func BeginJob(out *Spool, jobID string) {
	fmt.Fprintf(out, "emulated job %s started\n", jobID)
}

// EndJob writes the line an emulated job ends its output with.
func EndJob(out *Spool, jobID string, code int) {
	fmt.Fprintf(out, "emulated job %s exiting with %d\n", jobID, code)
}

// PlayJobFrom plays the rest of a job that began (BeginJob) elapsed ago:
// the progress still ahead of it, then its last line. A job whose end has
// passed ends at once. It returns false when ctx ended first.
func PlayJobFrom(ctx context.Context, plan JobPlan, jobID string, out *Spool, progress func(float64, string), elapsed time.Duration) bool {
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	half := plan.Run / 2
	if elapsed < half {
		progress(0, "started")
		if !sleep(half - elapsed) {
			return false
		}
	}
	if elapsed < plan.Run {
		progress(50, "half way")
		if !sleep(plan.Run - max(elapsed, half)) {
			return false
		}
	}
	if ctx.Err() != nil {
		return false
	}
	EndJob(out, jobID, plan.ExitCode)
	return true
}

// RunJob plays an emulated job and reports it through a as the real agent
// does: output and progress while it runs, then the rest of the output and
// the exit code, each report retried until the API acknowledges it. It
// returns when the finished report was acknowledged (or refused for good,
// or a's deadline or report grace passed), or when ctx is done (the
// machine was terminated).
func RunJob(ctx context.Context, a Agent, plan JobPlan, jobID string) {
	ResumeJob(ctx, a, JobState{Plan: plan}, jobID, 0, JobHooks{})
}
