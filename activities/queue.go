package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
)

// Queue is the durable admission queue the activities use; package
// dispatch implements it.
type Queue interface {
	// Admit enqueues the job and runs an admission pass at once.
	Admit(ctx context.Context, e gpuflow.QueueEntry) (*AdmitResult, error)
	// Leave removes the job from the queue, waking the dispatchers.
	Leave(ctx context.Context, jobID string) error
	// RecordOutcome stores one provisioning outcome for the statistics.
	RecordOutcome(ctx context.Context, o gpuflow.ProvisionOutcome) error
}

// AdmitInput puts a job in the queue (or updates its blocked offers).
type AdmitInput struct {
	Entry gpuflow.QueueEntry `json:"entry"`
}

// AdmitResult is the job's place after its pass: admitted with a
// decision, or waiting with a reason (the dispatcher signals the workflow
// later with the queue signal). Failure and Reasons say that no offer
// fits the job at all; the activity turns them into an error.
type AdmitResult struct {
	Admitted *SelectResult       `json:"admitted,omitempty"`
	Reason   string              `json:"reason,omitempty"`
	Failure  string              `json:"failure,omitempty"`
	Reasons  map[string][]string `json:"reasons,omitempty"`
}

// Admit enqueues the job and runs an admission pass at once. It fails with
// ErrTypeUnschedulable (details: the reasons by provider) when no offer
// fits the job at all.
func (a *Activities) Admit(ctx context.Context, in *AdmitInput) (*AdmitResult, error) {
	if a.Queue == nil {
		return nil, temporal.NewNonRetryableApplicationError("this worker has no dispatcher", ErrTypeUnschedulable, nil)
	}
	res, err := a.Queue.Admit(ctx, in.Entry)
	if err != nil {
		return nil, err
	}
	if res.Failure != "" {
		return nil, temporal.NewNonRetryableApplicationError(res.Failure, ErrTypeUnschedulable, nil, res.Reasons)
	}
	return res, nil
}

// LeaveQueueInput removes a job from the queue.
type LeaveQueueInput struct {
	JobID string `json:"job_id"`
}

// LeaveQueueResult is empty; activities keep one result type each.
type LeaveQueueResult struct{}

// LeaveQueue removes the job from the queue (its machine exists, or it
// ended) and wakes the dispatchers: it may have freed room.
func (a *Activities) LeaveQueue(ctx context.Context, in *LeaveQueueInput) (*LeaveQueueResult, error) {
	if a.Queue == nil {
		return &LeaveQueueResult{}, nil
	}
	if err := a.Queue.Leave(ctx, in.JobID); err != nil {
		return nil, storeError(fmt.Errorf("leave queue: job %s: %w", in.JobID, err))
	}
	return &LeaveQueueResult{}, nil
}

// RecordOutcomeInput is one provisioning outcome.
type RecordOutcomeInput struct {
	Outcome gpuflow.ProvisionOutcome `json:"outcome"`
}

// RecordOutcomeResult is empty.
type RecordOutcomeResult struct{}

// RecordOutcome stores one provisioning outcome for the statistics.
func (a *Activities) RecordOutcome(ctx context.Context, in *RecordOutcomeInput) (*RecordOutcomeResult, error) {
	if a.Queue == nil {
		return &RecordOutcomeResult{}, nil
	}
	if err := a.Queue.RecordOutcome(ctx, in.Outcome); err != nil {
		return nil, storeError(fmt.Errorf("record provisioning outcome: %w", err))
	}
	return &RecordOutcomeResult{}, nil
}
