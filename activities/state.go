package activities

import (
	"context"
	"fmt"

	"github.com/gpuflow/gpuflow"
)

// CreateJobInput creates the job's row if the API has not (yet).
type CreateJobInput struct {
	Job gpuflow.Job `json:"job"`
}

// CreateJob inserts the job's row unless it exists. The workflow runs it
// first, so a job whose API insert failed after the workflow started is
// never lost.
func (a *Activities) CreateJob(ctx context.Context, in *CreateJobInput) (*CreateJobResult, error) {
	if err := a.Jobs.CreateJob(ctx, &in.Job); err != nil {
		return nil, storeError(fmt.Errorf("create job %s: %w", in.Job.ID, err))
	}
	return &CreateJobResult{}, nil
}

// CreateJobResult is empty; activities keep one result type each.
type CreateJobResult struct{}

// RecordUpdateInput is one state change of a job.
type RecordUpdateInput struct {
	Update gpuflow.JobUpdate `json:"update"`
}

// RecordUpdateResult is empty.
type RecordUpdateResult struct{}

// RecordUpdate applies one state change of a job and publishes its event.
// Replays of the same (job, seq) are no-ops. A store that is down is an
// error to retry; a change it refuses for good is ErrTypeInvalidRecord.
func (a *Activities) RecordUpdate(ctx context.Context, in *RecordUpdateInput) (*RecordUpdateResult, error) {
	u := in.Update
	if _, err := a.Jobs.ApplyUpdate(ctx, u); err != nil {
		return nil, storeError(fmt.Errorf("record %s of job %s: %w", u.Type, u.JobID, err))
	}
	return &RecordUpdateResult{}, nil
}
