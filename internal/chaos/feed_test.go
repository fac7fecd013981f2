package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// follower reads the user's WebSocket feed for the whole run, as a
// dashboard does: when its connection drops (an API killed, a restart) it
// reconnects to a replica with since=<the last seq it holds>, so it should
// end with every event once and in order.
type follower struct {
	c *client

	mu        sync.Mutex
	seqs      []int64            // every event received, in arrival order
	byJob     map[string][]int64 // the same, per job
	reconnect int                // connections after the first
	dups      int                // events received twice
	backwards int                // events received after a later one
}

func newFollower(c *client) *follower { return &follower{c: c, byJob: map[string][]int64{}} }

func (f *follower) last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seqs) == 0 {
		return 0
	}
	return f.seqs[len(f.seqs)-1]
}

// run follows the feed until ctx ends.
func (f *follower) run(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		if !first {
			f.mu.Lock()
			f.reconnect++
			f.mu.Unlock()
		}
		first = false
		err := f.session(ctx)
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == 4001 { // the token expired
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			_ = f.c.login(lctx)
			cancel()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// session is one connection: dial with since, read until it breaks.
func (f *follower) session(ctx context.Context) error {
	base := f.c.pick()
	u := "ws" + strings.TrimPrefix(base, "http") + "/api/gpu/ws?token=" + f.c.token
	if s := f.last(); s > 0 {
		u += "&since=" + strconv.FormatInt(s, 10)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, resp, err := websocket.DefaultDialer.DialContext(dctx, u, http.Header{})
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		var ev struct {
			Seq    int64  `json:"seq"`
			TaskID string `json:"task_id"`
		}
		if json.Unmarshal(msg, &ev) != nil || ev.Seq == 0 || ev.TaskID == "" {
			continue // not a job event (provider health, acks)
		}
		f.add(ev.TaskID, ev.Seq)
	}
}

func (f *follower) add(job string, seq int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.seqs); n > 0 && seq <= f.seqs[n-1] {
		for _, s := range f.byJob[job] {
			if s == seq {
				f.dups++
				return
			}
		}
		f.backwards++
	}
	f.seqs = append(f.seqs, seq)
	f.byJob[job] = append(f.byJob[job], seq)
}

// received is what the follower holds for one job.
func (f *follower) received(job string) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.byJob[job]...)
}
