package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// Idempotent submissions.
//
// A submission with an Idempotency-Key header gets a task id derived from
// (owner, key): the UUIDv5 of both over idempotencyNamespace. Retries of it
// therefore name the same workflow, job-<id>, and the workflow start (id
// conflict policy FAIL, reuse policy REJECT_DUPLICATE, an error when
// already started) lets exactly one of them start it, even when they race
// on several API replicas. The others answer from the stored job: the same
// 202 answer with the same task_id, workflow_id and run_id, marked with the
// header Idempotent-Replayed: true. Its status is the job's current one,
// and its scheduling_info.provider_score is 0 (the first answer's score is
// not stored).
//
// A key reused with another body (a different job spec once defaults are
// filled in) answers 409 idempotency_key_reused and starts nothing. Keys
// are per user: the same key of another user is another submission.
const (
	// HeaderIdempotencyKey is the request header that makes a submission
	// idempotent.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed is set to "true" on an answer that replays
	// an earlier submission.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted, in bytes.
	MaxIdempotencyKeyLen = 200

	codeIdempotencyKeyReused     = "idempotency_key_reused"
	codeIdempotencyKeyInProgress = "idempotency_key_in_progress"

	// idempotencyWait is how long a duplicate whose workflow another request
	// started waits for that request to record the job.
	idempotencyWait = 5 * time.Second
	idempotencyPoll = 25 * time.Millisecond
)

// idempotencyNamespace is the UUIDv5 namespace of task ids derived from
// Idempotency-Keys. Never change it: retries across a deploy would start
// second jobs.
var idempotencyNamespace = uuid.MustParse("8a4c3c2e-5b7d-4f0e-9c61-2d3f7e9b1a54")

// IdempotencyStore is implemented by job stores that record a submission's
// Idempotency-Key with its job (postgres.DB does). Others get CreateJob:
// deduplication does not depend on it, since the task id is derived from
// the key.
type IdempotencyStore interface {
	// CreateJobWithIdempotencyKey is CreateJob that also records key.
	CreateJobWithIdempotencyKey(ctx context.Context, j *gpuflow.Job, key string) error
}

// idempotencyKey returns the request's Idempotency-Key ("" when absent),
// or EINVALID when it is too long.
func idempotencyKey(req *http.Request) (string, error) {
	key := req.Header.Get(HeaderIdempotencyKey)
	if len(key) > MaxIdempotencyKeyLen {
		msg := fmt.Sprintf("the Idempotency-Key header must be at most %d characters", MaxIdempotencyKeyLen)
		return "", gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{"idempotency_key": msg}})
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			msg := "the Idempotency-Key header must be printable ASCII"
			return "", gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
				WithDetails(map[string]any{"fields": map[string]any{"idempotency_key": msg}})
		}
	}
	return key, nil
}

// idempotentJobID is the task id of owner's submission with key.
func idempotentJobID(owner, key string) string {
	return uuid.NewSHA1(idempotencyNamespace, []byte(owner+"\x00"+key)).String()
}

// createJob records a submitted job, with its key when the store keeps keys.
func (s *Server) createJob(ctx context.Context, job *gpuflow.Job, key string) error {
	if st, ok := s.cfg.Jobs.(IdempotencyStore); ok && key != "" {
		return st.CreateJobWithIdempotencyKey(ctx, job, key)
	}
	return s.cfg.Jobs.CreateJob(ctx, job)
}

// earlierSubmission returns the job id was submitted as, or nil when there
// is none (yet). Store failures count as none: the workflow start still
// deduplicates.
func (s *Server) earlierSubmission(ctx context.Context, id string) *gpuflow.Job {
	job, err := s.cfg.Jobs.Job(ctx, id)
	if err != nil {
		if gpuflow.ErrorCode(err) != gpuflow.ENOTFOUND {
			s.log.WarnContext(ctx, "look up idempotent submission", "job_id", id, "err", err)
		}
		return nil
	}
	return job
}

// awaitSubmission waits for the job whose workflow another request started
// to be recorded (by that request or by the workflow), for at most
// s.idemWait (idempotencyWait).
func (s *Server) awaitSubmission(ctx context.Context, id string) (*gpuflow.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, s.idemWait)
	defer cancel()
	tick := time.NewTicker(idempotencyPoll)
	defer tick.Stop()
	for {
		if job := s.earlierSubmission(ctx, id); job != nil {
			return job, nil
		}
		select {
		case <-ctx.Done():
			return nil, &wireError{Status: http.StatusConflict, Code: codeIdempotencyKeyInProgress,
				Message: "a submission with this Idempotency-Key is in progress; retry shortly"}
		case <-tick.C:
		}
	}
}

// replaySubmission answers a repeated submission with the job it started,
// or 409 idempotency_key_reused when spec differs from the job's.
func (s *Server) replaySubmission(c echo.Context, job *gpuflow.Job, owner string, spec gpuflow.JobSpec, runID string) error {
	if job.OwnerID != owner || !sameSpec(job.Spec, spec) {
		return &wireError{Status: http.StatusConflict, Code: codeIdempotencyKeyReused,
			Message: "this Idempotency-Key was used for another submission",
			Details: map[string]any{"task_id": job.ID}}
	}
	if job.RunID != "" {
		runID = job.RunID
	}
	c.Response().Header().Set(HeaderIdempotentReplayed, "true")
	s.log.InfoContext(c.Request().Context(), "idempotent submission replayed", "job_id", job.ID, "owner_id", owner)
	return c.JSON(http.StatusAccepted, submitAnswer(job.ID, job.WorkflowID, runID, job.Provider,
		job.Status, job.Spec, nil, job.CreatedAt.UTC(),
		"Job already submitted with this Idempotency-Key (scheduled to "+job.Provider+")"))
}

// sameSpec reports whether a and b are the same job spec as stored (JSON).
func sameSpec(a, b gpuflow.JobSpec) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
