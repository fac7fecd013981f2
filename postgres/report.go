package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.ReportStore = (*DB)(nil)

// ReportsChannel is the NOTIFY channel RecordReport wakes the relays on: a
// report is due for delivery now.
const ReportsChannel = "gpuflow_reports"

const (
	jobStatusSQL = `SELECT status FROM jobs WHERE id = $1`

	// A progress replaces the job's progress row: a new id (newer than
	// the one it replaces), undelivered again. not_before stays: the rate
	// limit set by the last delivery, or the claim of a relay delivering
	// the older one, which then finds it replaced and leaves it due after
	// the interval. The second result says whether it is due now.
	upsertProgressSQL = `INSERT INTO agent_reports AS r (job_id, kind, percent, message, received_at, not_before)
		VALUES ($1, 'progress', $2, $3, $4, $4)
		ON CONFLICT (job_id) WHERE kind = 'progress' DO UPDATE SET
			id = nextval('agent_reports_id_seq'), percent = EXCLUDED.percent, message = EXCLUDED.message,
			received_at = EXCLUDED.received_at, delivered_at = NULL, note = NULL
		RETURNING r.id, r.not_before <= $4 AND r.claim IS NULL`

	insertFinishedSQL = `INSERT INTO agent_reports (job_id, kind, exit_code, received_at, not_before)
		VALUES ($1, 'finished', $2, $3, $3)
		ON CONFLICT (job_id) WHERE kind = 'finished' DO NOTHING
		RETURNING id`

	insertWithdrawSQL = `INSERT INTO agent_reports (job_id, kind, message, received_at, not_before)
		VALUES ($1, 'withdraw', $2, $3, $3)
		ON CONFLICT (job_id) WHERE kind = 'withdraw' DO NOTHING
		RETURNING id`

	// A withdraw nobody holds is deleted; otherwise what became of it.
	retractWithdrawSQL = `WITH del AS (
			DELETE FROM agent_reports WHERE job_id = $1 AND kind = 'withdraw' AND delivered_at IS NULL
				AND (claim IS NULL OR not_before <= $2)
			RETURNING id
		)
		SELECT CASE
			WHEN EXISTS (SELECT 1 FROM del) THEN 'retracted'
			WHEN w.id IS NULL THEN 'none'
			WHEN w.delivered_at IS NULL THEN 'delivering'
			WHEN w.note LIKE $3 THEN 'none'
			ELSE 'delivered' END
		FROM (SELECT 1) one LEFT JOIN agent_reports w ON w.job_id = $1 AND w.kind = 'withdraw'`

	reportColumns = `id, job_id::text, kind, COALESCE(percent, 0), message, COALESCE(exit_code, 0), received_at, attempts`

	reportOfJobSQL = `SELECT ` + reportColumns + ` FROM agent_reports WHERE job_id = $1 AND kind = $2`

	// Due rows of each kind, oldest first, skipping those another claimer
	// is locking this instant; claimed ones are due again when the lease
	// ends.
	claimReportsSQL = `WITH w AS (
			SELECT id FROM agent_reports WHERE delivered_at IS NULL AND kind = 'withdraw' AND not_before <= $1
			ORDER BY not_before LIMIT $2 FOR UPDATE SKIP LOCKED
		), f AS (
			SELECT id FROM agent_reports WHERE delivered_at IS NULL AND kind = 'finished' AND not_before <= $1
			ORDER BY not_before LIMIT $2 FOR UPDATE SKIP LOCKED
		), p AS (
			SELECT id FROM agent_reports WHERE delivered_at IS NULL AND kind = 'progress' AND not_before <= $1
			ORDER BY not_before LIMIT $2 FOR UPDATE SKIP LOCKED
		)
		UPDATE agent_reports SET claim = $3, not_before = $4
		WHERE id IN (SELECT id FROM w UNION ALL SELECT id FROM f UNION ALL SELECT id FROM p)
		RETURNING ` + reportColumns

	finishedDoneSQL = `UPDATE agent_reports r SET delivered_at = $2, note = NULLIF(d.note, ''), claim = NULL, last_error = NULL
		FROM unnest($3::bigint[], $4::text[]) AS d(id, note)
		WHERE r.id = d.id AND r.claim = $1`

	finishedRetrySQL = `UPDATE agent_reports r SET not_before = d.at, claim = NULL, attempts = r.attempts + 1, last_error = d.err
		FROM unnest($2::bigint[], $3::timestamptz[], $4::text[]) AS d(id, at, err)
		WHERE r.id = d.id AND r.claim = $1`

	// A progress is matched by its job: one replaced since the claim
	// (another id) stays undelivered, due after the interval.
	progressDoneSQL = `UPDATE agent_reports r SET
			delivered_at = CASE WHEN r.id = d.id THEN $2::timestamptz END,
			note = CASE WHEN r.id = d.id THEN NULLIF(d.note, '') END,
			not_before = $2::timestamptz + $3::interval, claim = NULL, attempts = 0, last_error = NULL
		FROM unnest($4::uuid[], $5::bigint[], $6::text[]) AS d(job_id, id, note)
		WHERE r.kind = 'progress' AND r.job_id = d.job_id AND r.claim = $1`

	progressRetrySQL = `UPDATE agent_reports r SET not_before = d.at, claim = NULL, attempts = r.attempts + 1, last_error = d.err
		FROM unnest($2::uuid[], $3::timestamptz[], $4::text[]) AS d(job_id, at, err)
		WHERE r.kind = 'progress' AND r.job_id = d.job_id AND r.claim = $1`

	nextReportDueSQL = `SELECT LEAST(
		(SELECT min(not_before) FROM agent_reports WHERE delivered_at IS NULL AND kind = 'withdraw'),
		(SELECT min(not_before) FROM agent_reports WHERE delivered_at IS NULL AND kind = 'finished'),
		(SELECT min(not_before) FROM agent_reports WHERE delivered_at IS NULL AND kind = 'progress'))`

	pruneReportsSQL = `DELETE FROM agent_reports WHERE id IN (
		SELECT id FROM agent_reports WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2)`
)

// RetractWithdraw implements gpuflow.WithdrawRetractor.
func (db *DB) RetractWithdraw(ctx context.Context, jobID string, now time.Time) (gpuflow.WithdrawState, error) {
	var state string
	err := db.Pool.QueryRow(ctx, retractWithdrawSQL, jobID, dbTime(now), gpuflow.NoteWorkflowNotFound+"%").Scan(&state)
	if err != nil {
		return "", translate(err, "retract withdraw", "agent report")
	}
	return gpuflow.WithdrawState(state), nil
}

func scanReport(row pgx.Row) (gpuflow.AgentReport, error) {
	var r gpuflow.AgentReport
	var kind string
	err := row.Scan(&r.ID, &r.JobID, &kind, &r.Percent, &r.Message, &r.ExitCode, &r.ReceivedAt, &r.Attempts)
	r.Kind = gpuflow.ReportKind(kind)
	return r, err
}

// RecordReport implements gpuflow.ReportRecorder. It checks the job's
// status in the jobs table: a job that has ended answers ECONFLICT. A job
// without a row there (not expected: the machine exists because the
// workflow recorded the job) has its report recorded all the same; the
// relay drops it if its workflow is unknown. A report due at once is
// announced on ReportsChannel in the same transaction. A withdraw (the
// API's, for a submission it could not confirm) is kept once per job like
// a finished report.
func (db *DB) RecordReport(ctx context.Context, r gpuflow.AgentReport) (gpuflow.AgentReport, bool, error) {
	id, ok := canonicalUUID(r.JobID)
	if !ok {
		return r, false, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid job id"}
	}
	r.JobID = id
	switch r.Kind {
	case gpuflow.ReportProgress:
		if !(r.Percent >= 0 && r.Percent <= 100) {
			return r, false, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "percent must be between 0 and 100"}
		}
	case gpuflow.ReportFinished:
		if r.ExitCode < -1 || r.ExitCode > 255 {
			return r, false, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "exit_code must be between -1 and 255"}
		}
	case gpuflow.ReportWithdraw:
		if len(r.Message) > 1000 {
			return r, false, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "a withdraw's reason must be at most 1000 bytes"}
		}
	default:
		return r, false, &gpuflow.Error{Code: gpuflow.EINVALID, Message: fmt.Sprintf("unknown report kind %q", r.Kind)}
	}
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = db.now()
	}
	r.ReceivedAt = dbTime(r.ReceivedAt)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return r, false, translate(err, "record agent report", "agent report")
	}
	defer rollback(ctx, tx)
	var status string
	switch err := tx.QueryRow(ctx, jobStatusSQL, id).Scan(&status); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return r, false, translate(err, "record agent report", "agent report")
	case gpuflow.JobStatus(status).Terminal():
		return r, false, gpuflow.Errorf(gpuflow.ECONFLICT, "the job has finished")
	}
	created, due := true, false
	switch r.Kind {
	case gpuflow.ReportProgress:
		err = tx.QueryRow(ctx, upsertProgressSQL, id, r.Percent, r.Message, r.ReceivedAt).Scan(&r.ID, &due)
	default:
		if r.Kind == gpuflow.ReportFinished {
			err = tx.QueryRow(ctx, insertFinishedSQL, id, r.ExitCode, r.ReceivedAt).Scan(&r.ID)
		} else {
			err = tx.QueryRow(ctx, insertWithdrawSQL, id, r.Message, r.ReceivedAt).Scan(&r.ID)
		}
		due = err == nil
		if errors.Is(err, pgx.ErrNoRows) { // the job has one already: keep it
			created = false
			r, err = scanReport(tx.QueryRow(ctx, reportOfJobSQL, id, string(r.Kind)))
		}
	}
	if err != nil {
		return r, false, translate(err, "record agent report", "agent report")
	}
	if due {
		if _, err := tx.Exec(ctx, notifySQL, ReportsChannel, ""); err != nil {
			return r, false, translate(err, "announce agent report", "agent report")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return r, false, translate(err, "record agent report", "agent report")
	}
	return r, created, nil
}

// ClaimReports implements gpuflow.ReportOutbox (FOR UPDATE SKIP LOCKED,
// then a lease in not_before).
func (db *DB) ClaimReports(ctx context.Context, c gpuflow.ReportClaim) ([]gpuflow.AgentReport, error) {
	if c.Token == "" || c.Limit <= 0 || c.Lease <= 0 {
		return nil, errors.New("claim reports: a token, a positive limit and a lease are required")
	}
	now := dbTime(c.Now)
	rows, err := db.Pool.Query(ctx, claimReportsSQL, now, c.Limit, c.Token, now.Add(c.Lease))
	if err != nil {
		return nil, translate(err, "claim agent reports", "agent report")
	}
	defer rows.Close()
	var out []gpuflow.AgentReport
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, translate(err, "claim agent reports", "agent report")
		}
		out = append(out, r)
	}
	return out, translate(rows.Err(), "claim agent reports", "agent report")
}

// CompleteReports implements gpuflow.ReportOutbox, in one transaction.
func (db *DB) CompleteReports(ctx context.Context, token string, now time.Time, progressGap time.Duration, outcomes []gpuflow.ReportOutcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	now = dbTime(now)
	gap := max(progressGap, 0)
	retryAt := func(o gpuflow.ReportOutcome) time.Time {
		if o.RetryAt.Before(now) {
			return now
		}
		return dbTime(o.RetryAt)
	}
	var (
		fDoneIDs, fRetryIDs    []int64
		fDoneNotes, fRetryErrs []string
		fRetryAt, pRetryAt     []time.Time
		pDoneJobs, pRetryJobs  []string
		pDoneIDs               []int64
		pDoneNotes, pRetryErrs []string
	)
	for _, o := range outcomes {
		r := o.Report
		switch {
		// Finished and withdraw rows are one per job, matched by id.
		case r.Kind != gpuflow.ReportProgress && o.Done:
			fDoneIDs, fDoneNotes = append(fDoneIDs, r.ID), append(fDoneNotes, o.Note)
		case r.Kind != gpuflow.ReportProgress:
			fRetryIDs, fRetryAt, fRetryErrs = append(fRetryIDs, r.ID), append(fRetryAt, retryAt(o)), append(fRetryErrs, o.Error)
		case o.Done:
			pDoneJobs, pDoneIDs, pDoneNotes = append(pDoneJobs, r.JobID), append(pDoneIDs, r.ID), append(pDoneNotes, o.Note)
		default:
			pRetryJobs, pRetryAt, pRetryErrs = append(pRetryJobs, r.JobID), append(pRetryAt, retryAt(o)), append(pRetryErrs, o.Error)
		}
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "complete agent reports", "agent report")
	}
	defer rollback(ctx, tx)
	stmts := []struct {
		n    int
		sql  string
		args []any
	}{
		{len(fDoneIDs), finishedDoneSQL, []any{token, now, fDoneIDs, fDoneNotes}},
		{len(fRetryIDs), finishedRetrySQL, []any{token, fRetryIDs, fRetryAt, fRetryErrs}},
		{len(pDoneJobs), progressDoneSQL, []any{token, now, gap, pDoneJobs, pDoneIDs, pDoneNotes}},
		{len(pRetryJobs), progressRetrySQL, []any{token, pRetryJobs, pRetryAt, pRetryErrs}},
	}
	for _, s := range stmts {
		if s.n == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return translate(err, "complete agent reports", "agent report")
		}
	}
	return translate(tx.Commit(ctx), "complete agent reports", "agent report")
}

// NextReportDue implements gpuflow.ReportOutbox.
func (db *DB) NextReportDue(ctx context.Context) (time.Time, bool, error) {
	var at *time.Time
	if err := db.Pool.QueryRow(ctx, nextReportDueSQL).Scan(&at); err != nil {
		return time.Time{}, false, translate(err, "next agent report", "agent report")
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return *at, true, nil
}

// PruneReports implements gpuflow.ReportOutbox.
func (db *DB) PruneReports(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := db.Pool.Exec(ctx, pruneReportsSQL, dbTime(before), limit)
	if err != nil {
		return 0, translate(err, "prune agent reports", "agent report")
	}
	return int(tag.RowsAffected()), nil
}

// ListenReports calls fn whenever RecordReport announces a report due now,
// and once each time it has (re)subscribed (notifications sent while
// disconnected are lost; fn looks at the table). It reconnects with
// backoff until ctx is done, then returns nil.
func (db *DB) ListenReports(ctx context.Context, fn func()) error {
	cfg := db.Pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "gpuflow-report-listener"
	reconnect(ctx, db.logger(), "report listener", 0, 0, func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return false, fmt.Errorf("connect: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ReportsChannel}.Sanitize()); err != nil {
			return false, fmt.Errorf("listen: %w", err)
		}
		fn()
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				return true, fmt.Errorf("wait for notification: %w", err)
			}
			fn()
		}
	})
	return nil
}
