package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/api"
	"github.com/gpuflow/gpuflow/auth"
)

func TestLatestEventID(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	if id, err := db.LatestEventID(ctx); err != nil || id != 0 {
		t.Fatalf("LatestEventID of an empty feed = %d, %v; want 0", id, err)
	}
	j := mustCreate(t, db, newJob()).ID
	var last int64
	for seq := 1; seq <= 3; seq++ {
		ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j, Seq: seq, Type: gpuflow.EventProgress})
		if err != nil {
			t.Fatal(err)
		}
		last = ev.ID
	}
	if id, err := db.LatestEventID(ctx); err != nil || id != last {
		t.Fatalf("LatestEventID = %d, %v; want %d", id, err, last)
	}
}

// TestSubscribe: events and output notices written by another pool (as a
// worker process would) reach Subscribe; a retried append, which stores
// nothing, announces nothing.
func TestSubscribe(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	writer := openDB(t, url)
	owner := newID()
	j1 := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = owner })).ID
	j2 := mustCreate(t, db, newJob()).ID

	ctx, cancel := context.WithCancel(testCtx(t))
	events := make(chan gpuflow.Event, 16)
	logs := make(chan string, 16)
	listening := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() {
		done <- db.Subscribe(ctx, func(context.Context) { listening <- struct{}{} },
			func(ev gpuflow.Event) { events <- ev }, func(jobID string) { logs <- jobID })
	}()
	waitSignal(t, listening, "subscription")

	if err := writer.AppendLog(ctx, j1, 0, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got := receiveString(t, logs); got != j1 {
		t.Errorf("log notice for %s, want %s", got, j1)
	}
	// The same chunk again stores nothing and says nothing: the next
	// notice is j2's.
	if err := writer.AppendLog(ctx, j1, 0, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.AppendLogTail(ctx, j2, []byte("tail\n")); err != nil {
		t.Fatal(err)
	}
	if got := receiveString(t, logs); got != j2 {
		t.Errorf("log notice for %s, want %s (the retried append announced itself)", got, j2)
	}
	sent, err := writer.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j1, Seq: 1, Type: gpuflow.EventStatus, Status: gpuflow.StatusRunning})
	if err != nil {
		t.Fatal(err)
	}
	if got := receive(t, events); got.ID != sent.ID || got.OwnerID != owner {
		t.Errorf("event %+v, want %d of %s", got, sent.ID, owner)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Subscribe = %v after cancel, want nil", err)
	}
}

func receiveString(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("nothing within 20s")
	}
	return ""
}

// TestAPIReplicasShareTheFeed runs two API servers on one database, as two
// replicas would, and writes events from a third pool, as a worker process
// does: each replica's WebSocket delivers every event of the user's jobs,
// in order; a reconnect with since loses none; another user gets none.
func TestAPIReplicasShareTheFeed(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	worker := openDB(t, url)
	ctx := testCtx(t)
	alice, bob := newID(), newID()
	job := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = alice })).ID
	bobJob := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = bob })).ID

	secret := []byte(strings.Repeat("s", auth.MinSecretLen))
	tokens, err := auth.NewTokens(secret, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	aliceTok, _, _ := tokens.Issue(alice)
	bobTok, _, _ := tokens.Issue(bob)

	var urls []string
	for range 2 {
		replica := openDB(t, url)
		srv := api.New(api.Config{Jobs: replica, Feed: replica, Auth: api.AuthConfig{Users: replica, Secret: secret}})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		fctx, stop := context.WithCancel(context.Background())
		fdone := make(chan error, 1)
		go func() { fdone <- srv.RunFeed(fctx) }()
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			stop()
			if err := <-fdone; err != nil {
				t.Errorf("RunFeed: %v", err)
			}
		})
		urls = append(urls, "ws"+strings.TrimPrefix(ts.URL, "http")+"/api/gpu/ws")
	}
	dial := func(base, token, query string) *websocket.Conn {
		t.Helper()
		// Retry while the replica's feed starts (503).
		deadline := time.Now().Add(20 * time.Second)
		for {
			d := websocket.Dialer{Subprotocols: []string{"bearer", token}}
			conn, _, err := d.Dial(base+query, nil)
			if err == nil {
				t.Cleanup(func() { _ = conn.Close() })
				return conn
			}
			if time.Now().After(deadline) {
				t.Fatalf("dial %s: %v", base, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	read := func(conn *websocket.Conn) gpuflow.Event {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var ev gpuflow.Event
		if err := conn.ReadJSON(&ev); err != nil {
			t.Fatalf("read: %v", err)
		}
		return ev
	}
	c1, c2 := dial(urls[0], aliceTok, ""), dial(urls[1], aliceTok, "")
	cb := dial(urls[1], bobTok, "")

	// The replicas only see what happens after they started listening:
	// wait until a first event reaches both.
	first, err := worker.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: job, Seq: 1, Type: gpuflow.EventStatus, Status: gpuflow.StatusRunning})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []*websocket.Conn{c1, c2} {
		if ev := read(c); ev.ID != first.ID {
			t.Fatalf("replica %d: first event %d, want %d", i+1, ev.ID, first.ID)
		}
	}
	want := []int64{first.ID}
	for seq := 2; seq <= 30; seq++ {
		ev, err := worker.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: job, Seq: seq, Type: gpuflow.EventProgress,
			Data: json.RawMessage(fmt.Sprintf(`{"percent":%d}`, seq))})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.ID)
		if seq%10 == 0 { // bob's job moves too
			if _, err := worker.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: bobJob, Seq: seq / 10, Type: gpuflow.EventProgress}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, c := range []*websocket.Conn{c1, c2} {
		for _, id := range want[1:] {
			if ev := read(c); ev.ID != id || ev.JobID != job {
				t.Fatalf("replica %d: event %d of %s, want %d of %s", i+1, ev.ID, ev.JobID, id, job)
			}
		}
	}
	// Bob's first message is one of his own events.
	if ev := read(cb); ev.JobID != bobJob {
		t.Errorf("bob got an event of %s", ev.JobID)
	}

	// A client that reconnects to the other replica with since gets the
	// rest, exactly once.
	again := dial(urls[0], aliceTok, fmt.Sprintf("?since=%d", want[9]))
	for _, id := range want[10:] {
		if ev := read(again); ev.ID != id {
			t.Fatalf("after reconnect: event %d, want %d", ev.ID, id)
		}
	}
	last, err := worker.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: job, Seq: 31, Type: gpuflow.EventStatus, Status: gpuflow.StatusSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	if ev := read(again); ev.ID != last.ID || ev.Status != gpuflow.StatusSucceeded {
		t.Errorf("live after replay: %+v, want %d", ev, last.ID)
	}
}
