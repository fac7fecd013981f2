package runpod

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.BatchDescriber = (*Provider)(nil)

// Throttling: a listing RunPod refused with 429 is repeated up to
// throttleRetries times, after its Retry-After (at least a second) growing
// by half each time (at most maxThrottleWait), with jitter.
const (
	throttleRetries = 6
	minThrottleWait = time.Second
	maxThrottleWait = 30 * time.Second
)

// DescribeMany returns the state of every pod in ids, keyed by id, from
// one listing of the account's pods (GET /v2/pods, which REST v2 answers
// whole, without paging, and which includes the interruptible pods
// created through GraphQL: a spot pod is told by its env, as Describe
// tells it). A pod the listing does not hold is gone. A throttled listing
// is repeated with backoff; any other failure fails the call: no state is
// known then. No ids: no call. The listing is shared with concurrent
// callers (listing.go).
func (p *Provider) DescribeMany(ctx context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	out := make(map[string]gpuflow.Machine, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if err := p.checkKey(); err != nil {
		return nil, err
	}
	pods, err := p.sharedPods(ctx)
	if err != nil {
		return nil, classify("list pods", err, false)
	}
	byID := make(map[string]*pod, len(pods))
	for i := range pods {
		byID[pods[i].ID] = &pods[i]
	}
	for _, id := range ids {
		if pd := byID[id]; pd != nil && id != "" {
			out[id] = *p.machine(pd)
		} else {
			out[id] = *p.gone(id)
		}
	}
	return out, nil
}

// throttleWait is the wait before the attempt+2nd try: base growing by
// half each attempt, at most maxThrottleWait, plus up to half again of
// jitter.
func throttleWait(attempt int, base time.Duration) time.Duration {
	d := float64(base)
	for range attempt {
		d *= 1.5
	}
	d = min(d, float64(maxThrottleWait))
	return time.Duration(d * (1 + rand.Float64()/2)) // #nosec G404 -- jitter of a retry wait, not a secret
}
