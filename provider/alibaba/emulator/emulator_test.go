package emulator_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var timing = emulate.Timing{Pending: 10 * time.Second, Starting: 10 * time.Second, Run: 100 * time.Millisecond}

// start serves an emulator and checks it holds no instance at the end.
func start(t *testing.T, opts emulator.Options) (*emulator.Emulator, *httptest.Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)}
	opts.Now, opts.Timing = clk.Now, timing
	emu := emulator.New(opts)
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
	})
	t.Cleanup(func() {
		if live := emu.Live(); len(live) != 0 {
			t.Errorf("live instances at the end: %v", live)
		}
	})
	return emu, srv, clk
}

// client is the real SDK on the emulator; algorithm "" is ACS3, "v2" the
// legacy HMAC-SHA1 signature.
func client(t *testing.T, srv *httptest.Server, secret, algorithm string) *ecs.Client {
	t.Helper()
	_, host, _ := strings.Cut(srv.URL, "://")
	cfg := &openapi.Config{
		AccessKeyId:     tea.String(emulator.TestAccessKeyID),
		AccessKeySecret: tea.String(secret),
		RegionId:        tea.String("cn-hangzhou"),
		Protocol:        tea.String("http"),
		Endpoint:        tea.String(host),
	}
	if algorithm != "" {
		cfg.SignatureAlgorithm = tea.String(algorithm)
	}
	c, err := ecs.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var rt = &dara.RuntimeOptions{}

// apiErr returns the code and HTTP status of an SDK error.
func apiErr(t *testing.T, err error) (string, int) {
	t.Helper()
	var se *tea.SDKError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *tea.SDKError", err, err)
	}
	return tea.StringValue(se.Code), tea.IntValue(se.StatusCode)
}

func run(c *ecs.Client, req *ecs.RunInstancesRequest) (string, error) {
	resp, err := c.RunInstancesWithOptions(req, rt)
	if err != nil {
		return "", err
	}
	return tea.StringValue(resp.Body.InstanceIdSets.InstanceIdSet[0]), nil
}

func a10(token string) *ecs.RunInstancesRequest {
	return &ecs.RunInstancesRequest{
		RegionId:     tea.String("cn-hangzhou"),
		ZoneId:       tea.String("cn-hangzhou-j"),
		InstanceType: tea.String("ecs.gn7i-c8g1.2xlarge"),
		ImageId:      tea.String("ubuntu_22_04"),
		ClientToken:  tea.String(token),
		Tag:          []*ecs.RunInstancesRequestTag{{Key: tea.String("team"), Value: tea.String("ml")}},
	}
}

func del(t *testing.T, c *ecs.Client, id string) {
	t.Helper()
	if _, err := c.DeleteInstanceWithOptions(&ecs.DeleteInstanceRequest{InstanceId: tea.String(id), Force: tea.Bool(true)}, rt); err != nil {
		t.Fatalf("DeleteInstance %s: %v", id, err)
	}
}

func TestSignatures(t *testing.T) {
	_, srv, _ := start(t, emulator.Options{})
	for _, alg := range []string{"", "v2"} {
		req := &ecs.DescribeInstancesRequest{RegionId: tea.String("cn-hangzhou")}
		if _, err := client(t, srv, emulator.TestAccessKeySecret, alg).DescribeInstancesWithOptions(req, rt); err != nil {
			t.Errorf("algorithm %q: %v", alg, err)
		}
		_, err := client(t, srv, "wrong", alg).DescribeInstancesWithOptions(req, rt)
		if code, status := apiErr(t, err); code != "SignatureDoesNotMatch" || status != 400 {
			t.Errorf("algorithm %q, wrong secret: %s %d", alg, code, status)
		}
	}
	// No signature at all: a flat JSON error with the API's fields.
	resp, err := http.Post(srv.URL+"/?RegionId=cn-hangzhou", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || body["Code"] != "IncompleteSignature" || body["RequestId"] == "" || body["HostId"] != "ecs.cn-hangzhou.aliyuncs.com" || body["Message"] == "" {
		t.Errorf("unsigned call: %d %v", resp.StatusCode, body)
	}
}

func TestRunDescribeDelete(t *testing.T) {
	emu, srv, clk := start(t, emulator.Options{})
	c := client(t, srv, emulator.TestAccessKeySecret, "")

	// DryRun validates only.
	dry := a10("")
	dry.DryRun = tea.Bool(true)
	_, err := run(c, dry)
	if code, status := apiErr(t, err); code != "DryRunOperation" || status != 400 {
		t.Errorf("dry run: %s %d", code, status)
	}
	if len(emu.Live()) != 0 {
		t.Fatal("a dry run made an instance")
	}

	id, err := run(c, a10("tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 22 || !strings.HasPrefix(id, "i-") || strings.ToLower(id) != id {
		t.Errorf("instance id %q", id)
	}
	again, err := run(c, a10("tok-1"))
	if err != nil || again != id {
		t.Errorf("same token: %q, %v; want %q", again, err, id)
	}
	changed := a10("tok-1")
	changed.InstanceType = tea.String("ecs.gn6i-c4g1.xlarge")
	_, err = run(c, changed)
	if code, status := apiErr(t, err); code != "IdempotenceParamNotMatch" || status != 400 {
		t.Errorf("same token, other params: %s %d", code, status)
	}

	describe := func() *ecs.DescribeInstancesResponseBodyInstancesInstance {
		t.Helper()
		ids, _ := json.Marshal([]string{id, "i-unknown"})
		resp, err := c.DescribeInstancesWithOptions(&ecs.DescribeInstancesRequest{
			RegionId: tea.String("cn-hangzhou"), InstanceIds: tea.String(string(ids)),
		}, rt)
		if err != nil {
			t.Fatal(err)
		}
		if tea.Int32Value(resp.Body.TotalCount) == 0 {
			return nil
		}
		return resp.Body.Instances.Instance[0]
	}
	inst := describe()
	if tea.StringValue(inst.Status) != "Pending" || tea.StringValue(inst.ZoneId) != "cn-hangzhou-j" ||
		tea.Int32Value(inst.GPUAmount) != 1 || tea.StringValue(inst.GPUSpec) != "NVIDIA A10" ||
		tea.Int32Value(inst.Memory) != 30*1024 || tea.StringValue(inst.InstanceTypeFamily) != "ecs.gn7i" ||
		tea.StringValue(inst.Tags.Tag[0].TagKey) != "team" || tea.StringValue(inst.CreationTime) != "2026-11-26T08:00Z" {
		t.Errorf("instance %+v", inst)
	}
	clk.Advance(10 * time.Second)
	st, err := c.DescribeInstanceStatusWithOptions(&ecs.DescribeInstanceStatusRequest{
		RegionId: tea.String("cn-hangzhou"), InstanceId: []*string{tea.String(id)},
	}, rt)
	if err != nil || tea.StringValue(st.Body.InstanceStatuses.InstanceStatus[0].Status) != "Starting" {
		t.Errorf("DescribeInstanceStatus: %+v, %v", st, err)
	}
	clk.Advance(10 * time.Second)
	if s := tea.StringValue(describe().Status); s != "Running" {
		t.Errorf("status %s, want Running", s)
	}

	_, err = c.DeleteInstanceWithOptions(&ecs.DeleteInstanceRequest{InstanceId: tea.String(id)}, rt)
	if code, status := apiErr(t, err); code != "IncorrectInstanceStatus" || status != 403 {
		t.Errorf("delete running without Force: %s %d", code, status)
	}
	_, err = c.DeleteInstancesWithOptions(&ecs.DeleteInstancesRequest{
		RegionId: tea.String("cn-hangzhou"), InstanceId: []*string{tea.String(id)}, Force: tea.Bool(true),
	}, rt)
	if err != nil {
		t.Fatal(err)
	}
	if describe() != nil {
		t.Error("a deleted instance is still listed")
	}
	_, err = c.DeleteInstanceWithOptions(&ecs.DeleteInstanceRequest{InstanceId: tea.String(id), Force: tea.Bool(true)}, rt)
	if code, status := apiErr(t, err); code != "InvalidInstanceId.NotFound" || status != 404 {
		t.Errorf("delete unknown: %s %d", code, status)
	}
}

func TestRunValidation(t *testing.T) {
	emu, srv, _ := start(t, emulator.Options{})
	c := client(t, srv, emulator.TestAccessKeySecret, "")
	cases := []struct {
		name   string
		mutate func(*ecs.RunInstancesRequest)
		code   string
		status int
	}{
		{"spot without zone", func(r *ecs.RunInstancesRequest) { r.ZoneId, r.SpotStrategy = nil, tea.String("SpotAsPriceGo") }, "InvalidSpotParam.EmptyZoneID", 400},
		{"bad spot strategy", func(r *ecs.RunInstancesRequest) { r.SpotStrategy = tea.String("Cheap") }, "InvalidSpotStrategy", 400},
		{"unknown type", func(r *ecs.RunInstancesRequest) { r.InstanceType = tea.String("ecs.nope") }, "InvalidInstanceType.ValueNotSupported", 400},
		{"no image", func(r *ecs.RunInstancesRequest) { r.ImageId = nil }, "MissingParameter", 400},
		{"bad user data", func(r *ecs.RunInstancesRequest) { r.UserData = tea.String("not base64!") }, "InvalidUserData.Base64FormatInvalid", 403},
		{"user data too big", func(r *ecs.RunInstancesRequest) {
			r.UserData = tea.String(base64.StdEncoding.EncodeToString(make([]byte, 33<<10)))
		}, "InvalidUserData.SizeExceeded", 400},
		{"long token", func(r *ecs.RunInstancesRequest) { r.ClientToken = tea.String(strings.Repeat("t", 65)) }, "InvalidClientToken.ValueNotSupported", 400},
		{"past release", func(r *ecs.RunInstancesRequest) { r.AutoReleaseTime = tea.String("2020-01-01T00:00:00Z") }, "InvalidAutoReleaseTime.LessThanCurrentTime", 400},
		{"unknown region", func(r *ecs.RunInstancesRequest) { r.RegionId = tea.String("mars-1") }, "InvalidRegionId.NotFound", 404},
	}
	for _, tc := range cases {
		req := a10("")
		tc.mutate(req)
		_, err := run(c, req)
		if code, status := apiErr(t, err); code != tc.code || status != tc.status {
			t.Errorf("%s: %s %d, want %s %d", tc.name, code, status, tc.code, tc.status)
		}
	}
	emu.Faults().Set(emulate.Faults{NoCapacity: true})
	_, err := run(c, a10(""))
	if code, status := apiErr(t, err); code != "OperationDenied.NoStock" || status != 403 {
		t.Errorf("no capacity: %s %d", code, status)
	}
}

func TestJobReportsToAgent(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	finished := make(chan string, 1)
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/finished") {
			finished <- string(body)
		}
	}))
	defer agent.Close()
	emu, srv, clk := start(t, emulator.Options{})
	c := client(t, srv, emulator.TestAccessKeySecret, "")
	script, err := agentscript.Script(gpuflow.ProvisionRequest{
		JobID: "job-7", Spec: gpuflow.JobSpec{Command: []string{"true"}, Env: map[string]string{emulate.EnvExitCode: "4"}},
		Agent: &gpuflow.AgentEndpoint{URL: agent.URL + "/agent/job-7", Token: "tok"},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := a10("")
	req.UserData = tea.String(base64.StdEncoding.EncodeToString([]byte(script)))
	id, err := run(c, req)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Second) // the ticker moves it to Running and starts the job
	select {
	case body := <-finished:
		if body != `{"exit_code":4}` {
			t.Errorf("finished body %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no finished report")
	}
	mu.Lock()
	got := strings.Join(paths, "\n")
	mu.Unlock()
	for _, want := range []string{"/agent/job-7/logs Bearer tok", "/agent/job-7/progress Bearer tok", "/agent/job-7/finished Bearer tok"} {
		if !strings.Contains(got, want) {
			t.Errorf("agent calls %q lack %q", got, want)
		}
	}
	del(t, c, id)
	if len(emu.Live()) != 0 {
		t.Error("instance still live")
	}
}

func TestCloseStopsJobs(t *testing.T) {
	progress := make(chan struct{}, 4)
	agent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/progress") {
			progress <- struct{}{}
		}
	}))
	defer agent.Close()
	clk := &clock{t: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)}
	emu := emulator.New(emulator.Options{Now: clk.Now, Timing: timing})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	script, _ := agentscript.Script(gpuflow.ProvisionRequest{
		JobID: "job-long", Spec: gpuflow.JobSpec{Command: []string{"sleep"}, Env: map[string]string{emulate.EnvRunSeconds: "3600"}},
		Agent: &gpuflow.AgentEndpoint{URL: agent.URL, Token: "tok"},
	})
	req := a10("")
	req.UserData = tea.String(base64.StdEncoding.EncodeToString([]byte(script)))
	if _, err := run(client(t, srv, emulator.TestAccessKeySecret, ""), req); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	select {
	case <-progress: // the hour-long job runs
	case <-time.After(10 * time.Second):
		t.Fatal("the job never started")
	}
	done := make(chan struct{})
	go func() {
		emu.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop an hour-long job")
	}
	_, err := run(client(t, srv, emulator.TestAccessKeySecret, ""), a10(""))
	if code, status := apiErr(t, err); code != "ServiceUnavailable" || status != 503 {
		t.Errorf("after Close: %s %d", code, status)
	}
}

func TestFaultsEndpoint(t *testing.T) {
	emu, srv, _ := start(t, emulator.Options{})
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, srv.URL+"/_emulator/faults", `{"no_capacity":true,"server_errors":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f := emu.Faults().Get(); !f.NoCapacity || f.ServerErrors != 2 {
		t.Errorf("faults %+v", f)
	}
	c := client(t, srv, emulator.TestAccessKeySecret, "")
	_, err = c.DescribeInstancesWithOptions(&ecs.DescribeInstancesRequest{RegionId: tea.String("cn-hangzhou")}, rt)
	if code, status := apiErr(t, err); code != "ServiceUnavailable" || status != 503 {
		t.Errorf("server error fault: %s %d", code, status)
	}
	emu.Faults().Set(emulate.Faults{Throttle: true})
	_, err = c.DescribeInstancesWithOptions(&ecs.DescribeInstancesRequest{RegionId: tea.String("cn-hangzhou")}, rt)
	if code, _ := apiErr(t, err); code != "Throttling.User" {
		t.Errorf("throttle fault: %s", code)
	}
	resp, err = http.Post(srv.URL+"/_emulator/preempt/i-unknown", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("preempting an unknown instance: %s", resp.Status)
	}
}

func TestPriceAndStock(t *testing.T) {
	emu, srv, _ := start(t, emulator.Options{Currency: "CNY", CNYPerUSD: 10})
	c := client(t, srv, emulator.TestAccessKeySecret, "")
	resp, err := c.DescribePriceWithOptions(&ecs.DescribePriceRequest{
		RegionId: tea.String("cn-hangzhou"), InstanceType: tea.String("ecs.gn6i-c4g1.xlarge"), SpotStrategy: tea.String("SpotAsPriceGo"),
	}, rt)
	if err != nil {
		t.Fatal(err)
	}
	pr := resp.Body.PriceInfo.Price
	if tea.StringValue(pr.Currency) != "CNY" || tea.Float32Value(pr.TradePrice) != 2.7 {
		t.Errorf("spot price %s %v, want CNY 2.7", tea.StringValue(pr.Currency), tea.Float32Value(pr.TradePrice))
	}
	_, err = c.DescribePriceWithOptions(&ecs.DescribePriceRequest{
		RegionId: tea.String("cn-hangzhou"), InstanceType: tea.String("ecs.gn7e-c16g1.4xlarge"), SpotStrategy: tea.String("SpotAsPriceGo"),
	}, rt)
	if code, _ := apiErr(t, err); code != "InvalidSpotAuthorized" {
		t.Errorf("spot price of a type not sold as spot: %s", code)
	}
	emu.Faults().Set(emulate.Faults{NoCapacity: true})
	ar, err := c.DescribeAvailableResourceWithOptions(&ecs.DescribeAvailableResourceRequest{
		RegionId: tea.String("cn-hangzhou"), DestinationResource: tea.String("InstanceType"), ZoneId: tea.String("cn-hangzhou-i"),
	}, rt)
	if err != nil {
		t.Fatal(err)
	}
	zones := ar.Body.AvailableZones.AvailableZone
	if len(zones) != 1 || tea.StringValue(zones[0].Status) != "SoldOut" ||
		tea.StringValue(zones[0].AvailableResources.AvailableResource[0].SupportedResources.SupportedResource[0].StatusCategory) != "WithoutStock" {
		t.Errorf("stock under NoCapacity: %s", tea.Prettify(ar.Body))
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConfiguredCredentials(t *testing.T) {
	_, srv, _ := start(t, emulator.Options{Credentials: map[string]string{"LTAI5tOther": "other-secret"}})
	_, host, _ := strings.Cut(srv.URL, "://")
	mk := func(id, secret string) *ecs.Client {
		c, err := ecs.NewClient(&openapi.Config{AccessKeyId: tea.String(id), AccessKeySecret: tea.String(secret),
			RegionId: tea.String("cn-hangzhou"), Protocol: tea.String("http"), Endpoint: tea.String(host)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	req := &ecs.DescribeInstancesRequest{RegionId: tea.String("cn-hangzhou")}
	if _, err := mk("LTAI5tOther", "other-secret").DescribeInstancesWithOptions(req, rt); err != nil {
		t.Errorf("configured key: %v", err)
	}
	_, err := mk(emulator.TestAccessKeyID, emulator.TestAccessKeySecret).DescribeInstancesWithOptions(req, rt)
	if code, status := apiErr(t, err); code != "InvalidAccessKeyId.NotFound" || status != 404 {
		t.Errorf("default test key on a configured emulator: %s %d", code, status)
	}
}
