package alibaba_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/desccache"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// describeCalls is how many DescribeInstances the emulator answered (not
// counting those it refused as throttled).
func (e *env) describeCalls() int64 {
	return e.emu.RateLimiter().Counts("DescribeInstances").Allowed
}

// provisionN starts n machines for jobs prefix-0 … prefix-(n-1), each
// job running an hour.
func (e *env) provisionN(t *testing.T, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		req := e.request(fmt.Sprintf("%s-%d", prefix, i), false)
		req.Spec.Env = map[string]string{emulate.EnvRunSeconds: "3600"}
		m, err := e.p.Provision(context.Background(), req)
		if err != nil {
			t.Fatalf("Provision %s: %v", req.JobID, err)
		}
		ids[i] = m.ID
	}
	return ids
}

func (e *env) terminateAll(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		if err := e.p.Terminate(context.Background(), id); err != nil {
			t.Fatalf("Terminate %s: %v", id, err)
		}
	}
}

func TestDescribeMany(t *testing.T) {
	e := newEnv(t)
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

	e.toRunning()
	gone := ids[:10]
	e.terminateAll(t, gone)
	unknown := "cn-hangzhou:i-unknown000000000000000"
	other := "cn-nowhere:i-aaaaaaaaaaaaaaaaaaaa"
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
	for _, id := range slices.Concat(gone, []string{unknown, "not-an-instance", other}) {
		if m := got[id]; m.State != gpuflow.MachineGone || m.ID != id {
			t.Errorf("%s = %+v, want gone", id, m)
		}
	}
	for _, id := range ids[10:] {
		m := got[id]
		if m.State != gpuflow.MachineRunning || m.ID != id || m.GPUType != "A10" || m.Tags[gpuflow.TagManaged] != "true" {
			t.Errorf("%s = %+v, want running A10 tagged gpuflow's", id, m)
		}
	}
	for _, id := range []string{ids[0], ids[149], gone[0], unknown} {
		d, err := e.p.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m := got[id]; d.State != m.State || d.Reason != m.Reason || d.GPUCount != m.GPUCount || d.Region != m.Region {
			t.Errorf("DescribeMany[%s] = %+v, Describe = %+v", id, m, *d)
		}
	}
	// A bare instance id is looked for in the configured regions.
	bare := ids[20][len("cn-hangzhou:"):]
	got, err = e.p.DescribeMany(ctx, []string{bare})
	if err != nil || got[bare].State != gpuflow.MachineRunning {
		t.Errorf("bare id %s = %+v, %v", bare, got[bare], err)
	}
	e.terminateAll(t, ids[10:])
}

// TestDescribeManyThrottled sweeps 300 machines on an emulator that takes
// two DescribeInstances a second in bursts of one, its bucket emptied
// just before: the throttled calls are repeated after the time ECS's
// header says is left and the sweep completes with exactly the 3 calls it
// needs accepted; List pages through the same limit.
func TestDescribeManyThrottled(t *testing.T) {
	e := newEnv(t, func(o *emulator.Options, _ *alibaba.Config) {
		o.RateLimits = map[string]emulate.Rate{"DescribeInstances": {PerSecond: 2, Burst: 1}}
	})
	limiter := e.emu.RateLimiter()
	drain := func() { limiter.Allow("DescribeInstances", "cn-hangzhou\x00"+emulator.TestAccessKeyID) }
	ids := e.provisionN(t, "sweep", 300)
	e.toRunning()
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

	e.emu.Faults().Set(emulate.Faults{Throttle: true})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = e.p.DescribeMany(ctx, ids)
	if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "Throttling.User" || pe.RetryAfter < time.Second {
		t.Errorf("DescribeMany always throttled = %v (retry after %v); want transient Throttling.User after a second or more", err, pe.RetryAfter)
	}
	e.emu.Faults().Set(emulate.Faults{})
	e.terminateAll(t, ids)
}

// TestEmulatorEnforcesRate checks the default limit (10 DescribeInstances
// a second: ECS publishes none) and that past a limit the emulator answers
// as ECS does: HTTP 400 Throttling.User with the x-ratelimit-user-api
// header (here 5 at once, refilled too slowly to matter during the test).
func TestEmulatorEnforcesRate(t *testing.T) {
	e := newEnv(t, func(o *emulator.Options, _ *alibaba.Config) { o.RateLimits = nil })
	if r := e.emu.RateLimiter().Rates()["DescribeInstances"]; r.PerSecond != 10 {
		t.Fatalf("default DescribeInstances rate %+v, want 10/s", r)
	}
	e.emu.RateLimiter().SetRate("DescribeInstances", emulate.Rate{PerSecond: 0.001, Burst: 5})
	var throttled int
	for range 20 {
		_, err := e.p.Describe(context.Background(), "cn-hangzhou:i-unknown000000000000000")
		if err != nil {
			if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "Throttling.User" ||
				!strings.Contains(pe.Message, "HTTP 400") || !strings.Contains(pe.Message, "user flow control") {
				t.Fatalf("Describe = %v", err)
			}
			throttled++
		}
	}
	if c := e.emu.RateLimiter().Counts("DescribeInstances"); throttled != 15 || c.Throttled != 15 || c.Allowed != 5 {
		t.Errorf("%d of 20 describes throttled; emulator counts %+v; want 15 refused, 5 accepted", throttled, c)
	}
}

// TestDescribeManyAsksRunningMachinesForTheirStatusOnly: a sweep describes
// in full the machines it has not seen Running; the next asks the
// on-demand ones only for their status (DescribeInstanceStatus, 50 a call)
// and answers as the full describe did; a spot instance is always
// described in full, so its reclamation (a lock on a Running instance) is
// seen at once; a machine deleted by another process is described in full
// again; once their entries are due for refresh all are described in full.
func TestDescribeManyAsksRunningMachinesForTheirStatusOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := e.provisionN(t, "status", 150)
	req := e.request("status-spot", true)
	req.Spec.Env = map[string]string{emulate.EnvRunSeconds: "3600"}
	spot, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, spot.ID)
	e.toRunning()
	statusCalls := func() int64 { return e.emu.RateLimiter().Counts("DescribeInstanceStatus").Allowed }
	sweep := func(what string, wantFull, wantStatus int64) map[string]gpuflow.Machine {
		t.Helper()
		d0, s0 := e.describeCalls(), statusCalls()
		got, err := e.p.DescribeMany(ctx, ids)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d, s := e.describeCalls()-d0, statusCalls()-s0; d != wantFull || s != wantStatus {
			t.Errorf("%s: %d DescribeInstances and %d DescribeInstanceStatus calls, want %d and %d", what, d, s, wantFull, wantStatus)
		}
		return got
	}
	first := sweep("first sweep", 2, 0)
	second := sweep("second sweep", 1, 3) // the spot instance; 150 on-demand by 50
	if !reflect.DeepEqual(first, second) {
		t.Errorf("the status sweep answered differently:\n%+v\nthe full one:\n%+v", second, first)
	}
	for _, id := range ids {
		if m := second[id]; m.State != gpuflow.MachineRunning || m.ID != id || m.GPUType != "A10" || m.Tags[gpuflow.TagJob] == "" {
			t.Fatalf("%s = %+v, want running A10 with its tags", id, m)
		}
	}

	if err := e.serving().Preempt(spot.ID); err != nil {
		t.Fatal(err)
	}
	other, err := alibaba.New(e.cfg) // another process, outside gpuflow's watch
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Terminate(ctx, ids[7]); err != nil {
		t.Fatal(err)
	}
	third := sweep("after a reclamation and a deletion outside", 1, 3)
	for _, id := range []string{spot.ID, ids[7]} {
		d, err := e.p.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m := third[id]; m.State == gpuflow.MachineRunning || m.State != d.State || m.Reason != d.Reason {
			t.Errorf("%s: DescribeMany %+v, Describe %+v", id, m, *d)
		}
	}
	if m := third[spot.ID]; !strings.Contains(m.Reason, alibaba.ReasonPreempted) {
		t.Errorf("reclaimed spot instance = %+v, want preempted", m)
	}

	e.clock.Advance(desccache.DefaultRefresh*6/5 + time.Second)
	sweep("after the refresh is due", 2, 0)
	e.terminateAll(t, ids)
}
