package emulate

import (
	"encoding/json"
	"maps"
	"math"
	"net/http"
	"sync"
	"time"
)

// Rate is a request rate a cloud enforces: PerSecond requests a second on
// average, with bursts of up to Burst (0 means one second's worth,
// at least 1). A PerSecond of 0 or less means unlimited.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst,omitempty"`
}

func (r Rate) burst() float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return max(math.Ceil(r.PerSecond), 1)
}

// Limited reports whether r limits anything.
func (r Rate) Limited() bool { return r.PerSecond > 0 }

// RateLimiter enforces per-account request rates the way the clouds do:
// one token bucket per class of request (an API action) and key (the
// account, region or access point the cloud counts by). A request takes a
// token when one is left; a refused request takes none. Classes without a
// rate are not limited. It counts what it let through and what it refused,
// per class, so tests can check the load a client put on the cloud.
//
// The limiter uses the wall clock (not an emulator's machine clock): rates
// are about real requests, and a test's frozen machine clock must not
// freeze the buckets.
type RateLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	rates   map[string]Rate
	buckets map[bucketKey]*bucket
	counts  map[string]*RateCounts
}

// RateCounts is what a limiter did with one class of request.
type RateCounts struct {
	Allowed   int64 `json:"allowed"`
	Throttled int64 `json:"throttled"`
}

type bucketKey struct{ class, key string }

type bucket struct {
	tokens float64
	at     time.Time
}

// NewRateLimiter returns a limiter enforcing rates (by class); now is the
// clock, nil meaning time.Now.
func NewRateLimiter(rates map[string]Rate, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	l := &RateLimiter{now: now, rates: map[string]Rate{}, buckets: map[bucketKey]*bucket{}, counts: map[string]*RateCounts{}}
	for class, r := range rates {
		l.rates[class] = r
	}
	return l
}

// Allow takes a token for one request of class from key's bucket. When
// none is left it returns false and how long until one is.
func (l *RateLimiter) Allow(class, key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts[class]
	if c == nil {
		c = &RateCounts{}
		l.counts[class] = c
	}
	r := l.rates[class]
	if !r.Limited() {
		c.Allowed++
		return true, 0
	}
	now := l.now()
	k := bucketKey{class, key}
	b := l.buckets[k]
	if b == nil {
		b = &bucket{tokens: r.burst(), at: now}
		l.buckets[k] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(r.burst(), b.tokens+d.Seconds()*r.PerSecond)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		c.Allowed++
		return true, 0
	}
	c.Throttled++
	wait := time.Duration((1 - b.tokens) / r.PerSecond * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// SetRate changes (or, with a zero Rate, lifts) the rate of class. The
// buckets of the class start full at the new rate.
func (l *RateLimiter) SetRate(class string, r Rate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Limited() {
		l.rates[class] = r
	} else {
		delete(l.rates, class)
	}
	for k := range l.buckets {
		if k.class == class {
			delete(l.buckets, k)
		}
	}
}

// SetAll sets every class the limiter knows of (and those in rates) to
// rates[class], or to r where rates has none: tests raise every limit at
// once with SetAll(nil, Rate{}).
func (l *RateLimiter) SetAll(rates map[string]Rate, r Rate) {
	l.mu.Lock()
	classes := maps.Clone(l.rates)
	l.mu.Unlock()
	for class := range rates {
		classes[class] = Rate{}
	}
	for class := range classes {
		if v, ok := rates[class]; ok {
			l.SetRate(class, v)
		} else {
			l.SetRate(class, r)
		}
	}
}

// Rates returns the enforced rates by class.
func (l *RateLimiter) Rates() map[string]Rate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.rates)
}

// Counts returns what the limiter let through and refused of class.
func (l *RateLimiter) Counts(class string) RateCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.counts[class]; c != nil {
		return *c
	}
	return RateCounts{}
}

// AllCounts returns the counts of every class seen.
func (l *RateLimiter) AllCounts() map[string]RateCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]RateCounts, len(l.counts))
	for class, c := range l.counts {
		out[class] = *c
	}
	return out
}

// Handler serves the limiter for the dev command: GET answers
// {"rates":{class:Rate},"counts":{class:RateCounts}}; PUT (or POST) with
// {"rates":{class:Rate}} sets those classes (a zero rate lifts a limit).
func (l *RateLimiter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut, http.MethodPost:
			var in struct {
				Rates map[string]Rate `json:"rates"`
			}
			d := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
			d.DisallowUnknownFields()
			if err := d.Decode(&in); err != nil {
				http.Error(w, "want {\"rates\":{\"<class>\":{\"per_second\":N,\"burst\":N}}}: "+err.Error(), http.StatusBadRequest)
				return
			}
			for _, rate := range in.Rates {
				if rate.PerSecond < 0 || rate.Burst < 0 || math.IsNaN(rate.PerSecond) || math.IsInf(rate.PerSecond, 0) {
					http.Error(w, "rates must be finite and not negative", http.StatusBadRequest)
					return
				}
			}
			for class, rate := range in.Rates {
				l.SetRate(class, rate)
			}
		default:
			w.Header().Set("Allow", "GET, PUT, POST")
			http.Error(w, "use GET or PUT", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rates": l.Rates(), "counts": l.AllCounts()})
	})
}
