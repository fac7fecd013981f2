package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"
)

// logEndSQL locks the job's row (so concurrent appends to its end queue
// up) and returns where its output ends.
const logEndSQL = `SELECT COALESCE((SELECT max("offset" + length(data)) FROM job_logs WHERE job_id = $1), 0)
	FROM jobs WHERE id = $1 FOR UPDATE`

// AppendLogTail appends data at the end of the job's output, for output
// that arrives without an offset (a cloud machine's agent uploading lines).
// It returns the offset data was stored at. ENOTFOUND for an unknown job.
func (db *DB) AppendLogTail(ctx context.Context, jobID string, data []byte) (int64, error) {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return 0, notFound(jobID)
	}
	if len(data) == 0 {
		return 0, nil
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return 0, translate(err, "append log", "log chunk")
	}
	defer rollback(ctx, tx)
	var end int64
	if err := tx.QueryRow(ctx, logEndSQL, id).Scan(&end); errors.Is(err, pgx.ErrNoRows) {
		return 0, notFound(jobID)
	} else if err != nil {
		return 0, translate(err, "append log of job "+id, "job")
	}
	if _, err := tx.Exec(ctx, logInsertSQL, id, end, data, db.now()); err != nil {
		return 0, translate(err, "append log of job "+id, "log chunk")
	}
	n, _ := json.Marshal(LogNotice{JobID: id, Offset: end, End: end + int64(len(data))})
	if _, err := tx.Exec(ctx, notifySQL, LogsChannel, string(n)); err != nil {
		return 0, translate(err, "announce log of job "+id, "log chunk")
	}
	return end, translate(tx.Commit(ctx), "append log of job "+id, "log chunk")
}
