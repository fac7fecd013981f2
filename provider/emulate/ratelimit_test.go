package emulate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRateLimiterBucket(t *testing.T) {
	c := &testClock{t: time.Unix(1_800_000_000, 0)}
	l := NewRateLimiter(map[string]Rate{"Describe": {PerSecond: 10}}, c.now)
	for i := range 10 {
		if ok, _ := l.Allow("Describe", "acct"); !ok {
			t.Fatalf("request %d of a full bucket refused", i+1)
		}
	}
	ok, wait := l.Allow("Describe", "acct")
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("11th request in the same instant: ok=%v wait=%v, want refused with a wait of at most 100ms", ok, wait)
	}
	if ok, _ := l.Allow("Describe", "other"); !ok {
		t.Error("another key's bucket was drained")
	}
	if ok, _ := l.Allow("Create", "acct"); !ok {
		t.Error("a class without a rate was limited")
	}
	c.add(250 * time.Millisecond) // 2.5 tokens
	got := 0
	for range 5 {
		if ok, _ := l.Allow("Describe", "acct"); ok {
			got++
		}
	}
	if got != 2 {
		t.Errorf("after 250ms at 10/s %d requests passed, want 2", got)
	}
	c.add(time.Hour)
	got = 0
	for range 50 {
		if ok, _ := l.Allow("Describe", "acct"); ok {
			got++
		}
	}
	if got != 10 {
		t.Errorf("an idle bucket let %d through at once, want its burst of 10", got)
	}
	if n := l.Counts("Describe"); n.Allowed != 10+1+2+10 || n.Throttled != 1+3+40 {
		t.Errorf("counts %+v", n)
	}
	l.SetRate("Describe", Rate{})
	for range 100 {
		if ok, _ := l.Allow("Describe", "acct"); !ok {
			t.Fatal("a lifted limit still refuses")
		}
	}
}

func TestRateLimiterHandler(t *testing.T) {
	l := NewRateLimiter(map[string]Rate{"A": {PerSecond: 1}}, nil)
	h := l.Handler()
	put := func(body string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/", strings.NewReader(body)))
		return w.Code
	}
	for _, bad := range []string{`{"rates":{"A":{"per_second":-1}}}`, `{"rate":{}}`, `not json`} {
		if code := put(bad); code != http.StatusBadRequest {
			t.Errorf("PUT %s: %d, want 400", bad, code)
		}
	}
	if got := l.Rates()["A"]; got.PerSecond != 1 {
		t.Fatalf("a refused PUT changed the rate: %+v", got)
	}
	if code := put(`{"rates":{"A":{"per_second":500,"burst":50}}}`); code != http.StatusOK {
		t.Fatalf("PUT: %d", code)
	}
	if got := l.Rates()["A"]; got.PerSecond != 500 || got.Burst != 50 {
		t.Errorf("rate %+v after PUT", got)
	}
}
