package tencent_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/desccache"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// describeCalls is how many DescribeInstances the emulator answered (not
// counting those it refused as throttled).
func (e *env) describeCalls() int64 {
	return e.em.RateLimiter().Counts("DescribeInstances").Allowed
}

// provisionN starts n machines for jobs prefix-0 … prefix-(n-1), each
// job running an hour.
func (e *env) provisionN(t *testing.T, prefix string, n int) []string {
	t.Helper()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	ids := make([]string, n)
	for i := range n {
		job := fmt.Sprintf("%s-%d", prefix, i)
		m, err := e.p.Provision(context.Background(), e.request(job, job+"-a1", o, map[string]string{emulate.EnvRunSeconds: "3600"}))
		if err != nil {
			t.Fatalf("Provision %s: %v", job, err)
		}
		ids[i] = m.ID
	}
	return ids
}

// terminateAll terminates ids (on a fake clock past PENDING) and lets the
// emulator drop them.
func (e *env) terminateAll(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		if err := e.p.Terminate(context.Background(), id); err != nil {
			t.Fatalf("Terminate %s: %v", id, err)
		}
	}
	e.clock.Add(time.Hour)
}

func TestDescribeMany(t *testing.T) {
	clock := newClock()
	timing := emulate.Timing{Pending: 10 * time.Second, Starting: 20 * time.Second, Run: time.Hour}
	e := newEnv(t, envOptions{clock: clock, timing: timing})
	ctx := context.Background()

	got, err := e.p.DescribeMany(ctx, nil)
	if err != nil || len(got) != 0 || e.describeCalls() != 0 {
		t.Fatalf("DescribeMany(none) = %v, %v after %d calls; want an empty answer without a call", got, err, e.describeCalls())
	}

	ids := e.provisionN(t, "batch", 150)
	got, err = e.p.DescribeMany(ctx, ids[:1])
	if err != nil {
		t.Fatal(err)
	}
	if n := e.describeCalls(); n != 1 || len(got) != 1 || got[ids[0]].State != gpuflow.MachinePending || got[ids[0]].ID != ids[0] {
		t.Fatalf("DescribeMany(one) = %+v after %d calls; want it pending after one call", got, n)
	}

	clock.Add(timing.Pending + timing.Starting + time.Second) // all RUNNING
	gone := ids[:10]
	e.terminateAll(t, gone) // TERMINATING, then dropped an hour later
	unknown := "ins-zz9zz9zz"
	other := "ap-nowhere:ins-aaaaaaaa"
	query := append([]string{unknown, "not-an-instance", other}, ids...)
	before := e.describeCalls()
	got, err = e.p.DescribeMany(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.describeCalls() - before; n != 2 {
		t.Errorf("151 instance ids took %d DescribeInstances calls, want 2 (100 ids a call)", n)
	}
	if len(got) != len(query) {
		t.Errorf("answer has %d machines for %d ids", len(got), len(query))
	}
	for _, id := range gone {
		if m := got[id]; m.State != gpuflow.MachineGone || m.Reason != "terminated" {
			t.Errorf("terminated %s = %+v, want gone (terminated)", id, m)
		}
	}
	for _, id := range ids[10:] {
		m := got[id]
		if m.State != gpuflow.MachineRunning || m.ID != id || m.GPUType != "T4" || m.Tags[gpuflow.TagManaged] != "true" {
			t.Errorf("%s = %+v, want running T4 tagged gpuflow's", id, m)
		}
	}
	if m := got[unknown]; m.State != gpuflow.MachineGone {
		t.Errorf("unknown instance = %+v, want gone", m)
	}
	if m := got["not-an-instance"]; m.State != gpuflow.MachineGone {
		t.Errorf("malformed id = %+v, want gone", m)
	}
	if m := got[other]; m.State != gpuflow.MachineFailed || m.Reason == "" {
		t.Errorf("id in an unconfigured region = %+v, want failed with the reason", m)
	}
	// Each one the same as Describe says.
	for _, id := range []string{ids[0], ids[149], gone[0], unknown} {
		d, err := e.p.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m := got[id]; d.State != m.State || d.Reason != m.Reason || d.GPUCount != m.GPUCount || d.PricePerHour != m.PricePerHour {
			t.Errorf("DescribeMany[%s] = %+v, Describe = %+v", id, m, *d)
		}
	}
	e.terminateAll(t, ids[10:])
}

// TestDescribeManyThrottled sweeps 300 machines on an emulator that takes
// two DescribeInstances a second in bursts of one, its bucket emptied
// just before: the throttled calls are repeated after a backoff and the
// sweep completes with exactly the 3 calls it needs accepted; List pages
// through the same limit.
func TestDescribeManyThrottled(t *testing.T) {
	clock := newClock()
	timing := emulate.Timing{Pending: time.Second, Starting: time.Second, Run: time.Hour}
	e := newEnv(t, envOptions{clock: clock, timing: timing, emu: func(o *emulator.Options) {
		o.RateLimits = map[string]emulate.Rate{"DescribeInstances": {PerSecond: 2, Burst: 1}}
	}})
	limiter := e.em.RateLimiter()
	drain := func() { limiter.Allow("DescribeInstances", testSecretID) }
	ids := e.provisionN(t, "sweep", 300)
	clock.Add(time.Minute)
	drain()
	before := limiter.Counts("DescribeInstances")
	got, err := e.p.DescribeMany(context.Background(), ids)
	if err != nil {
		t.Fatalf("DescribeMany on a throttled API: %v", err)
	}
	for _, id := range ids {
		if got[id].State != gpuflow.MachineRunning {
			t.Fatalf("%s = %+v", id, got[id])
		}
	}
	c := limiter.Counts("DescribeInstances")
	if c.Allowed-before.Allowed != 3 || c.Throttled-before.Throttled < 1 {
		t.Errorf("emulator counts %+v (before %+v): want 3 accepted and at least one refused", c, before)
	}

	drain()
	before = limiter.Counts("DescribeInstances")
	list, err := e.p.List(context.Background())
	if err != nil || len(list) != 300 {
		t.Fatalf("List on a throttled API: %d machines, %v", len(list), err)
	}
	if c := limiter.Counts("DescribeInstances"); c.Allowed-before.Allowed != 3 || c.Throttled-before.Throttled < 1 {
		t.Errorf("List: emulator counts %+v (before %+v): want 3 accepted and at least one refused", c, before)
	}

	// An API that throttles every call: the sweep gives up when its
	// context ends, with the transient error.
	e.em.Faults().Set(emulate.Faults{Throttle: true})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = e.p.DescribeMany(ctx, ids)
	if kind, code := kindOf(t, err); kind != gpuflow.KindTransient || code != "RequestLimitExceeded" {
		t.Errorf("DescribeMany always throttled = %v; want transient RequestLimitExceeded", err)
	}
	e.em.Faults().Set(emulate.Faults{})
	limiter.SetRate("DescribeInstances", emulate.Rate{})
	e.terminateAll(t, ids)
}

// TestEmulatorEnforcesRate checks the default limit is the published 40
// DescribeInstances a second, and that past its limit the emulator
// refuses with the API's RequestLimitExceeded (here a limit of 5 at once,
// refilled too slowly to matter during the test).
func TestEmulatorEnforcesRate(t *testing.T) {
	e := newEnv(t, envOptions{emu: func(o *emulator.Options) { o.RateLimits = nil }})
	if r := e.em.RateLimiter().Rates()["DescribeInstances"]; r.PerSecond != 40 {
		t.Fatalf("default DescribeInstances rate %+v, want 40/s", r)
	}
	e.em.RateLimiter().SetRate("DescribeInstances", emulate.Rate{PerSecond: 0.001, Burst: 5})
	ctx := context.Background()
	var throttled int
	for range 20 {
		_, err := e.p.Describe(ctx, "ins-00000000")
		if err != nil {
			if kind, code := kindOf(t, err); kind != gpuflow.KindTransient || code != "RequestLimitExceeded" {
				t.Fatalf("Describe = %v", err)
			}
			if pe := err.(*gpuflow.ProviderError); pe.RetryAfter < time.Second {
				t.Errorf("RetryAfter %v, want at least a second", pe.RetryAfter)
			}
			throttled++
		}
	}
	if c := e.em.RateLimiter().Counts("DescribeInstances"); throttled != 15 || c.Throttled != 15 || c.Allowed != 5 {
		t.Errorf("%d of 20 describes throttled; emulator counts %+v; want 15 refused, 5 accepted", throttled, c)
	}
}

// TestDescribeManyAsksRunningMachinesForTheirStateOnly: a sweep describes
// in full the machines it has not seen RUNNING; the next asks those only
// for their state (DescribeInstancesStatus) and answers as the full
// describe did; a machine whose state changed (terminated by another
// process) is described in full again, with the reason Describe gives;
// once their entries are due for refresh all are described in full.
func TestDescribeManyAsksRunningMachinesForTheirStateOnly(t *testing.T) {
	clock := newClock()
	timing := emulate.Timing{Pending: 10 * time.Second, Starting: 20 * time.Second, Run: time.Hour}
	e := newEnv(t, envOptions{clock: clock, timing: timing})
	ctx := context.Background()
	ids := e.provisionN(t, "status", 150)
	clock.Add(timing.Pending + timing.Starting + time.Second)
	statusCalls := func() int64 { return e.em.RateLimiter().Counts("DescribeInstancesStatus").Allowed }
	sweep := func(what string, wantFull, wantStatus int64) map[string]gpuflow.Machine {
		t.Helper()
		d0, s0 := e.describeCalls(), statusCalls()
		got, err := e.p.DescribeMany(ctx, ids)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d, s := e.describeCalls()-d0, statusCalls()-s0; d != wantFull || s != wantStatus {
			t.Errorf("%s: %d DescribeInstances and %d DescribeInstancesStatus calls, want %d and %d", what, d, s, wantFull, wantStatus)
		}
		return got
	}
	first := sweep("first sweep", 2, 0)
	second := sweep("second sweep", 0, 2)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("the status sweep answered differently:\n%+v\nthe full one:\n%+v", second, first)
	}
	for _, id := range ids {
		if m := second[id]; m.State != gpuflow.MachineRunning || m.ID != id || m.GPUType != "T4" || m.Tags[gpuflow.TagJob] == "" {
			t.Fatalf("%s = %+v, want running T4 with its tags", id, m)
		}
	}

	other, err := tencent.New(e.cfg) // another process, outside gpuflow's watch
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Terminate(ctx, ids[7]); err != nil {
		t.Fatal(err)
	}
	third := sweep("after a termination outside", 1, 2)
	d, err := e.p.Describe(ctx, ids[7])
	if err != nil {
		t.Fatal(err)
	}
	if m := third[ids[7]]; m.State == gpuflow.MachineRunning || m.State != d.State || m.Reason != d.Reason {
		t.Errorf("terminated elsewhere: DescribeMany %+v, Describe %+v", m, *d)
	}

	clock.Add(desccache.DefaultRefresh*6/5 + time.Second)
	sweep("after the refresh is due", 2, 0)
	e.terminateAll(t, ids)
}
