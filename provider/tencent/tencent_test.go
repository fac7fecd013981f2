package tencent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

func TestInfo(t *testing.T) {
	e := newEnv(t, envOptions{})
	got := e.p.Info()
	want := gpuflow.ProviderInfo{Name: "tencent", DisplayName: "Tencent Cloud", Description: "Tencent Cloud TKE GPU computing", Mode: gpuflow.ModeEmulated}
	if got != want {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
	if e.p.PollInterval() != 100*time.Millisecond {
		t.Errorf("PollInterval() = %v", e.p.PollInterval())
	}
	p, err := tencent.New(tencent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Info().Mode; m != gpuflow.ModeLive {
		t.Errorf("default mode = %q, want live", m)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []tencent.Config{
		{Endpoint: "127.0.0.1:8080"},
		{Endpoint: "ftp://x"},
		{Currency: "EUR"},
		{Regions: []string{"ap guangzhou"}},
	} {
		if _, err := tencent.New(cfg); err == nil {
			t.Errorf("New(%v) succeeded", cfg)
		}
	}
}

// TestLifecycle walks a machine through every state on a fake clock:
// PENDING (terminate refused), STARTING, RUNNING (the job reports to the
// agent), TERMINATING, gone.
func TestLifecycle(t *testing.T) {
	clock := newClock()
	timing := emulate.Timing{Pending: 10 * time.Second, Starting: 20 * time.Second, Run: 100 * time.Millisecond}
	e := newEnv(t, envOptions{clock: clock, timing: timing, emu: func(o *emulator.Options) { o.Terminating = 5 * time.Second }})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	req := e.request("job-life", "job-life-1", o, map[string]string{emulate.EnvExitCode: "3", emulate.EnvRunSeconds: "0.1"})
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if m.State != gpuflow.MachinePending || !strings.HasPrefix(m.ID, "ins-") || m.GPUType != "T4" || m.GPUCount != 1 ||
		m.Region != "ap-guangzhou-3" || m.PricePerHour != 0.72 || m.Tags[gpuflow.TagManaged] != "true" || m.Tags[gpuflow.TagJob] != "job-life" {
		t.Errorf("Provision = %+v", m)
	}

	d, err := e.p.Describe(ctx, m.ID)
	if err != nil || d.State != gpuflow.MachinePending {
		t.Fatalf("Describe at once = %+v, %v; want pending", d, err)
	}
	err = e.p.Terminate(ctx, m.ID)
	if kind, code := kindOf(t, err); kind != gpuflow.KindTransient || code != cvm.UNSUPPORTEDOPERATION_INSTANCESTATEPENDING {
		t.Errorf("Terminate while PENDING = %v; want transient InstanceStatePending", err)
	}
	if pe := (*gpuflow.ProviderError)(nil); !errors.As(err, &pe) || pe.RetryAfter <= 0 {
		t.Errorf("Terminate while PENDING has no RetryAfter: %v", err)
	}

	clock.Add(10 * time.Second)
	e.waitState(t, m.ID, gpuflow.MachineStarting)
	if len(e.agent.reports()) != 0 {
		t.Errorf("the job reported before the machine ran: %+v", e.agent.reports())
	}
	clock.Add(20 * time.Second)
	running := e.waitState(t, m.ID, gpuflow.MachineRunning)
	if running.GPUType != "T4" || running.GPUCount != 1 || running.Region != "ap-guangzhou-3" || running.PricePerHour != 0.72 ||
		running.Tags["team"] != "ml" || running.Tags[gpuflow.TagJob] != "job-life" || !running.CreatedAt.Equal(clock.Now().Add(-30*time.Second)) {
		t.Errorf("running machine = %+v", running)
	}

	// The emulated job reports as the boot script would.
	if got := mustJSON(t, e.agent.waitFinished(t, "job-life")); got["exit_code"] != float64(3) {
		t.Errorf("finished report = %v, want exit_code 3", got)
	}
	var progress, logs int
	for _, r := range e.agent.reports() {
		if r.Auth != "Bearer agent-token-job-life" {
			t.Errorf("report %s with Authorization %q", r.Path, r.Auth)
		}
		switch r.Path {
		case "/jobs/job-life/progress":
			progress++
		case "/jobs/job-life/logs":
			logs++
		}
	}
	if progress < 2 || logs < 2 {
		t.Errorf("progress reports %d, log reports %d; want at least 2 each", progress, logs)
	}
	// A VM stays up after its job: the agent's report ends the job.
	if d, _ := e.p.Describe(ctx, m.ID); d.State != gpuflow.MachineRunning {
		t.Errorf("after the job: %+v, want running", d)
	}

	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineStopping {
		t.Errorf("Describe after Terminate = %+v, %v; want stopping", d, err)
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Errorf("Terminate while TERMINATING = %v, want nil", err)
	}
	clock.Add(5 * time.Second)
	e.waitState(t, m.ID, gpuflow.MachineGone)
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Errorf("Terminate when gone = %v, want nil", err)
	}
}

// TestActionTimer checks the provider-side safety timer: the instance
// terminates itself MaxDuration plus the margin after it was created.
func TestActionTimer(t *testing.T) {
	clock := newClock()
	e := newEnv(t, envOptions{clock: clock, timing: emulate.Timing{Pending: time.Second, Starting: time.Second, Run: time.Hour}})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	req := e.request("job-timer", "job-timer-1", o, nil)
	req.MaxDuration = 2 * time.Hour
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	clock.Add(2 * time.Second)
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	clock.Add(2*time.Hour + 29*time.Minute)
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	clock.Add(time.Minute)
	if d := e.waitState(t, m.ID, gpuflow.MachineStopping); !strings.Contains(d.Reason, "TERMINATING") {
		t.Errorf("after the timer: %+v", d)
	}
	clock.Add(time.Minute)
	e.waitState(t, m.ID, gpuflow.MachineGone)
}

func TestProvisionIsIdempotent(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	req := e.request("job-idem", "job-idem-attempt-1", o, nil)
	m1, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if m1.ID != m2.ID {
		t.Errorf("same key, two machines: %s and %s", m1.ID, m2.ID)
	}
	// A fresh provider (a restarted worker) gets the same machine too.
	p2, err := tencent.New(tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: e.srv.URL, ImageID: "img-gpuflow1"})
	if err != nil {
		t.Fatal(err)
	}
	m3, err := p2.Provision(ctx, req)
	if err != nil || m3.ID != m1.ID {
		t.Errorf("restarted provider: %+v, %v; want %s", m3, err, m1.ID)
	}
	// A long key is hashed into a valid token, still idempotent.
	long := e.request("job-idem-long", strings.Repeat("k", 100), o, nil)
	l1, err := e.p.Provision(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := e.p.Provision(ctx, long)
	if err != nil || l2.ID != l1.ID {
		t.Errorf("long key: %+v, %v; want %s", l2, err, l1.ID)
	}
	if live := e.em.Live(); len(live) != 2 {
		t.Errorf("live machines = %v, want 2", live)
	}
	e.terminate(t, m1.ID)
	e.terminate(t, l1.ID)
}

// TestCreateLost: RunInstances creates the instance but answers
// InternalError; the retry with the same ClientToken finds it.
func TestCreateLost(t *testing.T) {
	t.Run("retried inside Provision", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		e.em.Faults().Set(emulate.Faults{CreateLost: 1})
		m, err := e.p.Provision(context.Background(), e.request("job-lost", "job-lost-1", o, nil))
		if err != nil {
			t.Fatalf("Provision: %v", err)
		}
		if live := e.em.Live(); len(live) != 1 || live[0] != m.ID {
			t.Errorf("live = %v, want exactly [%s]", live, m.ID)
		}
		e.terminate(t, m.ID)
	})
	t.Run("retried by the caller", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.Retries = -1 }})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		e.em.Faults().Set(emulate.Faults{CreateLost: 1})
		req := e.request("job-lost2", "job-lost2-1", o, nil)
		_, err := e.p.Provision(context.Background(), req)
		if kind, code := kindOf(t, err); kind != gpuflow.KindTransient || code != "InternalError" {
			t.Fatalf("Provision with the answer lost = %v; want transient InternalError", err)
		}
		if live := e.em.Live(); len(live) != 1 {
			t.Fatalf("live = %v, want the one instance created", live)
		}
		m, err := e.p.Provision(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if live := e.em.Live(); len(live) != 1 || live[0] != m.ID {
			t.Errorf("after the retry live = %v, want exactly [%s]", live, m.ID)
		}
		e.terminate(t, m.ID)
	})
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("no capacity", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		e.em.Faults().Set(emulate.Faults{NoCapacity: true})
		_, err := e.p.Provision(ctx, e.request("job-nocap", "job-nocap-1", o, nil))
		if kind, code := kindOf(t, err); kind != gpuflow.KindNoCapacity || code != cvm.RESOURCEINSUFFICIENT_SPECIFIEDINSTANCETYPE {
			t.Errorf("Provision = %v; want no_capacity ResourceInsufficient.SpecifiedInstanceType", err)
		}
	})
	t.Run("sold out", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		o := e.offer(t, "A10", 1, "ap-guangzhou-3", 28)
		if o.Available != 0 {
			t.Errorf("sold-out offer Available = %d, want 0", o.Available)
		}
		_, err := e.p.Provision(ctx, e.request("job-soldout", "job-soldout-1", o, nil))
		if kind, code := kindOf(t, err); kind != gpuflow.KindNoCapacity || code != cvm.RESOURCESSOLDOUT_SPECIFIEDINSTANCETYPE {
			t.Errorf("Provision = %v; want no_capacity ResourcesSoldOut.SpecifiedInstanceType", err)
		}
	})
	t.Run("spot bid too low", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		req := e.request("job-bid", "job-bid-1", o, nil)
		req.Spec.Spot, req.Spec.MaxPricePerHour = true, new(0.01)
		_, err := e.p.Provision(ctx, req)
		if kind, code := kindOf(t, err); kind != gpuflow.KindNoCapacity || code != cvm.INVALIDPARAMETERVALUE_INSUFFICIENTPRICE {
			t.Errorf("Provision = %v; want no_capacity InvalidParameterValue.InsufficientPrice", err)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.em.Faults().Set(emulate.Faults{Throttle: true})
		err := e.p.Health(ctx)
		kind, code := kindOf(t, err)
		if kind != gpuflow.KindTransient || code != "RequestLimitExceeded" || err.(*gpuflow.ProviderError).RetryAfter <= 0 {
			t.Errorf("Health = %v; want transient RequestLimitExceeded with RetryAfter", err)
		}
		_, err = e.p.Describe(ctx, "ins-abcdefgh")
		if kind, _ := kindOf(t, err); kind != gpuflow.KindTransient {
			t.Errorf("Describe = %v; want transient", err)
		}
	})
	t.Run("server errors", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.em.Faults().Set(emulate.Faults{ServerErrors: 2})
		for range 2 {
			if kind, code := kindOf(t, e.p.Health(ctx)); kind != gpuflow.KindTransient || code != "InternalError" {
				t.Errorf("Health kind %s code %s; want transient InternalError", kind, code)
			}
		}
		if err := e.p.Health(ctx); err != nil {
			t.Errorf("Health after the errors = %v", err)
		}
	})
	t.Run("server errors on create are retried", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		e.em.Faults().Set(emulate.Faults{ServerErrors: 2})
		m, err := e.p.Provision(ctx, e.request("job-5xx", "job-5xx-1", o, nil))
		if err != nil {
			t.Fatalf("Provision: %v", err)
		}
		e.terminate(t, m.ID)
	})
	t.Run("slow", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.CallTimeout = 100 * time.Millisecond }})
		e.em.Faults().Set(emulate.Faults{Slow: 2 * time.Second})
		start := time.Now()
		err := e.p.Health(ctx)
		if kind, _ := kindOf(t, err); kind != gpuflow.KindTransient || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Health = %v; want a transient timeout", err)
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Errorf("the call took %v despite a 100ms timeout", time.Since(start))
		}
		e.em.Faults().Set(emulate.Faults{})
	})
	t.Run("invalid request", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.ImageID = "not-an-image" }})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		_, err := e.p.Provision(ctx, e.request("job-bad", "job-bad-1", o, nil))
		if kind, code := kindOf(t, err); kind != gpuflow.KindInvalidRequest || code != cvm.INVALIDIMAGEID_MALFORMED {
			t.Errorf("Provision = %v; want invalid_request InvalidImageId.Malformed", err)
		}
		req := e.request("job-noagent", "job-noagent-1", o, nil)
		req.Agent = nil
		if kind, _ := kindOf(t, func() error { _, err := e.p.Provision(ctx, req); return err }()); kind != gpuflow.KindInvalidRequest {
			t.Errorf("Provision without an agent endpoint: kind %s", kind)
		}
		cpu := e.request("job-cpu", "job-cpu-1", gpuflow.Offer{Provider: "tencent"}, nil)
		cpu.Spec.GPUCount = 0
		if kind, _ := kindOf(t, func() error { _, err := e.p.Provision(ctx, cpu); return err }()); kind != gpuflow.KindInvalidRequest {
			t.Errorf("Provision of a CPU job: kind %s", kind)
		}
	})
}

func TestSpotPreemption(t *testing.T) {
	clock := newClock()
	e := newEnv(t, envOptions{clock: clock, timing: emulate.Timing{Pending: time.Second, Starting: time.Second, Run: time.Hour},
		emu: func(o *emulator.Options) { o.ReclaimLinger = 30 * time.Second }})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	if o.SpotPricePerHour != 0.22 {
		t.Errorf("spot price = %v, want 0.22", o.SpotPricePerHour)
	}
	req := e.request("job-spot", "job-spot-1", o, nil)
	req.Spec.Spot, req.Spec.MaxPricePerHour = true, new(1.0)
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if m.PricePerHour != 0.22 {
		t.Errorf("spot machine price = %v, want 0.22", m.PricePerHour)
	}
	if err := e.em.Preempt(m.ID); !errors.Is(err, emulator.ErrNotPreemptible) {
		t.Errorf("Preempt while pending = %v, want ErrNotPreemptible", err)
	}
	clock.Add(2 * time.Second)
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	if err := e.em.Preempt(m.ID); err != nil {
		t.Fatalf("Preempt: %v", err)
	}
	d := e.waitState(t, m.ID, gpuflow.MachineFailed)
	if !strings.Contains(d.Reason, "preempted") {
		t.Errorf("preempted machine reason %q", d.Reason)
	}
	// The reclaimed instance vanishes; this provider knew it as spot.
	clock.Add(time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for e.em.State(m.ID) != "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineFailed || !strings.Contains(d.Reason, "preempted") {
		t.Errorf("Describe after the instance vanished = %+v, %v; want failed, preempted", d, err)
	}
	// Teardown: the terminate finds nothing, and the machine is gone.
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Errorf("Terminate = %v", err)
	}
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineGone {
		t.Errorf("Describe after Terminate = %+v, %v; want gone", d, err)
	}
	// An on-demand instance cannot be preempted.
	od, err := e.p.Provision(ctx, e.request("job-od", "job-od-1", o, nil))
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Second)
	e.waitState(t, od.ID, gpuflow.MachineRunning)
	if err := e.em.Preempt(od.ID); !errors.Is(err, emulator.ErrNotPreemptible) {
		t.Errorf("Preempt on-demand = %v, want ErrNotPreemptible", err)
	}
	e.terminate(t, od.ID)
}

func TestTerminateFailsThenSucceeds(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	m, err := e.p.Provision(ctx, e.request("job-tf", "job-tf-1", o, nil))
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	e.em.Faults().Set(emulate.Faults{TerminateFailures: 2})
	for i := range 2 {
		err := e.p.Terminate(ctx, m.ID)
		if kind, code := kindOf(t, err); kind != gpuflow.KindTransient || code != cvm.MUTEXOPERATION_TASKRUNNING {
			t.Errorf("Terminate #%d = %v; want transient MutexOperation.TaskRunning", i+1, err)
		}
		if d, _ := e.p.Describe(ctx, m.ID); d.State != gpuflow.MachineRunning {
			t.Errorf("after failed terminate #%d: %+v", i+1, d)
		}
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatalf("third Terminate = %v", err)
	}
	e.waitState(t, m.ID, gpuflow.MachineGone)
}

func TestNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	for _, id := range []string{"ins-zzzzzzzz", "ap-guangzhou:ins-yyyyyyyy", "not-an-instance"} {
		if err := e.p.Terminate(ctx, id); err != nil {
			t.Errorf("Terminate(%s) = %v, want nil", id, err)
		}
		if d, err := e.p.Describe(ctx, id); err != nil || d.State != gpuflow.MachineGone {
			t.Errorf("Describe(%s) = %+v, %v; want gone", id, d, err)
		}
	}
	p2, _ := tencent.New(tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: e.srv.URL})
	if d, err := p2.Describe(ctx, "ins-xxxxxxxx"); err != nil || d.State != gpuflow.MachineGone {
		t.Errorf("Describe of an unknown id by a fresh provider = %+v, %v; want gone", d, err)
	}
	if _, err := e.p.Describe(ctx, "eu-frankfurt:ins-xxxxxxxx"); err == nil {
		t.Error("Describe in an unconfigured region succeeded")
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	var ids []string
	for i := range 3 {
		m, err := e.p.Provision(ctx, e.request(fmt.Sprint("job-list-", i), fmt.Sprint("job-list-", i, "-1"), o, nil))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// An instance someone else started, without gpuflow's tags.
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme, cpf.HttpProfile.Endpoint = "HTTP", strings.TrimPrefix(e.srv.URL, "http://")
	c, err := cvm.NewClient(common.NewCredential(testSecretID, testSecretKey), testRegion, cpf)
	if err != nil {
		t.Fatal(err)
	}
	run := cvm.NewRunInstancesRequest()
	run.Placement = &cvm.Placement{Zone: common.StringPtr("ap-guangzhou-6")}
	run.InstanceType, run.ImageId = common.StringPtr("GN7.2XLARGE32"), common.StringPtr("img-othersxx")
	resp, err := c.RunInstances(run)
	if err != nil {
		t.Fatal(err)
	}
	other := *resp.Response.InstanceIdSet[0]

	got, err := e.p.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var listed []string
	for _, m := range got {
		listed = append(listed, m.ID)
		if m.Tags[gpuflow.TagManaged] != "true" || !strings.HasPrefix(m.Tags[gpuflow.TagJob], "job-list-") || m.GPUType != "T4" {
			t.Errorf("listed machine %+v", m)
		}
	}
	if len(listed) != 3 || !contains(listed, ids[0]) || !contains(listed, ids[1]) || !contains(listed, ids[2]) || contains(listed, other) {
		t.Errorf("List = %v, want %v (not %s)", listed, ids, other)
	}
	for _, id := range append(ids, other) {
		e.terminate(t, id)
	}
}

// TestMultiRegion: machines outside the first region carry their region
// in their id and are described, listed, preempted and terminated there.
func TestMultiRegion(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *tencent.Config) {
		c.Regions = []string{testRegion, "ap-shanghai"}
		c.RegionImageIDs = map[string]string{"ap-shanghai": "img-shanghai"}
	}})
	ctx := context.Background()
	o := e.offer(t, "V100", 1, "ap-shanghai-6", 10)
	req := e.request("job-sh", "job-sh-1", o, nil)
	req.Spec.Spot = true
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ID, "ap-shanghai:ins-") || m.Region != "ap-shanghai-6" || m.GPUType != "V100" {
		t.Errorf("machine %+v", m)
	}
	g, err := e.p.Provision(ctx, e.request("job-gz", "job-gz-1", e.offer(t, "T4", 1, "ap-guangzhou-6", 8), nil))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(g.ID, ":") {
		t.Errorf("first-region machine id %q is qualified", g.ID)
	}
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	list, err := e.p.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := e.em.Preempt(m.ID); err != nil {
		t.Fatal(err)
	}
	if d := e.waitState(t, m.ID, gpuflow.MachineFailed); !strings.Contains(d.Reason, "preempted") {
		t.Errorf("preempted: %+v", d)
	}
	e.terminate(t, m.ID)
	e.terminate(t, g.ID)
	if err := e.p.Health(ctx); err != nil {
		t.Errorf("Health = %v", err)
	}
}

func TestOffers(t *testing.T) {
	ctx := context.Background()
	t.Run("live", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		find := func(gpu string, n int, zone string, vcpus int) *gpuflow.Offer {
			for i, o := range offers {
				if o.GPUType == gpu && o.GPUCount == n && o.Region == zone && o.VCPUs == vcpus {
					return &offers[i]
				}
			}
			t.Fatalf("no %dx%s/%d in %s among %+v", n, gpu, vcpus, zone, offers)
			return nil
		}
		for _, o := range offers {
			if o.Provider != "tencent" || o.PricePerHour <= 0 || o.GPUCount < 1 || o.GPUMemoryGB <= 0 {
				t.Errorf("bad offer %+v", o)
			}
		}
		two := find("T4", 2, "ap-guangzhou-6", 40)
		if two.PricePerHour != 1.05 || two.SpotPricePerHour != 0.315 || two.MemoryGB != 160 || two.GPUMemoryGB != 16 || two.Available != -1 {
			t.Errorf("2xT4 offer = %+v; want per-GPU prices 1.05/0.315", two)
		}
		if a := find("A100", 1, "ap-guangzhou-6", 16); a.Available != 1 {
			t.Errorf("under-stock offer Available = %d, want 1", a.Available)
		}
		if a := find("A100", 8, "ap-guangzhou-3", 164); a.SpotPricePerHour != 0 || a.PricePerHour != 3.9 {
			t.Errorf("8xA100 offer = %+v; want no spot, 3.9/GPU", a)
		}
		if a := find("A10", 1, "ap-guangzhou-3", 28); a.Available != 0 {
			t.Errorf("sold-out offer Available = %d", a.Available)
		}
		// Cached: a throttled API does not change the answer within the TTL.
		e.em.Faults().Set(emulate.Faults{Throttle: true})
		again, err := e.p.Offers(ctx)
		if err != nil || len(again) != len(offers) || again[0] != offers[0] {
			t.Errorf("cached offers differ: %v", err)
		}
	})
	t.Run("no capacity shows as sold out", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.em.Faults().Set(emulate.Faults{NoCapacity: true})
		offers, err := e.p.Offers(ctx)
		if err != nil || len(offers) == 0 {
			t.Fatalf("Offers = %v, %v", offers, err)
		}
		for _, o := range offers {
			if o.Available != 0 || o.SpotPricePerHour != 0 {
				t.Errorf("offer %+v not sold out", o)
			}
		}
	})
	t.Run("CNY converted", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.Currency, c.CNYPerUSD = "CNY", 8 }})
		o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
		if o.PricePerHour != 0.09 {
			t.Errorf("price = %v, want 0.72/8 = 0.09", o.PricePerHour)
		}
	})
	t.Run("zones", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.Zones = []string{"ap-guangzhou-6"} }})
		offers, _ := e.p.Offers(ctx)
		for _, o := range offers {
			if o.Region != "ap-guangzhou-6" {
				t.Errorf("offer outside the configured zones: %+v", o)
			}
		}
	})
	t.Run("fallback", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *tencent.Config) { c.SecretKey = "wrong" }})
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var t4 *gpuflow.Offer
		for i, o := range offers {
			if o.GPUType == "T4" && o.GPUCount == 1 && o.VCPUs == 8 && o.Region == "ap-guangzhou-3" {
				t4 = &offers[i]
			}
			if !strings.HasPrefix(o.Region, "ap-guangzhou-") {
				t.Errorf("fallback offer outside the region: %+v", o)
			}
		}
		if t4 == nil || math.Abs(t4.PricePerHour-5.0/7.2) > 1e-3 || t4.Available != -1 || t4.SpotPricePerHour <= 0 {
			t.Errorf("fallback T4 offer = %+v, want 5 CNY/h at 7.2", t4)
		}
		if !strings.Contains(e.logs.String(), "built-in catalogue") {
			t.Error("no warning logged for the fallback")
		}
	})
	t.Run("fallback provisions from the catalogue", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.em.Faults().Set(emulate.Faults{Throttle: true})
		offers, err := e.p.Offers(ctx)
		if err != nil || len(offers) == 0 {
			t.Fatalf("Offers = %v, %v", offers, err)
		}
		e.em.Faults().Set(emulate.Faults{})
		var o gpuflow.Offer
		for _, x := range offers {
			if x.GPUType == "T4" && x.GPUCount == 1 && x.VCPUs == 8 && x.Region == "ap-guangzhou-3" {
				o = x
			}
		}
		m, err := e.p.Provision(ctx, e.request("job-fb", "job-fb-1", o, nil))
		if err != nil {
			t.Fatalf("Provision: %v", err)
		}
		e.terminate(t, m.ID)
	})
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, envOptions{})
	if err := e.p.Health(ctx); err != nil {
		t.Errorf("Health = %v", err)
	}
	for name, cfg := range map[string]tencent.Config{
		"wrong key":     {SecretID: testSecretID, SecretKey: "wrong-key", Endpoint: e.srv.URL, ImageID: "img-gpuflow1"},
		"unknown id":    {SecretID: "AKIDunknown", SecretKey: testSecretKey, Endpoint: e.srv.URL, ImageID: "img-gpuflow1"},
		"no key":        {SecretID: testSecretID, Endpoint: e.srv.URL, ImageID: "img-gpuflow1"},
		"no credential": {Endpoint: e.srv.URL, ImageID: "img-gpuflow1"},
	} {
		p, err := tencent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if kind, _ := kindOf(t, p.Health(ctx)); kind != gpuflow.KindAuth {
			t.Errorf("%s: Health kind %s, want auth", name, kind)
		}
	}
	p, _ := tencent.New(tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: e.srv.URL})
	if kind, _ := kindOf(t, p.Health(ctx)); kind != gpuflow.KindInvalidRequest {
		t.Errorf("Health without an image: kind %s, want invalid_request", kind)
	}
}

// TestSecretsStayOut looks for the secret key in the logs of a busy
// session (successes and failures), in errors, and in the config printed
// every way.
func TestSecretsStayOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	m, err := e.p.Provision(ctx, e.request("job-secret", "job-secret-1", o, nil))
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	e.terminate(t, m.ID)

	var errs []error
	e.em.Faults().Set(emulate.Faults{Throttle: true})
	errs = append(errs, e.p.Health(ctx))
	e.em.Faults().Set(emulate.Faults{})
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := tencent.Config{SecretID: testSecretID, SecretKey: testSecretKey, Endpoint: e.srv.URL, ImageID: "img-gpuflow1", Logger: logger}
	bad := cfg
	bad.SecretKey = testSecretKey + "-but-wrong"
	pb, err := tencent.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	errs = append(errs, pb.Health(ctx))
	_, err = pb.Provision(ctx, e.request("job-secret2", "job-secret2-1", o, nil))
	errs = append(errs, err)
	logger.Info("config", "cfg", cfg)
	logger.Info("config value", "cfg", any(cfg))
	printed := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg)

	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), testSecretKey) {
			t.Errorf("error carries the secret key: %v", err)
		}
	}
	for what, s := range map[string]string{"logs": e.logs.String(), "printed config": printed} {
		if strings.Contains(s, testSecretKey) || strings.Contains(s, testSecretID) {
			t.Errorf("%s carry a credential:\n%s", what, s)
		}
	}
	if !strings.Contains(printed, "[redacted]") {
		t.Errorf("printed config %q does not show the redaction", printed)
	}
}
