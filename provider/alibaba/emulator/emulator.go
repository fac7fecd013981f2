// Package emulator is an Alibaba Cloud ECS emulator: an http.Handler that
// speaks the ECS RPC API (version 2014-05-26) as the real service does, so
// the real SDK (ecs-20140526/v7 on darabonba-openapi/v2) talks to it
// unchanged once its endpoint points here.
//
// It is production code, clearly named: `make run` serves it in process
// for the "emulated" provider mode, and the adapter's tests drive the SDK
// against it. It verifies ACS3-HMAC-SHA256 signatures (and the legacy
// HMAC-SHA1 RPC signature) with the key pair it is configured with, answers
// errors as HTTP 4xx/5xx with the flat JSON body
// {"RequestId","HostId","Code","Message","Recommend"}, and moves instances
// through the ECS status machine (Pending → Starting → Running) over time.
// A Running instance runs its emulated job: the agent endpoint and the job's
// environment are read back from the instance's user data (the boot script
// written by agentscript), and the job reports progress, output and its
// exit code there as the real boot script would.
//
// Persisted state: with Options.StateFile the emulator writes every
// instance (ids, spec, tags, user data, status, timestamps, locks, the
// ClientToken it was created with), the ClientToken records, the creates
// per ClientToken and each instance's job (its plan, start time, whether
// it ended and with what exit code, whether the finished report was
// acknowledged), with emulate.SaveFile (temp, fsync, rename) after every
// change and before the call that made it is answered, so a kill -9 loses
// no acknowledged create or delete. New restores them: instances keep
// their ids and statuses, the clock catches up with what came due while
// the emulator was down, and a running job goes on from its start time
// (one whose end passed ends at once and reports then). GET
// /_emulator/live lists the instances and the creates per ClientToken
// (emulate.LiveReport).
//
// The modelling compromise: on a real cloud a machine's agent keeps running
// while the API frontend is down; here the emulated agent lives in the
// emulator's process, so its reports pause while the process is down and
// resume after the restart (the agent retries each report until it is
// acknowledged, as now). The real agent retries with backoff while the API
// is unreachable, so the API sees the same thing either way: late reports.
//
// Supported actions: RunInstances, DescribeInstances,
// DescribeInstanceStatus, DeleteInstance, DeleteInstances,
// DescribeAvailableResource and DescribePrice. Fault switches
// (emulate.Faults) make it answer as ECS does when things go wrong; admin
// endpoints under /_emulator/ flip them for the dev command. The describe
// calls are limited to a per-account rate (Options.RateLimits; GET/PUT
// /_emulator/ratelimits) and answer Throttling.User past it.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Test credentials the emulator accepts unless Options says otherwise.
// They are not secrets: they exist only here.
const (
	TestAccessKeyID     = "LTAI5tEmulatorTestKey0001"
	TestAccessKeySecret = "emulator-test-secret-0001"
)

// APIVersion is the ECS API version the emulator speaks.
const APIVersion = "2014-05-26"

// DefaultRegion is the region of an emulator configured without regions.
const DefaultRegion = "cn-hangzhou"

// LockRecycling is the operation lock of a spot instance being reclaimed.
const LockRecycling = "Recycling"

// Options configure an Emulator.
type Options struct {
	// Credentials maps each accepted AccessKey id to its secret; empty
	// means TestAccessKeyID → TestAccessKeySecret.
	Credentials map[string]string
	// Regions maps each region to its zones; nil means DefaultRegion with
	// zones "cn-hangzhou-i" and "cn-hangzhou-j".
	Regions map[string][]string
	// InstanceTypes are sold in every zone; nil means DefaultInstanceTypes.
	InstanceTypes []InstanceType
	// Currency of DescribePrice and RunInstances answers: "USD" (default,
	// the international site) or "CNY" (the China site, prices converted
	// with CNYPerUSD).
	Currency  string
	CNYPerUSD float64 // default 7.2
	// Timing is how long instances stay Pending and Starting, and how long
	// an emulated job runs; zero means emulate.DefaultTiming.
	Timing emulate.Timing
	// RecycleAfter is how long a preempted spot instance stays visible
	// (Stopped, with the Recycling lock) before ECS releases it; 0 means
	// one minute.
	RecycleAfter time.Duration
	// Now is the emulator's clock; nil means time.Now. Instance states
	// follow it.
	Now func() time.Time
	// Logger receives one debug line per call; nil discards. Request
	// parameters (the user data holds the agent token) are never logged.
	Logger *slog.Logger
	// AgentClient posts the emulated jobs' reports; nil means a client with
	// a 10 s timeout.
	AgentClient *http.Client
	// RateLimits are the request rates enforced per action, counted per
	// action, region and AccessKey (ECS counts per API, region and
	// account); nil means DefaultRateLimits. Actions not listed are not
	// limited. RateLimiter changes them while running.
	RateLimits map[string]emulate.Rate
	// StateFile, when set, is where the emulator persists its instances,
	// ClientToken records and jobs, and restores them from when it
	// starts (see "Persisted state" in the package doc).
	StateFile string
}

// DefaultRateLimits are the rates the emulator enforces on ECS's instance
// describe and list calls: 10 requests a second each. ECS publishes no
// figure for them (its flow-control page sends users to the Quota Center
// console), so the emulator uses gpuflow's default for an unpublished
// limit. Over it ECS answers HTTP 400 Throttling.User. See
// docs/PROVIDERS.md.
var DefaultRateLimits = map[string]emulate.Rate{
	"DescribeInstances":      {PerSecond: 10},
	"DescribeInstanceStatus": {PerSecond: 10},
}

// Emulator is an emulated ECS endpoint. It is safe for concurrent use.
type Emulator struct {
	opts     Options
	regions  map[string][]string
	types    map[string]InstanceType
	typeList []InstanceType
	now      func() time.Time
	log      *slog.Logger
	faults   emulate.Switches
	limits   *emulate.RateLimiter

	ctx    context.Context // cancelled by Close: stops every job
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed by Close: stops the ticker

	mu       sync.Mutex
	closed   bool
	machines map[string]*machine // by instance id, released ones removed
	order    []string            // instance ids in creation order; compacted as released ones pile up
	seq      int64               // creations so far
	tokens   map[string]tokenUse // ClientToken → the create it answered
	wakeups  emulate.Wakeups     // when instances are next due to move on (schedule.go)
	creates  map[string]int      // ClientToken → instances it created
	dirty    bool                // the state changed since it was last persisted
	catchUp  bool                // restoring: jobs start at their instance's boot time
}

// tokenUse remembers a RunInstances call made with a ClientToken.
type tokenUse struct {
	fingerprint string
	ids         []string
}

// New returns an emulator and starts its clock: instances move on and
// emulated jobs start without anyone polling. Call Close when done.
func New(opts Options) *Emulator {
	if len(opts.Credentials) == 0 {
		opts.Credentials = map[string]string{TestAccessKeyID: TestAccessKeySecret}
	} else {
		opts.Credentials = maps.Clone(opts.Credentials)
	}
	if opts.Currency == "" {
		opts.Currency = "USD"
	}
	if opts.CNYPerUSD <= 0 {
		opts.CNYPerUSD = 7.2
	}
	if opts.Timing == (emulate.Timing{}) {
		opts.Timing = emulate.DefaultTiming
	}
	if opts.RecycleAfter <= 0 {
		opts.RecycleAfter = time.Minute
	}
	e := &Emulator{
		opts:     opts,
		regions:  opts.Regions,
		types:    map[string]InstanceType{},
		typeList: opts.InstanceTypes,
		now:      opts.Now,
		log:      opts.Logger,
		done:     make(chan struct{}),
		machines: map[string]*machine{},
		tokens:   map[string]tokenUse{},
		creates:  map[string]int{},
	}
	if e.regions == nil {
		e.regions = map[string][]string{DefaultRegion: {DefaultRegion + "-i", DefaultRegion + "-j"}}
	}
	if e.typeList == nil {
		e.typeList = DefaultInstanceTypes()
	}
	for _, t := range e.typeList {
		e.types[t.Name] = t
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("emulator", "alibaba")
	rates := opts.RateLimits
	if rates == nil {
		rates = DefaultRateLimits
	}
	e.limits = emulate.NewRateLimiter(rates, nil)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.restore()
	e.wg.Add(1)
	go e.tick()
	return e
}

// tick advances the instances on a short period, so jobs start and
// instances are released even when nobody calls the API.
func (e *Emulator) tick() {
	defer e.wg.Done()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
			e.mu.Lock()
			e.advance()
			e.flush()
			e.mu.Unlock()
		}
	}
}

// Faults returns the emulator's fault switches.
func (e *Emulator) Faults() *emulate.Switches { return &e.faults }

// RateLimiter returns the emulator's request rate limiter: its counts per
// action are the authenticated calls the emulator answered (Allowed) and
// refused with Throttling.User (Throttled).
func (e *Emulator) RateLimiter() *emulate.RateLimiter { return e.limits }

// Close stops the clock and every emulated job, and waits for them. The
// emulator answers 503 afterwards.
func (e *Emulator) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	for _, m := range e.machines {
		m.stopJob()
	}
	e.mu.Unlock()
	close(e.done)
	e.cancel()
	e.wg.Wait()
}

// Live returns the ids of the instances that exist (not released), in
// creation order.
func (e *Emulator) Live() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flush()
	e.advance()
	var ids []string
	for _, m := range e.inOrder() {
		ids = append(ids, m.id)
	}
	return ids
}

// ErrNotPreemptible is returned by Preempt for an instance that is not a
// running spot instance.
var ErrNotPreemptible = errors.New("not a running spot instance")

// ErrNoInstance is returned by Preempt for an unknown instance.
var ErrNoInstance = errors.New("no such instance")

// Preempt reclaims a running spot instance as ECS does: its job stops, it
// shows Stopped with the Recycling operation lock, and it is released
// RecycleAfter later. machineID is the instance id, optionally prefixed
// with "<region>:" as the adapter's machine ids are.
func (e *Emulator) Preempt(machineID string) error {
	id := machineID
	if i := strings.LastIndex(id, ":"); i >= 0 {
		id = id[i+1:]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flush()
	e.advance()
	m, ok := e.machines[id]
	if !ok {
		return fmt.Errorf("preempt %s: %w", id, ErrNoInstance)
	}
	if !m.spot || m.status != statusRunning {
		return fmt.Errorf("preempt %s (%s): %w", id, m.status, ErrNotPreemptible)
	}
	m.preempt(e.now())
	e.schedule(m)
	e.log.Info("spot instance preempted", "instance_id", id)
	return nil
}

// ServeHTTP answers ECS API calls, and the admin endpoints
// /_emulator/faults (GET/PUT emulate.Faults as JSON),
// POST /_emulator/preempt/<id> and GET /_emulator/live (the live instance
// ids). The admin endpoints are unauthenticated: serve the emulator on a
// local address only.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/_emulator/"); ok {
		e.serveAdmin(w, r, rest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	params := r.URL.Query()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && len(body) > 0 {
		form, err := url.ParseQuery(string(body))
		if err == nil {
			for k, v := range form {
				params[k] = v
			}
		}
	}
	c := &call{e: e, r: r, params: params, requestID: newRequestID()}
	c.region = params.Get("RegionId")
	status, answer := e.handle(c, body)
	e.log.Debug("ecs call", "action", c.action, "status", status, "code", codeOf(answer))

	if slow := e.faults.Get().Slow; slow > 0 {
		t := time.NewTimer(slow)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	for k, v := range c.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer)
}

func codeOf(answer any) string {
	if a, ok := answer.(apiError); ok {
		return a.Code
	}
	return ""
}

// call is one API request being answered.
type call struct {
	e         *Emulator
	r         *http.Request
	action    string
	params    url.Values
	region    string
	requestID string
	headers   map[string]string
}

// fail returns an error answer in the API's shape.
func (c *call) fail(status int, code, message string) (int, any) {
	host := "ecs.aliyuncs.com"
	if c.region != "" {
		host = "ecs." + c.region + ".aliyuncs.com"
	}
	return status, apiError{RequestID: c.requestID, HostID: host, Code: code, Message: message,
		Recommend: "https://api.aliyun.com/troubleshoot?q=" + code + "&product=Ecs"}
}

// The answers every action may give.
func (c *call) missing(name string) (int, any) {
	return c.fail(http.StatusBadRequest, "MissingParameter",
		fmt.Sprintf("The input parameter %q that is mandatory for processing this request is not supplied.", name))
}

func (c *call) internalError() (int, any) {
	return c.fail(http.StatusInternalServerError, "InternalError",
		"The request processing has failed due to some unknown error, exception or failure.")
}

func (c *call) unavailable() (int, any) {
	return c.fail(http.StatusServiceUnavailable, "ServiceUnavailable",
		"The request has failed due to a temporary failure of the server.")
}

// throttleTimeLeft is what a throttled answer of the Throttle fault asks
// the client to wait.
const throttleTimeLeft = 500 * time.Millisecond

// throttled answers as ECS does past a flow-control limit: HTTP 400
// Throttling.User, and the x-ratelimit-user-api header whose TimeLeft (ms)
// the SDK reads into ThrottlingError.RetryAfter.
func (c *call) throttled(timeLeft time.Duration) (int, any) {
	limit := 100
	if r, ok := c.e.limits.Rates()[c.action]; ok {
		limit = int(r.PerSecond)
	}
	c.headers = map[string]string{"x-ratelimit-user-api": fmt.Sprintf("Limit:%d,Remain:0,TimeLeft:%d,Reset:%d",
		limit, max(timeLeft.Milliseconds(), 1), time.Now().Add(timeLeft).Unix())}
	return c.fail(http.StatusBadRequest, "Throttling.User", "Request was denied due to user flow control.")
}

// handle authenticates, applies the faults and dispatches one call.
func (e *Emulator) handle(c *call, body []byte) (int, any) {
	r := c.r
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return c.fail(http.StatusMethodNotAllowed, "UnsupportedHTTPMethod", "This http method is not supported.")
	}
	secretOf := func(id string) (string, bool) {
		secret, ok := e.opts.Credentials[id]
		return secret, ok && id != ""
	}
	var keyID string
	if c.params.Has("Signature") {
		c.action = c.params.Get("Action")
		if c.action == "" {
			c.action = r.Header.Get("x-acs-action")
		}
		var aerr *authError
		if keyID, aerr = verifyV1(r.Method, c.params, secretOf); aerr != nil {
			return c.fail(aerr.status, aerr.code, aerr.message)
		}
		for _, k := range v1CommonParams {
			c.params.Del(k)
		}
	} else {
		c.action = r.Header.Get("x-acs-action")
		auth := r.Header.Get("Authorization")
		if auth == "" {
			return c.fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
		}
		var aerr *authError
		if keyID, aerr = verifyACS3(r, body, auth, secretOf); aerr != nil {
			return c.fail(aerr.status, aerr.code, aerr.message)
		}
		if v := r.Header.Get("x-acs-version"); v != APIVersion {
			return c.fail(http.StatusBadRequest, "InvalidVersion", "Specified parameter Version is not valid.")
		}
	}
	if c.action == "" {
		return c.missing("Action")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flush() // persisted before the answer goes
	if e.closed {
		return c.unavailable()
	}
	e.advance()
	f := e.faults.Get()
	if f.Throttle {
		return c.throttled(throttleTimeLeft)
	}
	if ok, wait := e.limits.Allow(c.action, c.region+"\x00"+keyID); !ok {
		return c.throttled(wait)
	}
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.ServerErrors }) {
		return c.unavailable()
	}
	switch c.action {
	case "RunInstances":
		return e.runInstances(c)
	case "DescribeInstances":
		return e.describeInstances(c)
	case "DescribeInstanceStatus":
		return e.describeInstanceStatus(c)
	case "DeleteInstance":
		return e.deleteInstance(c)
	case "DeleteInstances":
		return e.deleteInstances(c)
	case "DescribeAvailableResource":
		return e.describeAvailableResource(c)
	case "DescribePrice":
		return e.describePrice(c)
	}
	return c.fail(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
}

// serveAdmin serves the fault switches and preemption for the dev command.
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case rest == "faults":
		e.faults.Handler().ServeHTTP(w, r)
	case strings.HasPrefix(rest, "preempt/"):
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		id := strings.TrimPrefix(rest, "preempt/")
		w.Header().Set("Content-Type", "application/json")
		if err := e.Preempt(id); err != nil {
			status := http.StatusConflict
			if errors.Is(err, ErrNoInstance) {
				status = http.StatusNotFound
			}
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"preempted": id})
	case rest == "ratelimits":
		e.limits.Handler().ServeHTTP(w, r)
	case rest == "live":
		emulate.LiveHandler(e.LiveReport).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// newRequestID returns an id shaped like ECS request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := strings.ToUpper(hex.EncodeToString(b[:]))
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// newInstanceID returns "i-" and 20 lowercase alphanumerics.
func newInstanceID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [20]byte
	_, _ = rand.Read(b[:])
	out := make([]byte, len(b))
	for i, v := range b {
		out[i] = alphabet[int(v)%len(alphabet)]
	}
	return "i-" + string(out)
}

// zonesOf returns the region's zones in order.
func (e *Emulator) zonesOf(region string) []string { return slices.Clone(e.regions[region]) }
