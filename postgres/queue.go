package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpuflow/gpuflow"
)

var (
	_ gpuflow.QueueStore   = (*DB)(nil)
	_ gpuflow.OutcomeStore = (*DB)(nil)
)

// QueueChannel is the NOTIFY channel Enqueue and Dequeue wake the
// dispatchers on: a job waits, or capacity or an owner's share may have
// been freed.
const QueueChannel = "gpuflow_queue"

// queueLockKey is the advisory lock that makes admission passes take turns
// across every process ("gpuflowq").
const queueLockKey int64 = 0x6770_7566_6c6f_7771

const queueColumns = `q.job_id, q.owner_id, q.workflow_id, q.priority, q.submitted_at, q.spec, q.blocked,
	q.admitted, q.admitted_at, q.decision, q.offer_key, q.units, q.price_per_hour, q.reason, j.status`

func scanQueueEntry(row pgx.Row) (*gpuflow.QueueEntry, error) {
	var (
		e          gpuflow.QueueEntry
		owner, key *string
		admittedAt *time.Time
		spec       []byte
		blocked    []byte
		decision   []byte
		status     string
	)
	if err := row.Scan(&e.JobID, &owner, &e.WorkflowID, &e.Priority, &e.SubmittedAt, &spec, &blocked,
		&e.Admitted, &admittedAt, &decision, &key, &e.Units, &e.PricePerHour, &e.Reason, &status); err != nil {
		return nil, err
	}
	if owner != nil {
		e.OwnerID = *owner
	}
	if key != nil {
		e.OfferKey = *key
	}
	if admittedAt != nil {
		e.AdmittedAt = *admittedAt
	}
	if len(decision) > 0 {
		e.Decision = decision
	}
	e.JobStatus = gpuflow.JobStatus(status)
	if err := json.Unmarshal(spec, &e.Spec); err != nil {
		return nil, fmt.Errorf("queue entry %s: spec: %w", e.JobID, err)
	}
	if err := json.Unmarshal(blocked, &e.Blocked); err != nil {
		return nil, fmt.Errorf("queue entry %s: blocked: %w", e.JobID, err)
	}
	return &e, nil
}

// Enqueue implements gpuflow.QueueStore.
func (db *DB) Enqueue(ctx context.Context, e gpuflow.QueueEntry) (*gpuflow.QueueEntry, error) {
	id, ok := canonicalUUID(e.JobID)
	if !ok {
		return nil, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid job id"}
	}
	spec, err := json.Marshal(e.Spec)
	if err != nil {
		return nil, err
	}
	if e.Blocked == nil {
		e.Blocked = map[string]gpuflow.Block{}
	}
	blocked, err := json.Marshal(e.Blocked)
	if err != nil {
		return nil, err
	}
	var owner *string
	if e.OwnerID != "" {
		o, ok := canonicalUUID(e.OwnerID)
		if !ok {
			return nil, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid owner id"}
		}
		owner = &o
	}
	// A job that has ended is not queued again (a late retry of its Admit).
	const upsert = `INSERT INTO job_queue (job_id, owner_id, workflow_id, priority, submitted_at, spec, blocked, enqueued_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8
		WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled'))
		ON CONFLICT (job_id) DO UPDATE SET blocked = EXCLUDED.blocked WHERE NOT job_queue.admitted`
	// The NOTIFY wakes every dispatcher, not only this worker's: a job
	// only another worker's providers can serve (the local host's) would
	// otherwise wait for that worker's next recheck, an hour when its
	// queue looked empty.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, translate(err, "enqueue job", "queue entry")
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, upsert, id, owner, e.WorkflowID, e.Priority, dbTime(e.SubmittedAt), spec, blocked, db.now()); err != nil {
		return nil, translate(err, "enqueue job", "queue entry")
	}
	if _, err := tx.Exec(ctx, notifySQL, QueueChannel, enqueuedHere); err != nil {
		return nil, translate(err, "enqueue job", "queue entry")
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, translate(err, "enqueue job", "queue entry")
	}
	got, err := scanQueueEntry(db.Pool.QueryRow(ctx, `SELECT `+queueColumns+` FROM job_queue q JOIN jobs j ON j.id = q.job_id WHERE q.job_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, gpuflow.Errorf(gpuflow.ECONFLICT, "job %s has ended or does not exist; it is not queued", id)
	}
	if err != nil {
		return nil, translate(err, "read queue entry", "queue entry")
	}
	return got, nil
}

// Dequeue implements gpuflow.QueueStore.
func (db *DB) Dequeue(ctx context.Context, jobID string) error {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid job id"}
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "dequeue job", "queue entry")
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `DELETE FROM job_queue WHERE job_id = $1`, id); err != nil {
		return translate(err, "dequeue job", "queue entry")
	}
	if _, err := tx.Exec(ctx, notifySQL, QueueChannel, ""); err != nil {
		return translate(err, "dequeue job", "queue entry")
	}
	return translate(tx.Commit(ctx), "dequeue job", "queue entry")
}

// usageSQL sums, per owner, the jobs holding or making a machine: admitted
// queue entries (their offer's price) and provisioning, running and
// cancelling jobs no longer in the queue.
const usageSQL = `SELECT COALESCE(owner_id::text, ''), count(*), COALESCE(sum(price), 0) FROM (
	SELECT j.owner_id, j.price_per_hour AS price FROM jobs j
	WHERE j.status IN ('provisioning', 'running', 'cancelling')
	  AND NOT EXISTS (SELECT 1 FROM job_queue q WHERE q.job_id = j.id)
	UNION ALL
	SELECT q.owner_id, q.price_per_hour FROM job_queue q WHERE q.admitted
) u GROUP BY owner_id`

// QueuePass implements gpuflow.QueueStore.
func (db *DB) QueuePass(ctx context.Context, fn func(gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error)) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "queue pass", "queue entry")
	}
	defer rollback(ctx, tx)
	// A process that dies mid-pass without closing its connection (a lost
	// host) must not hold the lock until TCP keepalive notices.
	if _, err := tx.Exec(ctx, `SET LOCAL idle_in_transaction_session_timeout = '2min'`); err != nil {
		return translate(err, "queue pass", "queue entry")
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, queueLockKey); err != nil {
		return translate(err, "lock the queue", "queue entry")
	}
	// Entries of jobs that have ended are left over from a workflow that
	// could not remove its own (the database was away): they hold nothing.
	if _, err := tx.Exec(ctx, `DELETE FROM job_queue q USING jobs j
		WHERE j.id = q.job_id AND j.status IN ('succeeded', 'failed', 'cancelled')`); err != nil {
		return translate(err, "queue pass", "queue entry")
	}
	var st gpuflow.QueueState
	rows, err := tx.Query(ctx, `SELECT `+queueColumns+` FROM job_queue q JOIN jobs j ON j.id = q.job_id
		ORDER BY q.priority DESC, q.submitted_at, q.job_id`)
	if err != nil {
		return translate(err, "read the queue", "queue entry")
	}
	for rows.Next() {
		e, err := scanQueueEntry(rows)
		if err != nil {
			rows.Close()
			return translate(err, "read the queue", "queue entry")
		}
		st.Entries = append(st.Entries, *e)
	}
	if err := rows.Err(); err != nil {
		return translate(err, "read the queue", "queue entry")
	}
	st.Usage = map[string]gpuflow.Usage{}
	rows, err = tx.Query(ctx, usageSQL)
	if err != nil {
		return translate(err, "read usage", "queue entry")
	}
	for rows.Next() {
		var owner string
		var u gpuflow.Usage
		if err := rows.Scan(&owner, &u.Running, &u.SpendPerHour); err != nil {
			rows.Close()
			return translate(err, "read usage", "queue entry")
		}
		st.Usage[owner] = u
	}
	if err := rows.Err(); err != nil {
		return translate(err, "read usage", "queue entry")
	}
	admissions, reasons, err := fn(st)
	if err != nil {
		return err
	}
	now := db.now()
	for _, a := range admissions {
		if _, err := tx.Exec(ctx, `UPDATE job_queue SET admitted = true, admitted_at = $2, decision = $3,
			offer_key = $4, units = $5, price_per_hour = $6, reason = '' WHERE job_id = $1 AND NOT admitted`,
			a.JobID, now, []byte(a.Decision), a.OfferKey, a.Units, a.PricePerHour); err != nil {
			return translate(err, "admit job", "queue entry")
		}
	}
	for id, reason := range reasons {
		if _, err := tx.Exec(ctx, `UPDATE job_queue SET reason = $2 WHERE job_id = $1 AND NOT admitted AND reason <> $2`, id, reason); err != nil {
			return translate(err, "record queue reason", "queue entry")
		}
	}
	return translate(tx.Commit(ctx), "queue pass", "queue entry")
}

// QueuePosition implements gpuflow.QueueStore.
func (db *DB) QueuePosition(ctx context.Context, jobID string) (int, string, error) {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return 0, "", nil
	}
	var pos int
	var reason string
	err := db.Pool.QueryRow(ctx, `SELECT 1 + (SELECT count(*) FROM job_queue o WHERE NOT o.admitted AND
			(o.priority > q.priority OR (o.priority = q.priority AND (o.submitted_at, o.job_id) < (q.submitted_at, q.job_id)))),
		q.reason FROM job_queue q WHERE q.job_id = $1 AND NOT q.admitted`, id).Scan(&pos, &reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", translate(err, "queue position", "queue entry")
	}
	return pos, reason, nil
}

// RecordOutcome implements gpuflow.OutcomeStore: an outcome whose Key was
// recorded before is not recorded again.
func (db *DB) RecordOutcome(ctx context.Context, o gpuflow.ProvisionOutcome) error {
	at := o.At
	if at.IsZero() {
		at = db.now()
	}
	_, err := db.Pool.Exec(ctx, `INSERT INTO provision_outcomes (provider, offer_key, outcome, duration_ms, at, key) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (key) DO NOTHING`,
		o.Provider, o.OfferKey, o.Outcome, max(o.Duration.Milliseconds(), 0), dbTime(at), nullString(o.Key))
	return translate(err, "record provisioning outcome", "provisioning outcome")
}

// Outcomes implements gpuflow.OutcomeStore.
func (db *DB) Outcomes(ctx context.Context, afterID int64, since time.Time, limit int) ([]gpuflow.ProvisionOutcome, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, provider, offer_key, outcome, duration_ms, at FROM provision_outcomes
		WHERE id > $1 AND at >= $2 ORDER BY id LIMIT $3`, afterID, dbTime(since), limit)
	if err != nil {
		return nil, translate(err, "read provisioning outcomes", "provisioning outcome")
	}
	defer rows.Close()
	var out []gpuflow.ProvisionOutcome
	for rows.Next() {
		var o gpuflow.ProvisionOutcome
		var ms int64
		if err := rows.Scan(&o.ID, &o.Provider, &o.OfferKey, &o.Outcome, &ms, &o.At); err != nil {
			return nil, translate(err, "read provisioning outcomes", "provisioning outcome")
		}
		o.Duration = time.Duration(ms) * time.Millisecond
		out = append(out, o)
	}
	return out, translate(rows.Err(), "read provisioning outcomes", "provisioning outcome")
}

// ListenQueue calls fn whenever Dequeue announces freed capacity, and once
// each time it has (re)subscribed (notifications sent while disconnected
// are lost; fn re-reads the queue). It reconnects with backoff until ctx is
// done, then returns nil.
func (db *DB) ListenQueue(ctx context.Context, fn func()) error {
	cfg := db.Pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "gpuflow-queue-listener"
	reconnect(ctx, db.logger(), "queue listener", 0, 0, func(ctx context.Context) (bool, error) {
		return listenQueueOnce(ctx, cfg, fn)
	})
	return nil
}

func listenQueueOnce(ctx context.Context, cfg *pgx.ConnConfig, fn func()) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{QueueChannel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	fn()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		if n.Payload == enqueuedHere {
			// This process's own enqueue: the Admit that made it runs a
			// pass already, and a second one would only queue behind it.
			continue
		}
		fn()
	}
}

// enqueuedHere is the payload of this process's enqueue notifications,
// which its own listeners skip.
var enqueuedHere = "enqueue " + newProcessTag()

func newProcessTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
