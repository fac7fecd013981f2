// Package emulator is an emulated RunPod API: an http.Handler that speaks
// RunPod's REST v2 (https://api.runpod.io/v2/...) and GraphQL
// (https://api.runpod.io/graphql) wire formats and error conventions
// (problem+json for REST, 200 with "errors" for GraphQL), so the runpod
// provider's client talks to it unchanged; only the base URL differs.
//
// It is production code, clearly named: `make run` starts it in process and
// points the runpod provider at it (mode "emulated"); the provider's tests
// drive it over httptest.
//
// Pods move through RunPod's states on the emulator's clock: PROVISIONING
// for Timing.Pending, then STARTING, then RUNNING with runtime null (as
// RunPod reports just after boot), then RUNNING with a runtime block. At
// that point the pod's container starts and runs its command (the pod's
// args; see container.go): gpuflow's runner is played as the script does
// it, reporting to the agent endpoint in the pod's env; any other command
// runs for its planned time and reports nothing. When the command ends,
// the container is restarted and the command runs again, as RunPod does;
// the pod's volume survives that, its container disk does not. stop moves
// the pod to EXITED and ends the container; start runs it again; restart
// restarts it in place. Interruptible pods created with terminateAfter
// are deleted when it passes, as RunPod does.
//
// Fault switches (Faults) answer with RunPod's own conventions: no capacity
// is REST 400 (or a GraphQL error) with RunPod's exact text, throttling is
// 429 with Retry-After, server errors are 500, and CreateLost creates the
// pod and then answers 500. Pod reads are limited per user
// (Options.RateLimits) and answered 429 with Retry-After past the limit.
// Admin endpoints, without auth, for the dev command: /_emulator/faults
// and /_emulator/ratelimits (GET, PUT), GET /_emulator/live and POST
// /_emulator/preempt/<id>.
//
// Persisted state: with Options.StateFile the emulator writes every pod
// (ids, spec, env, status, timestamps, its volume and container disk with
// the runner's state: job started and when, its plan, exit code, the
// finished-report marker, its output) and the pods created per name, with
// emulate.SaveFile (temp, fsync, rename) on every change and before the
// call that made it is answered, so a kill -9 loses no acknowledged create
// or terminate. New restores them: pods keep their ids and states, a
// container that was running goes on (a runner's job from its start time;
// one whose end passed while the emulator was down ends at once and
// reports then). GET /_emulator/live lists the pods and the creates per
// name (emulate.LiveReport).
//
// The modelling compromise: on a real cloud a machine's agent keeps running
// while the API frontend is down; here the emulated agent lives in the
// emulator's process, so its reports pause while the process is down and
// resume after the restart (the agent retries each report until it is
// acknowledged, as now). The real agent retries with backoff while the API
// is unreachable, so the API sees the same thing either way: late reports.
//
// What it does not do: templates, network volumes, clusters, serverless,
// billing, logs, SSH keys. GraphQL is routed on the operation's field name
// and takes its input from variables only ($input), not from literals in
// the query; it answers a fixed selection of fields.
package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Options configure an emulator.
type Options struct {
	// APIKey is the key clients send as "Authorization: Bearer <key>" (or,
	// on GraphQL, as ?api_key=). Empty accepts any non-empty key.
	APIKey string
	// Timing is how long pods spend in each phase; zero means
	// emulate.DefaultTiming.
	Timing emulate.Timing
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one debug line per request (method, path, status:
	// never headers, query strings or bodies); nil discards.
	Logger *slog.Logger
	// GPUs is the catalogue served; nil means DefaultGPUs.
	GPUs []GPU
	// DataCenters are the data centers pods are placed in (the first unless
	// the request names one); empty means DefaultDataCenters.
	DataCenters []string
	// AgentClient sends the emulated jobs' reports; nil means a client with
	// a 10s timeout.
	AgentClient *http.Client
	// AgentBackoff and AgentLogInterval are the emulated runner's retry
	// schedule and log interval; zero means the real agent's.
	AgentBackoff     emulate.Backoff
	AgentLogInterval time.Duration
	// RetryAfter is the Retry-After of throttled answers (default 1s).
	RetryAfter time.Duration
	// MaxRecorded bounds the requests kept for Requests (default 1000);
	// MaxRecordedBytes bounds their bodies together (default 64 MiB: a
	// listing of 10,000 pods is megabytes).
	MaxRecorded      int
	MaxRecordedBytes int
	// RateLimits are the request rates enforced per user (API key); nil
	// means DefaultRateLimits. RateLimiter changes them while running.
	RateLimits map[string]emulate.Rate
	// StateFile, when set, is where the emulator persists its pods (their
	// volumes and containers included) and restores them from when it
	// starts (see "Persisted state" in the package doc).
	StateFile string
}

// ClassRead is the rate-limit class of the calls that read pods: GET
// /v2/pods, GET /v2/pods/{id}, and GraphQL's pod and myself queries.
const ClassRead = "pods.read"

// DefaultRateLimits is what the emulator enforces per user: 10 pod reads
// a second. RunPod's docs (api-reference-v2/rate-limits) describe per-user
// quotas over minute, hour and day windows, told in the RateLimit-Policy
// header, and 429 with Retry-After past them, but publish no figure, so
// the emulator uses gpuflow's default for an unpublished limit, on the
// describe and list calls only. See docs/PROVIDERS.md.
var DefaultRateLimits = map[string]emulate.Rate{ClassRead: {PerSecond: 10}}

// DefaultDataCenters are where pods land by default.
var DefaultDataCenters = []string{"US-TX-3", "EU-RO-1", "CA-MTL-1"}

// Request is one API request the emulator answered, for tests that check
// the client's requests and the emulator's answers against RunPod's spec.
// It holds bodies as sent, secrets included (the agent token in a pod's
// env): keep it out of logs. Query has GraphQL's api_key redacted.
type Request struct {
	Method string
	Path   string
	Query  string
	Body   []byte
	// Status and Response are the answer; ContentType its media type.
	Status      int
	Response    []byte
	ContentType string
}

// Emulator is an emulated RunPod API. It is safe for concurrent use.
type Emulator struct {
	opts   Options
	timing emulate.Timing
	now    func() time.Time
	log    *slog.Logger
	agent  *http.Client
	faults emulate.Switches
	limits *emulate.RateLimiter

	mu            sync.Mutex
	pods          map[string]*pod
	removed       map[string]podRuns // by id: the deleted pods' container counts
	recorded      []Request
	recordedBytes int
	closed        bool
	creates       map[string]int // pod name → pods created with it
	dirty         bool           // the state changed since it was last persisted

	ctx    context.Context // ends on Close: emulated jobs and slow answers
	cancel context.CancelFunc
	wg     sync.WaitGroup // the clock and the emulated jobs
}

// New returns a running emulator; Close stops it.
func New(opts Options) *Emulator {
	e := &Emulator{opts: opts, timing: opts.Timing, now: opts.Now, log: opts.Logger, agent: opts.AgentClient,
		pods: map[string]*pod{}, removed: map[string]podRuns{}, creates: map[string]int{}}
	if e.timing == (emulate.Timing{}) {
		e.timing = emulate.DefaultTiming
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.agent == nil {
		e.agent = &http.Client{Timeout: 10 * time.Second}
	}
	if e.opts.GPUs == nil {
		e.opts.GPUs = DefaultGPUs
	}
	if len(e.opts.DataCenters) == 0 {
		e.opts.DataCenters = DefaultDataCenters
	}
	if e.opts.RetryAfter <= 0 {
		e.opts.RetryAfter = time.Second
	}
	if e.opts.MaxRecorded <= 0 {
		e.opts.MaxRecorded = 1000
	}
	if e.opts.MaxRecordedBytes <= 0 {
		e.opts.MaxRecordedBytes = 64 << 20
	}
	rates := opts.RateLimits
	if rates == nil {
		rates = DefaultRateLimits
	}
	e.limits = emulate.NewRateLimiter(rates, nil)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.restore()
	e.wg.Go(e.clock)
	return e
}

// clock advances the pods while nobody asks: jobs start when their pod
// runs, safety timers fire.
func (e *Emulator) clock() {
	tick := min(max(min(e.timing.Pending, e.timing.Starting)/4, 5*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.mu.Lock()
			e.advance()
			e.flush()
			e.mu.Unlock()
		}
	}
}

// Faults returns the fault switches.
func (e *Emulator) Faults() *emulate.Switches { return &e.faults }

// RateLimiter returns the emulator's request rate limiter: its counts of
// ClassRead are the pod reads it answered (Allowed) and refused with 429
// (Throttled).
func (e *Emulator) RateLimiter() *emulate.RateLimiter { return e.limits }

// Live returns the ids of the pods not deleted, sorted.
func (e *Emulator) Live() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.pods))
	for id := range e.pods {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Requests returns the API requests answered so far, oldest first (at most
// Options.MaxRecorded).
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.recorded)
}

// Errors of Preempt.
var (
	ErrNotFound       = errors.New("no such pod")
	ErrNotPreemptible = errors.New("pod is not a running interruptible pod")
)

// Preempt reclaims a running interruptible pod, as RunPod does when it
// needs the GPU back: the pod goes EXITED and its job is cancelled.
func (e *Emulator) Preempt(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	p := e.pods[id]
	switch {
	case p == nil:
		return fmt.Errorf("preempt %s: %w", id, ErrNotFound)
	case !p.spot || p.stopped:
		return fmt.Errorf("preempt %s: %w", id, ErrNotPreemptible)
	}
	e.stop(p)
	p.preempted = true
	e.changed()
	e.log.Info("runpod emulator: pod preempted", "pod_id", id)
	return nil
}

// Close stops the clock and every emulated job, and waits for them. Pods
// stay (Live still lists them).
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	for _, p := range e.pods {
		e.stopJob(p)
	}
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
}

// ServeHTTP answers RunPod's API, and the admin endpoints under
// /_emulator/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/_emulator/"); ok {
		e.admin(w, r, rest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	e.serve(rec, r, body)
	e.log.Debug("runpod emulator", "method", r.Method, "path", r.URL.Path, "status", rec.status)
	e.mu.Lock()
	e.record(Request{
		Method: r.Method, Path: r.URL.Path, Query: redactQuery(r), Body: body,
		Status: rec.status, Response: bytes.Clone(rec.body.Bytes()), ContentType: rec.Header().Get("Content-Type"),
	})
	e.mu.Unlock()
}

// record keeps req for Requests, dropping the oldest requests while more
// than MaxRecorded are kept or their bodies pass MaxRecordedBytes (the
// newest is always kept). e.mu is held.
func (e *Emulator) record(req Request) {
	e.recorded = append(e.recorded, req)
	e.recordedBytes += len(req.Body) + len(req.Response)
	n := 0
	for n < len(e.recorded)-1 && (len(e.recorded)-n > e.opts.MaxRecorded || e.recordedBytes > e.opts.MaxRecordedBytes) {
		e.recordedBytes -= len(e.recorded[n].Body) + len(e.recorded[n].Response)
		n++
	}
	if n > 0 {
		clear(e.recorded[:n]) // let the dropped bodies be collected
		e.recorded = slices.Delete(e.recorded, 0, n)
	}
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	gql := r.URL.Path == "/graphql"
	if !e.authorized(r, gql) {
		if gql {
			gqlFail(w, http.StatusUnauthorized, "Unauthorized")
		} else if bearer(r) == "" {
			problem(w, http.StatusUnauthorized, "missing bearer token", nil)
		} else {
			problem(w, http.StatusUnauthorized, "invalid bearer token", nil)
		}
		return
	}
	f := e.faults.Get()
	if f.Slow > 0 {
		// Not cut short when the client gives up: like a real server, the
		// work (a create) still happens after the client's timeout.
		select {
		case <-time.After(f.Slow):
		case <-e.ctx.Done():
		}
	}
	if f.Throttle {
		w.Header().Set("Retry-After", fmt.Sprint(max(int(e.opts.RetryAfter/time.Second), 1)))
		if gql {
			gqlFail(w, http.StatusTooManyRequests, "Too Many Requests")
		} else {
			problem(w, http.StatusTooManyRequests, "rate limit exceeded for the minute window", nil)
		}
		return
	}
	if isRead(r, gql, body) {
		if ok, wait := e.limits.Allow(ClassRead, bearer(r)+r.URL.Query().Get("api_key")); !ok {
			e.rateLimited(w, gql, wait)
			return
		}
	}
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.ServerErrors }) {
		e.internalError(w, gql)
		return
	}
	e.mu.Lock()
	e.advance()
	e.mu.Unlock()
	if gql {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			gqlFail(w, http.StatusMethodNotAllowed, "GraphQL only supports POST requests.")
			return
		}
		e.graphql(w, body)
		return
	}
	e.rest(w, r, body)
}

// isRead reports whether the request reads pods (ClassRead).
func isRead(r *http.Request, gql bool, body []byte) bool {
	if !gql {
		path := strings.TrimSuffix(r.URL.Path, "/")
		return r.Method == http.MethodGet && (path == "/v2/pods" || strings.HasPrefix(path, "/v2/pods/") && strings.Count(path, "/") == 3)
	}
	var req struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(body, &req) != nil || strings.Contains(req.Query, "mutation") {
		return false
	}
	return strings.Contains(req.Query, "myself") || strings.Contains(req.Query, "pod")
}

// rateLimited answers a request over the user's limit as RunPod does:
// 429 with Retry-After (whole seconds) and the RateLimit fields of the
// IETF draft RunPod's v2 spec declares.
func (e *Emulator) rateLimited(w http.ResponseWriter, gql bool, wait time.Duration) {
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if r, ok := e.limits.Rates()[ClassRead]; ok {
		w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"second";q=%d;w=1`, max(int(r.PerSecond), 1)))
	}
	w.Header().Set("RateLimit", fmt.Sprintf(`"second";r=0;t=%d`, secs))
	if gql {
		gqlFail(w, http.StatusTooManyRequests, "Too Many Requests")
		return
	}
	problem(w, http.StatusTooManyRequests, "rate limit exceeded for the second window", nil)
}

func (e *Emulator) internalError(w http.ResponseWriter, gql bool) {
	if gql {
		gqlFail(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	problem(w, http.StatusInternalServerError, "internal server error", nil)
}

// redactQuery is the request's query without GraphQL's api_key.
func redactQuery(r *http.Request) string {
	q := r.URL.Query()
	if !q.Has("api_key") {
		return r.URL.RawQuery
	}
	q.Set("api_key", "redacted")
	return q.Encode()
}

func bearer(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

func (e *Emulator) authorized(r *http.Request, gql bool) bool {
	key := bearer(r)
	if key == "" && gql {
		key = r.URL.Query().Get("api_key")
	}
	if key == "" {
		return false
	}
	return e.opts.APIKey == "" || key == e.opts.APIKey
}

// admin serves /_emulator/faults and /_emulator/preempt/<id>.
func (e *Emulator) admin(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case rest == "faults":
		e.faults.Handler().ServeHTTP(w, r)
	case rest == "ratelimits":
		e.limits.Handler().ServeHTTP(w, r)
	case rest == "live":
		emulate.LiveHandler(e.LiveReport).ServeHTTP(w, r)
	case strings.HasPrefix(rest, "preempt/"):
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		err := e.Preempt(strings.TrimPrefix(rest, "preempt/"))
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		http.NotFound(w, r)
	}
}

// recorder keeps the status and body of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len() < 1<<20 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// newID returns a pod id like RunPod's: 14 lowercase alphanumerics.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 14)
	_, _ = rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
