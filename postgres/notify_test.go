package postgres

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// receive waits for the next event on ch.
func receive(t *testing.T, ch <-chan gpuflow.Event) gpuflow.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return gpuflow.Event{}
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20s", what)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	writer := openDB(t, url) // another pool, as a worker process would have
	owner := newID()
	j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = owner })).ID

	ctx, cancel := context.WithCancel(testCtx(t))
	events := make(chan gpuflow.Event, 16)
	listening := make(chan struct{}, 4)
	l := db.NewListener()
	l.MinBackoff = 10 * time.Millisecond
	l.OnListen = func(context.Context) { listening <- struct{}{} }
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx, func(ev gpuflow.Event) { events <- ev }) }()
	waitSignal(t, listening, "subscription")

	sent, err := writer.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j, Seq: 1, Type: gpuflow.EventStatus,
		Status: gpuflow.StatusRunning, Provider: ptr("local"), Data: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, events)
	if got.ID != sent.ID || got.JobID != j || got.JobSeq != 1 || got.Status != gpuflow.StatusRunning ||
		got.Provider != "local" || got.OwnerID != owner || !got.At.Equal(sent.At) || !jsonEqual(got.Data, sent.Data) {
		t.Errorf("received %+v, want %+v", got, sent)
	}

	t.Run("OversizedEventReadBack", func(t *testing.T) {
		big := json.RawMessage(`{"blob":"` + strings.Repeat("x", 20000) + `"}`)
		sent, err := writer.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j, Seq: 2, Type: gpuflow.EventProgress, Data: big})
		if err != nil {
			t.Fatal(err)
		}
		got := receive(t, events)
		if got.ID != sent.ID || got.OwnerID != owner || !jsonEqual(got.Data, big) {
			t.Errorf("received seq %d with %d bytes of data, want seq %d with %d", got.ID, len(got.Data), sent.ID, len(big))
		}
	})

	t.Run("ReconnectsAfterConnectionLoss", func(t *testing.T) {
		var killed int
		err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'gpuflow-listener' AND datname = current_database()`).Scan(&killed)
		if err != nil || killed != 1 {
			t.Fatalf("terminated %d listener connections (err %v), want 1", killed, err)
		}
		waitSignal(t, listening, "resubscription")
		sent, err := writer.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j, Seq: 3, Type: gpuflow.EventStatus, Status: gpuflow.StatusSucceeded})
		if err != nil {
			t.Fatal(err)
		}
		if got := receive(t, events); got.ID != sent.ID {
			t.Errorf("received event %d after reconnect, want %d", got.ID, sent.ID)
		}
	})

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestListenRetriesUntilDatabaseAnswers(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	l := db.NewListener()
	l.ConnConfig.Port = 1 // nothing listens there
	l.ConnConfig.ConnectTimeout = time.Second
	l.MinBackoff, l.MaxBackoff = time.Millisecond, 5*time.Millisecond
	l.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	if err := l.Run(ctx, func(gpuflow.Event) { t.Error("event from nowhere") }); err != nil {
		t.Errorf("Run = %v, want nil once ctx is done", err)
	}
}

func TestNotifyPayload(t *testing.T) {
	t.Parallel()
	ev := &gpuflow.Event{ID: 7, JobID: newID(), JobSeq: 2, Type: gpuflow.EventStatus, Status: gpuflow.StatusRunning,
		Provider: "local", OwnerID: "owner-1", Data: json.RawMessage(`{"a":1}`), At: time.Unix(0, 0).UTC()}
	l := &Listener{}
	for name, tc := range map[string]struct {
		ev        *gpuflow.Event
		truncated bool
	}{
		"Small": {ev, false},
		"Large": {func() *gpuflow.Event {
			e := *ev
			e.Data = json.RawMessage(`"` + strings.Repeat("y", 9000) + `"`)
			return &e
		}(), true},
	} {
		p := notifyPayload(tc.ev)
		if len(p) > maxNotifyPayload {
			t.Errorf("%s: payload of %d bytes", name, len(p))
		}
		var n notification
		if err := json.Unmarshal([]byte(p), &n); err != nil || n.Truncated != tc.truncated || n.OwnerID != "owner-1" || n.ID != 7 {
			t.Errorf("%s: payload %s decodes to %+v (err %v)", name, p, n, err)
		}
		got, ok := l.decode(context.Background(), slog.New(slog.DiscardHandler), p)
		if !ok || got.ID != 7 || got.OwnerID != "owner-1" || got.JobID != ev.JobID {
			t.Errorf("%s: decode = %+v, %v", name, got, ok)
		}
	}
	// Without a Lookup, a bare id cannot become an event.
	if got, ok := l.decode(context.Background(), slog.New(slog.DiscardHandler), "42"); ok {
		t.Errorf("decode(bare id) without Lookup = %+v", got)
	}
	l.Lookup = func(_ context.Context, id int64) (*gpuflow.Event, error) {
		return &gpuflow.Event{ID: id, JobID: "from-db"}, nil
	}
	if got, ok := l.decode(context.Background(), slog.New(slog.DiscardHandler), " 42 "); !ok || got.ID != 42 || got.JobID != "from-db" {
		t.Errorf("decode(bare id) = %+v, %v; want the looked-up event", got, ok)
	}
	for _, bad := range []string{"", "{", "[]", `{"seq":0}`, "hello"} {
		if _, ok := l.decode(context.Background(), slog.New(slog.DiscardHandler), bad); ok {
			t.Errorf("decode(%q) accepted", bad)
		}
	}
}
