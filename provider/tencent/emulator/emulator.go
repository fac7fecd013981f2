// Package emulator is an emulator of the Tencent Cloud CVM API (version
// 2017-03-12), production code used by `make run` (mode "emulated") and by
// the tencent provider's tests.
//
// It speaks the real wire format, so the real tencentcloud-sdk-go client
// talks to it unchanged; only the endpoint differs:
//
//   - POST / with a JSON body, the action in X-TC-Action, the version in
//     X-TC-Version (2017-03-12) and the region in X-TC-Region;
//   - every request is authenticated: the TC3-HMAC-SHA256 signature in the
//     Authorization header is verified against the credentials configured
//     on the emulator (Options.Credentials, by default TestSecretID and
//     TestSecretKey), and the timestamp must be within MaxSkew of the wall
//     clock;
//   - every answer is HTTP 200 with {"Response":{...,"RequestId":"..."}};
//     errors are {"Response":{"Error":{"Code","Message"},"RequestId"}} with
//     the API's own codes.
//
// Actions: RunInstances (ClientToken, DryRun, TagSpecification, UserData,
// SPOTPAID with InstanceMarketOptions, ActionTimer), DescribeInstances
// (InstanceIds or Filters instance-id, instance-name, instance-state,
// instance-charge-type, zone, tag-key, tag-value, tag:<key>; Offset/Limit),
// DescribeInstancesStatus, TerminateInstances,
// DescribeZoneInstanceConfigInfos and InquiryPriceRunInstances.
//
// Instances follow the real state machine, driven by the clock
// (Options.Now): PENDING for Timing.Pending, STARTING for Timing.Starting,
// then RUNNING; TerminateInstances moves them to TERMINATING and they vanish
// after Options.Terminating; a TERMINATING instance may not be terminated
// again and a PENDING one answers UnsupportedOperation.InstanceStatePending.
// When an instance reaches RUNNING the emulator plays the job its user data
// describes (agentscript.Env → emulate.RunJob), reporting to the agent
// endpoint exactly as the boot script on a real machine would; terminating
// the instance stops the job. Preempt reclaims a running spot instance: it
// goes to SHUTDOWN (its last operation left untouched, as no API call of
// the user's caused it) and vanishes after Options.ReclaimLinger. An
// ActionTimer fires TerminateInstances at its time.
//
// Persisted state: with Options.StateFile the emulator writes every
// instance (ids, spec, tags, user data, state, timestamps, ActionTimer,
// the ClientToken it was created with), the ClientToken records, the
// creates per ClientToken and each instance's job (its plan, start time,
// whether it ended and with what exit code, whether the finished report
// was acknowledged), with emulate.SaveFile (temp, fsync, rename) after
// every change and before the call that made it is answered, so a kill -9
// loses no acknowledged create or terminate. New restores them: instances
// keep their ids and states, the clock catches up with what came due
// while the emulator was down, and a running job goes on from its start
// time (one whose end passed ends at once and reports then). GET
// /_emulator/live lists the live instances and the creates per
// ClientToken (emulate.LiveReport).
//
// The modelling compromise: on a real cloud a machine's agent keeps running
// while the API frontend is down; here the emulated agent lives in the
// emulator's process, so its reports pause while the process is down and
// resume after the restart (the agent retries each report until it is
// acknowledged, as now). The real agent retries with backoff while the API
// is unreachable, so the API sees the same thing either way: late reports.
//
// Prices are in USD, as on an international-site account.
//
// Faults (emulate.Faults, flipped with Faults().Set or PUT
// /_emulator/faults) answer with the real codes: NoCapacity →
// ResourceInsufficient.SpecifiedInstanceType on RunInstances and SOLD_OUT
// rows in DescribeZoneInstanceConfigInfos; Throttle → RequestLimitExceeded on
// every call (which the describe calls also answer past their published
// rate, Options.RateLimits; GET/PUT /_emulator/ratelimits); ServerErrors → InternalError; Slow delays every answer;
// CreateLost → the instance is created but the answer is InternalError;
// TerminateFailures → MutexOperation.TaskRunning. POST
// /_emulator/preempt/<instance id> preempts a spot instance.
package emulator

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Test credentials the emulator accepts when Options.Credentials is empty.
// They open nothing but the emulator.
const (
	TestSecretID  = "AKIDgpuflowEmulatorTestSecretId0000"
	TestSecretKey = "gpuflowEmulatorTestSecretKey0000"
)

// APIVersion is the CVM API version the emulator speaks.
const APIVersion = "2017-03-12"

// Instance states (InstanceState) the emulator uses.
const (
	StatePending  = "PENDING"
	StateStarting = "STARTING"
	StateRunning  = "RUNNING"
	// StateStopped is a VM whose guest powered it off (the job's agent
	// does when its end is not acknowledged): CVM shows it STOPPED, with
	// its last operation unchanged (a StopInstances call would set it).
	StateStopped     = "STOPPED"
	StateShutdown    = "SHUTDOWN"
	StateTerminating = "TERMINATING"
)

// Charge types the emulator sells.
const (
	ChargePostpaid = "POSTPAID_BY_HOUR"
	ChargeSpot     = "SPOTPAID"
)

// Options configure an Emulator.
type Options struct {
	// Credentials maps each accepted SecretId to its SecretKey; empty means
	// TestSecretID/TestSecretKey.
	Credentials map[string]string
	// Timing is how long instances spend in PENDING and STARTING and how
	// long emulated jobs run; the zero value means emulate.DefaultTiming.
	Timing emulate.Timing
	// Terminating is how long a terminated instance stays TERMINATING
	// before it vanishes; 0 means Timing.Pending.
	Terminating time.Duration
	// ReclaimLinger is how long a reclaimed spot instance stays SHUTDOWN
	// before it vanishes; 0 means one minute.
	ReclaimLinger time.Duration
	// Now is the clock that drives the instances; nil means time.Now.
	Now func() time.Time
	// MaxSkew bounds the difference between a request's X-TC-Timestamp and
	// the wall clock (not Now); 0 means 5 minutes, as the real API.
	MaxSkew time.Duration
	// Tick is how often the clock is looked at to move instances on
	// between requests; 0 means 20ms.
	Tick time.Duration
	// AgentClient sends the emulated jobs' reports; nil means a client
	// with a 10s timeout.
	AgentClient *http.Client
	// Logger receives the emulator's logs; nil discards them.
	Logger *slog.Logger
	// RateLimits are the request rates enforced per action, counted per
	// SecretId (the API counts per API + access region + sub-account; the
	// emulator is one access region); nil means DefaultRateLimits. Actions
	// not listed are not limited. RateLimiter changes them while running.
	RateLimits map[string]emulate.Rate
	// StateFile, when set, is where the emulator persists its instances,
	// ClientToken records and jobs, and restores them from when it
	// starts (see "Persisted state" in the package doc).
	StateFile string
}

// DefaultRateLimits are the published per-account request rates of the
// describe calls ("默认接口请求频率限制" on each action's page of the CVM
// API 3.0 docs): 40 requests a second each for DescribeInstances,
// DescribeInstancesStatus and DescribeZoneInstanceConfigInfos. Over it the
// API answers RequestLimitExceeded. See docs/PROVIDERS.md.
var DefaultRateLimits = map[string]emulate.Rate{
	"DescribeInstances":               {PerSecond: 40},
	"DescribeInstancesStatus":         {PerSecond: 40},
	"DescribeZoneInstanceConfigInfos": {PerSecond: 40},
}

// Emulator is an in-process Tencent Cloud CVM API. It is an http.Handler.
type Emulator struct {
	creds         map[string]string
	timing        emulate.Timing
	terminating   time.Duration
	reclaimLinger time.Duration
	maxSkew       time.Duration
	now           func() time.Time
	agentClient   *http.Client
	log           *slog.Logger
	faults        emulate.Switches

	limits *emulate.RateLimiter

	mu        sync.Mutex
	instances map[string]*instance // by instance id
	tokens    map[string][]string  // region + "\x00" + ClientToken → instance ids
	seq       int
	closed    bool
	wakeups   emulate.Wakeups // when instances are next due to move on (schedule.go)
	creates   map[string]int  // ClientToken → instances it created
	stateFile string
	dirty     bool // the state changed since it was last persisted
	catchUp   bool // restoring: jobs start at their instance's boot time

	jobs      sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
	ticker    sync.WaitGroup
}

// instance is one emulated CVM instance.
type instance struct {
	id, uuid      string
	seq           int
	region, zone  string
	typ           instanceType
	charge        string
	state         string
	name, imageID string
	diskType      string
	diskGB        int64
	tags          [][2]string
	userData      string // decoded
	privateIP     string
	publicIP      bool
	created       time.Time
	timerAt       time.Time // ActionTimer TerminateInstances; zero for none
	timerID       string
	dropAt        time.Time // when a TERMINATING or SHUTDOWN instance vanishes
	reclaimed     bool
	latestOp      string
	latestOpState string
	latestOpReq   string
	clientToken   string
	job           *emulate.JobState // the emulated job, once it started
	cancelJob     context.CancelFunc
	wake          uint64 // ticket of its live entry in Emulator.wakeups; 0 for none
}

// New returns a running emulator; Close stops its clock and jobs.
func New(opts Options) *Emulator {
	e := &Emulator{
		creds:         maps.Clone(opts.Credentials),
		timing:        opts.Timing,
		terminating:   opts.Terminating,
		reclaimLinger: cmp.Or(opts.ReclaimLinger, time.Minute),
		maxSkew:       cmp.Or(opts.MaxSkew, 5*time.Minute),
		now:           opts.Now,
		agentClient:   opts.AgentClient,
		log:           opts.Logger,
		instances:     map[string]*instance{},
		tokens:        map[string][]string{},
		creates:       map[string]int{},
		stateFile:     opts.StateFile,
		stop:          make(chan struct{}),
	}
	rates := opts.RateLimits
	if rates == nil {
		rates = DefaultRateLimits
	}
	e.limits = emulate.NewRateLimiter(rates, nil)
	if len(e.creds) == 0 {
		e.creds = map[string]string{TestSecretID: TestSecretKey}
	}
	if e.timing == (emulate.Timing{}) {
		e.timing = emulate.DefaultTiming
	}
	if e.terminating <= 0 {
		e.terminating = e.timing.Pending
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.agentClient == nil {
		e.agentClient = &http.Client{Timeout: 10 * time.Second}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("emulator", "tencent")
	e.restore()
	tick := cmp.Or(opts.Tick, 20*time.Millisecond)
	e.ticker.Add(1)
	go func() {
		defer e.ticker.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
				e.mu.Lock()
				e.advanceLocked()
				e.flushLocked()
				e.mu.Unlock()
			}
		}
	}()
	return e
}

// Faults returns the emulator's fault switches.
func (e *Emulator) Faults() *emulate.Switches { return &e.faults }

// RateLimiter returns the emulator's request rate limiter: its counts per
// action are the calls the emulator answered (Allowed) and refused with
// RequestLimitExceeded (Throttled), after authentication.
func (e *Emulator) RateLimiter() *emulate.RateLimiter { return e.limits }

// Close stops the clock and every emulated job, and waits for them. The
// instances stay as they are. Close is idempotent.
func (e *Emulator) Close() {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.ticker.Wait()
		e.mu.Lock()
		e.closed = true
		for _, in := range e.instances {
			if in.cancelJob != nil {
				in.cancelJob()
				in.cancelJob = nil
			}
		}
		e.mu.Unlock()
		e.jobs.Wait()
	})
}

// Live returns the ids of the instances that still exist and have not been
// terminated or reclaimed (those in TERMINATING or SHUTDOWN go away by
// themselves), sorted.
func (e *Emulator) Live() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flushLocked()
	e.advanceLocked()
	var ids []string
	for id, in := range e.instances {
		if in.state != StateTerminating && in.state != StateShutdown {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// State returns the InstanceState of the instance, or "" when it does not
// exist. machineID may carry the provider's "<region>:" prefix.
func (e *Emulator) State(machineID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flushLocked()
	e.advanceLocked()
	if in := e.instances[instanceID(machineID)]; in != nil {
		return in.state
	}
	return ""
}

// ErrNotPreemptible is returned by Preempt for an instance that is not a
// running spot instance.
var ErrNotPreemptible = errors.New("not a running spot instance")

// ErrNotFound is returned for an instance the emulator does not hold.
var ErrNotFound = errors.New("instance not found")

// Preempt reclaims a running spot instance as Tencent Cloud does when the
// spot market takes it back: its job stops, it shows SHUTDOWN and vanishes
// after Options.ReclaimLinger. machineID may carry the provider's
// "<region>:" prefix.
func (e *Emulator) Preempt(machineID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flushLocked()
	e.advanceLocked()
	id := instanceID(machineID)
	in := e.instances[id]
	if in == nil {
		return fmt.Errorf("preempt %s: %w", id, ErrNotFound)
	}
	if in.charge != ChargeSpot || in.state != StateRunning {
		return fmt.Errorf("preempt %s (%s, %s): %w", id, in.charge, in.state, ErrNotPreemptible)
	}
	in.state = StateShutdown
	in.reclaimed = true
	in.dropAt = e.now().Add(e.reclaimLinger)
	e.stopJobLocked(in)
	e.scheduleLocked(in)
	e.log.Info("spot instance reclaimed", "instance_id", id)
	return nil
}

// instanceID strips a "<region>:" prefix.
func instanceID(machineID string) string {
	if _, id, ok := strings.Cut(machineID, ":"); ok {
		return id
	}
	return machineID
}

// ServeHTTP serves the CVM API on POST / and the admin endpoints under
// /_emulator/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_emulator/faults":
		e.faults.Handler().ServeHTTP(w, r)
	case r.URL.Path == "/_emulator/ratelimits":
		e.limits.Handler().ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, "/_emulator/preempt/"):
		e.servePreempt(w, r)
	case r.URL.Path == "/_emulator/live":
		emulate.LiveHandler(e.LiveReport).ServeHTTP(w, r)
	default:
		e.serveAPI(w, r)
	}
}

func (e *Emulator) servePreempt(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/_emulator/preempt/")
	err := e.Preempt(id)
	switch {
	case errors.Is(err, ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"preempted": instanceID(id)})
	}
}

// terminateLocked starts an instance's destruction.
func (e *Emulator) terminateLocked(in *instance, requestID string) {
	in.state = StateTerminating
	in.latestOp = "TerminateInstances"
	in.latestOpState = "OPERATING"
	in.latestOpReq = requestID
	in.dropAt = e.now().Add(e.terminating)
	e.stopJobLocked(in)
	e.scheduleLocked(in)
}

func (e *Emulator) stopJobLocked(in *instance) {
	if in.cancelJob != nil {
		in.cancelJob()
		in.cancelJob = nil
	}
}

// startJobLocked plays the job described by the instance's user data.
// While restoring (e.catchUp), a job whose instance booted while the
// emulator was down starts at the boot time.
func (e *Emulator) startJobLocked(in *instance) {
	if e.closed || in.userData == "" {
		return
	}
	env := agentscript.Env(in.userData)
	jobEnv := map[string]string{}
	for k, v := range env {
		if name, ok := strings.CutPrefix(k, agentscript.EnvPrefixJob); ok {
			jobEnv[name] = v
		}
	}
	plan := emulate.PlanJob(jobEnv, e.timing)
	in.job = &emulate.JobState{Plan: plan, Started: e.now()}
	if e.catchUp {
		in.job.Started = in.created.Add(e.timing.Pending + e.timing.Starting)
	}
	e.dirty = true
	e.log.Info("emulated job started", "instance_id", in.id, "job_id", env[agentscript.EnvJobID], "exit_code", plan.ExitCode, "run", plan.Run)
	e.playJobLocked(in, e.catchUp)
}

// playJobLocked runs (or, restored, resumes) the instance's job from its
// state, persisting its end and acknowledgement. A resumed job goes on
// from its start time on the clock; a new one starts now.
func (e *Emulator) playJobLocked(in *instance, resumed bool) {
	if e.closed || in.job == nil || in.job.Acked {
		return
	}
	var elapsed time.Duration
	if resumed {
		elapsed = max(e.now().Sub(in.job.Started), 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancelJob = cancel
	emulate.PlayMachineJob(ctx, cancel, &e.jobs, in.userData, e.agentClient, *in.job, elapsed, func(f func(*emulate.JobState)) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.instances[in.id] == in && in.job != nil {
			f(in.job)
			e.dirty = true
			e.flushLocked()
		}
	}, func() { e.powerOff(in) })
}

// powerOff is the guest powering the instance off: a running instance
// shows STOPPED (its action timer still stands).
func (e *Emulator) powerOff(in *instance) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.instances[in.id] != in || in.state != StateRunning {
		return
	}
	e.log.Info("the guest powered the instance off", "instance_id", in.id)
	in.state = StateStopped
	e.stopJobLocked(in)
	e.scheduleLocked(in)
	e.flushLocked()
}

// newID returns prefix followed by n random lowercase letters and digits.
func newID(prefix string, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// newUUID returns a random UUID-shaped string (request ids, instance uuids).
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
