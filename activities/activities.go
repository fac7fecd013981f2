// Package activities holds the job workflow's side effects: recording state
// in the job store, choosing an offer, and provisioning, watching and tearing
// down machines through the providers. Activities are methods on one
// dependency-holding struct; workflows reference them through a nil pointer.
package activities

import (
	"errors"
	"log/slog"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
)

// Activities holds what the activities need. Logger and Now are optional.
type Activities struct {
	Jobs      gpuflow.JobStore
	Providers gpuflow.Providers
	// Workflows answers whether a job's workflow still runs (the reconciler).
	Workflows WorkflowDescriber
	// JobWorkflowType is the job workflow's type name: the reconciler
	// lists the running ones in one query (empty: it looks up each
	// machine's workflow alone).
	JobWorkflowType string
	// ProviderAttribute is the search attribute naming a job's provider:
	// with it, each provider's reconciler lists only its provider's
	// running jobs.
	ProviderAttribute string
	// Agents gives a cloud machine its agent endpoint and token; nil leaves
	// machines without one (enough for the local provider).
	Agents AgentIssuer
	// Queue is the admission queue (Admit, LeaveQueue, RecordOutcome):
	// a *dispatch.Dispatcher; nil admits nothing.
	Queue Queue
	// Watches records the machines the providers' watchers follow (nil:
	// none are watched; the job's safety check describes them itself).
	Watches gpuflow.WatchStore
	// Hosts names, per provider, the host its machines run on when they
	// run on the worker's own host (the local provider); "" otherwise.
	Hosts map[string]string
	// WatcherFresh is how recent a watcher's sweep must be for the safety
	// check to trust it (DefaultWatcherFresh when smaller).
	WatcherFresh time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now().UTC()
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// Application error types the workflow branches on. They are stable strings.
const (
	ErrTypeNoCapacity     = "NoCapacity"
	ErrTypeInvalidRequest = "InvalidRequest"
	ErrTypeAuth           = "AuthRejected"
	ErrTypeUnschedulable  = "Unschedulable"
	ErrTypeUnknownProvide = "UnknownProvider"
	ErrTypeMachineExists  = "MachineStillExists"
	// ErrTypeInvalidRecord: the job store refused a write for good (an
	// invalid or unknown record), not for being down. Retrying cannot help.
	ErrTypeInvalidRecord = "InvalidRecord"
)

// NonRetryable lists the error types the workflow must not retry in place.
var NonRetryable = []string{ErrTypeNoCapacity, ErrTypeInvalidRequest, ErrTypeAuth, ErrTypeUnschedulable, ErrTypeUnknownProvide}

// classify turns a provider error into a Temporal error: capacity, invalid
// request and auth failures are non-retryable (the workflow decides what to
// do); everything else is retried by the activity's policy, honouring the
// provider's retry-after hint.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Kind {
	case gpuflow.KindNoCapacity:
		return temporal.NewNonRetryableApplicationError(pe.Error(), ErrTypeNoCapacity, err)
	case gpuflow.KindInvalidRequest:
		return temporal.NewNonRetryableApplicationError(pe.Error(), ErrTypeInvalidRequest, err)
	case gpuflow.KindAuth:
		return temporal.NewNonRetryableApplicationError(pe.Error(), ErrTypeAuth, err)
	}
	if pe.RetryAfter > 0 {
		return temporal.NewApplicationErrorWithOptions(pe.Error(), string(pe.Kind), temporal.ApplicationErrorOptions{
			Cause: err, NextRetryDelay: pe.RetryAfter,
		})
	}
	return err
}

// retryHint passes a provider's retry-after hint on err to Temporal: the
// next try waits that long (the providers add jitter to a throttling
// answer's hint) instead of the retry policy's backoff, which would send
// the retries of teardowns throttled together again together, ever
// further apart. Unlike classify it never makes err non-retryable:
// teardown is retried until the machine is gone, whatever the error.
func retryHint(err error) error {
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) || pe.RetryAfter <= 0 {
		return err
	}
	return temporal.NewApplicationErrorWithOptions(err.Error(), string(pe.Kind), temporal.ApplicationErrorOptions{
		Cause: err, NextRetryDelay: pe.RetryAfter,
	})
}

// storeError classifies an error of the job store: a write it refuses for
// good (invalid, unknown, in conflict) is non-retryable ErrTypeInvalidRecord;
// anything else — the store down or unreachable — is retried, however long
// it takes.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	switch gpuflow.ErrorCode(err) {
	case gpuflow.EINVALID, gpuflow.ENOTFOUND, gpuflow.ECONFLICT:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidRecord, err)
	}
	return err
}

func (a *Activities) provider(name string) (gpuflow.Provider, error) {
	p := a.Providers.Get(name)
	if p == nil {
		return nil, temporal.NewNonRetryableApplicationError("provider "+name+" is not configured on this worker", ErrTypeUnknownProvide, nil)
	}
	return p, nil
}

// AgentIssuer hands out the agent endpoint (URL and a token valid for one
// job until ttl passes) a machine reports to.
type AgentIssuer interface {
	Endpoint(jobID string, ttl time.Duration) (*gpuflow.AgentEndpoint, error)
}
