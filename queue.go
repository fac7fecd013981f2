package gpuflow

import (
	"context"
	"encoding/json"
	"time"
)

// QueueEntry is a job waiting for capacity, or admitted and not yet
// provisioned (its reservation).
type QueueEntry struct {
	JobID       string    `json:"job_id"`
	OwnerID     string    `json:"owner_id,omitempty"`
	WorkflowID  string    `json:"workflow_id"`
	Priority    int       `json:"priority"`
	SubmittedAt time.Time `json:"submitted_at"`
	Spec        JobSpec   `json:"spec"`
	// Blocked maps offer keys the job must not use to why and since when.
	Blocked map[string]Block `json:"blocked,omitempty"`
	// Admitted is set once the job may start; Decision says where.
	Admitted   bool            `json:"admitted"`
	AdmittedAt time.Time       `json:"admitted_at,omitzero"`
	Decision   json.RawMessage `json:"decision,omitempty"`
	// OfferKey, Units and PricePerHour are the admitted offer's, held
	// until the machine exists.
	OfferKey     string  `json:"offer_key,omitempty"`
	Units        int     `json:"units,omitempty"`
	PricePerHour float64 `json:"price_per_hour,omitempty"`
	// Reason says why the job waits ("" when admitted).
	Reason string `json:"reason,omitempty"`
	// JobStatus is the job's status in the job store, when read with it.
	JobStatus JobStatus `json:"-"`
}

// Block keeps one offer away from one job after a failure there: until
// Until, or for the admission's block TTL after At when Until is zero.
type Block struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Until ends the block (zero: At plus the block TTL): a job backs off
	// an offer that keeps failing.
	Until time.Time `json:"until,omitzero"`
	// Count is how many times in a row the offer failed for the job.
	Count int `json:"count,omitempty"`
}

// Expiry is when the block ends, given the default block TTL.
func (b Block) Expiry(ttl time.Duration) time.Time {
	if !b.Until.IsZero() {
		return b.Until
	}
	return b.At.Add(ttl)
}

// Usage is what one owner runs now: jobs holding or making a machine
// (admitted, provisioning, running, cancelling) and what they cost per hour.
type Usage struct {
	Running      int     `json:"running"`
	SpendPerHour float64 `json:"spend_per_hour"`
}

// Limits bound what one owner runs at once; zero means no limit.
type Limits struct {
	MaxRunning      int     `json:"max_running_jobs"`
	MaxSpendPerHour float64 `json:"max_spend_per_hour"`
}

// QueueState is what an admission pass reads, under the queue lock.
type QueueState struct {
	// Entries are every queued job, waiting or admitted.
	Entries []QueueEntry
	// Usage is by owner id ("" for jobs without one).
	Usage map[string]Usage
}

// Admission is one job's admission, written by a pass.
type Admission struct {
	JobID        string
	Decision     json.RawMessage
	OfferKey     string
	Units        int
	PricePerHour float64
}

// QueueStore keeps the durable queue of jobs waiting for capacity.
type QueueStore interface {
	// Enqueue adds the job, or updates its blocked offers when it is
	// already there (its place — priority and submission time — is kept).
	// An admitted entry is returned as it is.
	Enqueue(ctx context.Context, e QueueEntry) (*QueueEntry, error)
	// Dequeue removes the job's entry (if any) and wakes the dispatchers.
	Dequeue(ctx context.Context, jobID string) error
	// QueuePass runs fn holding the queue's lock (one pass at a time across
	// every process) and commits what it returns: the admissions (only of
	// entries still waiting) and the waiting jobs' new reasons.
	QueuePass(ctx context.Context, fn func(QueueState) ([]Admission, map[string]string, error)) error
	// QueuePosition is the job's place among waiting jobs (1 first) and its
	// reason, or 0 when it is not waiting.
	QueuePosition(ctx context.Context, jobID string) (int, string, error)
}

// ProvisionOutcome is one observed provisioning result (or spot run), for
// the scheduler's statistics.
type ProvisionOutcome struct {
	ID       int64         `json:"id"`
	Provider string        `json:"provider"`
	OfferKey string        `json:"offer_key"`
	Outcome  string        `json:"outcome"` // scheduler.Outcome's String
	Duration time.Duration `json:"duration"`
	At       time.Time     `json:"at"`
	// Key makes recording idempotent: an outcome with the key of one
	// recorded before (a retried write) is not recorded again. The job
	// workflow sets "<job id>/a<attempt>/<outcome>"; "" records always.
	Key string `json:"key,omitempty"`
}

// OutcomeStore keeps provisioning outcomes.
type OutcomeStore interface {
	// RecordOutcome stores o, once per non-empty Key.
	RecordOutcome(ctx context.Context, o ProvisionOutcome) error
	// Outcomes returns up to limit outcomes with id > afterID and at >= since, by id.
	Outcomes(ctx context.Context, afterID int64, since time.Time, limit int) ([]ProvisionOutcome, error)
}
