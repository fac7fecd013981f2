package runpod_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

// listCalls is how many pod listings the emulator answered.
func (e *env) listCalls() int {
	n := 0
	for _, r := range e.requests(http.MethodGet, "/v2/pods") {
		if r.Status == http.StatusOK {
			n++
		}
	}
	return n
}

func TestDescribeMany(t *testing.T) {
	e := setup(t)
	ctx := context.Background()

	got, err := e.p.DescribeMany(ctx, nil)
	if err != nil || len(got) != 0 || len(e.requests(http.MethodGet, "/v2/pods")) != 0 {
		t.Fatalf("DescribeMany(none) = %v, %v; want an empty answer without a call", got, err)
	}

	// 150 pods at once: 140 on demand (REST), 10 interruptible
	// (GraphQL). Their name lookups share listings.
	ids := make([]string, 150)
	reqs := make([]gpuflow.ProvisionRequest, 150)
	for i := range reqs {
		reqs[i] = e.request(fmt.Sprintf("batch-%d", i), i >= 140)
	}
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			m, err := e.p.Provision(ctx, reqs[i])
			if err != nil {
				t.Errorf("Provision %s: %v", reqs[i].JobID, err)
				return
			}
			ids[i] = m.ID
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	spot := ids[140:]
	if n := e.listCalls(); n >= 150 {
		t.Errorf("150 provisions took %d pod listings; want them shared", n)
	}
	before := e.listCalls()
	got, err = e.p.DescribeMany(ctx, ids[:1])
	if err != nil {
		t.Fatal(err)
	}
	if n := e.listCalls() - before; n != 1 || len(got) != 1 || got[ids[0]].ID != ids[0] {
		t.Fatalf("DescribeMany(one) = %+v after %d listings; want it after one", got, n)
	}

	eventually(t, "every pod running", func() bool {
		got, err := e.p.DescribeMany(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if got[id].State != gpuflow.MachineRunning {
				return false
			}
		}
		return true
	})
	gone := ids[:10]
	for _, id := range gone {
		e.terminate(id)
	}
	if err := e.em.Preempt(spot[0]); err != nil {
		t.Fatal(err)
	}
	query := append([]string{"nosuchpod00000", ""}, ids...)
	before = e.listCalls()
	got, err = e.p.DescribeMany(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.listCalls() - before; n != 1 {
		t.Errorf("152 ids took %d listings, want 1", n)
	}
	if len(got) != len(query) {
		t.Errorf("answer has %d machines for %d ids", len(got), len(query))
	}
	for _, id := range append([]string{"nosuchpod00000", ""}, gone...) {
		if m := got[id]; m.State != gpuflow.MachineGone || m.ID != id {
			t.Errorf("%q = %+v, want gone", id, m)
		}
	}
	if m := got[spot[0]]; !m.Preempted() {
		t.Errorf("preempted spot pod = %+v, want failed (preempted)", m)
	}
	for _, id := range append(ids[10:140:140], spot[1:]...) {
		m := got[id]
		if m.State != gpuflow.MachineRunning || m.ID != id || m.Tags[gpuflow.TagManaged] != "true" {
			t.Errorf("%s = %+v, want running and tagged gpuflow's", id, m)
		}
	}
	for _, id := range []string{ids[10], spot[0], spot[9], gone[0]} {
		d := e.describe(id)
		if m := got[id]; d.State != m.State || d.Reason != m.Reason || d.GPUType != m.GPUType || d.PricePerHour != m.PricePerHour {
			t.Errorf("DescribeMany[%s] = %+v, Describe = %+v", id, m, *d)
		}
	}
	for _, id := range ids[10:] {
		e.terminate(id)
	}
}

// TestDescribeManyThrottled lists on an emulator that takes a pod read
// every 2 s, its bucket emptied just before: the throttled listing is
// repeated after RunPod's Retry-After and succeeds; an API that throttles every call
// makes the sweep give up when its context ends.
func TestDescribeManyThrottled(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	m := e.provision(e.request("throttled", false))
	e.em.RateLimiter().SetRate(emulator.ClassRead, emulate.Rate{PerSecond: 0.5, Burst: 1})
	e.em.RateLimiter().Allow(emulator.ClassRead, testKey) // the bucket is empty
	before := e.em.RateLimiter().Counts(emulator.ClassRead)
	got, err := e.p.DescribeMany(ctx, []string{m.ID}) // over the limit: 429, Retry-After: 2
	if err != nil || got[m.ID].ID != m.ID {
		t.Fatalf("DescribeMany on a throttled API = %+v, %v", got, err)
	}
	c := e.em.RateLimiter().Counts(emulator.ClassRead)
	c.Allowed -= before.Allowed
	c.Throttled -= before.Throttled
	if c.Allowed != 1 || c.Throttled < 1 {
		t.Errorf("emulator counts %+v: want 1 accepted and at least one refused", c)
	}
	var sawRetryAfter bool
	for _, r := range e.requests(http.MethodGet, "/v2/pods") {
		if r.Status == http.StatusTooManyRequests {
			sawRetryAfter = true
		}
	}
	if !sawRetryAfter {
		t.Error("no 429 recorded")
	}

	e.em.Faults().Set(emulate.Faults{Throttle: true})
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = e.p.DescribeMany(cctx, []string{m.ID})
	if pe := providerError(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "429" || pe.RetryAfter < time.Second {
		t.Errorf("DescribeMany always throttled = %v (retry after %v); want transient 429 with Retry-After", err, pe.RetryAfter)
	}
	e.em.Faults().Set(emulate.Faults{})
	e.em.RateLimiter().SetRate(emulator.ClassRead, emulate.Rate{})
	e.terminate(m.ID)
}

// TestEmulatorEnforcesRate checks the default limit (10 pod reads a
// second: RunPod publishes no figure) and RunPod's answer past a limit:
// 429 problem+json with Retry-After in whole seconds, on REST and GraphQL.
func TestEmulatorEnforcesRate(t *testing.T) {
	em := emulator.New(emulator.Options{APIKey: testKey})
	defer em.Close()
	if r := em.RateLimiter().Rates()[emulator.ClassRead]; r.PerSecond != 10 {
		t.Fatalf("default pod read rate %+v, want 10/s", r)
	}
	e := setup(t)
	e.em.RateLimiter().SetRate(emulator.ClassRead, emulate.Rate{PerSecond: 0.001, Burst: 5})
	var throttled int
	for range 20 {
		if code, _ := e.rawCall(http.MethodGet, "/v2/pods", ""); code == http.StatusTooManyRequests {
			throttled++
		}
	}
	if c := e.em.RateLimiter().Counts(emulator.ClassRead); throttled != 15 || c.Throttled != 15 || c.Allowed != 5 {
		t.Errorf("%d of 20 listings throttled; emulator counts %+v; want 15 refused, 5 accepted", throttled, c)
	}
	// The answer's headers, as a client sees them.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/pods/abc", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 ||
		resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("RateLimit") == "" {
		t.Errorf("throttled GET /v2/pods/{id}: %d, headers %v", resp.StatusCode, resp.Header)
	}
	// Creates are not limited.
	e.em.RateLimiter().SetRate(emulator.ClassRead, emulate.Rate{})
	m := e.provision(e.request("unlimited", false))
	e.terminate(m.ID)
}
