package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

func TestWebSocketRefusesBeforeUpgrade(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	for name, tc := range map[string]struct {
		url    string
		header http.Header
		protos []string
		status int
		code   string
	}{
		"NoToken":            {env.wsURL(""), nil, nil, http.StatusUnauthorized, "unauthorized"},
		"BadQueryToken":      {env.wsURL("token=nope"), nil, nil, http.StatusUnauthorized, "unauthorized"},
		"BadHeaderToken":     {env.wsURL(""), http.Header{"Authorization": {"Bearer nope"}}, nil, http.StatusUnauthorized, "unauthorized"},
		"BadSubprotocol":     {env.wsURL(""), nil, []string{"bearer", "nope"}, http.StatusUnauthorized, "unauthorized"},
		"ForgedToken":        {env.wsURL("token=" + env.aliceTok[:len(env.aliceTok)-2] + "xx"), nil, nil, http.StatusUnauthorized, "unauthorized"},
		"NegativeSince":      {env.wsURL("token=" + env.aliceTok + "&since=-1"), nil, nil, http.StatusBadRequest, "validation_failed"},
		"MalformedSince":     {env.wsURL("token=" + env.aliceTok + "&since=abc"), nil, nil, http.StatusBadRequest, "validation_failed"},
		"SubprotocolNoToken": {env.wsURL(""), nil, []string{"bearer"}, http.StatusUnauthorized, "unauthorized"},
	} {
		t.Run(name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: tc.protos, HandshakeTimeout: 10 * time.Second}
			conn, resp, err := d.Dial(tc.url, tc.header)
			if err == nil {
				conn.Close()
				t.Fatal("upgraded; want a refusal")
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("dial error %v, want a refused handshake", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			var body errorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Code != tc.code {
				t.Errorf("body code %q (err %v), want %q", body.Error.Code, err, tc.code)
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("PlainGET", func(t *testing.T) {
		resp := env.get(t, "/api/gpu/ws", env.aliceTok)
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Errorf("plain GET: status %d, want 426", resp.StatusCode)
		}
	})
	if st := env.srv.live.hub.stats(); st.Connections != 0 {
		t.Errorf("%d connections registered by refused upgrades", st.Connections)
	}
}

func TestWebSocketAuthenticates(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	job := env.job(env.alice)
	for name, dial := range map[string]func() (*websocket.Conn, *http.Response, error){
		"Query": func() (*websocket.Conn, *http.Response, error) {
			return websocket.DefaultDialer.Dial(env.wsURL("token="+env.aliceTok), nil)
		},
		"Header": func() (*websocket.Conn, *http.Response, error) {
			return websocket.DefaultDialer.Dial(env.wsURL(""), http.Header{"Authorization": {"Bearer " + env.aliceTok}})
		},
		"Subprotocol": func() (*websocket.Conn, *http.Response, error) {
			d := websocket.Dialer{Subprotocols: []string{"bearer", env.aliceTok}}
			return d.Dial(env.wsURL(""), nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			conn, resp, err := dial()
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Errorf("status %d", resp.StatusCode)
			}
			if name == "Subprotocol" && conn.Subprotocol() != "bearer" {
				t.Errorf("subprotocol %q, want bearer", conn.Subprotocol())
			}
			if name != "Subprotocol" && conn.Subprotocol() != "" {
				t.Errorf("subprotocol %q answered to a client that asked for none", conn.Subprotocol())
			}
			// The connection is alice's: it gets her job's events.
			ev := env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, `{"n":1}`)
			if m := wsRead(t, conn); m.Seq != ev.ID || m.TaskID != job || m.Type != gpuflow.EventStatus {
				t.Errorf("got %+v, want event %d", m, ev.ID)
			}
		})
	}
}

func TestWebSocketMessageShape(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	job := env.job(env.alice)
	conn := env.dial(t, env.aliceTok, "")
	ev := env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, `{"exit_code":null,"attempt":1}`)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "job.status", "seq": float64(ev.ID), "task_id": job, "job_seq": float64(1), "status": "running",
		"provider": "local", "at": ev.At.Format(time.RFC3339Nano), "data": map[string]any{"exit_code": nil, "attempt": float64(1)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("message %s\nwant %v", data, want)
	}
	if _, ok := got["owner_id"]; ok {
		t.Error("the owner leaked into the message")
	}
}

// TestWebSocketVisibility: each user gets their own jobs' events only; a
// superuser gets all.
func TestWebSocketVisibility(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	aliceJob, bobJob := env.job(env.alice), env.job(env.bob)
	alice := env.dial(t, env.aliceTok, "")
	bob := env.dial(t, env.bobTok, "")
	root := env.dial(t, env.rootTok, "")

	a1 := env.feed.publish(aliceJob, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	a2 := env.feed.publish(aliceJob, env.alice, gpuflow.EventProgress, "", `{"percent":50}`)
	b1 := env.feed.publish(bobJob, env.bob, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	a3 := env.feed.publish(aliceJob, env.alice, gpuflow.EventLog, "", `{"line":"hi"}`)

	expect := func(name string, conn *websocket.Conn, want ...gpuflow.Event) {
		t.Helper()
		for _, w := range want {
			if m := wsRead(t, conn); m.Seq != w.ID || m.TaskID != w.JobID {
				t.Errorf("%s got seq %d of %s, want %d of %s", name, m.Seq, m.TaskID, w.ID, w.JobID)
			}
		}
	}
	expect("alice", alice, a1, a2, a3)
	// Bob's first message is his own event: alice's earlier ones never came.
	expect("bob", bob, b1)
	expect("root", root, a1, a2, b1, a3)

	// Events of jobs without an owner are for superusers only.
	orphan := env.job("")
	o1 := env.feed.publish(orphan, "", gpuflow.EventStatus, gpuflow.StatusQueued, "")
	b2 := env.feed.publish(bobJob, env.bob, gpuflow.EventStatus, gpuflow.StatusSucceeded, "")
	expect("bob", bob, b2)
	expect("root", root, o1, b2)
}

func TestWebSocketSubscriptions(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	j1, j2, bobJob := env.job(env.alice), env.job(env.alice), env.job(env.bob)
	conn := env.dial(t, env.aliceTok, "")

	expectError := func(code string) wsMsg {
		t.Helper()
		m := wsRead(t, conn)
		if m.Type != "error" || m.Error == nil || m.Error.Code != code {
			t.Fatalf("got %+v, want an error %s", m, code)
		}
		return m
	}
	// Malformed messages answer errors; the connection stays.
	wsSend(t, conn, `{"action":`)
	expectError("invalid_json")
	wsSend(t, conn, `{"action":"dance"}`)
	expectError("validation_failed")
	wsSend(t, conn, `{"action":"subscribe"}`)
	expectError("validation_failed")
	wsSend(t, conn, `{"action":"subscribe","task_id":"`+j1+`","extra":1}`)
	expectError("validation_failed")
	wsSend(t, conn, `[1,2]`)
	expectError("validation_failed")
	if err := conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	expectError("invalid_json")
	// Another user's job, an unknown one and a malformed id are all not
	// found, and subscribe nothing.
	for _, id := range []string{bobJob, "6f1e4bde-0000-4000-8000-000000000000", "not-a-uuid"} {
		wsSend(t, conn, `{"action":"subscribe","task_id":"`+id+`"}`)
		if m := expectError("not_found"); id == bobJob && strings.Contains(m.Error.Message, env.bob) {
			t.Errorf("the error names the owner: %s", m.Error.Message)
		}
	}
	wsSend(t, conn, `{"action":"ping"}`)
	if m := wsRead(t, conn); m.Type != "pong" {
		t.Fatalf("got %+v, want pong", m)
	}
	if st := env.srv.live.hub.stats(); st.Subscriptions != 0 {
		t.Errorf("%d subscriptions after refused subscribes", st.Subscriptions)
	}

	// Until it subscribes, the connection gets all of alice's jobs.
	e1 := env.feed.publish(j2, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	if m := wsRead(t, conn); m.Seq != e1.ID {
		t.Fatalf("got %+v, want event %d", m, e1.ID)
	}
	// Then only the subscribed ones.
	wsSend(t, conn, `{"action":"subscribe","task_id":"`+strings.ToUpper(j1)+`"}`)
	if m := wsRead(t, conn); m.Type != "subscribed" || m.TaskID != j1 {
		t.Fatalf("got %+v, want subscribed %s", m, j1)
	}
	if st := env.srv.live.hub.stats(); st.Subscriptions != 1 {
		t.Errorf("stats subscriptions %d, want 1", st.Subscriptions)
	}
	env.feed.publish(j2, env.alice, gpuflow.EventProgress, "", `{"percent":1}`)
	e3 := env.feed.publish(j1, env.alice, gpuflow.EventProgress, "", `{"percent":2}`)
	if m := wsRead(t, conn); m.Seq != e3.ID {
		t.Fatalf("got %+v, want event %d of the subscribed job only", m, e3.ID)
	}
	// Unsubscribing the last job leaves the connection with none.
	wsSend(t, conn, `{"action":"unsubscribe","task_id":"`+j1+`"}`)
	if m := wsRead(t, conn); m.Type != "unsubscribed" || m.TaskID != j1 {
		t.Fatalf("got %+v, want unsubscribed", m)
	}
	env.feed.publish(j1, env.alice, gpuflow.EventProgress, "", `{"percent":3}`)
	wsSend(t, conn, `{"action":"subscribe","task_id":"`+j2+`"}`)
	if m := wsRead(t, conn); m.Type != "subscribed" || m.TaskID != j2 {
		t.Fatalf("got %+v, want subscribed %s", m, j2)
	}
	e5 := env.feed.publish(j2, env.alice, gpuflow.EventProgress, "", `{"percent":4}`)
	if m := wsRead(t, conn); m.Seq != e5.ID {
		t.Fatalf("got %+v, want event %d", m, e5.ID)
	}

	t.Run("UnsubscribeFromAll", func(t *testing.T) {
		conn := env.dial(t, env.aliceTok, "")
		wsSend(t, conn, `{"action":"unsubscribe","task_id":"`+j1+`"}`)
		if m := wsRead(t, conn); m.Type != "unsubscribed" {
			t.Fatalf("got %+v", m)
		}
		env.feed.publish(j1, env.alice, gpuflow.EventProgress, "", "")
		e := env.feed.publish(j2, env.alice, gpuflow.EventProgress, "", "")
		if m := wsRead(t, conn); m.Seq != e.ID {
			t.Fatalf("got %+v, want event %d (the other job's)", m, e.ID)
		}
	})
}

// TestWebSocketReplicas: two API servers on one feed each deliver every
// event, in order.
func TestWebSocketReplicas(t *testing.T) {
	t.Parallel()
	feed := newFeedFake()
	env1 := newFeedEnv(t, feed, nil, nil, nil)
	env2 := newFeedEnv(t, feed, env1.store, env1.users, nil)
	pollUntil(t, "both servers subscribed", func() bool { return feed.subscribers() == 2 })
	jobs := []string{env1.job(env1.alice), env1.job(env1.alice), env1.job(env1.bob)}
	c1 := env1.dial(t, env1.aliceTok, "")
	c2 := env2.dial(t, env1.aliceTok, "")
	r2 := env2.dial(t, env1.rootTok, "")

	const n = 60
	var want, wantAll []int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 3 { // three "workers" publishing at once
		wg.Go(func() {
			for i := range n / 3 {
				owner := env1.alice
				if w == 2 {
					owner = env1.bob
				}
				ev := feed.publish(jobs[w], owner, gpuflow.EventProgress, "", fmt.Sprintf(`{"i":%d}`, i))
				mu.Lock()
				wantAll = append(wantAll, ev.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, ev := range feed.all() {
		if ev.OwnerID == env1.alice {
			want = append(want, ev.ID)
		}
	}
	for name, tc := range map[string]struct {
		conn *websocket.Conn
		want []int64
	}{"server1 alice": {c1, want}, "server2 alice": {c2, want}, "server2 root": {r2, wantAll}} {
		for i, seq := range sortedInt64(tc.want) {
			m := wsRead(t, tc.conn)
			if m.Seq != seq {
				t.Fatalf("%s: message %d has seq %d, want %d", name, i, m.Seq, seq)
			}
		}
	}
}

func sortedInt64(s []int64) []int64 {
	out := append([]int64(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// readSeqs reads messages until one with seq last, checking that the seqs
// are exactly want.
func readSeqs(t *testing.T, name string, conn *websocket.Conn, want []int64) {
	t.Helper()
	for i, seq := range want {
		m := wsRead(t, conn)
		if m.Seq != seq {
			t.Fatalf("%s: message %d has seq %d (%s), want %d", name, i, m.Seq, m.Type, seq)
		}
	}
}

// TestWebSocketSinceSeam: a client that reconnects with ?since= gets every
// event after it exactly once, in order, while events keep coming during
// its replay.
func TestWebSocketSinceSeam(t *testing.T) {
	t.Parallel()
	feed := newFeedFake()
	env := newFeedEnv(t, feed, nil, nil, nil)
	job, other := env.job(env.alice), env.job(env.bob)
	for i := range 20 {
		feed.publish(job, env.alice, gpuflow.EventProgress, "", fmt.Sprintf(`{"i":%d}`, i))
	}
	// Events land while the replay pages through the store: each replay
	// query (alice's, by owner) publishes more, some of them bob's.
	var (
		published sync.WaitGroup
		hookMu    sync.Mutex // held by a running hook
		stopped   bool
	)
	feed.setBeforeQuery(func(_ int64, owner string) {
		// The hub's own catch-up (owner "") must never wait on hookMu: this
		// hook waits for the hub while holding it.
		if owner != env.alice {
			return
		}
		hookMu.Lock()
		defer hookMu.Unlock()
		if stopped {
			return
		}
		feed.publish(job, env.alice, gpuflow.EventProgress, "", `{"during":"replay"}`)
		ev := feed.publish(other, env.bob, gpuflow.EventProgress, "", `{"during":"replay"}`)
		// Let the hub offer them to the client before the replay reads on.
		for deadline := time.Now().Add(10 * time.Second); env.srv.live.hub.position() < ev.ID; {
			if time.Now().After(deadline) {
				t.Error("the hub did not pass the events on")
				return
			}
			time.Sleep(time.Millisecond)
		}
		published.Go(func() { feed.publish(job, env.alice, gpuflow.EventProgress, "", `{"during":"replay, racing"}`) })
	})
	conn := env.dial(t, env.aliceTok, "since=5")
	// Read until the replay has certainly passed: the hook publishes on
	// every page, so stop it after a while and then add a last event.
	m := wsRead(t, conn)
	if m.Seq != 6 {
		t.Fatalf("first replayed seq %d, want 6", m.Seq)
	}
	got := []int64{m.Seq}
	for len(got) < 30 {
		got = append(got, wsRead(t, conn).Seq)
	}
	hookMu.Lock()
	stopped = true
	hookMu.Unlock()
	published.Wait()
	last := feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusSucceeded, "")
	for got[len(got)-1] != last.ID {
		got = append(got, wsRead(t, conn).Seq)
	}
	var want []int64
	for _, ev := range feed.all() {
		if ev.OwnerID == env.alice && ev.ID > 5 {
			want = append(want, ev.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("received seqs\n%v\nwant\n%v", got, want)
	}

	t.Run("Reconnect", func(t *testing.T) {
		conn := env.dial(t, env.aliceTok, "")
		first := feed.publish(job, env.alice, gpuflow.EventProgress, "", "")
		readSeqs(t, "first connection", conn, []int64{first.ID})
		conn.Close()
		var missed []int64
		for range 7 {
			missed = append(missed, feed.publish(job, env.alice, gpuflow.EventProgress, "", "").ID)
		}
		again := env.dial(t, env.aliceTok, fmt.Sprintf("since=%d", first.ID))
		readSeqs(t, "after reconnect", again, missed)
		live := feed.publish(job, env.alice, gpuflow.EventProgress, "", "")
		readSeqs(t, "live", again, []int64{live.ID})
	})
}

// TestWebSocketListenerReconnect: notifications lost while the hub's
// listener was disconnected are replayed from the store when it
// resubscribes.
func TestWebSocketListenerReconnect(t *testing.T) {
	t.Parallel()
	feed := newFeedFake()
	env := newFeedEnv(t, feed, nil, nil, nil)
	job := env.job(env.alice)
	conn := env.dial(t, env.aliceTok, "")
	e1 := feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	readSeqs(t, "before", conn, []int64{e1.ID})

	feed.disconnect()
	var lost []int64
	for range 8 { // more than a replay page
		lost = append(lost, feed.publish(job, env.alice, gpuflow.EventProgress, "", "").ID)
	}
	feed.reconnect()
	after := feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusSucceeded, "")
	readSeqs(t, "after reconnect", conn, append(lost, after.ID))
	if st := env.srv.live.hub.stats(); st.LastSeq != after.ID {
		t.Errorf("hub at seq %d, want %d", st.LastSeq, after.ID)
	}
}

// smallBuffers makes every accepted connection's kernel send buffer tiny,
// so that a client that does not read fills the server's queue quickly.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestWebSocketSlowClient: a client that does not read is closed with 4008
// and where to resume, while a fast one keeps receiving everything.
func TestWebSocketSlowClient(t *testing.T) {
	t.Parallel()
	feed := newFeedFake()
	env := newFeedEnv(t, feed, nil, nil, func(l net.Listener) net.Listener { return smallBuffers{l} },
		withWS(WebSocketConfig{SendBuffer: 4}))
	job := env.job(env.alice)
	slowDialer := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	slow, _, err := slowDialer.Dial(env.wsURL("token="+env.aliceTok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast := env.dial(t, env.aliceTok, "")

	// The fast client reads everything as it comes; the publisher keeps
	// pace with it (one event at a time), so only the slow one falls
	// behind.
	fastSeen := make(chan int64, 16)
	go func() {
		defer close(fastSeen)
		for {
			m, err := wsTryRead(fast, 20*time.Second)
			if err != nil {
				return
			}
			fastSeen <- m.Seq
		}
	}()
	publish := func(data string) int64 {
		t.Helper()
		seq := feed.publish(job, env.alice, gpuflow.EventLog, "", data).ID
		select {
		case got, ok := <-fastSeen:
			if !ok || got != seq {
				t.Fatalf("fast client got seq %d (open %v), want %d", got, ok, seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fast client did not get seq %d", seq)
		}
		return seq
	}

	blob := strings.Repeat("x", 16<<10)
	var published []int64
	for i := 0; env.srv.live.hub.dropped.Load() == 0; i++ {
		if i == 2000 {
			t.Fatal("the slow client was never dropped")
		}
		published = append(published, publish(`{"line":"`+blob+`"}`))
	}
	// More after the drop: the fast client still gets them.
	for range 3 {
		published = append(published, publish(`{"line":"after"}`))
	}

	// The slow client reads what was queued for it, then the close frame
	// naming the last seq it got.
	var last int64
	for {
		m, err := wsTryRead(slow, 10*time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("slow client: %v, want a close frame", err)
			}
			if ce.Code != 4008 || ce.Text != fmt.Sprintf("too slow; reconnect with since=%d", last) {
				t.Errorf("closed with %d %q, want 4008 naming since=%d", ce.Code, ce.Text, last)
			}
			break
		}
		if m.Seq != last+1 {
			t.Fatalf("slow client got seq %d after %d", m.Seq, last)
		}
		last = m.Seq
	}
	pollUntil(t, "the slow connection to be gone", func() bool { return env.srv.live.hub.stats().Connections == 1 })
	if st := env.srv.live.hub.stats(); st.DroppedClients != 1 {
		t.Errorf("dropped_clients %d, want 1", st.DroppedClients)
	}
	// Resuming where the close said loses nothing.
	again := env.dial(t, env.aliceTok, fmt.Sprintf("since=%d", last))
	readSeqs(t, "resumed", again, published[last:])
}

func TestWebSocketKeepalive(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil,
		withWS(WebSocketConfig{PingPeriod: 20 * time.Millisecond, PongWait: 200 * time.Millisecond}))
	// A client that reads answers pings (gorilla does) and stays.
	live := env.dial(t, env.aliceTok, "")
	pings := make(chan struct{}, 100)
	live.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	// A client that never reads never answers, and is dropped.
	mute := env.dial(t, env.aliceTok, "")
	_ = mute
	pollUntil(t, "two connections", func() bool { return env.srv.live.hub.stats().Connections == 2 })
	for i := range 15 {
		select {
		case <-pings:
		case err := <-readErr:
			t.Fatalf("reading client lost its connection after %d pings: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d pings", i)
		}
	}
	// 15 pings at 20ms span more than PongWait: the silent client is gone,
	// the answering one is not.
	pollUntil(t, "the silent client to be dropped", func() bool { return env.srv.live.hub.stats().Connections == 1 })
	select {
	case err := <-readErr:
		t.Fatalf("reading client lost its connection: %v", err)
	default:
	}
}

func TestWebSocketStatsRoute(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	job := env.job(env.alice)
	conn := env.dial(t, env.aliceTok, "")
	env.dial(t, env.bobTok, "")
	wsSend(t, conn, `{"action":"subscribe","task_id":"`+job+`"}`)
	wsRead(t, conn)
	ev := env.feed.publish(job, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	wsRead(t, conn)
	// The count follows the write the client has just read.
	pollUntil(t, "two messages counted", func() bool { return env.srv.live.hub.stats().MessagesSent == 2 })

	if resp := env.get(t, "/api/gpu/websocket/stats", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", resp.StatusCode)
	}
	resp := env.get(t, "/api/gpu/websocket/stats", env.bobTok)
	var st map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, err %v", resp.StatusCode, err)
	}
	if st["connections"] != 2 || st["subscriptions"] != 1 || st["messages_sent"] != 2 || st["dropped_clients"] != 0 ||
		st["last_seq"] != ev.ID {
		t.Errorf("stats %v", st)
	}
}

func TestWebSocketShutdown(t *testing.T) {
	t.Parallel()
	env := newFeedEnv(t, nil, nil, nil, nil)
	conn := env.dial(t, env.aliceTok, "")
	pollUntil(t, "the connection", func() bool { return env.srv.live.hub.stats().Connections == 1 })
	env.srv.stopLive()
	_, err := wsTryRead(conn, 10*time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("read after shutdown: %v, want close 1001", err)
	}
	// New connections are refused.
	_, resp, err := websocket.DefaultDialer.Dial(env.wsURL("token="+env.aliceTok), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v", err)
	}
}

// TestWebSocketWithoutFeed: no feed configured answers 503 before the
// upgrade.
func TestWebSocketWithoutFeed(t *testing.T) {
	t.Parallel()
	users := &feedUsers{users: map[string]*gpuflow.User{}}
	u := &gpuflow.User{Email: "a@example.com", IsActive: true}
	if err := users.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Jobs: newFakeStore(), Auth: AuthConfig{Users: users, Secret: feedSecret}})
	if err := srv.RunFeed(t.Context()); err != nil {
		t.Errorf("RunFeed without a feed: %v", err)
	}
	tokens, err := auth.NewTokens(feedSecret, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tokens.Issue(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/gpu/ws?token="+tok, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		body, _ := io.ReadAll(rec.Body)
		t.Errorf("status %d (%s), want 503", rec.Code, body)
	}
}
