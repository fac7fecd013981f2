package api

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// RateLimiter counts requests per key in token buckets that hold limit
// requests and refill limit per period. *postgres.DB implements it in the
// database, so that every API replica shares each user's count.
type RateLimiter interface {
	// TakeRate takes one request from key's bucket: 0 when it may go
	// ahead, otherwise how long until one may.
	TakeRate(ctx context.Context, key string, limit int, period time.Duration) (time.Duration, error)
}

// Default per-user limits on submit and cancel.
var (
	defaultSubmitRate = RateLimit{Limit: 120, Period: time.Minute}
	defaultCancelRate = RateLimit{Limit: 120, Period: time.Minute}
)

// Actions with a per-user rate limit (the first part of their keys).
const (
	rateSubmit = "submit"
	rateCancel = "cancel"
)

// userRates are the per-user limits the server enforces.
type userRates struct {
	limiter RateLimiter
	submit  RateLimit // Limit < 0: none
	cancel  RateLimit
}

func newUserRates(cfg Config) userRates {
	r := userRates{limiter: cfg.Limiter, submit: cfg.SubmitRate, cancel: cfg.CancelRate}
	if r.submit == (RateLimit{}) {
		r.submit = defaultSubmitRate
	}
	if r.cancel == (RateLimit{}) {
		r.cancel = defaultCancelRate
	}
	if r.limiter == nil {
		r.limiter = newMemLimiter(cfg.Now)
	}
	return r
}

// takeUserRate counts one request of action by the caller against limit l
// and answers 429 with Retry-After past it. The count is the limiter's
// (shared by the replicas with the database's); a limiter that fails
// fails the request (503), as the request itself would without the store.
func (s *Server) takeUserRate(c echo.Context, action string, l RateLimit) error {
	who := callerFrom(c)
	if l.Limit < 0 || who.UserID == "" {
		return nil
	}
	ctx := c.Request().Context()
	wait, err := s.rates.limiter.TakeRate(ctx, action+":"+who.UserID, l.Limit, l.Period)
	if err != nil {
		return err
	}
	if wait <= 0 {
		return nil
	}
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	s.log.InfoContext(ctx, "request rate limited", "action", action, "user_id", who.UserID, "retry_after_s", secs)
	return gpuflow.Errorf(gpuflow.ERATELIMIT, "too many %s requests from this account (at most %d per %s); try again in %s",
		action, l.Limit, l.Period, time.Duration(secs)*time.Second).
		WithDetails(map[string]any{"retry_after_seconds": secs, "limit": l.Limit, "period_seconds": l.Period.Seconds()})
}

// memLimiter is a RateLimiter in this process's memory, for a server
// without a shared one (tests, embedding): each replica counts alone.
type memLimiter struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*memBucket
}

type memBucket struct {
	tokens float64
	at     time.Time
}

func newMemLimiter(now func() time.Time) *memLimiter {
	if now == nil {
		now = time.Now
	}
	return &memLimiter{now: now, buckets: map[string]*memBucket{}}
}

func (m *memLimiter) TakeRate(_ context.Context, key string, limit int, period time.Duration) (time.Duration, error) {
	if limit <= 0 || period <= 0 {
		return 0, gpuflow.Errorf(gpuflow.EINVALID, "a rate limit needs a positive limit and period")
	}
	rate := float64(limit) / period.Seconds()
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[key]
	if b == nil {
		b = &memBucket{tokens: float64(limit), at: now}
		m.buckets[key] = b
	}
	b.tokens = min(float64(limit), b.tokens+max(now.Sub(b.at).Seconds(), 0)*rate)
	if now.After(b.at) {
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, nil
	}
	return max(time.Duration(math.Ceil((1-b.tokens)/rate*float64(time.Second))), time.Millisecond), nil
}
