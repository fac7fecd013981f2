package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// wsClosed reads until the server closes conn and returns the close
// frame; it fails when none comes within 10s or a read fails otherwise.
func wsClosed(t *testing.T, conn *websocket.Conn) *websocket.CloseError {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, err := wsTryRead(conn, time.Until(deadline))
		if err == nil {
			continue // answers and events before the close
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return ce
	}
	t.Fatal("the server did not close the connection")
	return nil
}

// wsAlive checks that conn still answers a ping (events before the pong
// are skipped).
func wsAlive(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	wsSend(t, conn, `{"action":"ping"}`)
	for {
		m := wsRead(t, conn)
		if m.Type == "pong" {
			return
		}
		if m.Seq == 0 {
			t.Fatalf("got %+v, want pong", m)
		}
	}
}

// TestWebSocketTokenExpiry: a connection ends when the token it was
// opened with expires (4001), telling the client where to resume.
func TestWebSocketTokenExpiry(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	// A token that expires one to two seconds from now.
	short, err := auth.NewTokens(feedSecret, time.Minute, func() time.Time { return time.Now().Add(-time.Minute + 2*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := short.Issue(env.alice)
	if err != nil {
		t.Fatal(err)
	}
	job := env.job(env.alice)
	conn := env.dial(t, tok, "")
	long := env.dial(t, env.aliceTok, "")
	ev := env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	if m := wsRead(t, conn); m.Seq != ev.ID {
		t.Fatalf("got %+v, want event %d", m, ev.ID)
	}
	ce := wsClosed(t, conn)
	if ce.Code != closeTokenExpired || ce.Text != fmt.Sprintf("token expired; log in again and reconnect with since=%d", ev.ID) {
		t.Errorf("closed with %d %q", ce.Code, ce.Text)
	}
	if time.Now().Before(exp) {
		t.Errorf("closed before the token expired (%s)", exp)
	}
	wsAlive(t, long) // another connection of alice's goes on
	// The same token can no longer open one.
	if _, resp, err := websocket.DefaultDialer.Dial(env.wsURL("token="+tok), nil); err == nil || resp == nil ||
		resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial with the expired token: %v", err)
	}
}

// TestWebSocketAccountChanges: a deactivated or deleted account's
// connections end on the next recheck; others' go on.
func TestWebSocketAccountChanges(t *testing.T) {
	t.Parallel()
	users := &feedUsers{users: map[string]*gpuflow.User{}}
	var ids []string
	for _, u := range []gpuflow.User{
		{Email: "alice@example.com", IsActive: true},
		{Email: "bob@example.com", IsActive: true},
		{Email: "root@example.com", IsActive: true, IsSuperuser: true},
		{Email: "carol@example.com", IsActive: true},
	} {
		if err := users.CreateUser(context.Background(), &u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	carol := ids[3]
	env := newFeedEnv(t, nil, nil, users, nil, withWS(WebSocketConfig{RecheckInterval: 20 * time.Millisecond}))
	alice, bob, carolConn := env.dial(t, env.aliceTok, ""), env.dial(t, env.bobTok, ""), env.dial(t, env.token(t, carol), "")

	t.Run("Deactivated", func(t *testing.T) {
		_, _ = users.UpdateUser(context.Background(), env.alice, gpuflow.UserUpdate{IsActive: ptr(false)})
		if ce := wsClosed(t, alice); ce.Code != closeForbidden || ce.Text != "account deactivated" {
			t.Errorf("closed with %d %q", ce.Code, ce.Text)
		}
		wsAlive(t, bob)
	})
	t.Run("Deleted", func(t *testing.T) {
		users.mu.Lock()
		delete(users.users, carol)
		users.mu.Unlock()
		if ce := wsClosed(t, carolConn); ce.Code != closeForbidden {
			t.Errorf("closed with %d %q", ce.Code, ce.Text)
		}
	})
}

// TestWebSocketDemotedAtOnce: a superuser demoted through this replica's
// PATCH /users/{id} loses its all-jobs connection at once, long before any
// recheck.
func TestWebSocketDemotedAtOnce(t *testing.T) {
	t.Parallel()
	users := &feedUsers{users: map[string]*gpuflow.User{}}
	for _, u := range []gpuflow.User{
		{Email: "alice@example.com", IsActive: true},
		{Email: "bob@example.com", IsActive: true},
		{Email: "root@example.com", IsActive: true, IsSuperuser: true},
		{ID: "ad000000-0000-4000-8000-000000000002", Email: "admin2@example.com", IsActive: true, IsSuperuser: true},
	} {
		if err := users.CreateUser(context.Background(), &u); err != nil {
			t.Fatal(err)
		}
	}
	env := newFeedEnv(t, nil, nil, users, nil, withWS(WebSocketConfig{RecheckInterval: time.Hour}))
	root, bob := env.dial(t, env.rootTok, ""), env.dial(t, env.bobTok, "")
	req, _ := http.NewRequest(http.MethodPatch, env.ts.URL+"/users/"+env.root, strings.NewReader(`{"is_superuser":false}`))
	req.Header.Set("Authorization", "Bearer "+env.token(t, "ad000000-0000-4000-8000-000000000002"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH: %v %v", resp, err)
	}
	resp.Body.Close()
	if ce := wsClosed(t, root); ce.Code != closeForbidden || !strings.HasPrefix(ce.Text, "account rights changed; reconnect with since=") {
		t.Errorf("closed with %d %q", ce.Code, ce.Text)
	}
	// Reconnected, it sees its own jobs only.
	again := env.dial(t, env.rootTok, "")
	env.feed.publish(env.job(env.bob), env.bob, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	own := env.feed.publish(env.job(env.root), env.root, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	if m := wsRead(t, again); m.Seq != own.ID {
		t.Errorf("the demoted account got %+v, want only its own event %d", m, own.ID)
	}
	wsAlive(t, bob)
}

// TestWebSocketEntryLimits: unsubscribe entries cannot grow without bound
// (each one was kept, 16 MiB for 200,000 of them); past the limit the
// connection is closed with 4009, and so past the subscription limit.
func TestWebSocketEntryLimits(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil, withWS(WebSocketConfig{MaxSubscriptions: 50}))

	t.Run("Unsubscribe", func(t *testing.T) {
		conn := env.dial(t, env.aliceTok, "")
		// One id again and again is one entry.
		same := uuid.NewString()
		for range 60 {
			wsSend(t, conn, `{"action":"unsubscribe","task_id":"`+same+`"}`)
			if m := wsRead(t, conn); m.Type != "unsubscribed" {
				t.Fatalf("got %+v", m)
			}
		}
		for i := 1; i < 50; i++ {
			wsSend(t, conn, `{"action":"unsubscribe","task_id":"`+uuid.NewString()+`"}`)
			if m := wsRead(t, conn); m.Type != "unsubscribed" {
				t.Fatalf("entry %d: got %+v", i, m)
			}
		}
		var client *wsClient
		env.srv.live.hub.mu.Lock()
		for c := range env.srv.live.hub.clients {
			client = c
		}
		env.srv.live.hub.mu.Unlock()
		if n := client.entries(); n != 50 {
			t.Fatalf("%d entries, want 50", n)
		}
		wsSend(t, conn, `{"action":"unsubscribe","task_id":"`+uuid.NewString()+`"}`)
		if ce := wsClosed(t, conn); ce.Code != closeTooManySubscriptions ||
			!strings.HasPrefix(ce.Text, "too many subscriptions (at most 50)") {
			t.Errorf("closed with %d %q", ce.Code, ce.Text)
		}
		if n := client.entries(); n != 50 {
			t.Errorf("%d entries after the close, want 50", n)
		}
	})
	t.Run("Subscribe", func(t *testing.T) {
		conn := env.dial(t, env.aliceTok, "")
		jobs := make([]string, 51)
		for i := range jobs {
			jobs[i] = env.job(env.alice)
		}
		for _, id := range jobs[:50] {
			wsSend(t, conn, `{"action":"subscribe","task_id":"`+id+`"}`)
			if m := wsRead(t, conn); m.Type != "subscribed" {
				t.Fatalf("got %+v", m)
			}
		}
		wsSend(t, conn, `{"action":"subscribe","task_id":"`+jobs[0]+`"}`) // already counted
		if m := wsRead(t, conn); m.Type != "subscribed" {
			t.Fatalf("got %+v", m)
		}
		wsSend(t, conn, `{"action":"subscribe","task_id":"`+jobs[50]+`"}`)
		if ce := wsClosed(t, conn); ce.Code != closeTooManySubscriptions {
			t.Errorf("closed with %d %q", ce.Code, ce.Text)
		}
	})
}

// TestWebSocketMessageRate: a client sending faster than its rate, past
// its burst, is closed with 4029; a message over 4096 bytes with 1009.
func TestWebSocketMessageRate(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil, withWS(WebSocketConfig{MessageRate: 0.01, MessageBurst: 5}))
	conn := env.dial(t, env.aliceTok, "")
	for range 5 {
		wsAlive(t, conn)
	}
	wsSend(t, conn, `{"action":"ping"}`)
	if ce := wsClosed(t, conn); ce.Code != closeRateLimited || !strings.HasPrefix(ce.Text, "too many messages") {
		t.Errorf("closed with %d %q", ce.Code, ce.Text)
	}
	// Each connection has its own bucket.
	other := env.dial(t, env.aliceTok, "")
	wsAlive(t, other)

	big := env.dial(t, env.aliceTok, "")
	wsSend(t, big, `{"action":"ping","pad":"`+strings.Repeat("x", maxClientMessage)+`"}`)
	if ce := wsClosed(t, big); ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("closed with %d %q, want 1009", ce.Code, ce.Text)
	}
	wsAlive(t, other)
}

func ptr[T any](v T) *T { return &v }
