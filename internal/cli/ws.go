package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Reconnection of the feed.
const (
	wsHandshakeTimeout = 30 * time.Second
	wsReadTimeout      = 2*time.Minute + 10*time.Second // the server pings every 30 s
	wsGiveUp           = 2 * time.Minute                // how long to keep reconnecting (a server restart)
	wsBackoffMin       = 200 * time.Millisecond
	wsBackoffMax       = 5 * time.Second
)

// feed reads the WebSocket feed (/api/gpu/ws), reconnecting after a lost
// connection with ?since=<last seq>, so that no event is missed or seen
// twice.
type feed struct {
	c *Client
	// since is the seq of the last event received; -1 for none (then the
	// first connection starts live, with no replay).
	since int64
	// ids, when not empty, are subscribed to on every connection (the
	// server then sends only their events).
	ids []string
	// notice receives a line about each reconnection (stderr).
	notice io.Writer
}

// errStop, returned by an onEvent, ends run with nil.
var errStop = errors.New("stop")

// run connects and calls onConnect after each successful connection
// (first tells the first), then onEvent with every message in order
// (events with a seq already seen are dropped), until onEvent returns
// errStop (run returns nil), another error (returned), or ctx is done.
func (f *feed) run(ctx context.Context, onConnect func(first bool) error, onEvent func(raw []byte, ev *Event) error) error {
	var r retrier
	first := true
	for {
		conn, err := f.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if refused(err) {
				return err // retrying will not help
			}
			if !r.fail(ctx) {
				return fmt.Errorf("live feed: %w", err)
			}
			continue
		}
		err = f.serve(ctx, conn, func() error {
			err := onConnect(first)
			if err == nil || errors.Is(err, errStop) {
				r.reset()
			} else if !refused(err) {
				err = &lostError{err}
			}
			return err
		}, onEvent)
		first = false
		if errors.Is(err, errStop) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var lost *lostError
		if !errors.As(err, &lost) {
			return err
		}
		fmt.Fprintf(f.notice, "live feed lost (%v); reconnecting\n", lost.err)
		if !r.fail(ctx) {
			return fmt.Errorf("live feed: %w", lost.err)
		}
	}
}

// refused reports whether err is an answer that a retry would get again
// (4xx: not allowed, not found, bad input; not 429, which passes).
func refused(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status/100 == 4 && ae.Status != http.StatusTooManyRequests
}

// retrier paces reconnections: growing pauses, giving up after wsGiveUp
// of failures in a row.
type retrier struct {
	failures int
	first    time.Time
}

// fail records a failure and sleeps; false when it is time to give up (or
// ctx is done).
func (r *retrier) fail(ctx context.Context) bool {
	if r.failures == 0 {
		r.first = time.Now()
	}
	r.failures++
	if time.Since(r.first) > wsGiveUp {
		return false
	}
	return sleep(ctx, backoff(r.failures))
}

func (r *retrier) reset() { r.failures = 0 }

// lostError is a connection lost after it was made: run reconnects.
type lostError struct{ err error }

func (e *lostError) Error() string { return e.err.Error() }

func backoff(n int) time.Duration {
	d := wsBackoffMin << min(n-1, 10)
	return min(d, wsBackoffMax)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// wsURL is the feed's URL on the server, with since when there is one.
func (f *feed) wsURL() (string, error) {
	u, err := url.Parse(f.c.Server + "/api/gpu/ws")
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	if f.since >= 0 {
		u.RawQuery = "since=" + strconv.FormatInt(f.since, 10)
	}
	return u.String(), nil
}

// dial opens the WebSocket, authenticating with the subprotocols
// "bearer, <token>" (not ?token=, which would put the token in URLs).
func (f *feed) dial(ctx context.Context) (*websocket.Conn, error) {
	u, err := f.wsURL()
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: wsHandshakeTimeout, Subprotocols: []string{"bearer", f.c.Token},
		Proxy: http.ProxyFromEnvironment}
	h := http.Header{"User-Agent": {f.c.UserAgent}}
	conn, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				return nil, decodeError(resp.StatusCode, data)
			}
		}
		// Never the URL or the token in the message.
		return nil, fmt.Errorf("connect to the live feed: %s", strings.ReplaceAll(err.Error(), f.c.Token, "<token>"))
	}
	return conn, nil
}

// serve reads one connection until it ends.
func (f *feed) serve(ctx context.Context, conn *websocket.Conn, onConnect func() error, onEvent func([]byte, *Event) error) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			conn.Close()
		case <-done:
		}
	}()
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(wsReadTimeout))
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(wsReadTimeout))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for _, id := range f.ids {
		if err := conn.WriteJSON(map[string]string{"action": "subscribe", "task_id": id}); err != nil {
			return &lostError{err}
		}
	}
	if err := onConnect(); err != nil {
		return err
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.ClosePolicyViolation {
				return fmt.Errorf("the live feed was closed: %s", ce.Text)
			}
			return &lostError{err}
		}
		_ = conn.SetReadDeadline(time.Now().Add(wsReadTimeout))
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("live feed: a message is not JSON: %w", err)
		}
		if ev.Seq > 0 {
			if ev.Seq <= f.since {
				continue // seen before a reconnection
			}
			f.since = ev.Seq
		}
		if err := onEvent(data, &ev); err != nil {
			if errors.Is(err, errStop) {
				_ = conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			}
			return err
		}
	}
}
