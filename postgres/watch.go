package postgres

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.WatchStore = (*DB)(nil)

// AddWatch starts watching the job's machine. The same machine again keeps
// its recorded state and offset; another machine of the job replaces the
// row (a new attempt).
func (db *DB) AddWatch(ctx context.Context, w gpuflow.Watch) error {
	id, ok := canonicalUUID(w.JobID)
	if !ok {
		return notFound(w.JobID)
	}
	now := db.now()
	_, err := db.Pool.Exec(ctx, `
INSERT INTO machine_watch (job_id, workflow_id, provider, host, machine_id, state, log_offset, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, '', $6, $7, $7)
ON CONFLICT (job_id) DO UPDATE SET
    workflow_id = EXCLUDED.workflow_id, provider = EXCLUDED.provider, host = EXCLUDED.host,
    machine_id = EXCLUDED.machine_id, state = '', log_offset = EXCLUDED.log_offset,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
WHERE machine_watch.machine_id <> EXCLUDED.machine_id`,
		id, w.WorkflowID, w.Provider, w.Host, w.MachineID, w.LogOffset, now)
	return translate(err, "watch machine of job "+id, "watch")
}

// RemoveWatch stops watching the job's machine.
func (db *DB) RemoveWatch(ctx context.Context, jobID, machineID string) error {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return nil
	}
	_, err := db.Pool.Exec(ctx, `DELETE FROM machine_watch WHERE job_id = $1 AND machine_id = $2`, id, machineID)
	return translate(err, "unwatch machine of job "+id, "watch")
}

const watchColumns = `job_id, workflow_id, provider, host, machine_id, state, log_offset, created_at`

func scanWatch(row pgx.Row) (*gpuflow.Watch, error) {
	var w gpuflow.Watch
	var state string
	if err := row.Scan(&w.JobID, &w.WorkflowID, &w.Provider, &w.Host, &w.MachineID, &state, &w.LogOffset, &w.CreatedAt); err != nil {
		return nil, err
	}
	w.State = gpuflow.MachineState(state)
	return &w, nil
}

// Watches lists the machines watched for provider on host, oldest first.
func (db *DB) Watches(ctx context.Context, provider, host string) ([]gpuflow.Watch, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+watchColumns+` FROM machine_watch WHERE provider = $1 AND host = $2 ORDER BY created_at, job_id`, provider, host)
	if err != nil {
		return nil, translate(err, "list watches", "watch")
	}
	defer rows.Close()
	var out []gpuflow.Watch
	for rows.Next() {
		w, err := scanWatch(rows)
		if err != nil {
			return nil, translate(err, "list watches", "watch")
		}
		out = append(out, *w)
	}
	return out, translate(rows.Err(), "list watches", "watch")
}

// GetWatch returns the job's watch, or nil.
func (db *DB) GetWatch(ctx context.Context, jobID string) (*gpuflow.Watch, error) {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return nil, nil
	}
	w, err := scanWatch(db.Pool.QueryRow(ctx, `SELECT `+watchColumns+` FROM machine_watch WHERE job_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "read watch of job "+id, "watch")
	}
	return w, nil
}

// watchKnownRunningSQL records, with a job's status "running", that its
// workflow knows the machine runs (ApplyUpdate).
const watchKnownRunningSQL = `UPDATE machine_watch SET state = 'running' WHERE job_id = $1 AND machine_id = $2 AND state = ''`

// MarkWatch records the state told to the workflow and the log offset (the
// offset never moves back).
func (db *DB) MarkWatch(ctx context.Context, jobID, machineID string, state gpuflow.MachineState, logOffset int64) error {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return nil
	}
	_, err := db.Pool.Exec(ctx, `
UPDATE machine_watch SET state = $3, log_offset = GREATEST(log_offset, $4), updated_at = $5
WHERE job_id = $1 AND machine_id = $2`, id, machineID, string(state), logOffset, db.now())
	return translate(err, "mark watch of job "+id, "watch")
}

// RecordSweep records a watcher's complete look at its machines.
func (db *DB) RecordSweep(ctx context.Context, provider, host string, at time.Time) error {
	_, err := db.Pool.Exec(ctx, `
INSERT INTO watch_sweeps (provider, host, swept_at) VALUES ($1, $2, $3)
ON CONFLICT (provider, host) DO UPDATE SET swept_at = GREATEST(watch_sweeps.swept_at, EXCLUDED.swept_at)`,
		provider, host, dbTime(at))
	return translate(err, "record sweep", "sweep")
}

// LastSweep is when the watcher of provider on host last looked at all its
// machines; zero when it never did.
func (db *DB) LastSweep(ctx context.Context, provider, host string) (time.Time, error) {
	var at time.Time
	err := db.Pool.QueryRow(ctx, `SELECT swept_at FROM watch_sweeps WHERE provider = $1 AND host = $2`, provider, host).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	return at, translate(err, "read sweep", "sweep")
}

// SessionLock is an advisory lock held on a connection of its own.
type SessionLock struct {
	conn *pgxpool.Conn
	key  int64
}

// Alive checks that the lock's connection still works: the lock dies with
// it (a PostgreSQL restart), and its holder must then take it again.
func (l *SessionLock) Alive(ctx context.Context) error {
	_, err := l.conn.Exec(ctx, `SELECT 1`)
	return err
}

// Release gives the lock back and returns its connection to the pool.
func (l *SessionLock) Release() {
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		// The session's lock must not outlive its holder: drop the connection.
		_ = l.conn.Conn().Close(uctx)
	}
	l.conn.Release()
}

// WatchLock takes the lock that makes one watcher per provider and host
// run across every process, on a connection of its own: it is held until
// Release or until the connection dies (with its process). It returns nil
// when another process holds it.
func (db *DB) WatchLock(ctx context.Context, provider, host string) (*SessionLock, error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, translate(err, "watch lock", "lock")
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte("gpuflow-watch\x00" + provider + "\x00" + host))
	key := int64(h.Sum64()) // #nosec G115 -- the hash's 64 bits reused as PostgreSQL's bigint advisory-lock key; the wrap is intended
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, translate(err, "watch lock", "lock")
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return &SessionLock{conn: conn, key: key}, nil
}
