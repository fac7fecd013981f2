package api

import (
	"sync"
	"time"
)

// window is a sliding-window rate limiter: at most limit events per key in
// any period. It remembers the times of a key's last events (never more
// than limit of them) and forgets keys idle for a period. A nil *window
// allows everything.
//
// It lives in this process's memory: see RateLimit about several replicas.
type window struct {
	limit  int
	period time.Duration

	mu      sync.Mutex
	events  map[string][]time.Time // oldest first
	sweptAt time.Time
}

// newWindow returns a window for l, or def when l is zero; nil when the
// limit is disabled (negative).
func newWindow(l, def RateLimit) *window {
	if l == (RateLimit{}) {
		l = def
	}
	if l.Limit < 0 {
		return nil
	}
	if l.Limit == 0 {
		l.Limit = def.Limit
	}
	if l.Period <= 0 {
		l.Period = def.Period
	}
	return &window{limit: l.Limit, period: l.Period, events: map[string][]time.Time{}}
}

// take records an event of key at now and returns 0 if the key had fewer
// than limit events in the period before now; otherwise it records nothing
// and returns how long until the oldest of them leaves the window.
func (w *window) take(key string, now time.Time) time.Duration {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweep(now)
	evs := w.recent(key, now)
	if len(evs) >= w.limit {
		return evs[0].Add(w.period).Sub(now)
	}
	w.events[key] = append(evs, now)
	return 0
}

// reset forgets key's events.
func (w *window) reset(key string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.events, key)
}

// recent drops key's events that left the window and returns the rest.
func (w *window) recent(key string, now time.Time) []time.Time {
	evs := w.events[key]
	i := 0
	for i < len(evs) && !evs[i].After(now.Add(-w.period)) {
		i++
	}
	if i == len(evs) {
		delete(w.events, key)
		return nil
	}
	return evs[i:]
}

// sweep forgets, once a period, the keys whose events all left the window,
// so that memory follows the traffic of the last period only.
func (w *window) sweep(now time.Time) {
	if now.Sub(w.sweptAt) < w.period {
		return
	}
	w.sweptAt = now
	for key, evs := range w.events {
		if !evs[len(evs)-1].After(now.Add(-w.period)) {
			delete(w.events, key)
		}
	}
}

// size is how many keys the window remembers (for tests).
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}
