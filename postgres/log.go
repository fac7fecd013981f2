package postgres

import (
	"context"
	"encoding/json"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
)

// Sizes of Logs' reads.
const (
	DefaultLogsLimit = 1 << 20
	MaxLogsLimit     = 8 << 20
)

const (
	logInsertSQL = `INSERT INTO job_logs (job_id, "offset", data, created_at)
	VALUES ($1, $2, $3, $4)
	ON CONFLICT (job_id, "offset") DO UPDATE SET data = EXCLUDED.data
	WHERE length(EXCLUDED.data) > length(job_logs.data)`

	// logReadSQL reads the chunks from the one holding byte $2 on (or from
	// the first, when none starts at or before $2).
	logReadSQL = `SELECT "offset", data FROM job_logs
	WHERE job_id = $1 AND "offset" >= COALESCE(
		(SELECT max("offset") FROM job_logs WHERE job_id = $1 AND "offset" <= $2), 0)
	ORDER BY "offset"`
)

// AppendLog stores data as the job's output from byte offset on. Output only
// grows, so of two chunks stored at one offset the longer wins: a retried
// append is a no-op, and a retry that read further than a lost attempt
// leaves no gap. A stored chunk is announced on LogsChannel.
// Empty data stores nothing. It returns ENOTFOUND for an unknown job and
// EINVALID for a negative offset.
func (db *DB) AppendLog(ctx context.Context, jobID string, offset int64, data []byte) error {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return notFound(jobID)
	}
	if offset < 0 {
		return gpuflow.Errorf(gpuflow.EINVALID, "log offset must not be negative, got %d", offset)
	}
	if len(data) == 0 {
		return nil
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "append log", "log chunk")
	}
	defer rollback(ctx, tx)
	tag, err := tx.Exec(ctx, logInsertSQL, id, offset, data, db.now())
	if err != nil {
		return translate(err, "append log of job "+id, "log chunk")
	}
	if tag.RowsAffected() > 0 {
		// Followers of the output wake on this, once the chunk commits.
		n, _ := json.Marshal(LogNotice{JobID: id, Offset: offset, End: offset + int64(len(data))})
		if _, err := tx.Exec(ctx, notifySQL, LogsChannel, string(n)); err != nil {
			return translate(err, "announce log of job "+id, "log chunk")
		}
	}
	return translate(tx.Commit(ctx), "append log of job "+id, "log chunk")
}

// Logs returns the job's output from byte offset on, at most limit bytes
// (DefaultLogsLimit when 0, capped at MaxLogsLimit). offset may fall inside
// a stored chunk. Reading stops at the first gap (a chunk not stored yet),
// so what it returns is always contiguous; past the end it returns no
// bytes. It returns ENOTFOUND for an unknown job and EINVALID for a
// negative offset.
func (db *DB) Logs(ctx context.Context, jobID string, offset int64, limit int) ([]byte, error) {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return nil, notFound(jobID)
	}
	if offset < 0 {
		return nil, gpuflow.Errorf(gpuflow.EINVALID, "log offset must not be negative, got %d", offset)
	}
	if limit <= 0 {
		limit = DefaultLogsLimit
	}
	limit = min(limit, MaxLogsLimit)

	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, translate(err, "read logs", "log")
	}
	defer rollback(ctx, tx)
	out, found, err := readLogs(ctx, tx, id, offset, limit)
	if err != nil {
		return nil, translate(err, "read logs of job "+id, "log")
	}
	if !found {
		exists, err := jobExists(ctx, tx, id)
		if err != nil {
			return nil, translate(err, "read logs of job "+id, "log")
		}
		if !exists {
			return nil, notFound(jobID)
		}
	}
	return out, translate(tx.Commit(ctx), "read logs of job "+id, "log")
}

// readLogs concatenates the chunks covering [offset, offset+limit); found
// reports whether the job has any chunk at all in that range's query.
func readLogs(ctx context.Context, tx pgx.Tx, id string, offset int64, limit int) (out []byte, found bool, err error) {
	rows, err := tx.Query(ctx, logReadSQL, id, offset)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	out = []byte{}
	pos := offset // the next byte wanted
	for rows.Next() {
		found = true
		var (
			start int64
			data  []byte
		)
		if err := rows.Scan(&start, &data); err != nil {
			return nil, true, err
		}
		end := start + int64(len(data))
		if end <= pos {
			continue // wholly before pos (or overlapped by earlier chunks)
		}
		if start > pos {
			break // a gap: not written yet
		}
		chunk := data[pos-start:]
		if room := limit - len(out); len(chunk) > room {
			chunk = chunk[:room]
		}
		out = append(out, chunk...)
		pos += int64(len(chunk))
		if len(out) >= limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, found, err
	}
	return out, found, nil
}
