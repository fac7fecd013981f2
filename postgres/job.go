package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
)

// Page sizes of Jobs.
const (
	DefaultJobsLimit = 50
	MaxJobsLimit     = 200
)

// jobColumns is the column list scanJob reads.
const jobColumns = `id::text, COALESCE(owner_id::text, ''), status, spec, COALESCE(provider, ''),
	COALESCE(machine_id, ''), price_per_hour, exit_code, COALESCE(error, ''), attempts,
	workflow_id, COALESCE(run_id, ''), last_seq, created_at, updated_at, started_at, finished_at`

const (
	jobInsertSQL = `INSERT INTO jobs (id, owner_id, name, status, spec, provider, machine_id,
		price_per_hour, exit_code, error, attempts, workflow_id, run_id, last_seq,
		created_at, updated_at, started_at, finished_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
	ON CONFLICT (id) DO NOTHING`

	jobGetSQL = `SELECT ` + jobColumns + ` FROM jobs WHERE id = $1`

	jobLockSQL = jobGetSQL + ` FOR UPDATE`

	jobUpdateSQL = `UPDATE jobs SET status = $2, provider = $3, machine_id = $4, price_per_hour = $5,
		exit_code = $6, error = $7, attempts = $8, last_seq = $9, updated_at = $10,
		started_at = $11, finished_at = $12
	WHERE id = $1`

	jobExistsSQL = `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)`
)

// scanJob reads one row of jobColumns.
func scanJob(row pgx.Row) (*gpuflow.Job, error) {
	var (
		j        gpuflow.Job
		spec     []byte
		attempts []byte
	)
	err := row.Scan(&j.ID, &j.OwnerID, &j.Status, &spec, &j.Provider, &j.MachineID,
		&j.PricePerHour, &j.ExitCode, &j.Error, &attempts, &j.WorkflowID, &j.RunID, &j.LastSeq,
		&j.CreatedAt, &j.UpdatedAt, &j.StartedAt, &j.FinishedAt)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(spec, &j.Spec); err != nil {
		return nil, fmt.Errorf("decode spec of job %s: %w", j.ID, err)
	}
	if err := json.Unmarshal(attempts, &j.Attempts); err != nil {
		return nil, fmt.Errorf("decode attempts of job %s: %w", j.ID, err)
	}
	if j.Attempts == nil {
		j.Attempts = []gpuflow.Attempt{}
	}
	j.CreatedAt = j.CreatedAt.UTC()
	j.UpdatedAt = j.UpdatedAt.UTC()
	j.StartedAt = dbTimePtr(j.StartedAt)
	j.FinishedAt = dbTimePtr(j.FinishedAt)
	return &j, nil
}

// CreateJob inserts j unless a job with its id exists, in which case it is
// a no-op. It fills in what j leaves out: CreatedAt (db.Now), UpdatedAt
// (CreatedAt), Status (queued) and Attempts (none), and rounds its times
// to what the database stores (UTC, microseconds). It returns EINVALID for a malformed id, owner
// id or status, or an empty WorkflowID, and ECONFLICT when another job has
// the same WorkflowID.
func (db *DB) CreateJob(ctx context.Context, j *gpuflow.Job) error {
	return db.createJob(ctx, j, "")
}

// createJob is CreateJob; a non-empty key is also recorded as the job's
// idempotency key (see CreateJobWithIdempotencyKey).
func (db *DB) createJob(ctx context.Context, j *gpuflow.Job, key string) error {
	id, ok := canonicalUUID(j.ID)
	if !ok {
		return gpuflow.Errorf(gpuflow.EINVALID, "job id %q is not a UUID", j.ID)
	}
	var owner *string
	if j.OwnerID != "" {
		o, ok := canonicalUUID(j.OwnerID)
		if !ok {
			return gpuflow.Errorf(gpuflow.EINVALID, "owner id %q is not a UUID", j.OwnerID)
		}
		owner = &o
	}
	if j.Status == "" {
		j.Status = gpuflow.StatusQueued
	}
	if !j.Status.Valid() {
		return gpuflow.Errorf(gpuflow.EINVALID, "unknown job status %q", j.Status)
	}
	if j.WorkflowID == "" {
		return gpuflow.Errorf(gpuflow.EINVALID, "job %s has no workflow id", j.ID)
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = db.now()
	}
	j.CreatedAt = dbTime(j.CreatedAt)
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	j.UpdatedAt = dbTime(j.UpdatedAt)
	j.StartedAt = dbTimePtr(j.StartedAt)
	j.FinishedAt = dbTimePtr(j.FinishedAt)
	if j.Attempts == nil {
		j.Attempts = []gpuflow.Attempt{}
	}
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return fmt.Errorf("encode spec of job %s: %w", j.ID, err)
	}
	attempts, err := json.Marshal(j.Attempts)
	if err != nil {
		return fmt.Errorf("encode attempts of job %s: %w", j.ID, err)
	}

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "create job", "job")
	}
	defer rollback(ctx, tx)
	args := []any{id, owner, j.Spec.Name, string(j.Status), spec,
		nullString(j.Provider), nullString(j.MachineID), j.PricePerHour, j.ExitCode,
		nullString(j.Error), attempts, j.WorkflowID, nullString(j.RunID), j.LastSeq,
		j.CreatedAt, j.UpdatedAt, j.StartedAt, j.FinishedAt}
	query := jobInsertSQL
	if key != "" {
		query, args = jobInsertKeyedSQL, append(args, key)
	}
	if _, err = tx.Exec(ctx, query, args...); err != nil {
		return translate(err, "create job "+j.ID, "job")
	}
	return translate(tx.Commit(ctx), "create job "+j.ID, "job")
}

// Job returns the job with id. It returns ENOTFOUND when there is none,
// including when id is not a UUID.
func (db *DB) Job(ctx context.Context, id string) (*gpuflow.Job, error) {
	uid, ok := canonicalUUID(id)
	if !ok {
		return nil, notFound(id)
	}
	j, err := scanJob(db.Pool.QueryRow(ctx, jobGetSQL, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, translate(err, "get job "+id, "job")
	}
	return j, nil
}

// Jobs lists the jobs f selects, newest first (by created_at, then id), at
// most f.Limit of them (DefaultJobsLimit when 0, capped at MaxJobsLimit),
// and returns the cursor of the next page, "" after the last one. Paging by
// cursor is stable: jobs created meanwhile never shift a page, so no job
// that existed at the start is seen twice or skipped. It returns EINVALID
// for a malformed cursor, status or owner id.
func (db *DB) Jobs(ctx context.Context, f gpuflow.JobFilter) ([]*gpuflow.Job, string, error) {
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.OwnerID != "" {
		owner, ok := canonicalUUID(f.OwnerID)
		if !ok {
			return nil, "", gpuflow.Errorf(gpuflow.EINVALID, "owner id %q is not a UUID", f.OwnerID)
		}
		conds = append(conds, "owner_id = "+arg(owner))
	}
	if f.Status != "" {
		if !f.Status.Valid() {
			return nil, "", gpuflow.Errorf(gpuflow.EINVALID, "unknown job status %q", f.Status)
		}
		conds = append(conds, "status = "+arg(string(f.Status)))
	}
	if f.Provider != "" {
		conds = append(conds, "provider = "+arg(f.Provider))
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		conds = append(conds, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(at), arg(id)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultJobsLimit
	}
	limit = min(limit, MaxJobsLimit)

	sql := "SELECT " + jobColumns + " FROM jobs"
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	sql += " ORDER BY created_at DESC, id DESC LIMIT " + arg(limit+1)

	rows, err := db.Pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", translate(err, "list jobs", "job filter")
	}
	defer rows.Close()
	jobs := make([]*gpuflow.Job, 0, limit)
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, "", translate(err, "list jobs", "job filter")
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, "", translate(err, "list jobs", "job filter")
	}
	next := ""
	if len(jobs) > limit {
		jobs = jobs[:limit]
		last := jobs[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return jobs, next, nil
}

// encodeCursor encodes the position after the job created at at with id.
func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "_" + id))
}

// decodeCursor reverses encodeCursor; it returns EINVALID for anything else.
func decodeCursor(c string) (time.Time, string, error) {
	bad := gpuflow.Errorf(gpuflow.EINVALID, "invalid cursor")
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	micros, id, ok := strings.Cut(string(raw), "_")
	if !ok {
		return time.Time{}, "", bad
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", bad
	}
	id, ok = canonicalUUID(id)
	if !ok {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(us).UTC(), id, nil
}

// ApplyUpdate applies u to its job and appends its event, in one
// transaction that holds the job's row lock, then publishes the event on
// EventsChannel (delivered when the transaction commits). An update whose
// Seq is not above the job's last applied seq has been applied before (or
// is older than one that was): it changes nothing and returns (nil, nil), so
// a replayed activity never duplicates an event or moves a job backwards.
//
// An update under a seq the job holds with another change (type, status
// or data differ: a lost workflow task wrote it, see gpuflow.JobUpdate)
// changes nothing and returns ECONFLICT caused by *gpuflow.SeqTaken.
//
// Status changes when u.Status is set; Provider, MachineID, Price,
// ExitCode and Error when not nil (an empty string clears); Attempts when
// not nil. StartedAt is set to u.At when u.Started and it was unset;
// FinishedAt to u.At when u.Status is terminal and it was unset. A zero u.At
// means db.Now().
//
// Event ids are assigned in commit order (a transaction-scoped lock
// serialises the inserts), so a feed reader resuming after id N misses none.
// It returns ENOTFOUND for an unknown job and EINVALID for a malformed
// update.
func (db *DB) ApplyUpdate(ctx context.Context, u gpuflow.JobUpdate) (*gpuflow.Event, error) {
	id, ok := canonicalUUID(u.JobID)
	if !ok {
		return nil, notFound(u.JobID)
	}
	if u.Seq <= 0 {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "update seq must be positive, got %d", u.Seq)
	}
	if u.Type == "" {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "update has no event type")
	}
	if u.Status != "" && !u.Status.Valid() {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "unknown job status %q", u.Status)
	}
	if len(u.Data) > 0 && !json.Valid(u.Data) {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "update data is not JSON")
	}
	if u.Price != nil && *u.Price < 0 {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "price per hour must not be negative")
	}
	at := u.At
	if at.IsZero() {
		at = db.now()
	}
	at = dbTime(at)

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return nil, translate(err, "apply update", "update")
	}
	defer rollback(ctx, tx)

	j, err := scanJob(tx.QueryRow(ctx, jobLockSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(u.JobID)
	}
	if err != nil {
		return nil, translate(err, "apply update to job "+id, "update")
	}
	if u.Seq <= j.LastSeq {
		same, err := sameEvent(ctx, tx, id, u)
		if err != nil {
			return nil, translate(err, "apply update to job "+id, "update")
		}
		if !same {
			return nil, &gpuflow.Error{Code: gpuflow.ECONFLICT, Message: fmt.Sprintf("job %s holds another change as seq %d", id, u.Seq),
				Err: &gpuflow.SeqTaken{JobID: id, Seq: u.Seq, LastSeq: j.LastSeq}}
		}
		return nil, nil // applied before: the deferred rollback releases the lock
	}

	applyToJob(j, u, at)
	attempts, err := json.Marshal(j.Attempts)
	if err != nil {
		return nil, fmt.Errorf("encode attempts of job %s: %w", id, err)
	}
	_, err = tx.Exec(ctx, jobUpdateSQL, id, string(j.Status), nullString(j.Provider),
		nullString(j.MachineID), j.PricePerHour, j.ExitCode, nullString(j.Error), attempts,
		j.LastSeq, j.UpdatedAt, j.StartedAt, j.FinishedAt)
	if err != nil {
		return nil, translate(err, "apply update to job "+id, "update")
	}

	ev := &gpuflow.Event{
		JobID:    id,
		JobSeq:   u.Seq,
		Type:     u.Type,
		Status:   u.Status,
		Provider: j.Provider,
		OwnerID:  j.OwnerID,
		At:       at,
	}
	if len(u.Data) > 0 {
		ev.Data = append(json.RawMessage(nil), u.Data...)
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return nil, translate(err, "apply update to job "+id, "update")
	}
	if u.Status == gpuflow.StatusRunning && j.MachineID != "" {
		// The workflow knows its machine runs (its agent said so, most
		// often): the watcher's first sight of it running is no news, and
		// a signal saying so would cost the job a workflow task for nothing.
		if _, err := tx.Exec(ctx, watchKnownRunningSQL, id, j.MachineID); err != nil {
			return nil, translate(err, "apply update to job "+id, "update")
		}
	}
	if _, err := tx.Exec(ctx, notifySQL, EventsChannel, notifyPayload(ev)); err != nil {
		return nil, translate(err, "notify event of job "+id, "update")
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, translate(err, "apply update to job "+id, "update")
	}
	return ev, nil
}

// sameEventSQL reports whether the job's event at a seq is the change
// given (type, status, data; jsonb compares by value). No event at all
// (none is ever deleted while its job lives) reads as the same.
const sameEventSQL = `SELECT coalesce((SELECT type = $3 AND status IS NOT DISTINCT FROM $4 AND data IS NOT DISTINCT FROM $5::jsonb
	FROM job_events WHERE job_id = $1 AND job_seq = $2), true)`

// sameEvent reports whether the job's event at u.Seq is the change u
// makes: u was applied before (a replayed activity), not lost to another.
func sameEvent(ctx context.Context, tx pgx.Tx, id string, u gpuflow.JobUpdate) (bool, error) {
	var data []byte
	if len(u.Data) > 0 {
		data = u.Data
	}
	var same bool
	err := tx.QueryRow(ctx, sameEventSQL, id, u.Seq, u.Type, nullString(string(u.Status)), data).Scan(&same)
	return same, err
}

// applyToJob changes j as u says, at time at.
func applyToJob(j *gpuflow.Job, u gpuflow.JobUpdate, at time.Time) {
	if u.Status != "" {
		j.Status = u.Status
	}
	if u.Provider != nil {
		j.Provider = *u.Provider
	}
	if u.MachineID != nil {
		j.MachineID = *u.MachineID
	}
	if u.Price != nil {
		j.PricePerHour = *u.Price
	}
	if u.ExitCode != nil {
		code := *u.ExitCode
		j.ExitCode = &code
	}
	if u.Error != nil {
		j.Error = *u.Error
	}
	if u.Attempts != nil {
		j.Attempts = u.Attempts
	}
	if u.Started && j.StartedAt == nil {
		j.StartedAt = &at
	}
	if u.Status.Terminal() && j.FinishedAt == nil {
		j.FinishedAt = &at
	}
	j.LastSeq = u.Seq
	j.UpdatedAt = at
}

// jobExists reports whether the job with canonical id exists.
func jobExists(ctx context.Context, q pgx.Tx, id string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, jobExistsSQL, id).Scan(&ok)
	return ok, err
}

// CountJobsByStatus returns how many jobs are in each status (for metrics).
func (db *DB) CountJobsByStatus(ctx context.Context) (map[gpuflow.JobStatus]int64, error) {
	rows, err := db.Pool.Query(ctx, `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		return nil, translate(err, "count jobs", "job")
	}
	defer rows.Close()
	out := map[gpuflow.JobStatus]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, translate(err, "count jobs", "job")
		}
		out[gpuflow.JobStatus(st)] = n
	}
	return out, translate(rows.Err(), "count jobs", "job")
}
