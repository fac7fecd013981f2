package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

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
		err = fmt.Errorf("record %s of job %s: %w", u.Type, u.JobID, err)
		var taken *gpuflow.SeqTaken
		if errors.As(err, &taken) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidRecord, err, SeqTakenDetails{LastSeq: taken.LastSeq})
		}
		return nil, storeError(err)
	}
	return &RecordUpdateResult{}, nil
}

// SeqTakenDetails are the details of the ErrTypeInvalidRecord error
// RecordUpdate returns when the store holds another change under the
// update's seq (gpuflow.SeqTaken): the workflow numbers its changes on
// from LastSeq. (The type stays ErrTypeInvalidRecord so that a worker from
// before these details drops the change, as it always did.)
type SeqTakenDetails struct {
	LastSeq int `json:"last_seq"`
}

// SeqTakenLast returns the store's last seq when err is RecordUpdate's
// answer to an update whose seq the store holds with another change.
func SeqTakenLast(err error) (int, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeInvalidRecord || !appErr.HasDetails() {
		return 0, false
	}
	var d SeqTakenDetails
	if appErr.Details(&d) != nil || d.LastSeq <= 0 {
		return 0, false
	}
	return d.LastSeq, true
}
