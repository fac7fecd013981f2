package waitfor

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var tries atomic.Int32
	err := Until(context.Background(), time.Millisecond, func(context.Context) error {
		if tries.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || tries.Load() != 3 {
		t.Fatalf("err %v after %d tries, want nil after 3", err, tries.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = Until(ctx, time.Millisecond, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("err %v, want the deadline with the last error", err)
	}
}

func TestHTTP200(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := HTTP200(context.Background(), srv.URL, time.Millisecond, time.Second); err != nil || calls.Load() != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	calls.Store(-1 << 20) // answers 503 from now on
	if err := HTTP200(ctx, srv.URL, 10*time.Millisecond, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
	if err := HTTP200(context.Background(), "://bad", time.Millisecond, time.Second); err == nil {
		t.Fatal("a bad URL waited")
	}
}
