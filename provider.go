package gpuflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Provider modes, as shown by the API, the logs and the workflow memo.
const (
	ModeLive         = "live"
	ModeEmulated     = "emulated"
	ModeUnconfigured = "unconfigured"
	ModeLocal        = "local"
)

// ProviderInfo describes a provider for the API.
type ProviderInfo struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Description string `json:"description"`
	Mode        string `json:"mode"`
}

// Offer is something a provider can rent out: a GPU type and count (or a
// CPU-only slot when GPUCount is 0) in a region, at a price.
type Offer struct {
	Provider         string  `json:"provider"`
	GPUType          string  `json:"gpu_type"`
	GPUCount         int     `json:"gpu_count"`
	MemoryGB         float64 `json:"memory_gb"`     // host memory
	GPUMemoryGB      float64 `json:"gpu_memory_gb"` // per GPU
	VCPUs            int     `json:"vcpus"`
	PricePerHour     float64 `json:"price_per_hour"`
	SpotPricePerHour float64 `json:"spot_price_per_hour,omitempty"`
	Region           string  `json:"region,omitempty"`
	// Available is the stock the provider reports: how many more such
	// machines it can start now; -1 when it does not say.
	Available int `json:"available"`
	// PerGPU says Available counts GPUs, not machines: a job takes as many
	// as it asks for (the local provider's pooled GPUs).
	PerGPU bool `json:"per_gpu,omitempty"`
	// Divisible says GPUCount is the most a job may ask for and a job
	// rents only the GPUs it asks for (RunPod: a pod's gpuCount). Without
	// it (and without PerGPU) the offer is one machine of exactly GPUCount
	// GPUs (a Tencent or Alibaba instance type), rented whole.
	Divisible bool `json:"divisible,omitempty"`
}

// GPUsRented is how many GPUs a job that asks for `asked` pays for on the
// offer: those it asks for where the count is the job's (Divisible,
// PerGPU), else the machine's GPUCount, since the whole machine is rented.
// 0 for a CPU-only job or offer. PricePerHour is per GPU, so the job's
// price is PricePerHour × max(GPUsRented, 1).
func (o Offer) GPUsRented(asked int) int {
	if asked <= 0 || o.GPUCount <= 0 {
		return 0
	}
	if o.ByTheGPU() {
		return asked
	}
	return max(o.GPUCount, asked)
}

// ByTheGPU says a job takes 1 to GPUCount of the offer's GPUs and pays
// for those (Divisible, PerGPU); false for a CPU-only offer and for one
// machine of a fixed size, rented whole.
func (o Offer) ByTheGPU() bool { return o.GPUCount > 0 && (o.Divisible || o.PerGPU) }

// Units is how much of the offer's stock (Available) a job of spec takes.
func (o Offer) Units(spec JobSpec) int {
	if o.PerGPU && spec.GPUCount > 0 {
		return spec.GPUCount
	}
	return 1
}

// Key identifies the offer for blocking after a failure.
func (o Offer) Key() string { return o.Provider + "/" + o.GPUType + "/" + o.Region }

// MachineState is the state of a machine, mapped from the provider's own.
type MachineState string

// Machine states.
const (
	MachinePending  MachineState = "pending"  // accepted, not yet booting
	MachineStarting MachineState = "starting" // booting, pulling the image
	MachineRunning  MachineState = "running"  // the job runs
	MachineExited   MachineState = "exited"   // the job ended; ExitCode says how
	MachineFailed   MachineState = "failed"   // the machine died or vanished; Reason says why
	MachineStopping MachineState = "stopping" // being torn down
	MachineGone     MachineState = "gone"     // no longer exists
)

// ReasonPreempted starts the Reason of a spot machine the provider took back.
const ReasonPreempted = "preempted"

// Preempted reports whether the machine failed because the provider took
// back its spot capacity.
func (m *Machine) Preempted() bool {
	return m.State == MachineFailed && strings.HasPrefix(strings.ToLower(m.Reason), ReasonPreempted)
}

// Machine is a provider's machine running one job.
type Machine struct {
	ID           string            `json:"id"`
	Provider     string            `json:"provider"`
	State        MachineState      `json:"state"`
	ExitCode     *int              `json:"exit_code,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	GPUType      string            `json:"gpu_type,omitempty"`
	GPUCount     int               `json:"gpu_count"`
	Region       string            `json:"region,omitempty"`
	PricePerHour float64           `json:"price_per_hour,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	// Host is the worker host the machine runs on, for providers whose
	// machines run on the worker's own host (local): only that host can
	// watch or stop it. "" for clouds.
	Host string `json:"host,omitempty"`
}

// ProvisionRequest asks a provider for a machine running a job.
type ProvisionRequest struct {
	JobID string `json:"job_id"`
	// IdempotencyKey is derived from the job and the attempt: a second
	// request with the same key returns the machine created by the first.
	IdempotencyKey string  `json:"idempotency_key"`
	Offer          Offer   `json:"offer"`
	Spec           JobSpec `json:"spec"`
	// Tags mark the machine as gpuflow's, for listing and reconciliation.
	Tags map[string]string `json:"tags,omitempty"`
	// Agent is how the job on a cloud machine reports back (progress, exit
	// code, output); nil for providers that watch jobs themselves.
	Agent *AgentEndpoint `json:"agent,omitempty"`
	// MaxDuration bounds the machine's life: providers set their own safety
	// timer (auto-release, terminate-after) somewhat past it, so a machine
	// dies even if gpuflow is gone. Zero means the provider's default.
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// FirstTry says no earlier call was made with IdempotencyKey (the
	// activity's first attempt), so no machine of it can exist: a provider
	// without server-side idempotency (RunPod, which must list every pod
	// to find one by name) skips its look-up. False (the zero value) is
	// always safe. Set by the activity, never by the workflow.
	FirstTry bool `json:"-"`
}

// AgentEndpoint is where a machine's agent reports: POST URL+"/progress"
// {"percent","message"}, URL+"/finished" {"exit_code"}, URL+"/logs" (raw
// output, appended), each with "Authorization: Bearer <Token>". The token is
// valid for this job alone and expires.
type AgentEndpoint struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	// ReportGrace is how long the agent keeps trying, once the job's
	// command has ended, to get its remaining output and its exit code
	// acknowledged. Past it the agent stops its machine (a VM powers off,
	// a RunPod pod is stopped), so the provider's watcher sees the job end
	// even though its exit code never arrived. Zero means
	// agentscript.DefaultReportGrace.
	ReportGrace time.Duration `json:"report_grace,omitempty"`
}

// ReasonSelfStopped is the reason of a machine that stopped itself: its
// agent stops it when the job's end is not acknowledged within the report
// grace (AgentEndpoint.ReportGrace), so the job's exit code is unknown.
const ReasonSelfStopped = "the machine stopped itself: its agent could not get the job's end acknowledged, so its exit code is unknown"

// Provider rents machines from one vendor (or runs jobs on this host).
// Implementations live in provider/<name> and classify their errors with
// *ProviderError.
type Provider interface {
	Info() ProviderInfo
	// Offers lists what can be rented now.
	Offers(ctx context.Context) ([]Offer, error)
	// Provision starts a machine for the job. Calls with the same
	// IdempotencyKey return the same machine.
	Provision(ctx context.Context, req ProvisionRequest) (*Machine, error)
	// Describe returns the machine's current state; a machine that no longer
	// exists is returned with state MachineGone.
	Describe(ctx context.Context, machineID string) (*Machine, error)
	// Terminate stops and removes the machine. A machine that does not exist
	// counts as gone: nil.
	Terminate(ctx context.Context, machineID string) error
	// List returns the machines this provider holds for gpuflow (by tag or name).
	List(ctx context.Context) ([]Machine, error)
	// Health checks that the provider can be used (credentials, a cheap call).
	Health(ctx context.Context) error
}

// LogSource is implemented by providers that can return a job's output.
type LogSource interface {
	// ReadLogs returns up to limit bytes of the machine's output from offset.
	ReadLogs(ctx context.Context, machineID string, offset int64, limit int) ([]byte, error)
}

// BatchDescriber is implemented by providers that can describe many
// machines in few calls (Tencent and Alibaba take up to 100 ids a call,
// RunPod lists the account's pods, the local provider scans its job
// directories once). The machine watcher uses it: one look at a provider
// per interval, not one per job.
type BatchDescriber interface {
	// DescribeMany returns the state of every machine in ids, keyed by id.
	// Every id is in the answer: one that no longer exists is MachineGone.
	// An error means no state is known for any of them (the watcher tries
	// again on its next sweep).
	DescribeMany(ctx context.Context, ids []string) (map[string]Machine, error)
}

// ChangeNotifier is implemented by providers that learn of a machine's
// change themselves (the local provider waits on the processes it
// started): fn is called with the machine's id, and the watcher looks at
// it at once instead of on its next sweep. fn must not block.
type ChangeNotifier interface {
	OnChange(fn func(machineID string))
}

// PollHinter is implemented by providers that know how often their state
// is worth polling.
type PollHinter interface {
	PollInterval() time.Duration
}

// ProviderErrorKind classifies provider failures so the workflow can decide
// whether to retry, try elsewhere, or fail.
type ProviderErrorKind string

// Provider error kinds.
const (
	KindNoCapacity     ProviderErrorKind = "no_capacity"     // try another offer, or wait
	KindInvalidRequest ProviderErrorKind = "invalid_request" // the spec cannot be served here
	KindAuth           ProviderErrorKind = "auth"            // credentials rejected
	KindTransient      ProviderErrorKind = "transient"       // retry the same call
	KindNotFound       ProviderErrorKind = "not_found"       // the machine does not exist
)

// ProviderError is a classified provider failure.
type ProviderError struct {
	Provider   string
	Kind       ProviderErrorKind
	Code       string // the provider's own code, if any
	Message    string
	RetryAfter time.Duration
	Err        error
}

func (e *ProviderError) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Provider, e.Kind)
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProviderError) Unwrap() error { return e.Err }

// ProviderErrorKindOf returns the kind of the *ProviderError in err's chain,
// or KindTransient for any other error (unknown failures are retried).
func ProviderErrorKindOf(err error) ProviderErrorKind {
	var pe *ProviderError
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return KindTransient
}

// Providers is the set of configured providers, in preference order.
type Providers []Provider

// Get returns the provider named name, or nil.
func (ps Providers) Get(name string) Provider {
	for _, p := range ps {
		if p.Info().Name == name {
			return p
		}
	}
	return nil
}

// Names returns the providers' names in order.
func (ps Providers) Names() []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Info().Name
	}
	return names
}

// Tags every provider sets on machines it creates for gpuflow.
const (
	TagManaged = "gpuflow-managed"
	TagJob     = "gpuflow-job"
)

// SpecChecker is implemented by providers that can refuse a spec up front
// (the local provider without a container runtime refuses image jobs).
type SpecChecker interface {
	Check(spec JobSpec) error
}

// Reasons a provider gave no offers. OffersUnavailable starts the reason of
// a provider whose offers could not be listed (an error or a panic);
// NoOffers is a provider that listed none. Both may change by the next look.
const (
	OffersUnavailable = "offers unavailable: "
	NoOffers          = "no offers"
)

// OffersFor asks every provider that spec allows for its offers, all at
// once, in provider order. Providers that fail (or panic), offer nothing, or
// whose SpecChecker refuses the spec, are returned in refused with the reason
// instead. Offers without a provider name get the provider's.
func (ps Providers) OffersFor(ctx context.Context, spec JobSpec) (offers []Offer, refused map[string]string) {
	return ps.gather(ctx, ps.CheckSpec(spec))
}

// AllOffers asks every provider for its offers, as OffersFor does for a
// job that allows them all and that no provider refuses.
func (ps Providers) AllOffers(ctx context.Context) (offers []Offer, refused map[string]string) {
	return ps.gather(ctx, map[string]string{})
}

// CheckSpec returns the providers that cannot serve spec, with the reason:
// not allowed by the job, or refused by their SpecChecker.
func (ps Providers) CheckSpec(spec JobSpec) map[string]string {
	refused := map[string]string{}
	for _, p := range ps {
		name := p.Info().Name
		if !spec.AllowsProvider(name) {
			refused[name] = "provider not allowed by the job"
			continue
		}
		if c, ok := p.(SpecChecker); ok {
			if err := safeCheck(c, spec); err != nil {
				refused[name] = err.Error()
			}
		}
	}
	return refused
}

// safeCheck is c.Check with a panic turned into a refusal.
func safeCheck(c SpecChecker, spec JobSpec) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checking the job panicked: %v", r)
		}
	}()
	return c.Check(spec)
}

// gather asks the providers not in skip for their offers, all at once, and
// returns them in provider order with skip's reasons and the failures.
func (ps Providers) gather(ctx context.Context, skip map[string]string) (offers []Offer, refused map[string]string) {
	type result struct {
		offers []Offer
		reason string
	}
	results := make([]result, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		name := p.Info().Name
		if why, ok := skip[name]; ok {
			results[i].reason = why
			continue
		}
		wg.Go(func() {
			os, err := safeOffers(ctx, p)
			switch {
			case err != nil:
				results[i].reason = OffersUnavailable + err.Error()
			case len(os) == 0:
				results[i].reason = NoOffers
			}
			for j := range os {
				if os[j].Provider == "" {
					os[j].Provider = name
				}
			}
			results[i].offers = os
		})
	}
	wg.Wait()
	refused = map[string]string{}
	for i, r := range results {
		offers = append(offers, r.offers...)
		if r.reason != "" {
			refused[ps[i].Info().Name] = r.reason
		}
	}
	return offers, refused
}

// safeOffers calls p.Offers, turning a panic into an error: it runs on its
// own goroutine, where a panic would take the whole process down.
func safeOffers(ctx context.Context, p Provider) (offers []Offer, err error) {
	defer func() {
		if r := recover(); r != nil {
			offers, err = nil, fmt.Errorf("provider %s panicked listing offers: %v", p.Info().Name, r)
		}
	}()
	return p.Offers(ctx)
}
