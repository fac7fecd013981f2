package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/olahol/melody"

	"github.com/gpuflow/gpuflow"
)

// WebSocket close codes of the API (4000-4999 are the application's).
const (
	// closeTooSlow: the client did not read fast enough and its buffer
	// filled; it reconnects with ?since=<the seq named in the reason>.
	closeTooSlow = 4008
	// closeReplayFailed: the events it missed could not be read.
	closeReplayFailed = 4011
	// closeTokenExpired: the token the connection was opened with has
	// expired; the client logs in again and reconnects with since.
	closeTokenExpired = 4001
	// closeForbidden: the account was deactivated or deleted, or lost the
	// rights the connection was opened with (a superuser demoted).
	closeForbidden = 4003
	// closeTooManySubscriptions: more subscribe (or, while following all
	// its jobs, unsubscribe) entries than WebSocketConfig.MaxSubscriptions.
	closeTooManySubscriptions = 4009
	// closeRateLimited: the client sent messages faster than
	// WebSocketConfig.MessageRate allows.
	closeRateLimited = 4029
)

// feedHub fans the event feed out to the WebSocket clients and wakes the
// followers of job output. One listener per API process feeds it (run); it
// drops events it has passed on before, and after every (re)subscription
// replays from the store what the listener may have missed, so each event
// reaches it once and in order.
type feedHub struct {
	feed       EventFeed
	log        *slog.Logger
	sendBuffer int // messages queued per client before it is too slow
	maxBacklog int // events held per client while it starts
	replayPage int // events read per page of a replay
	recheck    time.Duration
	maxSubs    int
	msgRate    float64
	msgBurst   int
	now        func() time.Time
	// lookup loads an account, for the rechecks of connections.
	lookup func(ctx context.Context, id string) (*gpuflow.User, error)

	ready   chan struct{} // closed once lastSeen is known
	running atomic.Bool

	mu       sync.Mutex
	lastSeen int64 // the newest event passed on
	clients  map[*wsClient]struct{}
	watchers map[string]map[chan struct{}]struct{} // job id → wake-ups

	sent    atomic.Int64
	dropped atomic.Int64
}

func newFeedHub(feed EventFeed, log *slog.Logger, cfg WebSocketConfig) *feedHub {
	return &feedHub{
		feed: feed, log: log, sendBuffer: cfg.SendBuffer, maxBacklog: cfg.MaxBacklog,
		replayPage: defaultReplayPage,
		recheck:    cfg.RecheckInterval, maxSubs: cfg.MaxSubscriptions,
		msgRate: cfg.MessageRate, msgBurst: cfg.MessageBurst, now: time.Now,
		ready:    make(chan struct{}),
		clients:  map[*wsClient]struct{}{},
		watchers: map[string]map[chan struct{}]struct{}{},
	}
}

// run reads where the feed stands, then delivers its events until ctx is
// done. It runs once per hub.
func (h *feedHub) run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("event feed already running")
	}
	err := retry(ctx, h.log, "read the event feed's position", func() error {
		id, err := h.feed.LatestEventID(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.lastSeen = id
		h.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil // ctx is done
	}
	close(h.ready)
	h.log.DebugContext(ctx, "event feed ready", "seq", h.position())
	go h.recheckLoop(ctx)
	if err := h.feed.Subscribe(ctx, h.onListen, h.onEvent, h.onLog); err != nil && ctx.Err() == nil {
		return fmt.Errorf("subscribe to the event feed: %w", err)
	}
	return nil
}

// position is the id of the newest event passed on.
func (h *feedHub) position() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastSeen
}

// onListen runs on every (re)subscription: it passes on the events stored
// since the last one passed on (notifications sent while the listener was
// away are lost), and wakes every follower of output.
func (h *feedHub) onListen(ctx context.Context) {
	after := h.position()
	for {
		var events []gpuflow.Event
		err := retry(ctx, h.log, "catch up with the event feed", func() error {
			var err error
			events, err = h.feed.EventsAfter(ctx, after, "", h.replayPage)
			return err
		})
		if err != nil {
			return // ctx is done
		}
		for _, ev := range events {
			h.onEvent(ev)
			after = ev.ID
		}
		if len(events) < h.replayPage {
			break
		}
	}
	h.mu.Lock()
	for _, ws := range h.watchers {
		for w := range ws {
			wake(w)
		}
	}
	h.mu.Unlock()
}

// onEvent passes ev on to every client and wakes the followers of its job,
// unless it was passed on before.
func (h *feedHub) onEvent(ev gpuflow.Event) {
	h.mu.Lock()
	if ev.ID <= h.lastSeen {
		h.mu.Unlock()
		return
	}
	h.lastSeen = ev.ID
	for w := range h.watchers[ev.JobID] {
		wake(w)
	}
	clients := make([]*wsClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	if len(clients) == 0 {
		return
	}
	msg := mustJSON(ev)
	for _, c := range clients {
		c.offer(ev, msg)
	}
}

// onLog wakes the followers of the job's output.
func (h *feedHub) onLog(jobID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[jobID] {
		wake(w)
	}
}

// watch returns a channel that receives when something happens to the job
// (an event, new output, a resubscription of the listener), and the
// function that stops watching.
func (h *feedHub) watch(jobID string) (<-chan struct{}, func()) {
	w := make(chan struct{}, 1)
	h.mu.Lock()
	if h.watchers[jobID] == nil {
		h.watchers[jobID] = map[chan struct{}]struct{}{}
	}
	h.watchers[jobID][w] = struct{}{}
	h.mu.Unlock()
	return w, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.watchers[jobID], w)
		if len(h.watchers[jobID]) == 0 {
			delete(h.watchers, jobID)
		}
	}
}

// wake signals w without blocking; one pending signal is enough.
func wake(w chan struct{}) {
	select {
	case w <- struct{}{}:
	default:
	}
}

// register adds c to the clients. From now on it is offered every event;
// those it may see wait in its backlog until it has started. A client
// without since starts after the newest event passed on.
func (h *feedHub) register(c *wsClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.since >= 0 {
		c.lastSent = c.since
	} else {
		c.lastSent = h.lastSeen
	}
	h.clients[c] = struct{}{}
}

func (h *feedHub) unregister(c *wsClient) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	c.stop()
}

// recheckLoop looks at every connection's account every recheck interval
// until ctx is done.
func (h *feedHub) recheckLoop(ctx context.Context) {
	t := time.NewTicker(h.recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.recheckAll(ctx)
		}
	}
}

// recheckAll closes the connections whose token has expired or whose
// account may no longer hold them, one account look-up per user. An
// account that cannot be read (the store is down) keeps its connections
// until the next check.
func (h *feedHub) recheckAll(ctx context.Context) {
	h.mu.Lock()
	byUser := map[string][]*wsClient{}
	for c := range h.clients {
		byUser[c.who.UserID] = append(byUser[c.who.UserID], c)
	}
	h.mu.Unlock()
	for id, cs := range byUser {
		if ctx.Err() != nil {
			return
		}
		u, err := h.lookup(ctx, id)
		if err != nil && gpuflow.ErrorCode(err) != gpuflow.ENOTFOUND {
			h.log.WarnContext(ctx, "websocket recheck: load user", "user_id", id, "err", err)
			continue
		}
		for _, c := range cs {
			c.checkAccount(u)
		}
	}
}

// recheckUser checks the connections of the account id at once (its
// flags were just changed through this replica).
func (h *feedHub) recheckUser(id string) {
	h.mu.Lock()
	var cs []*wsClient
	for c := range h.clients {
		if c.who.UserID == id {
			cs = append(cs, c)
		}
	}
	h.mu.Unlock()
	if len(cs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := h.lookup(ctx, id)
	if err != nil && gpuflow.ErrorCode(err) != gpuflow.ENOTFOUND {
		h.log.WarnContext(ctx, "websocket recheck: load user", "user_id", id, "err", err)
		return
	}
	for _, c := range cs {
		c.checkAccount(u)
	}
}

// wsStats is the answer of GET /api/gpu/websocket/stats.
type wsStats struct {
	Connections    int   `json:"connections"`
	Subscriptions  int   `json:"subscriptions"`
	MessagesSent   int64 `json:"messages_sent"`
	DroppedClients int64 `json:"dropped_clients"`
	LastSeq        int64 `json:"last_seq"`
}

func (h *feedHub) stats() wsStats {
	h.mu.Lock()
	clients := make([]*wsClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	st := wsStats{Connections: len(clients), LastSeq: h.lastSeen}
	h.mu.Unlock()
	for _, c := range clients {
		st.Subscriptions += c.subscriptions()
	}
	st.MessagesSent = h.sent.Load()
	st.DroppedClients = h.dropped.Load()
	return st
}

// retry calls fn until it succeeds or ctx is done (then it returns ctx's
// error), waiting from 100ms up to 5s between tries.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.WarnContext(ctx, what+" failed; retrying", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// wsClient is one WebSocket connection: who it is, what it wants, and where
// it is in the feed.
type wsClient struct {
	hub   *feedHub
	srv   *Server
	who   Principal
	since int64 // -1: live events only

	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc

	pending atomic.Int64  // messages queued and not yet written
	space   chan struct{} // receives when a queued message is written

	mu       sync.Mutex
	sess     *melody.Session
	starting bool                // replay or backlog not delivered yet
	backlog  []queuedEvent       // events offered while starting
	lastSent int64               // the seq of the newest event sent
	only     map[string]struct{} // subscribed jobs; nil: all its jobs
	except   map[string]struct{} // unsubscribed jobs while only is nil
	closing  bool                // a close is queued; send nothing more

	expires time.Time   // when the connection's token expires (zero: unknown)
	expiry  *time.Timer // closes the connection then

	// A token bucket of the client's messages (handleMessage runs on the
	// connection's one reader goroutine).
	msgTokens float64
	msgAt     time.Time
}

type queuedEvent struct {
	ev  gpuflow.Event
	msg []byte
}

func newWSClient(s *Server, who Principal, since int64) *wsClient {
	ctx, cancel := context.WithCancel(context.Background())
	return &wsClient{hub: s.live.hub, srv: s, who: who, since: since, ctx: ctx, cancel: cancel,
		space: make(chan struct{}, 1), starting: true}
}

// visible reports whether the client's principal may see ev.
func (c *wsClient) visible(ev gpuflow.Event) bool {
	return canSee(c.who, &gpuflow.Job{ID: ev.JobID, OwnerID: ev.OwnerID})
}

// wantsLocked reports whether ev is for the client: visible and of a job
// it listens to.
func (c *wsClient) wantsLocked(ev gpuflow.Event) bool {
	if !c.visible(ev) {
		return false
	}
	if c.only != nil {
		_, ok := c.only[ev.JobID]
		return ok
	}
	_, excluded := c.except[ev.JobID]
	return !excluded
}

// offer is how the hub hands the client an event.
func (c *wsClient) offer(ev gpuflow.Event, msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || ev.ID <= c.lastSent || !c.visible(ev) {
		return
	}
	if c.starting {
		c.backlog = append(c.backlog, queuedEvent{ev, msg})
		if len(c.backlog) > c.hub.maxBacklog {
			c.dropLocked()
		}
		return
	}
	c.sendEventLocked(ev, msg)
}

// sendEventLocked queues ev unless it was sent before or is not wanted.
func (c *wsClient) sendEventLocked(ev gpuflow.Event, msg []byte) {
	if ev.ID <= c.lastSent || !c.wantsLocked(ev) {
		return
	}
	if c.enqueueLocked(msg) {
		c.lastSent = ev.ID
	}
}

// enqueueLocked queues msg for writing. A client whose queue is full is too
// slow: it is closed, and nothing more is queued for it.
func (c *wsClient) enqueueLocked(msg []byte) bool {
	if c.closing || c.sess == nil {
		return false
	}
	if c.pending.Load() >= int64(c.hub.sendBuffer) {
		c.dropLocked()
		return false
	}
	c.pending.Add(1)
	if err := c.sess.Write(msg); err != nil {
		c.pending.Add(-1)
		return false
	}
	return true
}

// reply queues a message that is not an event.
func (c *wsClient) reply(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueueLocked(msg)
}

// dropLocked closes a client that cannot keep up, telling it where to
// resume. The close frame takes the slot kept free for it in the session's
// buffer, after the messages already queued.
func (c *wsClient) dropLocked() {
	if c.closing {
		return
	}
	c.hub.dropped.Add(1)
	c.hub.log.Info("websocket client too slow; closing it", "user_id", c.who.UserID, "seq", c.lastSent)
	c.closeLocked(closeTooSlow, fmt.Sprintf("too slow; reconnect with since=%d", c.lastSent))
}

// closeLocked queues a close frame with code and reason (at most 123 bytes).
func (c *wsClient) closeLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.backlog = nil
	if c.sess != nil {
		_ = c.sess.CloseWithMsg(melody.FormatCloseMessage(code, reason))
	}
}

// attach gives the client its session, once upgraded, and starts it.
func (c *wsClient) attach(sess *melody.Session) {
	c.mu.Lock()
	c.sess = sess
	if c.closing { // dropped before it was upgraded
		c.closing = false
		c.closeLocked(closeTooSlow, fmt.Sprintf("too slow; reconnect with since=%d", c.lastSent))
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.watchExpiry()
	go c.start()
}

// stop ends the client's work; the connection is gone.
func (c *wsClient) stop() {
	c.cancel()
	c.mu.Lock()
	c.closing = true
	c.backlog = nil
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
}

// watchExpiry closes the connection when its token expires.
func (c *wsClient) watchExpiry() {
	if c.expires.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.expiry = time.AfterFunc(max(c.expires.Sub(c.hub.now()), 0), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closeExpiredLocked()
	})
}

func (c *wsClient) closeExpiredLocked() {
	if c.closing {
		return
	}
	c.hub.log.Info("websocket token expired; closing it", "user_id", c.who.UserID)
	c.closeLocked(closeTokenExpired, fmt.Sprintf("token expired; log in again and reconnect with since=%d", c.lastSent))
}

// checkAccount closes the connection when its token has expired or its
// account u (nil: deleted) may no longer hold it: deactivated, or no
// longer the superuser it was when it connected.
func (c *wsClient) checkAccount(u *gpuflow.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	switch {
	case !c.expires.IsZero() && !c.hub.now().Before(c.expires):
		c.closeExpiredLocked()
	case u == nil || !u.IsActive:
		c.hub.log.Info("websocket of a deactivated or deleted account; closing it", "user_id", c.who.UserID)
		c.closeLocked(closeForbidden, "account deactivated")
	case c.who.Superuser && !u.IsSuperuser:
		c.hub.log.Info("websocket of a demoted superuser; closing it", "user_id", c.who.UserID)
		c.closeLocked(closeForbidden, fmt.Sprintf("account rights changed; reconnect with since=%d", c.lastSent))
	}
}

// allowMessage takes a token of the client's message bucket; false when
// it is empty.
func (c *wsClient) allowMessage() bool {
	now := time.Now()
	if c.msgAt.IsZero() {
		c.msgTokens = float64(c.hub.msgBurst)
	} else {
		c.msgTokens = min(float64(c.hub.msgBurst), c.msgTokens+now.Sub(c.msgAt).Seconds()*c.hub.msgRate)
	}
	c.msgAt = now
	if c.msgTokens < 1 {
		return false
	}
	c.msgTokens--
	return true
}

// sent records that a queued message was written.
func (c *wsClient) sent() {
	c.pending.Add(-1)
	c.hub.sent.Add(1)
	wake(c.space)
}

// waitSpace waits until the client's queue has room; false when the
// connection ended first.
func (c *wsClient) waitSpace() bool {
	for c.pending.Load() >= int64(c.hub.sendBuffer) {
		select {
		case <-c.space:
		case <-c.ctx.Done():
			return false
		}
	}
	return c.ctx.Err() == nil
}

// start replays what the client missed (with ?since=), then the events
// offered meanwhile, then lets live events through. Replay and backlog are
// sent only as fast as the client reads; the seq order and the dedupe by
// lastSent make the seam between them invisible.
func (c *wsClient) start() {
	if c.since >= 0 && !c.replay() {
		return
	}
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return
		}
		if len(c.backlog) == 0 {
			c.starting = false
			c.mu.Unlock()
			return
		}
		batch := c.backlog
		c.backlog = nil
		c.mu.Unlock()
		for _, q := range batch {
			if !c.waitSpace() {
				return
			}
			c.mu.Lock()
			c.sendEventLocked(q.ev, q.msg)
			c.mu.Unlock()
		}
	}
}

// replay sends the stored events after since that the client may see, a
// page at a time. It reports whether the client goes on.
func (c *wsClient) replay() bool {
	c.mu.Lock()
	after := c.lastSent
	c.mu.Unlock()
	owner := ownerScope(c.who)
	for {
		events, err := c.hub.feed.EventsAfter(c.ctx, after, owner, c.hub.replayPage)
		if err != nil {
			if c.ctx.Err() != nil {
				return false
			}
			c.hub.log.Error("websocket replay failed", "user_id", c.who.UserID, "after", after, "err", err)
			c.mu.Lock()
			c.enqueueLocked(errorMessage(&gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
				Message: "the missed events could not be read; reconnect with since", Err: err}, ""))
			c.closeLocked(closeReplayFailed, fmt.Sprintf("replay failed; reconnect with since=%d", c.lastSent))
			c.mu.Unlock()
			return false
		}
		for _, ev := range events {
			if !c.waitSpace() {
				return false
			}
			c.mu.Lock()
			c.sendEventLocked(ev, mustJSON(ev))
			closing := c.closing
			c.mu.Unlock()
			if closing {
				return false
			}
			after = ev.ID
		}
		if len(events) < c.hub.replayPage {
			return true
		}
	}
}

// handleMessage acts on one message of the client.
func (c *wsClient) handleMessage(data []byte) {
	if !c.allowMessage() {
		c.mu.Lock()
		c.hub.log.Info("websocket client sends too fast; closing it", "user_id", c.who.UserID)
		c.closeLocked(closeRateLimited, fmt.Sprintf("too many messages (over %g a second); reconnect with since=%d",
			c.hub.msgRate, c.lastSent))
		c.mu.Unlock()
		return
	}
	m, err := parseClientMessage(data)
	if err != nil {
		c.reply(errorMessage(err, ""))
		return
	}
	switch m.Action {
	case actionPing:
		c.reply(mustJSON(serverMessage{Type: msgPong}))
	case actionSubscribe:
		if err := c.srv.checkSubscribe(c.ctx, c.who, m.TaskID); err != nil {
			c.reply(errorMessage(err, m.TaskID))
			return
		}
		c.mu.Lock()
		if c.only == nil {
			c.only = map[string]struct{}{}
			c.except = nil
		}
		if _, ok := c.only[m.TaskID]; !ok && len(c.only) >= c.hub.maxSubs {
			c.tooManyLocked()
			c.mu.Unlock()
			return
		}
		c.only[m.TaskID] = struct{}{}
		c.enqueueLocked(mustJSON(serverMessage{Type: msgSubscribed, TaskID: m.TaskID}))
		c.mu.Unlock()
	case actionUnsubscribe:
		c.mu.Lock()
		if c.only != nil {
			delete(c.only, m.TaskID)
		} else {
			if c.except == nil {
				c.except = map[string]struct{}{}
			}
			if _, ok := c.except[m.TaskID]; !ok && len(c.except) >= c.hub.maxSubs {
				c.tooManyLocked()
				c.mu.Unlock()
				return
			}
			c.except[m.TaskID] = struct{}{}
		}
		c.enqueueLocked(mustJSON(serverMessage{Type: msgUnsubscribed, TaskID: m.TaskID}))
		c.mu.Unlock()
	}
}

// tooManyLocked closes a client past the subscription limit.
func (c *wsClient) tooManyLocked() {
	c.hub.log.Info("websocket client has too many subscriptions; closing it", "user_id", c.who.UserID)
	c.closeLocked(closeTooManySubscriptions, fmt.Sprintf("too many subscriptions (at most %d); reconnect with since=%d",
		c.hub.maxSubs, c.lastSent))
}

// entries is how many subscribe and unsubscribe entries the client holds.
func (c *wsClient) entries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.only) + len(c.except)
}

// subscriptions is how many jobs the client has subscribed to.
func (c *wsClient) subscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.only)
}

// checkSubscribe returns nil when who may subscribe to the job: it exists
// and who may see it; ENOTFOUND otherwise.
func (s *Server) checkSubscribe(ctx context.Context, who Principal, taskID string) error {
	notFound := gpuflow.Errorf(gpuflow.ENOTFOUND, "task %s not found", taskID).
		WithDetails(map[string]any{"task_id": taskID})
	job, err := s.cfg.Jobs.Job(ctx, taskID)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		return notFound
	}
	if err != nil {
		s.log.ErrorContext(ctx, "websocket subscribe: get job", "job_id", taskID, "err", err)
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "the task could not be read; try again", Err: err}
	}
	if !canSee(who, job) {
		return notFound
	}
	return nil
}
