package gpuflow

import (
	"context"
	"time"
)

// ReportKind is what a job's machine reports through its agent.
type ReportKind string

// The kinds of agent report that reach the job's workflow.
const (
	// ReportProgress is a progress report: a percentage and a message.
	// Progress is coalesced per job: only the latest undelivered one is kept.
	ReportProgress ReportKind = "progress"
	// ReportFinished is the job's exit code. The first one of a job is
	// kept; later ones are acknowledged and ignored.
	ReportFinished ReportKind = "finished"
	// ReportWithdraw is not an agent's: the API records it when it could
	// not tell whether a submission's workflow started (the start and the
	// look-up after it both failed) and answered 503. Message is the
	// reason. The relay delivers it as the workflow's cancel signal, so a
	// workflow that did start never runs the job; one that did not start
	// is unknown to Temporal and the report is dropped. One per job.
	ReportWithdraw ReportKind = "withdraw"
)

// AgentReport is a report from a job's machine, recorded in the store
// before it is acknowledged and delivered to the job's workflow later (by
// the relay), so that neither an API restart nor a Temporal outage loses it.
type AgentReport struct {
	// ID is the report's id in the store. Ids grow: a progress recorded
	// after another has a larger id, and a coalesced progress gets a new
	// one each time it is replaced. The relay sends it as the signal's
	// ReportID, by which the workflow ignores redeliveries.
	ID    int64      `json:"id"`
	JobID string     `json:"job_id"`
	Kind  ReportKind `json:"kind"`
	// Percent (0 to 100) and Message are a progress report's; Message
	// is also a withdraw's reason.
	Percent float64 `json:"percent,omitempty"`
	Message string  `json:"message,omitempty"`
	// ExitCode is a finished report's (-1 to 255).
	ExitCode   int       `json:"exit_code,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Attempts counts the deliveries that failed and are to be retried.
	Attempts int `json:"attempts,omitempty"`
}

// ReportRecorder records agent reports: the API's side of ReportStore.
type ReportRecorder interface {
	// RecordReport records r (ID is assigned; ReceivedAt is the store's
	// clock when zero) and returns the report as kept. created is false
	// for a finished report of a job that already has one: the kept one
	// is returned and r is ignored; so for a second withdraw. A progress
	// replaces the job's undelivered progress, if any. ECONFLICT when the job is known to
	// have ended; EUNAVAILABLE when the store is down.
	RecordReport(ctx context.Context, r AgentReport) (kept AgentReport, created bool, err error)
}

// ReportClaim asks for the reports due for delivery.
type ReportClaim struct {
	// Token identifies the claim: only its holder completes the reports.
	Token string
	// Now is the claimer's clock: reports due by then are claimed.
	Now time.Time
	// Lease is how long the reports are the claimer's: when it has not
	// completed them by then (it crashed), they are due again.
	Lease time.Duration
	// Limit bounds the reports claimed of each kind.
	Limit int
}

// ReportOutcome is what became of one claimed report.
type ReportOutcome struct {
	Report AgentReport
	// Done: delivered, or dropped for good (Note says why, e.g. the
	// workflow has closed). Otherwise the report is retried from RetryAt,
	// and Error says why it failed.
	Done    bool
	Note    string
	RetryAt time.Time
	Error   string
}

// ReportOutbox is what the relay delivers from: the recorded reports
// not yet delivered.
type ReportOutbox interface {
	// ClaimReports claims undelivered reports due by c.Now, withdraws
	// and finished ones first, for c.Lease. Several claimers never get
	// the same report while a lease runs.
	ClaimReports(ctx context.Context, c ReportClaim) ([]AgentReport, error)
	// CompleteReports records outcomes of reports claimed with token. A
	// delivered progress makes the job's next progress wait until now +
	// progressGap. A progress replaced since it was claimed stays
	// undelivered (the newer one). Reports whose claim has passed to
	// another claimer are left to it.
	CompleteReports(ctx context.Context, token string, now time.Time, progressGap time.Duration, outcomes []ReportOutcome) error
	// NextReportDue returns when the next undelivered report is due (ok
	// false when there is none).
	NextReportDue(ctx context.Context) (at time.Time, ok bool, err error)
	// PruneReports deletes up to limit reports delivered before before
	// and returns how many it deleted.
	PruneReports(ctx context.Context, before time.Time, limit int) (int, error)
}

// ReportStore records agent reports and holds them until delivered.
type ReportStore interface {
	ReportRecorder
	ReportOutbox
}

// NoteWorkflowNotFound begins the note of a report the relay dropped
// because its workflow was unknown to Temporal or had closed.
const NoteWorkflowNotFound = "workflow not found or closed"

// WithdrawState is what became of a job's withdraw when a retried
// submission of the job (the same Idempotency-Key) took it back.
type WithdrawState string

// The states RetractWithdraw answers.
const (
	// WithdrawNone: there was none, or its cancel found no workflow (the
	// submission never started one), so the retry may go on.
	WithdrawNone WithdrawState = "none"
	// WithdrawRetracted: it was undelivered and is gone; the retry goes on
	// and its job runs.
	WithdrawRetracted WithdrawState = "retracted"
	// WithdrawDelivering: a relay holds it this instant; the retry must
	// wait and try again.
	WithdrawDelivering WithdrawState = "delivering"
	// WithdrawDelivered: its cancel reached the job's workflow: that
	// submission is over and the retry must say so.
	WithdrawDelivered WithdrawState = "delivered"
)

// WithdrawRetractor takes a job's withdraw back: the API's answer to a
// submission retried with the Idempotency-Key of one it withdrew.
type WithdrawRetractor interface {
	// RetractWithdraw deletes the job's withdraw unless a relay holds it
	// or has delivered it (now decides whether a relay's claim has
	// lapsed) and says which it was. EUNAVAILABLE when the store is down.
	RetractWithdraw(ctx context.Context, jobID string, now time.Time) (WithdrawState, error)
}
