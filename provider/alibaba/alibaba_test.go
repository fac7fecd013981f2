package alibaba_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

func TestInfo(t *testing.T) {
	e := newEnv(t)
	info := e.p.Info()
	want := gpuflow.ProviderInfo{Name: "alibaba", DisplayName: "Alibaba Cloud",
		Description: "Alibaba Cloud ECS GPU instances", Mode: gpuflow.ModeEmulated}
	if info != want {
		t.Errorf("Info() = %+v, want %+v", info, want)
	}
	if got := e.p.PollInterval(); got != 500*time.Millisecond {
		t.Errorf("PollInterval() = %v, want 500ms in emulated mode", got)
	}
	live, err := alibaba.New(alibaba.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if live.Info().Mode != gpuflow.ModeLive || live.PollInterval() != 5*time.Second {
		t.Errorf("default mode %q, poll %v; want live, 5s", live.Info().Mode, live.PollInterval())
	}
	if _, err := alibaba.New(alibaba.Config{Mode: "local"}); err == nil {
		t.Error("New accepted mode local")
	}
	// Sent to the API as int32: out of range is refused, not wrapped.
	for _, cfg := range []alibaba.Config{{SystemDiskGB: 2049}, {SystemDiskGB: -1}, {BandwidthOut: math.MaxInt32 + 1}} {
		if _, err := alibaba.New(cfg); err == nil {
			t.Errorf("New accepted disk %d GB, bandwidth %d", cfg.SystemDiskGB, cfg.BandwidthOut)
		}
	}
	if _, err := alibaba.New(alibaba.Config{SystemDiskGB: 2048, BandwidthOut: -1}); err != nil {
		t.Errorf("New refused the largest disk and no public IP: %v", err)
	}
}

// TestLifecycle creates an instance, follows it through every state while
// its emulated job reports to the agent endpoint, and terminates it.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	req := e.request("job-life", false)
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if !strings.HasPrefix(m.ID, "cn-hangzhou:i-") || len(m.ID) != len("cn-hangzhou:i-")+20 {
		t.Errorf("machine id %q, want cn-hangzhou:i-<20 chars>", m.ID)
	}
	if m.State != gpuflow.MachinePending || m.GPUType != "A10" || m.GPUCount != 1 || m.Region != "cn-hangzhou-i" || m.PricePerHour != 1.5 {
		t.Errorf("Provision returned %+v", m)
	}
	if m.Tags[gpuflow.TagManaged] != "true" || m.Tags[gpuflow.TagJob] != "job-life" || m.Tags[alibaba.TagClientToken] != "job-life-a1" {
		t.Errorf("tags %v", m.Tags)
	}

	describe := func(want gpuflow.MachineState) *gpuflow.Machine {
		t.Helper()
		d, err := e.p.Describe(ctx, m.ID)
		if err != nil {
			t.Fatalf("Describe: %v", err)
		}
		if d.State != want {
			t.Fatalf("state %s (%s), want %s", d.State, d.Reason, want)
		}
		return d
	}
	d := describe(gpuflow.MachinePending)
	if d.ID != m.ID || d.GPUType != "A10" || d.GPUCount != 1 || d.Region != "cn-hangzhou-i" || d.Tags[gpuflow.TagJob] != "job-life" {
		t.Errorf("Describe returned %+v", d)
	}
	if !d.CreatedAt.Equal(e.clock.Now().Truncate(time.Minute)) {
		t.Errorf("CreatedAt %v, want %v", d.CreatedAt, e.clock.Now().Truncate(time.Minute))
	}
	e.clock.Advance(fastTiming.Pending)
	describe(gpuflow.MachineStarting)
	e.clock.Advance(fastTiming.Starting)
	describe(gpuflow.MachineRunning)

	select {
	case code := <-e.agent.finished:
		if code != 3 {
			t.Errorf("job reported exit code %d, want 3", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the emulated job never reported finished")
	}
	e.agent.mu.Lock()
	progress, logs, bad := slices.Clone(e.agent.progress), e.agent.logs.String(), e.agent.badAuth
	e.agent.mu.Unlock()
	if !slices.Equal(progress, []int{0, 50}) || !strings.Contains(logs, "emulated job job-life exiting with 3") || bad != 0 {
		t.Errorf("agent saw progress %v, logs %q, %d bad tokens", progress, logs, bad)
	}
	describe(gpuflow.MachineRunning) // the VM outlives its job

	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	describe(gpuflow.MachineGone)
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Errorf("second Terminate: %v, want nil (gone)", err)
	}
}

func TestProvisionIsIdempotent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	req := e.request("job-idem", false)
	m1, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if m1.ID != m2.ID {
		t.Errorf("same key gave %s then %s", m1.ID, m2.ID)
	}
	if live := e.emu.Live(); len(live) != 1 {
		t.Errorf("live instances %v, want one", live)
	}
	// A retry in a later hour sends another AutoReleaseTime: ECS refuses
	// the token as reused with other parameters, and the adapter finds the
	// instance by its token tag.
	e.clock.Advance(2 * time.Hour)
	m3, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatalf("retry two hours later: %v", err)
	}
	if m3.ID != m1.ID || len(e.emu.Live()) != 1 {
		t.Errorf("retry two hours later gave %s (live %v), want %s", m3.ID, e.emu.Live(), m1.ID)
	}
	// Another attempt (another key) is another machine.
	req2 := req
	req2.IdempotencyKey = "job-idem-a2"
	m4, err := e.p.Provision(ctx, req2)
	if err != nil {
		t.Fatal(err)
	}
	if m4.ID == m1.ID {
		t.Error("a new idempotency key returned the old machine")
	}
	for _, id := range []string{m1.ID, m4.ID} {
		if err := e.p.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateLostIsRetriedWithTheSameToken(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.emu.Faults().Set(emulate.Faults{CreateLost: 1})
	m, err := e.p.Provision(ctx, e.request("job-lost", false))
	if err != nil {
		t.Fatalf("Provision after a lost answer: %v", err)
	}
	live := e.emu.Live()
	if len(live) != 1 || "cn-hangzhou:"+live[0] != m.ID {
		t.Errorf("live %v, machine %s: want exactly that one", live, m.ID)
	}
	if !strings.Contains(e.logs.String(), "create answer lost") {
		t.Error("the repeated create was not logged")
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()

	t.Run("no capacity", func(t *testing.T) {
		e := newEnv(t)
		e.emu.Faults().Set(emulate.Faults{NoCapacity: true})
		_, err := e.p.Provision(ctx, e.request("job-nocap", false))
		pe := kindOf(t, err)
		if pe.Kind != gpuflow.KindNoCapacity || pe.Code != "OperationDenied.NoStock" || !strings.Contains(pe.Message, "out of stock") {
			t.Errorf("got %v, want no_capacity OperationDenied.NoStock", err)
		}
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offers {
			if o.Available != 0 {
				t.Errorf("sold-out offer %+v has Available %d, want 0", o, o.Available)
			}
		}
	})

	t.Run("throttling", func(t *testing.T) {
		e := newEnv(t)
		e.emu.Faults().Set(emulate.Faults{Throttle: true})
		_, err := e.p.Describe(ctx, "cn-hangzhou:i-aaaaaaaaaaaaaaaaaaaa")
		pe := kindOf(t, err)
		if pe.Kind != gpuflow.KindTransient || pe.Code != "Throttling.User" || pe.RetryAfter < 500*time.Millisecond {
			t.Errorf("got %v (retry after %v), want transient Throttling.User with a retry-after", err, pe.RetryAfter)
		}
		_, err = e.p.Provision(ctx, e.request("job-throttled", false))
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient {
			t.Errorf("Provision throttled: %v", err)
		}
		if len(e.emu.Live()) != 0 {
			t.Error("a throttled create made an instance")
		}
	})

	t.Run("server errors", func(t *testing.T) {
		e := newEnv(t)
		e.emu.Faults().Set(emulate.Faults{ServerErrors: 1})
		_, err := e.p.Describe(ctx, "cn-hangzhou:i-aaaaaaaaaaaaaaaaaaaa")
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "ServiceUnavailable" {
			t.Errorf("got %v, want transient ServiceUnavailable", err)
		}
		if _, err := e.p.Describe(ctx, "cn-hangzhou:i-aaaaaaaaaaaaaaaaaaaa"); err != nil {
			t.Errorf("second call: %v", err)
		}
		// More 5xx than the adapter retries: a transient error, nothing made.
		e.emu.Faults().Set(emulate.Faults{ServerErrors: 10})
		_, err = e.p.Provision(ctx, e.request("job-5xx", false))
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient {
			t.Errorf("Provision under 5xx: %v", err)
		}
	})

	t.Run("slow answers", func(t *testing.T) {
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.Timeout = 150 * time.Millisecond })
		e.emu.Faults().Set(emulate.Faults{Slow: time.Second})
		_, err := e.p.Describe(ctx, "cn-hangzhou:i-aaaaaaaaaaaaaaaaaaaa")
		pe := kindOf(t, err)
		var ne net.Error
		if pe.Kind != gpuflow.KindTransient || !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("got %v, want a transient timeout", err)
		}
		// A slow create still makes its instance; once answers are quick
		// again, the same key finds it.
		req := e.request("job-slow", false)
		if _, err := e.p.Provision(ctx, req); err == nil {
			t.Fatal("Provision with slow answers succeeded")
		}
		e.emu.Faults().Set(emulate.Faults{})
		m, err := e.p.Provision(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if live := e.emu.Live(); len(live) != 1 {
			t.Errorf("live %v, want exactly one instance", live)
		}
		if err := e.p.Terminate(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("create lost", func(t *testing.T) {
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.CreateRetries = 1 })
		e.emu.Faults().Set(emulate.Faults{CreateLost: 5})
		req := e.request("job-lost-all", false)
		_, err := e.p.Provision(ctx, req)
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient || pe.Code != "InternalError" {
			t.Errorf("got %v, want transient InternalError", err)
		}
		if live := e.emu.Live(); len(live) != 1 {
			t.Fatalf("live %v: the lost create made one instance", live)
		}
		e.emu.Faults().Set(emulate.Faults{})
		m, err := e.p.Provision(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if live := e.emu.Live(); len(live) != 1 || "cn-hangzhou:"+live[0] != m.ID {
			t.Errorf("live %v, machine %s", live, m.ID)
		}
		if err := e.p.Terminate(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("terminate failures", func(t *testing.T) {
		e := newEnv(t)
		m, err := e.p.Provision(ctx, e.request("job-term", false))
		if err != nil {
			t.Fatal(err)
		}
		e.toRunning()
		e.emu.Faults().Set(emulate.Faults{TerminateFailures: 2})
		for i := range 2 {
			err := e.p.Terminate(ctx, m.ID)
			if pe := kindOf(t, err); pe.Kind != gpuflow.KindTransient {
				t.Errorf("Terminate #%d: %v, want transient", i+1, err)
			}
			if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineRunning {
				t.Errorf("after failed terminate: %+v, %v", d, err)
			}
		}
		if err := e.p.Terminate(ctx, m.ID); err != nil {
			t.Fatalf("third Terminate: %v", err)
		}
		if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineGone {
			t.Errorf("after terminate: %+v, %v", d, err)
		}
	})
}

func TestSpotPreemption(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m, err := e.p.Provision(ctx, e.request("job-spot", true))
	if err != nil {
		t.Fatal(err)
	}
	if m.PricePerHour != 0.45 {
		t.Errorf("spot machine price %v, want the offer's spot price 0.45", m.PricePerHour)
	}
	if err := e.emu.Preempt(m.ID); !errors.Is(err, emulator.ErrNotPreemptible) {
		t.Errorf("preempting a pending instance: %v, want ErrNotPreemptible", err)
	}
	e.toRunning()
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineRunning {
		t.Fatalf("before preemption: %+v, %v", d, err)
	}
	// Through the dev command's admin endpoint.
	resp, err := http.Post(e.srv.URL+"/_emulator/preempt/"+m.ID, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preempt endpoint answered %s", resp.Status)
	}
	d, err := e.p.Describe(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != gpuflow.MachineFailed || !strings.Contains(d.Reason, "preempted") {
		t.Errorf("preempted machine: %s %q, want failed, preempted", d.State, d.Reason)
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
}

func TestPreemptedInstanceIsReleased(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *emulator.Options, _ *alibaba.Config) { o.RecycleAfter = 5 * time.Minute })
	m, err := e.p.Provision(ctx, e.request("job-recycle", true))
	if err != nil {
		t.Fatal(err)
	}
	e.toRunning()
	if err := e.emu.Preempt(m.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineGone {
		t.Errorf("after the recycle delay: %+v, %v; want gone", d, err)
	}
}

func TestSpotOfferWithoutZonePicksOne(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	req := e.request("job-spot-region", true)
	req.Offer.Region = "cn-hangzhou" // a catalogue offer names the region only
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if m.Region != "cn-hangzhou-i" {
		t.Errorf("spot machine in %q, want a zone with stock (cn-hangzhou-i)", m.Region)
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	// A type sold nowhere as spot is no capacity.
	e.emu.Faults().Set(emulate.Faults{NoCapacity: true})
	_, err = e.p.Provision(ctx, req)
	if pe := kindOf(t, err); pe.Kind != gpuflow.KindNoCapacity {
		t.Errorf("spot without stock: %v", err)
	}
}

func TestAutoRelease(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	req := e.request("job-release", false)
	req.MaxDuration = 2 * time.Hour
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The safety timer lies past MaxDuration plus the margin (1 h).
	e.clock.Advance(3 * time.Hour)
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State == gpuflow.MachineGone {
		t.Fatalf("released before MaxDuration + margin: %+v, %v", d, err)
	}
	e.clock.Advance(time.Hour + time.Minute)
	if d, err := e.p.Describe(ctx, m.ID); err != nil || d.State != gpuflow.MachineGone {
		t.Errorf("not released by ECS after its AutoReleaseTime: %+v, %v", d, err)
	}
}

func TestTerminateUnknown(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, id := range []string{"cn-hangzhou:i-doesnotexist00000000", "i-doesnotexist00000000", "not-an-id", "eu-west-9:i-abc"} {
		if err := e.p.Terminate(ctx, id); err != nil {
			t.Errorf("Terminate(%q) = %v, want nil", id, err)
		}
		d, err := e.p.Describe(ctx, id)
		if err != nil || d.State != gpuflow.MachineGone {
			t.Errorf("Describe(%q) = %+v, %v; want gone", id, d, err)
		}
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var ids []string
	for i := range 3 {
		m, err := e.p.Provision(ctx, e.request(fmt.Sprintf("job-list-%d", i), false))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// An instance gpuflow did not make (no tags) is not listed.
	other := createUntagged(t, e)
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.ID)
		if m.Tags[gpuflow.TagManaged] != "true" || m.State != gpuflow.MachinePending {
			t.Errorf("listed %+v", m)
		}
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("List = %v, want %v", got, ids)
	}
	for _, id := range append(ids, "cn-hangzhou:"+other) {
		if err := e.p.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOffers(t *testing.T) {
	ctx := context.Background()
	t.Run("live", func(t *testing.T) {
		e := newEnv(t)
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Six catalogue types in two zones.
		if len(offers) != 12 {
			t.Fatalf("%d offers, want 12: %+v", len(offers), offers)
		}
		find := func(gpu string, count int, zone string) gpuflow.Offer {
			for _, o := range offers {
				if o.GPUType == gpu && o.GPUCount == count && o.Region == zone {
					return o
				}
			}
			t.Fatalf("no %d× %s offer in %s", count, gpu, zone)
			return gpuflow.Offer{}
		}
		v100 := find("V100", 4, "cn-hangzhou-j")
		// The emulator quotes 11.20 USD per instance-hour: 2.80 per GPU.
		if v100.PricePerHour != 2.8 || v100.SpotPricePerHour != 0.84 || v100.Available != -1 ||
			v100.VCPUs != 32 || v100.MemoryGB != 128 || v100.GPUMemoryGB != 16 || v100.Provider != "alibaba" {
			t.Errorf("V100 offer %+v", v100)
		}
		if a100 := find("A100", 1, "cn-hangzhou-i"); a100.SpotPricePerHour != 0 || a100.PricePerHour != 3.8 {
			t.Errorf("A100 (no spot) offer %+v", a100)
		}
		if offers[0].PricePerHour > offers[len(offers)-1].PricePerHour {
			t.Error("offers are not cheapest first")
		}
		// Cached: a fault that would break the next call is not reached.
		e.emu.Faults().Set(emulate.Faults{ServerErrors: 1})
		if _, err := e.p.Offers(ctx); err != nil {
			t.Fatal(err)
		}
		if e.emu.Faults().Get().ServerErrors != 1 {
			t.Error("cached offers called the API")
		}
		e.emu.Faults().Set(emulate.Faults{})
	})

	t.Run("CNY prices are converted", func(t *testing.T) {
		e := newEnv(t, func(o *emulator.Options, c *alibaba.Config) {
			o.Currency, o.CNYPerUSD = "CNY", 8
			c.USDPerCNY = 0.125
		})
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offers {
			if o.GPUType == "T4" && o.PricePerHour != 0.9 {
				t.Errorf("T4 at %v USD, want 0.9 (7.2 CNY × 0.125)", o.PricePerHour)
			}
		}
	})

	t.Run("fallback catalogue", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.Endpoint = dead.URL })
		offers, err := e.p.Offers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(offers) != 6 {
			t.Fatalf("%d catalogue offers, want 6", len(offers))
		}
		for _, o := range offers {
			if o.Region != "cn-hangzhou" || o.Available != -1 || o.PricePerHour <= 0 || o.Provider != "alibaba" {
				t.Errorf("catalogue offer %+v", o)
			}
		}
		if !strings.Contains(e.logs.String(), "built-in catalogue") {
			t.Error("the fallback was not logged")
		}
	})

	t.Run("auth failure is an error", func(t *testing.T) {
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.AccessKeySecret = "wrong-secret" })
		_, err := e.p.Offers(ctx)
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindAuth {
			t.Errorf("Offers with a wrong secret: %v", err)
		}
	})
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	if err := newEnv(t).p.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
	for name, opt := range map[string]envOption{
		"wrong secret": func(_ *emulator.Options, c *alibaba.Config) { c.AccessKeySecret = "wrong-secret" },
		"unknown key":  func(_ *emulator.Options, c *alibaba.Config) { c.AccessKeyID = "LTAI5tUnknownKey" },
		"no key":       func(_ *emulator.Options, c *alibaba.Config) { c.AccessKeyID, c.AccessKeySecret = "", "" },
	} {
		t.Run(name, func(t *testing.T) {
			err := newEnv(t, opt).p.Health(ctx)
			if pe := kindOf(t, err); pe.Kind != gpuflow.KindAuth {
				t.Errorf("Health: %v, want an auth error", err)
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	cases := map[string]func(*gpuflow.ProvisionRequest){
		"no agent":          func(r *gpuflow.ProvisionRequest) { r.Agent = nil },
		"no key":            func(r *gpuflow.ProvisionRequest) { r.IdempotencyKey = "" },
		"other region":      func(r *gpuflow.ProvisionRequest) { r.Offer.Region = "eu-central-1a" },
		"unknown GPU":       func(r *gpuflow.ProvisionRequest) { r.Offer.GPUType = "H100" },
		"bad env name":      func(r *gpuflow.ProvisionRequest) { r.Spec.Env = map[string]string{"BAD NAME": "x"} },
		"user data too big": func(r *gpuflow.ProvisionRequest) { r.Spec.Command = []string{strings.Repeat("x", 40<<10)} },
		"spot not sold": func(r *gpuflow.ProvisionRequest) {
			r.Spec.Spot, r.Offer.GPUType, r.Offer.VCPUs, r.Offer.MemoryGB = true, "A100", 16, 125
		},
	}
	for name, mutate := range cases {
		req := e.request("job-bad", false)
		mutate(&req)
		_, err := e.p.Provision(ctx, req)
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindInvalidRequest && !(name == "spot not sold" && pe.Kind == gpuflow.KindNoCapacity) {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
}

// TestSecretsStayOut checks that neither the AccessKey secret nor the
// job's agent token (inside the user data) reaches logs or errors, even
// when the endpoint is down (transport errors carry the request URL) or
// the signature is refused.
func TestSecretsStayOut(t *testing.T) {
	ctx := context.Background()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	check := func(t *testing.T, e *env, errs []error) {
		t.Helper()
		texts := []string{e.logs.String()}
		for _, err := range errs {
			if err != nil {
				texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
			}
		}
		for _, s := range texts {
			for _, secret := range []string{emulator.TestAccessKeySecret, "wrong-secret-value", agentToken, "UserData", "IyEvYmlu"} {
				if strings.Contains(s, secret) {
					t.Errorf("%q leaked into %q", secret, s)
				}
			}
		}
	}
	t.Run("endpoint down", func(t *testing.T) {
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.Endpoint = dead.URL; c.CreateRetries = 1 })
		_, err := e.p.Provision(ctx, e.request("job-secret", false))
		if err == nil {
			t.Fatal("Provision against a closed endpoint succeeded")
		}
		e.p.Offers(ctx)
		check(t, e, []error{err, e.p.Health(ctx)})
	})
	t.Run("signature refused", func(t *testing.T) {
		e := newEnv(t, func(_ *emulator.Options, c *alibaba.Config) { c.AccessKeySecret = "wrong-secret-value" })
		_, err := e.p.Provision(ctx, e.request("job-secret", false))
		if pe := kindOf(t, err); pe.Kind != gpuflow.KindAuth || pe.Code != "SignatureDoesNotMatch" {
			t.Errorf("got %v, want auth SignatureDoesNotMatch", err)
		}
		check(t, e, []error{err})
	})
	t.Run("config", func(t *testing.T) {
		e := newEnv(t)
		cfg := alibaba.Config{AccessKeyID: emulator.TestAccessKeyID, AccessKeySecret: emulator.TestAccessKeySecret}
		slog.New(slog.NewJSONHandler(e.logs, nil)).Info("config", "cfg", cfg)
		e.logs.Write([]byte(fmt.Sprintf("%v %+v %#v %s %v %+v", cfg, cfg, cfg, cfg, e.p, e.p)))
		check(t, e, nil)
		if !strings.Contains(e.logs.String(), "[REDACTED]") {
			t.Error("config logged without its redaction marker")
		}
	})
	t.Run("full run", func(t *testing.T) {
		e := newEnv(t)
		m, err := e.p.Provision(ctx, e.request("job-secret", false))
		if err != nil {
			t.Fatal(err)
		}
		e.toRunning()
		if _, err := e.p.Describe(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		select {
		case <-e.agent.finished:
		case <-time.After(10 * time.Second):
			t.Fatal("the job never finished")
		}
		if err := e.p.Terminate(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		check(t, e, nil)
	})
}

func TestContextCancel(t *testing.T) {
	e := newEnv(t)
	e.emu.Faults().Set(emulate.Faults{Slow: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.p.Describe(ctx, "cn-hangzhou:i-aaaaaaaaaaaaaaaaaaaa")
	if !errors.Is(err, context.DeadlineExceeded) || gpuflow.ProviderErrorKindOf(err) != gpuflow.KindTransient {
		t.Errorf("got %v, want a transient error wrapping context.DeadlineExceeded", err)
	}
}
