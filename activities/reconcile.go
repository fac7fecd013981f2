package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"

	"github.com/gpuflow/gpuflow"
)

// WorkflowDescriber is the part of the Temporal client the reconciler uses
// to ask whether a job's workflow still runs.
type WorkflowDescriber interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	ListWorkflow(ctx context.Context, request *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error)
}

// runningPage is how many running workflows one visibility call lists.
const runningPage = 1000

// ReconcileInput asks for one provider's machines to be reconciled.
type ReconcileInput struct {
	Provider string `json:"provider"`
	// Grace spares machines younger than this: their workflow may not have
	// recorded them yet.
	Grace time.Duration `json:"grace"`
}

// ReconcileResult counts what the reconciler found and did.
type ReconcileResult struct {
	Provider   string   `json:"provider"`
	Seen       int      `json:"seen"`
	Owned      int      `json:"owned"`
	Terminated []string `json:"terminated,omitempty"`
}

// ReconcileProvider lists the machines the provider holds for gpuflow and
// terminates every one that no live job workflow owns and that is older
// than the grace period. A job whose workflow was terminated by force is
// marked failed, with an event recording the cleanup.
func (a *Activities) ReconcileProvider(ctx context.Context, in *ReconcileInput) (*ReconcileResult, error) {
	p, err := a.provider(in.Provider)
	if err != nil {
		return nil, err
	}
	if a.Workflows == nil {
		return nil, errors.New("reconciler needs a Temporal client")
	}
	machines, err := p.List(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("list machines on %s: %w", in.Provider, err))
	}
	res := &ReconcileResult{Provider: in.Provider, Seen: len(machines)}
	now := a.now()
	// One listing of the running job workflows spares a look-up per
	// machine (10,000 machines were 10,000 look-ups a sweep); a machine
	// whose workflow it does not hold is checked on its own, since the
	// listing lags (a workflow just started may not be in it yet).
	running, err := a.runningJobs(ctx, in.Provider)
	if err != nil {
		return nil, err
	}
	for _, m := range machines {
		activity.RecordHeartbeat(ctx, m.ID)
		if m.State == gpuflow.MachineGone || now.Sub(m.CreatedAt) < in.Grace {
			res.Owned++
			continue
		}
		jobID := m.Tags[gpuflow.TagJob]
		if running[gpuflow.WorkflowIDOf(jobID)] {
			res.Owned++
			continue
		}
		live, err := a.workflowLive(ctx, jobID)
		if err != nil {
			return nil, err
		}
		if live {
			res.Owned++
			continue
		}
		// The machine was listed before the look-ups: its job may have
		// ended and torn it down meanwhile.
		if d, err := p.Describe(ctx, m.ID); err == nil && d.State == gpuflow.MachineGone {
			res.Owned++
			continue
		}
		if err := p.Terminate(ctx, m.ID); err != nil {
			return nil, classify(fmt.Errorf("terminate orphan %s on %s: %w", m.ID, in.Provider, err))
		}
		res.Terminated = append(res.Terminated, m.ID)
		a.logger().WarnContext(ctx, "terminated a machine no live job owns", "provider", in.Provider, "machine_id", m.ID, "job_id", jobID)
		if err := a.recordOrphan(ctx, jobID, in.Provider, m.ID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// runningJobs lists the ids of the running job workflows on provider
// (all of them without ProviderAttribute) from Temporal's visibility
// store; nil (look each up) when JobWorkflowType is not set. A job that
// moved to another provider and left a machine here is not listed: its
// machine is looked up alone.
func (a *Activities) runningJobs(ctx context.Context, provider string) (map[string]bool, error) {
	if a.JobWorkflowType == "" {
		return nil, nil
	}
	out := map[string]bool{}
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", a.JobWorkflowType)
	if a.ProviderAttribute != "" {
		query += fmt.Sprintf(" AND %s = '%s'", a.ProviderAttribute, provider)
	}
	req := &workflowservice.ListWorkflowExecutionsRequest{PageSize: runningPage, Query: query}
	for {
		resp, err := a.Workflows.ListWorkflow(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list running job workflows: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			out[e.GetExecution().GetWorkflowId()] = true
		}
		activity.RecordHeartbeat(ctx, len(out))
		if len(resp.GetNextPageToken()) == 0 {
			return out, nil
		}
		req.NextPageToken = resp.GetNextPageToken()
	}
}

// workflowLive reports whether the job's workflow is still running.
func (a *Activities) workflowLive(ctx context.Context, jobID string) (bool, error) {
	if jobID == "" {
		return false, nil
	}
	d, err := a.Workflows.DescribeWorkflowExecution(ctx, gpuflow.WorkflowIDOf(jobID), "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe workflow of job %s: %w", jobID, err)
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// recordOrphan records the cleanup on the job, and fails a job its dead
// workflow left unfinished.
func (a *Activities) recordOrphan(ctx context.Context, jobID, provider, machineID string) error {
	if jobID == "" {
		return nil
	}
	j, err := a.Jobs.Job(ctx, jobID)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	u := gpuflow.JobUpdate{
		JobID: jobID, Seq: j.LastSeq + 1, Type: gpuflow.EventStatus, At: a.now(),
		Data: []byte(fmt.Sprintf(`{"reconciler":"terminated machine %s on %s that no live workflow owned"}`, machineID, provider)),
	}
	if !j.Status.Terminal() {
		msg := "the job's workflow ended without finishing it (terminated?); its machine was removed by the reconciler"
		u.Status, u.Error = gpuflow.StatusFailed, &msg
	}
	if _, err := a.Jobs.ApplyUpdate(ctx, u); err != nil {
		return fmt.Errorf("record reconciliation of job %s: %w", jobID, err)
	}
	return nil
}
