package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/gpuflow/gpuflow"
)

const (
	// jobInsertKeyedSQL is jobInsertSQL that also records the idempotency
	// key ($19). When the job exists already (its workflow recorded it
	// first) the key is added to it, unless it has one or another owner.
	jobInsertKeyedSQL = `INSERT INTO jobs (id, owner_id, name, status, spec, provider, machine_id,
		price_per_hour, exit_code, error, attempts, workflow_id, run_id, last_seq,
		created_at, updated_at, started_at, finished_at, idempotency_key)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
	ON CONFLICT (id) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
	WHERE jobs.idempotency_key IS NULL AND jobs.owner_id IS NOT DISTINCT FROM EXCLUDED.owner_id`

	jobByKeySQL = `SELECT ` + jobColumns + ` FROM jobs WHERE owner_id = $1 AND idempotency_key = $2`
)

// CreateJobWithIdempotencyKey is CreateJob that also records key, the
// client's Idempotency-Key of the submission, with the job. When the job
// exists already (its workflow may record it first) the key is added to it
// if it has none and the same owner. It returns ECONFLICT when another job
// of the owner has the key, and EINVALID for an empty key.
func (db *DB) CreateJobWithIdempotencyKey(ctx context.Context, j *gpuflow.Job, key string) error {
	if key == "" {
		return gpuflow.Errorf(gpuflow.EINVALID, "empty idempotency key")
	}
	return db.createJob(ctx, j, key)
}

// JobByIdempotencyKey returns the job owner submitted with key, or
// ENOTFOUND (also for a malformed owner id).
func (db *DB) JobByIdempotencyKey(ctx context.Context, owner, key string) (*gpuflow.Job, error) {
	o, ok := canonicalUUID(owner)
	if !ok || key == "" {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "no job with this idempotency key")
	}
	j, err := scanJob(db.Pool.QueryRow(ctx, jobByKeySQL, o, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "no job with this idempotency key")
	}
	if err != nil {
		return nil, translate(err, "get job by idempotency key", "job")
	}
	return j, nil
}
