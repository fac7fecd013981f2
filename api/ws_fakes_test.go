package api

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// feedFake is an in-memory EventFeed shared by several servers, as the
// database is by several API replicas: published events get increasing ids
// and reach every connected subscriber in order.
type feedFake struct {
	mu     sync.Mutex
	events []gpuflow.Event
	subs   map[*feedFakeSub]struct{}
	// beforeQuery, when set, runs at the start of each EventsAfter, outside
	// the lock (to publish "concurrently" with a replay).
	beforeQuery func(afterID int64, ownerID string)
}

type feedFakeSub struct {
	items     chan feedItem
	connected bool
}

// feedItem is one notification: an event, a log notice, or a reconnect.
type feedItem struct {
	ev        *gpuflow.Event
	logJob    string
	reconnect bool
}

var _ EventFeed = (*feedFake)(nil)

func newFeedFake() *feedFake { return &feedFake{subs: map[*feedFakeSub]struct{}{}} }

func (f *feedFake) EventsAfter(_ context.Context, afterID int64, ownerID string, limit int) ([]gpuflow.Event, error) {
	f.mu.Lock()
	hook := f.beforeQuery
	f.mu.Unlock()
	if hook != nil {
		hook(afterID, ownerID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []gpuflow.Event{}
	for _, ev := range f.events {
		if ev.ID > afterID && (ownerID == "" || ev.OwnerID == ownerID) {
			out = append(out, ev)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (f *feedFake) LatestEventID(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.events)), nil
}

func (f *feedFake) Subscribe(ctx context.Context, onListen func(context.Context), onEvent func(gpuflow.Event), onLog func(string)) error {
	sub := &feedFakeSub{items: make(chan feedItem, 100000), connected: true}
	f.mu.Lock()
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, sub)
		f.mu.Unlock()
	}()
	onListen(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case it := <-sub.items:
			switch {
			case it.reconnect:
				onListen(ctx)
			case it.ev != nil:
				onEvent(*it.ev)
			case onLog != nil:
				onLog(it.logJob)
			}
		}
	}
}

// subscribers is how many servers listen.
func (f *feedFake) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// publish records an event of the job and notifies the connected
// subscribers, atomically (ids in commit order, as the store assigns them).
func (f *feedFake) publish(jobID, ownerID, typ string, status gpuflow.JobStatus, data string) gpuflow.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := 1
	for _, e := range f.events {
		if e.JobID == jobID {
			seq++
		}
	}
	ev := gpuflow.Event{ID: int64(len(f.events) + 1), JobID: jobID, JobSeq: seq, Type: typ, Status: status,
		Provider: "local", OwnerID: ownerID, At: time.Now().UTC().Truncate(time.Microsecond)}
	if data != "" {
		ev.Data = json.RawMessage(data)
	}
	f.events = append(f.events, ev)
	for s := range f.subs {
		if s.connected {
			e := ev
			s.items <- feedItem{ev: &e}
		}
	}
	return ev
}

// logNotice announces new output of the job.
func (f *feedFake) logNotice(jobID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		if s.connected {
			s.items <- feedItem{logJob: jobID}
		}
	}
}

// disconnect makes every subscriber miss the notifications from now on,
// as a dropped LISTEN connection does.
func (f *feedFake) disconnect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.connected = false
	}
}

// reconnect resubscribes every subscriber (its onListen runs again).
func (f *feedFake) reconnect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.connected = true
		s.items <- feedItem{reconnect: true}
	}
}

// setBeforeQuery sets the hook run by each EventsAfter.
func (f *feedFake) setBeforeQuery(fn func(afterID int64, ownerID string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeQuery = fn
}

// all returns every event published.
func (f *feedFake) all() []gpuflow.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gpuflow.Event(nil), f.events...)
}

// watchedJobs is how many jobs' output is followed.
func watchedJobs(h *feedHub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

func (f *feedFake) eventsOf(jobID string) []gpuflow.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gpuflow.Event
	for _, e := range f.events {
		if e.JobID == jobID {
			out = append(out, e)
		}
	}
	return out
}

// eventStore is the fake job store whose events are the feed's.
type eventStore struct {
	*fakeStore
	feed *feedFake
}

func (s *eventStore) Events(ctx context.Context, jobID string) ([]gpuflow.Event, error) {
	if _, err := s.Job(ctx, jobID); err != nil {
		return nil, err
	}
	return s.feed.eventsOf(jobID), nil
}

// feedUsers is an in-memory gpuflow.UserStore.
type feedUsers struct {
	mu    sync.Mutex
	users map[string]*gpuflow.User
}

var _ gpuflow.UserStore = (*feedUsers)(nil)

func (u *feedUsers) CreateUser(_ context.Context, user *gpuflow.User) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, x := range u.users {
		if strings.EqualFold(x.Email, user.Email) {
			return gpuflow.Errorf(gpuflow.ECONFLICT, "email taken")
		}
	}
	if user.ID == "" {
		user.ID = uuid.NewString()
	}
	c := *user
	u.users[user.ID] = &c
	return nil
}

func (u *feedUsers) User(_ context.Context, id string) (*gpuflow.User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x, ok := u.users[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user %s not found", id)
	}
	c := *x
	return &c, nil
}

func (u *feedUsers) UserByEmail(_ context.Context, email string) (*gpuflow.User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, x := range u.users {
		if strings.EqualFold(x.Email, email) {
			c := *x
			return &c, nil
		}
	}
	return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user %s not found", email)
}

func (u *feedUsers) UpdateUser(_ context.Context, id string, up gpuflow.UserUpdate) (*gpuflow.User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x, ok := u.users[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user %s not found", id)
	}
	applyUserUpdate(x, up)
	c := *x
	return &c, nil
}

var feedSecret = []byte("0123456789abcdef0123456789abcdef-feed-tests")

// feedEnv is an API server over a shared feed, served by httptest, with
// three accounts: alice and bob (ordinary) and root (superuser).
type feedEnv struct {
	srv                       *Server
	ts                        *httptest.Server
	store                     *eventStore
	feed                      *feedFake
	users                     *feedUsers
	alice, bob, root          string // user ids
	aliceTok, bobTok, rootTok string
	tokens                    *auth.Tokens
	postNew                   []func(*Server) // tuning applied before serving
}

// feedEnvOption edits the server's config, or the env before it starts.
type feedEnvOption func(*Config, *feedEnv)

// withServer tunes the server before it serves.
func withServer(fn func(*Server)) feedEnvOption {
	return func(_ *Config, e *feedEnv) { e.postNew = append(e.postNew, fn) }
}

// withWS sets the WebSocket's tuning.
func withWS(w WebSocketConfig) feedEnvOption {
	return func(c *Config, _ *feedEnv) { c.WebSocket = w }
}

// newFeedEnv starts a server on feed (a new one when nil) over store (a new
// one when nil) and users (new when nil); wrapLn, when set, wraps its
// listener.
func newFeedEnv(t *testing.T, feed *feedFake, store *eventStore, users *feedUsers, wrapLn func(net.Listener) net.Listener, opts ...feedEnvOption) *feedEnv {
	t.Helper()
	if feed == nil {
		feed = newFeedFake()
	}
	if store == nil {
		store = &eventStore{fakeStore: newFakeStore(), feed: feed}
	}
	if users == nil {
		users = &feedUsers{users: map[string]*gpuflow.User{}}
		for _, u := range []gpuflow.User{
			{ID: uuid.NewString(), Email: "alice@example.com", IsActive: true},
			{ID: uuid.NewString(), Email: "bob@example.com", IsActive: true},
			{ID: uuid.NewString(), Email: "root@example.com", IsActive: true, IsSuperuser: true},
		} {
			if err := users.CreateUser(context.Background(), &u); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := &feedEnv{feed: feed, store: store, users: users}
	for _, email := range []string{"alice@example.com", "bob@example.com", "root@example.com"} {
		u, err := users.UserByEmail(context.Background(), email)
		if err != nil {
			t.Fatal(err)
		}
		switch email {
		case "alice@example.com":
			env.alice = u.ID
		case "bob@example.com":
			env.bob = u.ID
		default:
			env.root = u.ID
		}
	}
	tokens, err := auth.NewTokens(feedSecret, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	env.tokens = tokens
	env.aliceTok, env.bobTok, env.rootTok = env.token(t, env.alice), env.token(t, env.bob), env.token(t, env.root)

	local := &fakeProvider{
		info:   gpuflow.ProviderInfo{Name: "local", DisplayName: "Local", Description: "this host", Mode: gpuflow.ModeLocal},
		offers: []gpuflow.Offer{{GPUType: "", GPUCount: 0, MemoryGB: 8, VCPUs: 4, Available: 1}},
	}
	cfg := Config{
		Jobs:      store,
		Providers: gpuflow.Providers{local},
		Version:   "v0.0.0-test",
		Feed:      feed,
		Auth: AuthConfig{Users: users, Secret: feedSecret, PasswordCost: auth.MinCost,
			Registration: gpuflow.RegistrationOpen, Local: gpuflow.LocalPolicy{Everyone: true}},
	}
	for _, o := range opts {
		o(&cfg, env)
	}
	env.srv = New(cfg)
	env.srv.live.hub.replayPage = 3 // exercise paging
	for _, fn := range env.postNew {
		fn(env.srv)
	}

	env.ts = httptest.NewUnstartedServer(env.srv.Handler())
	if wrapLn != nil {
		env.ts.Listener = wrapLn(env.ts.Listener)
	}
	env.ts.Start()
	t.Cleanup(env.ts.Close) // runs last: waits for the handlers
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.srv.RunFeed(ctx) }()
	t.Cleanup(func() {
		env.srv.stopLive()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunFeed: %v", err)
		}
	})
	select {
	case <-env.srv.live.hub.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("feed not ready within 10s")
	}
	return env
}

func (e *feedEnv) token(t *testing.T, userID string) string {
	t.Helper()
	tok, _, err := e.tokens.Issue(userID)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// job stores a running job of owner and returns its id.
func (e *feedEnv) job(owner string) string {
	id := uuid.NewString()
	now := time.Now().UTC()
	e.store.put(&gpuflow.Job{ID: id, OwnerID: owner, Status: gpuflow.StatusRunning, Provider: "local",
		Spec:     gpuflow.JobSpec{Command: []string{"true"}, Strategy: gpuflow.StrategyBalanced, GPUCount: 0, Priority: 5},
		Attempts: []gpuflow.Attempt{}, WorkflowID: "job-" + id, CreatedAt: now, UpdatedAt: now})
	return id
}

func (e *feedEnv) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/api/gpu/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dial opens a WebSocket with token in ?token= and the query's other
// parameters.
func (e *feedEnv) dial(t *testing.T, token, query string) *websocket.Conn {
	t.Helper()
	q := "token=" + token
	if query != "" {
		q += "&" + query
	}
	conn, resp, err := websocket.DefaultDialer.Dial(e.wsURL(q), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// get does an authenticated GET on the env's server.
func (e *feedEnv) get(t *testing.T, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// wsMsg is any message of the server: an event or a control message.
type wsMsg struct {
	Type   string            `json:"type"`
	Seq    int64             `json:"seq"`
	TaskID string            `json:"task_id"`
	Status gpuflow.JobStatus `json:"status"`
	Data   json.RawMessage   `json:"data"`
	Error  *errorPayload     `json:"error"`
}

// wsRead reads the next message, failing the test after 10s.
func wsRead(t *testing.T, conn *websocket.Conn) wsMsg {
	t.Helper()
	m, err := wsTryRead(conn, 10*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func wsTryRead(conn *websocket.Conn, wait time.Duration) (wsMsg, error) {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var m wsMsg
	_, data, err := conn.ReadMessage()
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, err
	}
	return m, nil
}

// wsSend writes a client message.
func wsSend(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// pollUntil polls cond until it holds, failing after 10s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
