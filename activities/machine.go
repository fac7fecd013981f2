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
}

// Provision creates the job's machine. The request's idempotency key makes a
// retry (after a crash or a lost answer) return the machine created before.
func (a *Activities) Provision(ctx context.Context, in *ProvisionInput) (*gpuflow.Machine, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	req := in.Request
	if a.Agents != nil {
		// Issued here, not in the workflow: the token must never enter
		// the workflow's history.
		ttl := req.MaxDuration + 24*time.Hour
		if req.Agent, err = a.Agents.Endpoint(req.JobID, ttl); err != nil {
			return nil, fmt.Errorf("agent endpoint for job %s: %w", req.JobID, err)
		}
	}
	m, err := p.Provision(ctx, req)
	if err != nil {
		return nil, classify(fmt.Errorf("provision job %s on %s: %w", in.Request.JobID, in.Provider, err))
	}
	a.logger().InfoContext(ctx, "machine provisioned", "job_id", in.Request.JobID, "provider", in.Provider, "machine_id", m.ID)
	return m, nil
}

// Wait conditions for WatchMachine.
const (
	UntilRunning = "running" // the machine runs the job (or already ended)
	UntilExit    = "exit"    // the job ended or the machine is gone
)

// WatchInput watches a machine until a condition holds, shipping the job's
// output to the store on the way.
type WatchInput struct {
	Provider  string `json:"provider"`
	JobID     string `json:"job_id"`
	MachineID string `json:"machine_id"`
	Until     string `json:"until"`
	LogOffset int64  `json:"log_offset"`
}

// WatchResult is the machine's state when the condition held.
type WatchResult struct {
	Machine   gpuflow.Machine `json:"machine"`
	LogOffset int64           `json:"log_offset"`
}

// watchProgress is the heartbeat detail a retried WatchMachine resumes from.
type watchProgress struct {
	LogOffset int64                `json:"log_offset"`
	State     gpuflow.MachineState `json:"state"`
}

// MaxPollInterval caps how long WatchMachine sleeps between looks.
const MaxPollInterval = 5 * time.Second

// WatchMachine polls the machine with backoff (never a hot loop), heartbeats
// its progress, and returns when the condition holds. Cancellation reaches
// it through heartbeats.
func (a *Activities) WatchMachine(ctx context.Context, in *WatchInput) (*WatchResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	offset := in.LogOffset
	if activity.HasHeartbeatDetails(ctx) {
		var prog watchProgress
		if err := activity.GetHeartbeatDetails(ctx, &prog); err == nil && prog.LogOffset > offset {
			offset = prog.LogOffset
		}
	}
	maxWait := MaxPollInterval
	if h, ok := p.(gpuflow.PollHinter); ok && h.PollInterval() > 0 {
		maxWait = min(h.PollInterval(), MaxPollInterval)
	}
	wait := min(20*time.Millisecond, maxWait)
	for {
		m, err := p.Describe(ctx, in.MachineID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, classify(fmt.Errorf("describe %s on %s: %w", in.MachineID, in.Provider, err))
		}
		offset = a.shipLogs(ctx, p, in.JobID, in.MachineID, offset)
		activity.RecordHeartbeat(ctx, watchProgress{LogOffset: offset, State: m.State})
		if done(in.Until, m.State) {
			if m.State != gpuflow.MachineRunning {
				// The job ended: take the rest of its output.
				offset = a.shipLogs(ctx, p, in.JobID, in.MachineID, offset)
			}
			return &WatchResult{Machine: *m, LogOffset: offset}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, maxWait)
	}
}

func done(until string, s gpuflow.MachineState) bool {
	ended := s == gpuflow.MachineExited || s == gpuflow.MachineFailed || s == gpuflow.MachineGone
	if until == UntilRunning {
		return ended || s == gpuflow.MachineRunning
	}
	return ended
}

// logChunk is the most output shipped to the store in one piece.
const logChunk = 256 << 10

// shipLogs copies new output of the machine to the store and returns the new
// offset. Failures are logged and retried on the next look: output is never
// worth failing a job over.
func (a *Activities) shipLogs(ctx context.Context, p gpuflow.Provider, jobID, machineID string, offset int64) int64 {
	src, ok := p.(gpuflow.LogSource)
	if !ok {
		return offset
	}
	for {
		data, err := src.ReadLogs(ctx, machineID, offset, logChunk)
		if err != nil || len(data) == 0 {
			return offset
		}
		if err := a.Jobs.AppendLog(ctx, jobID, offset, data); err != nil {
			a.logger().WarnContext(ctx, "store job output", "job_id", jobID, "err", err)
			return offset
		}
		offset += int64(len(data))
		if len(data) < logChunk {
			return offset
		}
	}
}

// TerminateInput tears a machine down.
type TerminateInput struct {
	Provider  string `json:"provider"`
	JobID     string `json:"job_id"`
	MachineID string `json:"machine_id"`
	LogOffset int64  `json:"log_offset"`
}

// TerminateResult reports the teardown.
type TerminateResult struct {
	LogOffset int64 `json:"log_offset"`
}

// TerminateMachine ships the job's last output, terminates the machine and
// succeeds only once the provider confirms it is gone; otherwise it fails
// and the workflow's retry policy tries again.
func (a *Activities) TerminateMachine(ctx context.Context, in *TerminateInput) (*TerminateResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	offset := a.shipLogs(ctx, p, in.JobID, in.MachineID, in.LogOffset)
	if err := p.Terminate(ctx, in.MachineID); err != nil {
		return nil, fmt.Errorf("terminate %s on %s: %w", in.MachineID, in.Provider, err)
	}
	m, err := p.Describe(ctx, in.MachineID)
	if err != nil && gpuflow.ProviderErrorKindOf(err) != gpuflow.KindNotFound {
		return nil, fmt.Errorf("confirm %s on %s is gone: %w", in.MachineID, in.Provider, err)
	}
	if err == nil && m.State != gpuflow.MachineGone {
		return nil, temporal.NewApplicationError(fmt.Sprintf("machine %s on %s still %s", in.MachineID, in.Provider, m.State), ErrTypeMachineExists)
	}
	a.logger().InfoContext(ctx, "machine gone", "job_id", in.JobID, "provider", in.Provider, "machine_id", in.MachineID)
	return &TerminateResult{LogOffset: offset}, nil
}
