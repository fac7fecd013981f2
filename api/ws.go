package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/olahol/melody"

	"github.com/gpuflow/gpuflow"
)

// EventFeed is the feed of job events that every process writes to (the
// store's LISTEN/NOTIFY), so that each API replica sees every event,
// whichever process produced it. *postgres.DB implements it.
type EventFeed interface {
	// EventsAfter returns the events whose ID is above afterID, in ID
	// order, at most limit of them, of ownerID's jobs ("" means all), with
	// OwnerID set.
	EventsAfter(ctx context.Context, afterID int64, ownerID string, limit int) ([]gpuflow.Event, error)
	// LatestEventID returns the ID of the newest event, 0 when none.
	LatestEventID(ctx context.Context) (int64, error)
	// Subscribe delivers the events published from now on until ctx is
	// done, reconnecting as needed: onListen on every (re)subscription,
	// before the events received from then on (events published while it
	// was disconnected are not delivered; onListen catches up); onEvent
	// with each event, in ID order, OwnerID set; onLog, when not nil, with
	// the job id of each notice of new output. All are called from one
	// goroutine. It returns nil once ctx is done.
	Subscribe(ctx context.Context, onListen func(context.Context), onEvent func(gpuflow.Event), onLog func(jobID string)) error
}

// WebSocketConfig tunes GET /api/gpu/ws. Zero fields get the defaults.
type WebSocketConfig struct {
	// PingPeriod is how often the server pings (30s).
	PingPeriod time.Duration
	// PongWait is how long the server waits for a pong (or any message)
	// before it drops the connection (60s); more than PingPeriod.
	PongWait time.Duration
	// WriteWait bounds one write (10s).
	WriteWait time.Duration
	// SendBuffer is how many messages may wait for a client; a client that
	// lets more pile up is too slow and is closed with 4008 (256).
	SendBuffer int
	// MaxBacklog is how many live events may wait for a client while its
	// replay runs before it is closed as too slow (10000).
	MaxBacklog int
	// RecheckInterval is how often every connection's account is looked
	// at again (30s): one deactivated, deleted or no longer a superuser
	// (when it was one) is closed with 4003. A change made through this
	// replica's PATCH /users/{id} closes them at once.
	RecheckInterval time.Duration
	// MaxSubscriptions bounds a connection's subscribe entries, and its
	// unsubscribe entries while it follows all its jobs (1000); one more
	// closes it with 4009.
	MaxSubscriptions int
	// MessageRate is how many messages a second a client may send, on
	// average (50), with bursts of MessageBurst (500); faster closes the
	// connection with 4029.
	MessageRate  float64
	MessageBurst int
}

// Defaults of the live feed.
const (
	defaultPingPeriod  = 30 * time.Second
	defaultPongWait    = 60 * time.Second
	defaultWriteWait   = 10 * time.Second
	defaultSendBuffer  = 256
	defaultMaxBacklog  = 10000
	defaultRecheck     = 30 * time.Second
	defaultMaxSubs     = 1000
	defaultMsgRate     = 50
	defaultMsgBurst    = 500
	defaultReplayPage  = 500
	feedReadyWait      = 5 * time.Second
	logFallbackTick    = 2 * time.Second
	wsSubprotocol      = "bearer" // answered to a client that sent "bearer, <token>"
	sessionClientKey   = "gpuflow.client"
	shutdownCloseText  = "server shutting down; reconnect with since"
	websocketRoutePath = "/api/gpu/ws"
)

func (w WebSocketConfig) withDefaults() WebSocketConfig {
	if w.PingPeriod <= 0 {
		w.PingPeriod = defaultPingPeriod
	}
	if w.PongWait <= 0 {
		w.PongWait = max(defaultPongWait, 2*w.PingPeriod)
	}
	if w.PongWait <= w.PingPeriod {
		w.PongWait = w.PingPeriod + w.PingPeriod/2
	}
	if w.WriteWait <= 0 {
		w.WriteWait = defaultWriteWait
	}
	if w.SendBuffer <= 0 {
		w.SendBuffer = defaultSendBuffer
	}
	if w.MaxBacklog <= 0 {
		w.MaxBacklog = defaultMaxBacklog
	}
	if w.RecheckInterval <= 0 {
		w.RecheckInterval = defaultRecheck
	}
	if w.MaxSubscriptions <= 0 {
		w.MaxSubscriptions = defaultMaxSubs
	}
	if w.MessageRate <= 0 {
		w.MessageRate = defaultMsgRate
	}
	if w.MessageBurst <= 0 {
		w.MessageBurst = defaultMsgBurst
	}
	return w
}

// liveFeed is the server's WebSocket and feed machinery.
type liveFeed struct {
	hub         *feedHub // nil without a Feed
	ws          *melody.Melody
	logFallback time.Duration // how often a followed log is re-read without a wake-up

	mu       sync.Mutex
	stopFeed context.CancelFunc
	closing  chan struct{} // closed by Shutdown
	closed   bool
}

// initLive sets up the WebSocket manager and, with a Feed, the hub.
func (s *Server) initLive() {
	wc := s.cfg.WebSocket.withDefaults()
	l := &liveFeed{logFallback: logFallbackTick, closing: make(chan struct{})}
	if s.cfg.Feed != nil {
		l.hub = newFeedHub(s.cfg.Feed, s.log, wc)
		l.hub.now = s.now
		l.hub.lookup = func(ctx context.Context, id string) (*gpuflow.User, error) {
			if s.auth == nil || s.auth.users == nil {
				return nil, gpuflow.Errorf(gpuflow.EUNAVAILABLE, "no user store")
			}
			return s.auth.users.User(ctx, id)
		}
	}
	m := melody.New()
	m.Config.PingPeriod = wc.PingPeriod
	m.Config.PongWait = wc.PongWait
	m.Config.WriteWait = wc.WriteWait
	m.Config.MaxMessageSize = maxClientMessage
	// Two slots beyond SendBuffer: one for the close frame of a client
	// that is too slow, one spare.
	m.Config.MessageBufferSize = wc.SendBuffer + 2
	m.Upgrader.Subprotocols = []string{wsSubprotocol}
	m.Upgrader.CheckOrigin = func(*http.Request) bool { return true } // tokens, not cookies
	m.Upgrader.Error = func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		code, ok := statusCode[status]
		if !ok {
			code = "bad_request"
		}
		w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		w.WriteHeader(status)
		_, _ = w.Write(mustJSON(errorBody{Error: errorPayload{Code: code, Message: reason.Error()}}))
	}
	m.HandleConnect(func(sess *melody.Session) {
		if c := clientOf(sess); c != nil {
			c.attach(sess)
		}
	})
	m.HandleDisconnect(func(sess *melody.Session) {
		if c := clientOf(sess); c != nil {
			c.stop()
		}
	})
	m.HandleMessage(func(sess *melody.Session, data []byte) {
		if c := clientOf(sess); c != nil {
			c.handleMessage(data)
		}
	})
	m.HandleMessageBinary(func(sess *melody.Session, _ []byte) {
		if c := clientOf(sess); c != nil {
			c.reply(errorMessage(&wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
				Message: "binary messages are not accepted; send JSON text"}, ""))
		}
	})
	m.HandleSentMessage(func(sess *melody.Session, _ []byte) {
		if c := clientOf(sess); c != nil {
			c.sent()
		}
	})
	m.HandleError(func(sess *melody.Session, err error) {
		if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
			return
		}
		s.log.Debug("websocket connection error", "remote", sess.Request.RemoteAddr, "err", err)
	})
	l.ws = m
	s.live = l
}

func clientOf(sess *melody.Session) *wsClient {
	v, ok := sess.Get(sessionClientKey)
	if !ok {
		return nil
	}
	c, _ := v.(*wsClient)
	return c
}

// registerFeedRoutes registers the WebSocket, its stats and the events of a
// job; api is the /api/gpu group.
func (s *Server) registerFeedRoutes(e *echo.Echo, api *echo.Group) {
	// Registered outside the group and its middleware: the WebSocket
	// authenticates itself, also from ?token= and the subprotocol, before
	// upgrading.
	e.GET(websocketRoutePath, s.handleWebSocket)
	api.GET("/websocket/stats", s.handleWebSocketStats)
	api.GET("/tasks/:id/events", s.handleTaskEvents)
}

// RunFeed delivers the event feed to WebSocket clients and followers of
// job output until ctx is done or Shutdown. Serve runs it; call it only
// when serving Handler some other way (tests, embedding). Without a Feed
// it returns nil at once.
func (s *Server) RunFeed(ctx context.Context) error {
	if s.live.hub == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.live.mu.Lock()
	if s.live.closed {
		s.live.mu.Unlock()
		return nil
	}
	prev := s.live.stopFeed
	s.live.stopFeed = func() {
		cancel()
		if prev != nil {
			prev()
		}
	}
	s.live.mu.Unlock()
	return s.live.hub.run(ctx)
}

// startFeed runs RunFeed in the background, for Serve.
func (s *Server) startFeed() {
	if s.live.hub == nil || s.live.hub.running.Load() {
		return
	}
	go func() {
		if err := s.RunFeed(context.Background()); err != nil {
			s.log.Error("event feed stopped", "err", err)
		}
	}()
}

// stopLive stops the feed, ends followed logs and closes every WebSocket
// (1001, going away), for Shutdown.
func (s *Server) stopLive() {
	l := s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.closing)
	if l.stopFeed != nil {
		l.stopFeed()
	}
	_ = l.ws.CloseWithMsg(melody.FormatCloseMessage(websocket.CloseGoingAway, shutdownCloseText))
}

// handleWebSocket handles "GET /api/gpu/ws": it authenticates the caller
// (?token=, Authorization: Bearer, or the subprotocols "bearer, <token>")
// and only then upgrades; it sends every event the caller may see, from
// ?since=<seq> on when given, and acts on the client's subscribe and
// unsubscribe messages.
func (s *Server) handleWebSocket(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	// The authentication middleware has checked the token (also from
	// ?token= and the subprotocol on this route) before the upgrade.
	who := callerFrom(c)
	if who.UserID == "" && !who.Superuser {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
		return gpuflow.Errorf(gpuflow.EUNAUTHORIZED,
			"a token is required: ?token=, an Authorization: Bearer header, or the subprotocols \"bearer, <token>\"")
	}
	var err error
	since := int64(-1)
	if v := c.QueryParam("since"); v != "" {
		since, err = strconv.ParseInt(v, 10, 64)
		if err != nil || since < 0 {
			msg := "since must be a non-negative integer (the seq of the last event received)"
			return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
				WithDetails(map[string]any{"fields": map[string]any{"since": msg}})
		}
	}
	if !websocket.IsWebSocketUpgrade(req) {
		c.Response().Header().Set("Upgrade", "websocket")
		return &wireError{Status: http.StatusUpgradeRequired, Code: "upgrade_required",
			Message: "this endpoint is a WebSocket: send Connection: Upgrade and Upgrade: websocket"}
	}
	hub := s.live.hub
	if hub == nil {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "the live event feed is not configured")
	}
	t := time.NewTimer(feedReadyWait)
	defer t.Stop()
	select {
	case <-hub.ready:
	case <-t.C:
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "the live event feed is not ready; try again")
	case <-ctx.Done():
		return ctx.Err()
	}

	client := newWSClient(s, who, since)
	client.expires, _ = c.Get(tokenExpiryKey).(time.Time)
	hub.register(client)
	defer hub.unregister(client)
	err = s.live.ws.HandleRequestWithKeys(c.Response(), req, map[string]any{sessionClientKey: client})
	if errors.Is(err, melody.ErrClosed) {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "the server is shutting down")
	}
	if err != nil {
		// The upgrade failed and Upgrader.Error has answered.
		s.log.DebugContext(ctx, "websocket upgrade failed", "err", err)
		return nil
	}
	c.Response().Status = http.StatusSwitchingProtocols // for the request log
	return nil
}

// handleWebSocketStats handles "GET /api/gpu/websocket/stats": the
// process's WebSocket connections, subscriptions, messages sent and clients
// dropped as too slow.
func (s *Server) handleWebSocketStats(c echo.Context) error {
	if s.live.hub == nil { // the authentication middleware has run

		return c.JSON(http.StatusOK, wsStats{})
	}
	return c.JSON(http.StatusOK, s.live.hub.stats())
}

// closingCh is closed when the server shuts down.
func (s *Server) closingCh() <-chan struct{} { return s.live.closing }
