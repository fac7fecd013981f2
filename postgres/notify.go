package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
)

// Listener receives the events ApplyUpdate publishes, from every process
// that writes to the database, over LISTEN on a dedicated connection (not
// one of the pool's). When the connection drops it reconnects with backoff.
//
// Notifications sent while the listener is disconnected are lost: a
// consumer that must see every event sets OnListen to replay from the store
// (DB.EventsAfter) what it may have missed, and drops events whose ID it
// has already seen.
type Listener struct {
	// ConnConfig is how to connect; required.
	ConnConfig *pgx.ConnConfig
	// Logger receives connection losses and undecodable payloads.
	Logger *slog.Logger
	// OnListen, when set, is called each time the listener has subscribed
	// (first, and after every reconnect), before it delivers the
	// notifications that arrive from then on.
	OnListen func(ctx context.Context)
	// Lookup reads an event whose notification left out its data, too large
	// for NOTIFY. When nil, such events are delivered without data.
	Lookup func(ctx context.Context, id int64) (*gpuflow.Event, error)
	// OnLog, when set, also listens on LogsChannel and is called with each
	// notice of new output, from the goroutine that delivers events. Log
	// notices lost while disconnected are not replayed: a consumer re-reads
	// the output it follows when OnListen is called.
	OnLog func(LogNotice)
	// MinBackoff and MaxBackoff bound the wait between reconnects (100ms
	// and 5s when zero).
	MinBackoff, MaxBackoff time.Duration
}

// LogsChannel is the NOTIFY channel AppendLog announces new output on, with
// a LogNotice as the payload. No event is recorded for output.
const LogsChannel = "gpuflow_logs"

// LogNotice is the payload of a LogsChannel notification: the job's output
// now reaches at least byte End, having grown from Offset.
type LogNotice struct {
	JobID  string `json:"job_id"`
	Offset int64  `json:"offset"`
	End    int64  `json:"end"`
}

const latestEventSQL = `SELECT COALESCE(max(id), 0) FROM job_events`

// NewListener returns a Listener on db's database that reads oversized
// events back from db.
func (db *DB) NewListener() *Listener {
	cfg := db.Pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "gpuflow-listener"
	return &Listener{ConnConfig: cfg, Logger: db.logger(), Lookup: db.EventByID}
}

// Listen calls fn with each event published on db's database until ctx is
// done, reconnecting as needed; see Listener.
func (db *DB) Listen(ctx context.Context, fn func(gpuflow.Event)) error {
	return db.NewListener().Run(ctx, fn)
}

// Run calls fn, in order and from one goroutine, with each event published
// until ctx is done; then it returns nil. fn should not block for long: the
// notifications queue up behind it. Run fails only when misconfigured.
func (l *Listener) Run(ctx context.Context, fn func(gpuflow.Event)) error {
	if l.ConnConfig == nil {
		return errors.New("postgres listener: no ConnConfig")
	}
	logger := l.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reconnect(ctx, logger, "event listener", l.MinBackoff, l.MaxBackoff, func(ctx context.Context) (bool, error) {
		return l.listenOnce(ctx, logger, fn)
	})
	return nil
}

// reconnect runs once until ctx is done, again after each failure, waiting
// between tries from minWait (100 ms when zero), doubling to maxWait (5 s
// when zero); the wait starts over after a try that got subscribed.
func reconnect(ctx context.Context, logger *slog.Logger, what string, minWait, maxWait time.Duration, once func(context.Context) (subscribed bool, err error)) {
	minWait = cmpOr(minWait, 100*time.Millisecond)
	maxWait = max(cmpOr(maxWait, 5*time.Second), minWait)
	wait := minWait
	for {
		subscribed, err := once(ctx)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			wait = minWait
		}
		logger.WarnContext(ctx, what+" disconnected; reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// listenOnce connects, subscribes and delivers notifications until the
// connection fails or ctx is done. subscribed reports whether it got as far
// as LISTEN.
func (l *Listener) listenOnce(ctx context.Context, logger *slog.Logger, fn func(gpuflow.Event)) (subscribed bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, l.ConnConfig)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	channels := []string{EventsChannel}
	if l.OnLog != nil {
		channels = append(channels, LogsChannel)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return false, fmt.Errorf("listen on %s: %w", ch, err)
		}
	}
	if l.OnListen != nil {
		l.OnListen(ctx)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		if n.Channel == LogsChannel {
			if notice, ok := decodeLogNotice(ctx, logger, n.Payload); ok && l.OnLog != nil {
				l.OnLog(notice)
			}
			continue
		}
		ev, ok := l.decode(ctx, logger, n.Payload)
		if ok {
			fn(ev)
		}
	}
}

// decodeLogNotice decodes a LogsChannel payload; anything else is logged
// and dropped.
func decodeLogNotice(ctx context.Context, logger *slog.Logger, payload string) (LogNotice, bool) {
	var n LogNotice
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.JobID == "" {
		logger.WarnContext(ctx, "dropping undecodable log notification", "err", err, "bytes", len(payload))
		return LogNotice{}, false
	}
	return n, true
}

// decode turns a payload into an event. It accepts the notification
// object, with or without its data, and a bare event id; anything else is
// logged and dropped.
func (l *Listener) decode(ctx context.Context, logger *slog.Logger, payload string) (gpuflow.Event, bool) {
	var n notification
	if id, err := strconv.ParseInt(strings.TrimSpace(payload), 10, 64); err == nil {
		n.ID, n.Truncated = id, true
	} else if err := json.Unmarshal([]byte(payload), &n); err != nil || n.ID <= 0 {
		logger.WarnContext(ctx, "dropping undecodable event notification", "err", err, "bytes", len(payload))
		return gpuflow.Event{}, false
	}
	ev := n.Event
	ev.OwnerID = n.OwnerID
	if !n.Truncated {
		return ev, true
	}
	if l.Lookup != nil {
		full, err := l.Lookup(ctx, n.ID)
		if err == nil {
			return *full, true
		}
		logger.WarnContext(ctx, "read oversized event", "seq", n.ID, "err", err)
	}
	if ev.JobID == "" { // only the id came: nothing worth delivering
		logger.WarnContext(ctx, "dropping event notification without its event", "seq", n.ID)
		return gpuflow.Event{}, false
	}
	return ev, true // without its data
}

// LatestEventID returns the ID of the newest event of the feed, 0 when there
// is none: where a consumer that wants only what happens from now on starts
// (and later resumes with EventsAfter).
func (db *DB) LatestEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := db.Pool.QueryRow(ctx, latestEventSQL).Scan(&id); err != nil {
		return 0, translate(err, "get latest event id", "event")
	}
	return id, nil
}

// Subscribe runs a Listener on db's database until ctx is done: onEvent gets
// each event, onListen (when not nil) is called on every (re)subscription,
// and onLog (when not nil) gets the job id of each notice of new output. All
// three are called from one goroutine. It has the signature the API's event
// feed asks for.
func (db *DB) Subscribe(ctx context.Context, onListen func(context.Context), onEvent func(gpuflow.Event), onLog func(jobID string)) error {
	l := db.NewListener()
	l.OnListen = onListen
	if onLog != nil {
		l.OnLog = func(n LogNotice) { onLog(n.JobID) }
	}
	return l.Run(ctx, onEvent)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
