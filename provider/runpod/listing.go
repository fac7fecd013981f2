package runpod

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Listing the account's pods is the one way REST v2 offers to find pods
// (by name for Provision's idempotency, all of them for DescribeMany and
// List), and with thousands of pods each listing is megabytes and counts
// against the account's read quota. Callers therefore share listings: a
// caller joins the next listing to start (never one already under way,
// which may predate what the caller must see, such as a pod its earlier
// attempt created), and one listing serves everyone who asked while the
// previous one ran. 10,000 concurrent Provisions cost a handful of
// listings, not 10,000.

// listingTimeout bounds one shared listing, its throttled retries
// included.
const listingTimeout = 2 * time.Minute

// listRound is one shared listing: pods and err are set before done is
// closed, and are read-only after.
type listRound struct {
	done chan struct{}
	pods []pod
	err  error
	last error // the latest throttling answer while it retries; guarded by Provider.listMu
}

// sharedPods returns a listing of the account's pods that began after the
// call: callers must not modify it.
func (p *Provider) sharedPods(ctx context.Context) ([]pod, error) {
	p.listMu.Lock()
	if p.listNext == nil {
		p.listNext = &listRound{done: make(chan struct{})}
	}
	r := p.listNext
	if !p.listing {
		p.listing = true
		go p.runListings() // #nosec G118 -- one listing shared by concurrent callers outlives each of them; every caller waits on its own ctx
	}
	p.listMu.Unlock()
	select {
	case <-r.done:
		return r.pods, r.err
	case <-ctx.Done():
		// Given up while RunPod throttles: say so, not just "deadline".
		p.listMu.Lock()
		defer p.listMu.Unlock()
		if r.last != nil {
			return nil, r.last
		}
		return nil, ctx.Err()
	}
}

// runListings runs the waiting rounds one after the other, and ends when
// none waits.
func (p *Provider) runListings() {
	for {
		p.listMu.Lock()
		r := p.listNext
		if r == nil {
			p.listing = false
			p.listMu.Unlock()
			return
		}
		p.listNext = nil
		p.listMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), listingTimeout)
		r.pods, r.err = p.listPods(ctx, func(err error) {
			p.listMu.Lock()
			r.last = err
			p.listMu.Unlock()
		})
		cancel()
		close(r.done)
	}
}

// listPods lists the account's pods (GET /v2/pods), repeating a listing
// RunPod throttled (429) after its Retry-After, with backoff, while ctx
// allows; throttled is told of each throttling answer.
func (p *Provider) listPods(ctx context.Context, throttled func(error)) ([]pod, error) {
	for attempt := 0; ; attempt++ {
		pods, err := p.c.listPods(ctx)
		var ae *apiError
		if err == nil || attempt >= throttleRetries || !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests {
			return pods, err
		}
		throttled(err)
		wait := throttleWait(attempt, max(ae.RetryAfter, minThrottleWait))
		p.log.DebugContext(ctx, "pod listing throttled; waiting", "attempt", attempt+1, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}
