package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
)

// EventsChannel is the NOTIFY channel ApplyUpdate publishes events on.
const EventsChannel = "gpuflow_events"

// Sizes of EventsAfter's pages.
const (
	DefaultEventsLimit = 500
	MaxEventsLimit     = 5000
)

// eventLockKey serialises event inserts so that ids are assigned in commit
// order ("gpuflowe" in ASCII).
const eventLockKey int64 = 0x677075666c6f7765

// maxNotifyPayload is the largest NOTIFY payload PostgreSQL accepts (it must
// be shorter than 8000 bytes).
const maxNotifyPayload = 7999

const (
	eventLockSQL = `SELECT pg_advisory_xact_lock($1)`

	eventInsertSQL = `INSERT INTO job_events (job_id, job_seq, type, status, provider, data, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7)
	RETURNING id`

	notifySQL = `SELECT pg_notify($1, $2)`

	eventColumns = `e.id, e.job_id::text, e.job_seq, e.type, COALESCE(e.status, ''),
	COALESCE(e.provider, ''), e.data, e.created_at, COALESCE(j.owner_id::text, '')`

	eventsOfJobSQL = `SELECT ` + eventColumns + `
	FROM job_events e JOIN jobs j ON j.id = e.job_id
	WHERE e.job_id = $1
	ORDER BY e.job_seq`

	eventByIDSQL = `SELECT ` + eventColumns + `
	FROM job_events e JOIN jobs j ON j.id = e.job_id
	WHERE e.id = $1`

	eventsAfterSQL = `SELECT ` + eventColumns + `
	FROM job_events e JOIN jobs j ON j.id = e.job_id
	WHERE e.id > $1
	ORDER BY e.id
	LIMIT $2`

	eventsAfterOfOwnerSQL = `SELECT ` + eventColumns + `
	FROM job_events e JOIN jobs j ON j.id = e.job_id
	WHERE e.id > $1 AND j.owner_id = $3
	ORDER BY e.id
	LIMIT $2`
)

// insertEvent takes the event lock, inserts ev and sets its ID.
func insertEvent(ctx context.Context, tx pgx.Tx, ev *gpuflow.Event) error {
	if _, err := tx.Exec(ctx, eventLockSQL, eventLockKey); err != nil {
		return err
	}
	var data []byte
	if len(ev.Data) > 0 {
		data = ev.Data
	}
	return tx.QueryRow(ctx, eventInsertSQL, ev.JobID, ev.JobSeq, ev.Type,
		nullString(string(ev.Status)), nullString(ev.Provider), data, ev.At).Scan(&ev.ID)
}

// notification is the NOTIFY payload: the event as the API sends it, plus
// its owner so that listeners can route it without reading the database.
// Truncated marks a payload whose data was left out to fit NOTIFY's limit:
// the listener reads the event from the database instead.
type notification struct {
	gpuflow.Event
	OwnerID   string `json:"owner_id,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// notifyPayload encodes ev for NOTIFY, leaving its data out if too large.
func notifyPayload(ev *gpuflow.Event) string {
	n := notification{Event: *ev, OwnerID: ev.OwnerID}
	b, err := json.Marshal(n)
	if err == nil && len(b) <= maxNotifyPayload {
		return string(b)
	}
	n.Data, n.Truncated = nil, true
	if b, err = json.Marshal(n); err == nil && len(b) <= maxNotifyPayload {
		return string(b)
	}
	// Only the id is sure to fit; the listener reads the rest.
	b, _ = json.Marshal(map[string]any{"seq": ev.ID, "truncated": true})
	return string(b)
}

// scanEvent reads one row of eventColumns.
func scanEvent(row pgx.Row) (gpuflow.Event, error) {
	var (
		ev     gpuflow.Event
		status string
		data   []byte
	)
	err := row.Scan(&ev.ID, &ev.JobID, &ev.JobSeq, &ev.Type, &status, &ev.Provider, &data, &ev.At, &ev.OwnerID)
	if err != nil {
		return ev, err
	}
	ev.Status = gpuflow.JobStatus(status)
	if len(data) > 0 {
		ev.Data = json.RawMessage(data)
	}
	ev.At = ev.At.UTC()
	return ev, nil
}

// Events returns the events of the job with jobID in order (by job seq),
// with OwnerID set. It returns ENOTFOUND for an unknown job.
func (db *DB) Events(ctx context.Context, jobID string) ([]gpuflow.Event, error) {
	id, ok := canonicalUUID(jobID)
	if !ok {
		return nil, notFound(jobID)
	}
	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, translate(err, "list events", "job")
	}
	defer rollback(ctx, tx)
	events, err := queryEvents(ctx, tx, eventsOfJobSQL, id)
	if err != nil {
		return nil, translate(err, "list events of job "+id, "job")
	}
	if len(events) == 0 {
		exists, err := jobExists(ctx, tx, id)
		if err != nil {
			return nil, translate(err, "list events of job "+id, "job")
		}
		if !exists {
			return nil, notFound(jobID)
		}
	}
	return events, translate(tx.Commit(ctx), "list events of job "+id, "job")
}

// EventsAfter returns the events of the whole feed whose ID is above
// afterID, in ID order, at most limit of them (DefaultEventsLimit when 0,
// capped at MaxEventsLimit), with OwnerID set. ownerID limits them to that
// owner's jobs; "" means all. A feed that resumes from the last ID it saw
// loses no event and sees none twice. It returns EINVALID for a malformed
// owner id.
func (db *DB) EventsAfter(ctx context.Context, afterID int64, ownerID string, limit int) ([]gpuflow.Event, error) {
	if limit <= 0 {
		limit = DefaultEventsLimit
	}
	limit = min(limit, MaxEventsLimit)
	sql, args := eventsAfterSQL, []any{afterID, limit}
	if ownerID != "" {
		owner, ok := canonicalUUID(ownerID)
		if !ok {
			return nil, gpuflow.Errorf(gpuflow.EINVALID, "owner id %q is not a UUID", ownerID)
		}
		sql, args = eventsAfterOfOwnerSQL, append(args, owner)
	}
	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, translate(err, "list events", "event")
	}
	defer rollback(ctx, tx)
	events, err := queryEvents(ctx, tx, sql, args...)
	if err != nil {
		return nil, translate(err, "list events", "event")
	}
	return events, translate(tx.Commit(ctx), "list events", "event")
}

// EventByID returns the event with feed id id, with OwnerID set, or
// ENOTFOUND.
func (db *DB) EventByID(ctx context.Context, id int64) (*gpuflow.Event, error) {
	ev, err := scanEvent(db.Pool.QueryRow(ctx, eventByIDSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "event %d not found", id)
	}
	if err != nil {
		return nil, translate(err, fmt.Sprintf("get event %d", id), "event")
	}
	return &ev, nil
}

func queryEvents(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]gpuflow.Event, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []gpuflow.Event{}
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, rows.Err()
}
