package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
)

// ProvisionInput asks a provider for a machine.
type ProvisionInput struct {
	Provider string                   `json:"provider"`
	Request  gpuflow.ProvisionRequest `json:"request"`
	// WorkflowID is the job's workflow, which the provider's watcher
	// signals when the machine changes.
	WorkflowID string `json:"workflow_id"`
}

// ProvisionResult is the machine created (or found) for the request.
type ProvisionResult struct {
	Machine gpuflow.Machine `json:"machine"`
	// Unwatched: the watch could not be recorded (the store is down); the
	// job's safety check records it (CheckMachine), and soon.
	Unwatched bool `json:"unwatched,omitempty"`
}

// Provision creates the job's machine and hands it to its provider's
// watcher. The request's idempotency key makes a retry (after a crash or a
// lost answer) return the machine created before; the watch is recorded
// after the machine exists, so a retry records it too. A watch the store
// does not take (an outage) does not fail the machine: it is returned
// Unwatched, for the job to tear down whatever happens and its safety
// check to record the watch.
func (a *Activities) Provision(ctx context.Context, in *ProvisionInput) (*ProvisionResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	req := in.Request
	// Each Provision of a workflow has a key of its own, so on the
	// activity's first attempt nothing can have been made with it yet.
	req.FirstTry = activity.GetInfo(ctx).Attempt == 1
	if a.Agents != nil {
		// Issued here, not in the workflow: the token must never enter
		// the workflow's history. It lives as long as the job may, and a
		// day more for its last reports.
		ttl := max(req.MaxDuration, 0) + 24*time.Hour
		if req.Agent, err = a.Agents.Endpoint(req.JobID, ttl); err != nil {
			return nil, fmt.Errorf("agent endpoint for job %s: %w", req.JobID, err)
		}
	}
	m, err := p.Provision(ctx, req)
	if err != nil {
		return nil, classify(fmt.Errorf("provision job %s on %s: %w", in.Request.JobID, in.Provider, err))
	}
	res := &ProvisionResult{}
	if a.Watches != nil {
		w := gpuflow.Watch{JobID: req.JobID, WorkflowID: in.WorkflowID, Provider: in.Provider, Host: a.Hosts[in.Provider], MachineID: m.ID}
		if err := a.Watches.AddWatch(ctx, w); err != nil {
			a.logger().WarnContext(ctx, "machine provisioned but not watched; the job's safety check will record it",
				"job_id", req.JobID, "machine_id", m.ID, "err", err)
			res.Unwatched = true
		}
	}
	if h := a.Hosts[in.Provider]; h != "" {
		m.Host = h
	}
	a.logger().InfoContext(ctx, "machine provisioned", "job_id", in.Request.JobID, "provider", in.Provider, "machine_id", m.ID, "host", m.Host)
	res.Machine = *m
	return res, nil
}

// PickHostInput asks which host will run a machine of a provider whose
// machines run on the worker's own host.
type PickHostInput struct {
	Provider string `json:"provider"`
}

// PickHostResult names the host: the one whose worker took the task.
type PickHostResult struct {
	Host string `json:"host"`
}

// PickHost runs on the provider's shared task queue, where every host that
// runs the provider's machines listens: the worker that takes it answers
// with its own host, and the job's machine activities then go to that
// host's own task queue. It fails (non-retryable) on a worker whose
// machines of that provider do not run on its host.
func (a *Activities) PickHost(ctx context.Context, in *PickHostInput) (*PickHostResult, error) {
	if _, err := a.provider(in.Provider); err != nil {
		return nil, err
	}
	h := a.Hosts[in.Provider]
	if h == "" {
		return nil, temporal.NewNonRetryableApplicationError("provider "+in.Provider+" does not run machines on this worker's host", ErrTypeInvalidRequest, nil)
	}
	return &PickHostResult{Host: h}, nil
}

// CheckMachineInput is a job's safety check of its machine.
type CheckMachineInput struct {
	Provider   string `json:"provider"`
	JobID      string `json:"job_id"`
	WorkflowID string `json:"workflow_id"`
	MachineID  string `json:"machine_id"`
}

// CheckMachineResult is the machine's state when the check had to look
// itself; nil when the provider's watcher is alive (it signals changes).
type CheckMachineResult struct {
	Machine *gpuflow.Machine `json:"machine,omitempty"`
}

// DefaultWatcherFresh is how recent a watcher's last sweep must be for the
// safety check to trust it.
const DefaultWatcherFresh = 2 * time.Minute

// CheckMachine is the job workflow's safety check, run on its long timer:
// while the provider's watcher sweeps, it only makes sure the machine is
// still watched (no provider call); when the watcher looks dead, it
// describes the machine itself, so a job is never stranded.
func (a *Activities) CheckMachine(ctx context.Context, in *CheckMachineInput) (*CheckMachineResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	host := a.Hosts[in.Provider]
	if a.Watches != nil {
		wt, err := a.Watches.GetWatch(ctx, in.JobID)
		if err != nil {
			return nil, err
		}
		if wt == nil || wt.MachineID != in.MachineID {
			w := gpuflow.Watch{JobID: in.JobID, WorkflowID: in.WorkflowID, Provider: in.Provider, Host: host, MachineID: in.MachineID}
			if err := a.Watches.AddWatch(ctx, w); err != nil {
				return nil, err
			}
		}
		last, err := a.Watches.LastSweep(ctx, in.Provider, host)
		if err != nil {
			return nil, err
		}
		if fresh := a.WatcherFresh; a.now().Sub(last) < max(fresh, DefaultWatcherFresh) {
			return &CheckMachineResult{}, nil
		}
		a.logger().WarnContext(ctx, "the provider's watcher has not swept lately; looking at the machine directly",
			"job_id", in.JobID, "provider", in.Provider, "last_sweep", last)
	}
	m, err := p.Describe(ctx, in.MachineID)
	if err != nil {
		return nil, classify(fmt.Errorf("describe %s on %s: %w", in.MachineID, in.Provider, err))
	}
	return &CheckMachineResult{Machine: m}, nil
}

// TerminateInput tears a machine down.
type TerminateInput struct {
	Provider  string `json:"provider"`
	JobID     string `json:"job_id"`
	MachineID string `json:"machine_id"`
}

// TerminateResult reports the teardown.
type TerminateResult struct {
	LogOffset int64 `json:"log_offset"`
}

// TerminateMachine ships the job's last output, terminates the machine and
// succeeds only once the provider confirms it is gone and the output it
// still holds is in the store; then the machine is no longer watched.
// Otherwise it fails and the workflow's retry policy tries again, after the
// provider's retry-after hint when it gave one (a throttled call).
func (a *Activities) TerminateMachine(ctx context.Context, in *TerminateInput) (*TerminateResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	var offset int64
	if a.Watches != nil {
		if wt, err := a.Watches.GetWatch(ctx, in.JobID); err == nil && wt != nil && wt.MachineID == in.MachineID {
			offset = wt.LogOffset
		}
	}
	src, logs := p.(gpuflow.LogSource)
	if logs {
		// Before the machine goes (with it, its output may go); what
		// this misses is shipped again below.
		n, err := gpuflow.CopyLogs(ctx, src, a.Jobs, in.JobID, in.MachineID, offset)
		if err != nil {
			a.logger().WarnContext(ctx, "store job output before the teardown", "job_id", in.JobID, "err", err)
		}
		offset = n
	}
	if err := p.Terminate(ctx, in.MachineID); err != nil {
		return nil, retryHint(fmt.Errorf("terminate %s on %s: %w", in.MachineID, in.Provider, err))
	}
	m, err := p.Describe(ctx, in.MachineID)
	if err != nil && gpuflow.ProviderErrorKindOf(err) != gpuflow.KindNotFound {
		return nil, retryHint(fmt.Errorf("confirm %s on %s is gone: %w", in.MachineID, in.Provider, err))
	}
	if err == nil && m.State != gpuflow.MachineGone {
		// Expected while a cloud winds the machine down (a CVM instance
		// stays SHUTDOWN for a while): benign, so the SDK logs the retry at
		// debug, not as an error for every attempt of every cancelled job.
		return nil, temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("machine %s on %s still %s", in.MachineID, in.Provider, m.State), ErrTypeMachineExists,
			temporal.ApplicationErrorOptions{Category: temporal.ApplicationErrorCategoryBenign})
	}
	if logs {
		// The output the provider still holds (the local provider keeps
		// it after the job) must reach the store: a store that fails
		// fails the teardown, which is retried, watch and all, until it
		// takes the output. Output the provider cannot read is not
		// worth failing over.
		st := &appendErr{LogAppender: a.Jobs}
		n, err := gpuflow.CopyLogs(ctx, src, st, in.JobID, in.MachineID, offset)
		switch {
		case st.err != nil:
			return nil, fmt.Errorf("store the output of job %s (machine %s is gone): %w", in.JobID, in.MachineID, st.err)
		case err != nil:
			a.logger().WarnContext(ctx, "read job output", "job_id", in.JobID, "err", err)
		}
		offset = n
	}
	if a.Watches != nil {
		if err := a.Watches.RemoveWatch(ctx, in.JobID, in.MachineID); err != nil {
			return nil, fmt.Errorf("unwatch %s of job %s: %w", in.MachineID, in.JobID, err)
		}
	}
	a.logger().InfoContext(ctx, "machine gone", "job_id", in.JobID, "provider", in.Provider, "machine_id", in.MachineID)
	return &TerminateResult{LogOffset: offset}, nil
}

// appendErr is a LogAppender that remembers its failure, telling a store
// that failed from a provider that could not read.
type appendErr struct {
	gpuflow.LogAppender
	err error
}

func (a *appendErr) AppendLog(ctx context.Context, jobID string, offset int64, data []byte) error {
	err := a.LogAppender.AppendLog(ctx, jobID, offset, data)
	if err != nil {
		a.err = err
	}
	return err
}
