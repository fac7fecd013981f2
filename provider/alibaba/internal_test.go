package alibaba

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
)

func newTestProvider(t *testing.T, now time.Time) *Provider {
	t.Helper()
	p, err := New(Config{AccessKeyID: "LTAI5tTest", AccessKeySecret: "secret", Regions: []string{"cn-hangzhou", "ap-southeast-1"},
		Endpoint: "http://127.0.0.1:1", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientToken(t *testing.T) {
	if got := ClientToken("job-123-a1"); got != "job-123-a1" {
		t.Errorf("short key: %q", got)
	}
	long := strings.Repeat("k", 65)
	for _, key := range []string{long, "job with spaces", "jöb"} {
		got := ClientToken(key)
		if len(got) > 64 || !strings.HasPrefix(got, "gpuflow-") || got != ClientToken(key) {
			t.Errorf("ClientToken(%q) = %q", key, got)
		}
	}
	if ClientToken(long) == ClientToken(long+"x") {
		t.Error("different keys share a token")
	}
}

func TestPlacement(t *testing.T) {
	p := newTestProvider(t, time.Now())
	for where, want := range map[string][2]string{
		"cn-hangzhou":     {"cn-hangzhou", ""},
		"cn-hangzhou-i":   {"cn-hangzhou", "cn-hangzhou-i"},
		"ap-southeast-1a": {"ap-southeast-1", "ap-southeast-1a"},
	} {
		r, z, err := p.placement(where)
		if err != nil || r != want[0] || z != want[1] {
			t.Errorf("placement(%q) = %q, %q, %v", where, r, z, err)
		}
	}
	for _, where := range []string{"eu-central-1a", "cn-hangzhou-finance-1", "ap-southeast-10", ""} {
		if _, _, err := p.placement(where); err == nil {
			t.Errorf("placement(%q) accepted", where)
		}
	}
}

func TestReleaseTimeIsStableWithinTheHour(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 5, 0, 0, time.UTC)
	req := gpuflow.ProvisionRequest{MaxDuration: 3 * time.Hour}
	r1 := newTestProvider(t, start).releaseTime(req)
	r2 := newTestProvider(t, start.Add(50*time.Minute)).releaseTime(req)
	if !r1.Equal(r2) {
		t.Errorf("release time moved within the hour: %v, %v", r1, r2)
	}
	if min := start.Add(50 * time.Minute).Add(3*time.Hour + DefaultReleaseMargin); r1.Before(min) {
		t.Errorf("release %v before MaxDuration + margin (%v)", r1, min)
	}
	minutes := 90
	spec := gpuflow.ProvisionRequest{Spec: gpuflow.JobSpec{MaxDurationMinutes: &minutes}}
	if got := newTestProvider(t, start).releaseTime(spec); got.Before(start.Add(90*time.Minute + DefaultReleaseMargin)) {
		t.Errorf("spec max duration ignored: %v", got)
	}
	if got := newTestProvider(t, start).releaseTime(gpuflow.ProvisionRequest{}); got.Before(start.Add(DefaultMaxDuration)) {
		t.Errorf("default max duration ignored: %v", got)
	}
}

func TestTags(t *testing.T) {
	req := gpuflow.ProvisionRequest{JobID: "job-1", Tags: map[string]string{
		"zz": "last", "aliyun-x": "reserved", "acs:y": "reserved", gpuflow.TagManaged: "false",
	}}
	for i := range 30 {
		req.Tags["extra-"+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	got := tags(req, "tok")
	if len(got) != maxTags {
		t.Fatalf("%d tags, want %d", len(got), maxTags)
	}
	m := map[string]string{}
	for i, tg := range got {
		m[*tg.Key] = *tg.Value
		if i > 0 && *got[i-1].Key >= *tg.Key {
			t.Errorf("tags not sorted at %d", i)
		}
	}
	if m[gpuflow.TagManaged] != "true" || m[gpuflow.TagJob] != "job-1" || m[TagClientToken] != "tok" {
		t.Errorf("gpuflow tags missing: %v", m)
	}
	if _, ok := m["aliyun-x"]; ok {
		t.Error("a reserved tag key was sent")
	}
}

func TestInstanceName(t *testing.T) {
	if got := instanceName("job 1/ü"); got != "gpuflow-job-1--" {
		t.Errorf("instanceName = %q", got)
	}
}

func TestStateMapping(t *testing.T) {
	p := newTestProvider(t, time.Now())
	inst := func(status string, locks ...string) *ecs.DescribeInstancesResponseBodyInstancesInstance {
		i := &ecs.DescribeInstancesResponseBodyInstancesInstance{
			InstanceId: tea.String("i-abc"), Status: tea.String(status), ZoneId: tea.String("cn-hangzhou-i"),
			InstanceType: tea.String("ecs.gn6v-c8g1.8xlarge"), CreationTime: tea.String("2026-11-26T16:52Z"),
			OperationLocks: &ecs.DescribeInstancesResponseBodyInstancesInstanceOperationLocks{},
		}
		for _, l := range locks {
			i.OperationLocks.LockReason = append(i.OperationLocks.LockReason,
				&ecs.DescribeInstancesResponseBodyInstancesInstanceOperationLocksLockReason{LockReason: tea.String(l)})
		}
		return i
	}
	cases := []struct {
		in     *ecs.DescribeInstancesResponseBodyInstancesInstance
		state  gpuflow.MachineState
		reason string
	}{
		{inst("Pending"), gpuflow.MachinePending, ""},
		{inst("Starting"), gpuflow.MachineStarting, ""},
		{inst("Running"), gpuflow.MachineRunning, ""},
		{inst("Stopping"), gpuflow.MachineStopping, ""},
		{inst("Stopped"), gpuflow.MachineFailed, "stopped"},
		{inst("Running", "recycling"), gpuflow.MachineFailed, "preempted"},
		{inst("Stopped", "Recycling"), gpuflow.MachineFailed, "preempted"},
		{inst("Running", "financial"), gpuflow.MachineFailed, "locked: financial"},
		{inst("Mystery"), gpuflow.MachinePending, "Mystery"},
	}
	for _, tc := range cases {
		m := p.machine("cn-hangzhou", tc.in)
		if m.State != tc.state || !strings.Contains(m.Reason, tc.reason) {
			t.Errorf("%s %v: %s %q, want %s %q", tea.StringValue(tc.in.Status), tc.in.OperationLocks.LockReason, m.State, m.Reason, tc.state, tc.reason)
		}
		// GPU details come from the catalogue when ECS leaves them out.
		if m.ID != "cn-hangzhou:i-abc" || m.GPUType != "V100" || m.GPUCount != 4 || m.Region != "cn-hangzhou-i" ||
			!m.CreatedAt.Equal(time.Date(2026, 11, 26, 16, 52, 0, 0, time.UTC)) {
			t.Errorf("machine %+v", m)
		}
	}
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		msg    string
		want   gpuflow.ProviderErrorKind
	}{
		{403, "OperationDenied.NoStock", "", gpuflow.KindNoCapacity},
		{403, "InvalidResourceType.NotSupported", "", gpuflow.KindNoCapacity},
		{403, "Zone.NotOnSale", "", gpuflow.KindNoCapacity},
		{400, "Zone.NotOnSale", "", gpuflow.KindNoCapacity},
		{403, "InvalidInstanceType.ZoneNotSupported", "", gpuflow.KindNoCapacity},
		{400, "QuotaExceed.AfterpayInstance", "", gpuflow.KindNoCapacity},
		{400, "OperationDenied", "The specified InstanceType or Zone is not available or not authorized.", gpuflow.KindNoCapacity},
		{403, "SomethingNew", "The resource is out of usage.", gpuflow.KindNoCapacity},
		{403, "OperationDenied.ImageNotValid", "", gpuflow.KindInvalidRequest},
		{400, "InvalidSpotStrategy", "", gpuflow.KindInvalidRequest},
		{400, "InvalidUserData.SizeExceeded", "", gpuflow.KindInvalidRequest},
		{400, "MissingParameter", "", gpuflow.KindInvalidRequest},
		{400, "IdempotenceParamNotMatch", "", gpuflow.KindInvalidRequest},
		{404, "InvalidAccessKeyId.NotFound", "", gpuflow.KindAuth},
		{400, "SignatureDoesNotMatch", "", gpuflow.KindAuth},
		{400, "Account.Arrearage", "", gpuflow.KindAuth},
		{403, "InvalidAccountStatus.NotEnoughBalance", "", gpuflow.KindAuth},
		{403, "Forbidden.RAM", "", gpuflow.KindAuth},
		{400, "Throttling.User", "", gpuflow.KindTransient},
		{503, "Throttling", "", gpuflow.KindTransient},
		{500, "InternalError", "", gpuflow.KindTransient},
		{503, "ServiceUnavailable", "", gpuflow.KindTransient},
		{502, "", "", gpuflow.KindTransient},
		{403, "IncorrectInstanceStatus", "", gpuflow.KindTransient},
		{404, "InvalidInstanceId.NotFound", "", gpuflow.KindNotFound},
	} {
		if got := kindOf(sdkFailure{status: tc.status, code: tc.code, message: tc.msg}); got != tc.want {
			t.Errorf("%d %s: %s, want %s", tc.status, tc.code, got, tc.want)
		}
	}
}

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&UserData%3DIyEv": "Specified signature is not matched with our calculation. server [redacted]",
		`Post "http://h:1/?UserData=IyEv&X=1": EOF`: `Post "http://h:1/?[redacted]": EOF`,
		"plain message": "plain message",
	} {
		if got := redactText(in); got != want {
			t.Errorf("redactText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, offersErr := p.Offers(ctx)
	_, provErr := p.Provision(ctx, gpuflow.ProvisionRequest{IdempotencyKey: "k", Agent: &gpuflow.AgentEndpoint{},
		Offer: gpuflow.Offer{GPUType: "A10", GPUCount: 1, Region: "cn-hangzhou"}})
	_, descErr := p.Describe(ctx, "cn-hangzhou:i-abc")
	_, listErr := p.List(ctx)
	for i, err := range []error{offersErr, provErr, descErr, listErr, p.Terminate(ctx, "cn-hangzhou:i-abc"), p.Health(ctx)} {
		if gpuflow.ProviderErrorKindOf(err) != gpuflow.KindAuth {
			t.Errorf("call %d: %v, want an auth error", i, err)
		}
	}
}

func TestCatalog(t *testing.T) {
	c, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if c.Date == "" || !strings.Contains(c.Source, "providers.md") {
		t.Errorf("catalogue source %q date %q", c.Source, c.Date)
	}
	for _, tc := range []struct {
		offer gpuflow.Offer
		want  string
	}{
		{gpuflow.Offer{GPUType: "NVIDIA A10", GPUCount: 1}, "ecs.gn7i-c8g1.2xlarge"},
		{gpuflow.Offer{GPUType: "A10", GPUCount: 1, VCPUs: 16, MemoryGB: 60}, "ecs.gn7i-c16g1.4xlarge"},
		{gpuflow.Offer{GPUType: "A10", GPUCount: 1, VCPUs: 12}, "ecs.gn7i-c16g1.4xlarge"},
		{gpuflow.Offer{GPUType: "Tesla V100", GPUCount: 4}, "ecs.gn6v-c8g1.8xlarge"},
	} {
		got, ok := c.forOffer(tc.offer)
		if !ok || got.Name != tc.want {
			t.Errorf("forOffer(%+v) = %s, %v; want %s", tc.offer, got.Name, ok, tc.want)
		}
	}
	if _, ok := c.forOffer(gpuflow.Offer{GPUType: "A10", GPUCount: 2}); ok {
		t.Error("found a 2× A10 type the catalogue lacks")
	}
}

func TestJustCreatedIsPendingNotGone(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	emu := emulator.New(emulator.Options{Now: func() time.Time { return now }})
	srv := httptest.NewServer(emu)
	defer func() {
		srv.Close()
		emu.Close()
	}()
	clock := now
	p, err := New(Config{AccessKeyID: emulator.TestAccessKeyID, AccessKeySecret: emulator.TestAccessKeySecret,
		Endpoint: srv.URL, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "cn-hangzhou:i-notlistedyet0000000"
	p.remember(id)
	if m, err := p.Describe(ctx, id); err != nil || m.State != gpuflow.MachinePending {
		t.Errorf("just created, not listed: %+v, %v; want pending", m, err)
	}
	clock = clock.Add(createGrace + time.Second)
	if m, err := p.Describe(ctx, id); err != nil || m.State != gpuflow.MachineGone {
		t.Errorf("after the grace: %+v, %v; want gone", m, err)
	}
	p.remember(id)
	if err := p.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, err := p.Describe(ctx, id); err != nil || m.State != gpuflow.MachineGone {
		t.Errorf("after Terminate: %+v, %v; want gone", m, err)
	}
}
