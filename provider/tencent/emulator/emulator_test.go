package emulator_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

const region = "ap-guangzhou"

type fixture struct {
	em  *emulator.Emulator
	srv *httptest.Server
	c   *cvm.Client
}

func newFixture(t *testing.T, opts emulator.Options) *fixture {
	t.Helper()
	if opts.Timing == (emulate.Timing{}) {
		opts.Timing = emulate.Timing{Pending: 20 * time.Millisecond, Starting: 20 * time.Millisecond, Run: 50 * time.Millisecond}
	}
	opts.Tick = 5 * time.Millisecond
	f := &fixture{em: emulator.New(opts)}
	f.srv = httptest.NewServer(f.em)
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.em.Close)
	t.Cleanup(func() {
		if live := f.em.Live(); len(live) > 0 {
			t.Errorf("live instances after the test: %v", live)
		}
	})
	f.c = f.client(t, emulator.TestSecretID, emulator.TestSecretKey)
	return f
}

func (f *fixture) client(t *testing.T, id, key string) *cvm.Client {
	t.Helper()
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme = "HTTP"
	cpf.HttpProfile.Endpoint = strings.TrimPrefix(f.srv.URL, "http://")
	c, err := cvm.NewClient(common.NewCredential(id, key), region, cpf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func code(err error) string {
	var e *tcerr.TencentCloudSDKError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func (f *fixture) run(t *testing.T, mut func(*cvm.RunInstancesRequest)) (string, error) {
	t.Helper()
	r := cvm.NewRunInstancesRequest()
	r.Placement = &cvm.Placement{Zone: common.StringPtr(region + "-3")}
	r.InstanceType = common.StringPtr("GN7.2XLARGE32")
	r.ImageId = common.StringPtr("img-abc12345")
	if mut != nil {
		mut(r)
	}
	resp, err := f.c.RunInstances(r)
	if err != nil {
		return "", err
	}
	if len(resp.Response.InstanceIdSet) == 0 {
		return "", nil
	}
	return *resp.Response.InstanceIdSet[0], nil
}

// terminate terminates id once it has left PENDING and waits until it is
// no longer live.
func (f *fixture) terminate(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := cvm.NewTerminateInstancesRequest()
		r.InstanceIds = common.StringPtrs([]string{id})
		_, err := f.c.TerminateInstances(r)
		if err == nil {
			return
		}
		if code(err) != cvm.UNSUPPORTEDOPERATION_INSTANCESTATEPENDING || time.Now().After(deadline) {
			t.Fatalf("terminate %s: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// signedRequest builds a request signed by hand with the documented TC3
// formula, independent of the SDK.
func signedRequest(t *testing.T, url, host, action, body, key string, ts time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	date := ts.UTC().Format("2006-01-02")
	h := sha256.Sum256([]byte(body))
	canonical := "POST\n/\n\ncontent-type:application/json\nhost:" + host + "\n\ncontent-type;host\n" + hex.EncodeToString(h[:])
	hc := sha256.Sum256([]byte(canonical))
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(ts.Unix(), 10) + "\n" + date + "/cvm/tc3_request\n" + hex.EncodeToString(hc[:])
	sig := hex.EncodeToString(emulator.Sign(key, date, "cvm", toSign))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", action)
	req.Header.Set("X-TC-Version", emulator.APIVersion)
	req.Header.Set("X-TC-Region", region)
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("Authorization", "TC3-HMAC-SHA256 Credential="+emulator.TestSecretID+"/"+date+"/cvm/tc3_request, SignedHeaders=content-type;host, Signature="+sig)
	return req
}

// do sends req and returns the HTTP status and the decoded Response.
func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Response map[string]any
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("answer is not the API's JSON: %v", err)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if env.Response["RequestId"] == "" || env.Response["RequestId"] == nil {
		t.Errorf("no RequestId in %v", env.Response)
	}
	return resp.StatusCode, env.Response
}

func errCode(resp map[string]any) string {
	e, _ := resp["Error"].(map[string]any)
	c, _ := e["Code"].(string)
	return c
}

func TestSignature(t *testing.T) {
	f := newFixture(t, emulator.Options{})
	host := strings.TrimPrefix(f.srv.URL, "http://")
	body := `{"Limit":1}`
	now := time.Now()

	status, resp := do(t, signedRequest(t, f.srv.URL, host, "DescribeInstancesStatus", body, emulator.TestSecretKey, now))
	if status != 200 || errCode(resp) != "" {
		t.Errorf("hand-signed request: %d %v", status, resp)
	}
	for name, c := range map[string]struct {
		req  *http.Request
		want string
	}{
		"wrong key":    {signedRequest(t, f.srv.URL, host, "DescribeInstancesStatus", body, "wrong", now), "AuthFailure.SignatureFailure"},
		"stale":        {signedRequest(t, f.srv.URL, host, "DescribeInstancesStatus", body, emulator.TestSecretKey, now.Add(-10*time.Minute)), "AuthFailure.SignatureExpire"},
		"unknown verb": {signedRequest(t, f.srv.URL, host, "RebootTheWorld", `{}`, emulator.TestSecretKey, now), "InvalidAction"},
	} {
		status, resp := do(t, c.req)
		if status != 200 || errCode(resp) != c.want {
			t.Errorf("%s: %d %v, want 200 %s", name, status, resp, c.want)
		}
	}
	// A body changed after signing.
	req := signedRequest(t, f.srv.URL, host, "DescribeInstancesStatus", body, emulator.TestSecretKey, now)
	req.Body = io.NopCloser(strings.NewReader(`{"Limit":2}`))
	req.ContentLength = int64(len(`{"Limit":2}`))
	if _, resp := do(t, req); errCode(resp) != "AuthFailure.SignatureFailure" {
		t.Errorf("tampered body: %v", resp)
	}
	// Signed for another host.
	req = signedRequest(t, f.srv.URL, "cvm.tencentcloudapi.com", "DescribeInstancesStatus", body, emulator.TestSecretKey, now)
	req.Host = host
	if _, resp := do(t, req); errCode(resp) != "AuthFailure.SignatureFailure" {
		t.Errorf("signed for another host: %v", resp)
	}
	// No signature at all.
	req, _ = http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", "DescribeInstances")
	if _, resp := do(t, req); errCode(resp) != "AuthFailure.InvalidAuthorization" {
		t.Errorf("unsigned: %v", resp)
	}
	// Wrong version.
	req = signedRequest(t, f.srv.URL, host, "DescribeInstances", body, emulator.TestSecretKey, now)
	req.Header.Set("X-TC-Version", "2099-01-01")
	if _, resp := do(t, req); errCode(resp) != "NoSuchVersion" {
		t.Errorf("wrong version: %v", resp)
	}
	// Through the SDK: unknown SecretId, wrong key.
	if _, err := f.client(t, "AKIDnobody", "x").DescribeInstances(cvm.NewDescribeInstancesRequest()); code(err) != "AuthFailure.SecretIdNotFound" {
		t.Errorf("unknown SecretId: %v", err)
	}
	if _, err := f.client(t, emulator.TestSecretID, "x").DescribeInstances(cvm.NewDescribeInstancesRequest()); code(err) != "AuthFailure.SignatureFailure" {
		t.Errorf("wrong key: %v", err)
	}
}

func TestRunInstancesValidation(t *testing.T) {
	f := newFixture(t, emulator.Options{})
	now := time.Now().UTC()
	for name, c := range map[string]struct {
		mut  func(*cvm.RunInstancesRequest)
		want string
	}{
		"no zone":        {func(r *cvm.RunInstancesRequest) { r.Placement = nil }, "MissingParameter"},
		"other region":   {func(r *cvm.RunInstancesRequest) { r.Placement.Zone = common.StringPtr("ap-shanghai-3") }, "InvalidZone.MismatchRegion"},
		"unknown zone":   {func(r *cvm.RunInstancesRequest) { r.Placement.Zone = common.StringPtr(region + "-9") }, "InvalidParameterValue.ZoneNotSupported"},
		"unknown type":   {func(r *cvm.RunInstancesRequest) { r.InstanceType = common.StringPtr("XX.LARGE") }, "InvalidParameterValue.InstanceTypeNotFound"},
		"no image":       {func(r *cvm.RunInstancesRequest) { r.ImageId = nil }, "MissingParameter"},
		"token too long": {func(r *cvm.RunInstancesRequest) { r.ClientToken = common.StringPtr(strings.Repeat("t", 65)) }, "InvalidClientToken.TooLong"},
		"bad user data":  {func(r *cvm.RunInstancesRequest) { r.UserData = common.StringPtr("not base64!") }, "InvalidParameterValue.InvalidUserDataFormat"},
		"huge user data": {func(r *cvm.RunInstancesRequest) {
			r.UserData = common.StringPtr(base64.StdEncoding.EncodeToString(make([]byte, 13000)))
		}, "InvalidParameterValue.InvalidUserDataFormat"},
		"timer too soon": {func(r *cvm.RunInstancesRequest) {
			r.ActionTimer = &cvm.ActionTimer{TimerAction: common.StringPtr("TerminateInstances"), ActionTime: common.StringPtr(now.Add(time.Minute).Format("2006-01-02T15:04:05Z"))}
		}, "InvalidParameterValue"},
		"timer format": {func(r *cvm.RunInstancesRequest) {
			r.ActionTimer = &cvm.ActionTimer{TimerAction: common.StringPtr("TerminateInstances"), ActionTime: common.StringPtr("tomorrow")}
		}, "InvalidParameterValue.InvalidTimeFormat"},
		"reserved tag": {func(r *cvm.RunInstancesRequest) {
			r.TagSpecification = []*cvm.TagSpecification{{ResourceType: common.StringPtr("instance"), Tags: []*cvm.Tag{{Key: common.StringPtr("qcloud:x"), Value: common.StringPtr("y")}}}}
		}, "FailedOperation.TagKeyReserved"},
		"spot not sold": {func(r *cvm.RunInstancesRequest) {
			r.InstanceType, r.InstanceChargeType = common.StringPtr("GT4.41XLARGE948"), common.StringPtr("SPOTPAID")
		}, "UnsupportedOperation.NoInstanceTypeSupportSpot"},
		"prepaid": {func(r *cvm.RunInstancesRequest) { r.InstanceChargeType = common.StringPtr("PREPAID") }, "InvalidParameterValue"},
		"market without spot": {func(r *cvm.RunInstancesRequest) {
			r.InstanceMarketOptions = &cvm.InstanceMarketOptionsRequest{MarketType: common.StringPtr("spot")}
		}, "InvalidParameterCombination"},
	} {
		if _, err := f.run(t, c.mut); code(err) != c.want {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
	// DryRun checks and creates nothing.
	id, err := f.run(t, func(r *cvm.RunInstancesRequest) { r.DryRun = common.BoolPtr(true) })
	if err != nil || id != "" || len(f.em.Live()) != 0 {
		t.Errorf("DryRun = %q, %v; live %v", id, err, f.em.Live())
	}
	f.em.Faults().Set(emulate.Faults{NoCapacity: true})
	if _, err := f.run(t, func(r *cvm.RunInstancesRequest) { r.DryRun = common.BoolPtr(true) }); code(err) != "ResourceInsufficient.SpecifiedInstanceType" {
		t.Errorf("DryRun without stock: %v", err)
	}
}

func TestDescribeAndTerminate(t *testing.T) {
	f := newFixture(t, emulator.Options{Terminating: time.Minute})
	tags := []*cvm.TagSpecification{{ResourceType: common.StringPtr("instance"), Tags: []*cvm.Tag{
		{Key: common.StringPtr(gpuflow.TagManaged), Value: common.StringPtr("true")},
	}}}
	var ids []string
	for i := range 3 {
		id, err := f.run(t, func(r *cvm.RunInstancesRequest) {
			r.InstanceName = common.StringPtr(fmt.Sprint("n", i))
			if i < 2 {
				r.TagSpecification = tags
			}
			if i == 2 {
				r.InstanceChargeType = common.StringPtr("SPOTPAID")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	describe := func(mut func(*cvm.DescribeInstancesRequest)) ([]string, int64, error) {
		r := cvm.NewDescribeInstancesRequest()
		mut(r)
		resp, err := f.c.DescribeInstances(r)
		if err != nil {
			return nil, 0, err
		}
		var got []string
		for _, in := range resp.Response.InstanceSet {
			got = append(got, *in.InstanceId)
		}
		return got, *resp.Response.TotalCount, nil
	}
	filter := func(name string, values ...string) *cvm.Filter {
		return &cvm.Filter{Name: common.StringPtr(name), Values: common.StringPtrs(values)}
	}
	for name, c := range map[string]struct {
		filters []*cvm.Filter
		want    int
	}{
		"tag":          {[]*cvm.Filter{filter("tag:"+gpuflow.TagManaged, "true")}, 2},
		"tag-key":      {[]*cvm.Filter{filter("tag-key", gpuflow.TagManaged)}, 2},
		"charge":       {[]*cvm.Filter{filter("instance-charge-type", "SPOTPAID")}, 1},
		"name":         {[]*cvm.Filter{filter("instance-name", "n0", "n1")}, 2},
		"state":        {[]*cvm.Filter{filter("instance-state", "PENDING", "STARTING", "RUNNING")}, 3},
		"zone":         {[]*cvm.Filter{filter("zone", region+"-6")}, 0},
		"and":          {[]*cvm.Filter{filter("tag-key", gpuflow.TagManaged), filter("instance-name", "n1", "n2")}, 1},
		"instance-id":  {[]*cvm.Filter{filter("instance-id", ids[0])}, 1},
		"no such name": {[]*cvm.Filter{filter("instance-name", "zzz")}, 0},
	} {
		got, total, err := describe(func(r *cvm.DescribeInstancesRequest) { r.Filters = c.filters })
		if err != nil || len(got) != c.want || int(total) != c.want {
			t.Errorf("%s: %v (total %d), %v; want %d", name, got, total, err, c.want)
		}
	}
	got, total, err := describe(func(r *cvm.DescribeInstancesRequest) { r.Offset, r.Limit = common.Int64Ptr(1), common.Int64Ptr(1) })
	if err != nil || len(got) != 1 || total != 3 {
		t.Errorf("page: %v total %d, %v", got, total, err)
	}
	got, _, err = describe(func(r *cvm.DescribeInstancesRequest) {
		r.InstanceIds = common.StringPtrs([]string{ids[1], "ins-00000000"})
	})
	if err != nil || len(got) != 1 || got[0] != ids[1] {
		t.Errorf("by id: %v, %v", got, err)
	}
	for name, c := range map[string]struct {
		mut  func(*cvm.DescribeInstancesRequest)
		want string
	}{
		"malformed id": {func(r *cvm.DescribeInstancesRequest) { r.InstanceIds = common.StringPtrs([]string{"i-123"}) }, "InvalidInstanceId.Malformed"},
		"ids and filters": {func(r *cvm.DescribeInstancesRequest) {
			r.InstanceIds, r.Filters = common.StringPtrs(ids[:1]), []*cvm.Filter{filter("zone", region+"-3")}
		}, "InvalidParameterCombination"},
		"unknown filter": {func(r *cvm.DescribeInstancesRequest) { r.Filters = []*cvm.Filter{filter("colour", "red")} }, "InvalidFilter"},
		"limit":          {func(r *cvm.DescribeInstancesRequest) { r.Limit = common.Int64Ptr(500) }, "InvalidParameterValue.LimitExceeded"},
	} {
		if _, _, err := describe(c.mut); code(err) != c.want {
			t.Errorf("%s: %v, want %s", name, err, c.want)
		}
	}
	// Another region sees none of them.
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme, cpf.HttpProfile.Endpoint = "HTTP", strings.TrimPrefix(f.srv.URL, "http://")
	other, _ := cvm.NewClient(common.NewCredential(emulator.TestSecretID, emulator.TestSecretKey), "ap-shanghai", cpf)
	if resp, err := other.DescribeInstances(cvm.NewDescribeInstancesRequest()); err != nil || *resp.Response.TotalCount != 0 {
		t.Errorf("other region: %v", err)
	}

	st := cvm.NewDescribeInstancesStatusRequest()
	st.InstanceIds = common.StringPtrs(ids)
	if resp, err := f.c.DescribeInstancesStatus(st); err != nil || len(resp.Response.InstanceStatusSet) != 3 {
		t.Errorf("DescribeInstancesStatus: %v", err)
	}

	term := cvm.NewTerminateInstancesRequest()
	term.InstanceIds = common.StringPtrs([]string{"ins-00000000"})
	if _, err := f.c.TerminateInstances(term); code(err) != "InvalidInstanceId.NotFound" {
		t.Errorf("terminate unknown: %v", err)
	}
	term.InstanceIds = nil
	if _, err := f.c.TerminateInstances(term); code(err) != "MissingParameter" {
		t.Errorf("terminate nothing: %v", err)
	}
	for _, id := range ids {
		f.terminate(t, id)
		if s := f.em.State(id); s != emulator.StateTerminating {
			t.Errorf("%s after terminate: %s", id, s)
		}
	}
	term.InstanceIds = common.StringPtrs(ids[:1])
	if _, err := f.c.TerminateInstances(term); code(err) != "UnsupportedOperation.InstanceStateTerminating" {
		t.Errorf("terminate twice: %v", err)
	}
}

func TestZoneConfigsAndPrices(t *testing.T) {
	f := newFixture(t, emulator.Options{})
	r := cvm.NewDescribeZoneInstanceConfigInfosRequest()
	r.Filters = []*cvm.Filter{
		{Name: common.StringPtr("instance-family"), Values: common.StringPtrs([]string{"GN7"})},
		{Name: common.StringPtr("zone"), Values: common.StringPtrs([]string{region + "-6"})},
	}
	resp, err := f.c.DescribeZoneInstanceConfigInfos(r)
	if err != nil {
		t.Fatal(err)
	}
	rows := resp.Response.InstanceTypeQuotaSet
	if len(rows) != 8 { // 4 GN7 types × (postpaid, spot)
		t.Fatalf("rows = %d, want 8", len(rows))
	}
	for _, row := range rows {
		if *row.Zone != region+"-6" || *row.InstanceFamily != "GN7" || *row.Status != "SELL" || *row.GpuCount < 1 || *row.Price.UnitPrice <= 0 {
			t.Errorf("row %s", *row.InstanceType)
		}
	}
	r.Filters = []*cvm.Filter{{Name: common.StringPtr("bogus")}}
	if _, err := f.c.DescribeZoneInstanceConfigInfos(r); code(err) != "InvalidFilter" {
		t.Errorf("bogus filter: %v", err)
	}

	q := cvm.NewInquiryPriceRunInstancesRequest()
	q.Placement = &cvm.Placement{Zone: common.StringPtr(region + "-3")}
	q.InstanceType, q.ImageId = common.StringPtr("GN7.10XLARGE160"), common.StringPtr("img-abc12345")
	q.InstanceChargeType = common.StringPtr("SPOTPAID")
	pr, err := f.c.InquiryPriceRunInstances(q)
	if err != nil || *pr.Response.Price.InstancePrice.UnitPriceDiscount != 0.63 || *pr.Response.Price.InstancePrice.ChargeUnit != "HOUR" {
		t.Errorf("InquiryPriceRunInstances = %v, %v", pr.ToJsonString(), err)
	}
}

func TestAdminEndpointsAndJobs(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	defer agent.Close()
	f := newFixture(t, emulator.Options{Timing: emulate.Timing{Pending: 10 * time.Millisecond, Starting: 10 * time.Millisecond, Run: time.Hour}})

	// Faults over HTTP.
	resp, err := http.Post(f.srv.URL+"/_emulator/faults", "application/json", bytes.NewReader([]byte(`{"terminate_failures":1}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f.em.Faults().Get().TerminateFailures != 1 {
		t.Errorf("faults = %+v", f.em.Faults().Get())
	}
	f.em.Faults().Set(emulate.Faults{})

	script, err := agentscript.Script(gpuflow.ProvisionRequest{JobID: "j1", Agent: &gpuflow.AgentEndpoint{URL: agent.URL + "/a/j1", Token: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.run(t, func(r *cvm.RunInstancesRequest) {
		r.InstanceChargeType = common.StringPtr("SPOTPAID")
		r.UserData = common.StringPtr(base64.StdEncoding.EncodeToString([]byte(script)))
	})
	if err != nil {
		t.Fatal(err)
	}
	post := func(path string) int {
		resp, err := http.Post(f.srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post("/_emulator/preempt/ins-00000000"); s != http.StatusNotFound {
		t.Errorf("preempt unknown: %d", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.em.State(id) != emulator.StateRunning && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The job started and reported output and progress, in either order
	// (the agent ships its spooled output on its own interval or at the
	// end, beside its progress reports).
	reported := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(paths, "/a/j1/logs") && slices.Contains(paths, "/a/j1/progress")
	}
	for deadline := time.Now().Add(15 * time.Second); !reported() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	if len(paths) < 2 || !slices.Contains(paths, "/a/j1/logs") || !slices.Contains(paths, "/a/j1/progress") {
		t.Errorf("agent reports %v, want /a/j1/logs and /a/j1/progress", paths)
	}
	mu.Unlock()
	if s := post("/_emulator/preempt/" + region + ":" + id); s != http.StatusOK {
		t.Errorf("preempt: %d", s)
	}
	if s := f.em.State(id); s != emulator.StateShutdown {
		t.Errorf("after preempt: %s", s)
	}
	if s := post("/_emulator/preempt/" + id); s != http.StatusConflict {
		t.Errorf("preempt twice: %d", s)
	}
	if len(f.em.Live()) != 0 {
		t.Errorf("a reclaimed instance is live: %v", f.em.Live())
	}
	f.terminate(t, id)
}

// TestCloseStopsJobs: Close cancels running jobs, which never finish.
func TestCloseStopsJobs(t *testing.T) {
	var mu sync.Mutex
	var finished bool
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/finished") {
			mu.Lock()
			finished = true
			mu.Unlock()
		}
	}))
	defer agent.Close()
	em := emulator.New(emulator.Options{Timing: emulate.Timing{Pending: time.Millisecond, Starting: time.Millisecond, Run: time.Hour}, Tick: time.Millisecond})
	srv := httptest.NewServer(em)
	defer srv.Close()
	f := &fixture{em: em, srv: srv}
	f.c = f.client(t, emulator.TestSecretID, emulator.TestSecretKey)
	script, _ := agentscript.Script(gpuflow.ProvisionRequest{JobID: "j2", Agent: &gpuflow.AgentEndpoint{URL: agent.URL, Token: "t"}})
	id, err := f.run(t, func(r *cvm.RunInstancesRequest) {
		r.UserData = common.StringPtr(base64.StdEncoding.EncodeToString([]byte(script)))
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for em.State(id) != emulator.StateRunning && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { em.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the job")
	}
	em.Close() // idempotent
	mu.Lock()
	defer mu.Unlock()
	if finished {
		t.Error("a job finished although it runs for an hour")
	}
}
