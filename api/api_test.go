package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/workflows"
)

var testNow = time.Date(2025, 9, 6, 14, 35, 41, 818341000, time.UTC)

// The accounts of every test server: two users and a superuser. Requests
// made with bundle.do are alice's unless they set Authorization.
const (
	aliceID = "a11ce000-0000-4000-8000-000000000001"
	bobID   = "b0b00000-0000-4000-8000-000000000002"
	adminID = "ad000000-0000-4000-8000-000000000003"
)

var testSecret = []byte("test-secret-test-secret-test-secret!")

type bundle struct {
	srv      *Server
	store    *fakeStore
	users    *fakeUsers
	tokens   map[string]string // user id -> a valid token
	temporal *mocks.Client
	runpod   *fakeProvider
	tencent  *checkingProvider
	local    *fakeProvider
	checks   map[string]func(context.Context) error
}

func setup(t testing.TB) *bundle {
	t.Helper()
	b := &bundle{
		store:    newFakeStore(),
		users:    newFakeUsers(),
		temporal: &mocks.Client{},
		runpod: &fakeProvider{
			info: gpuflow.ProviderInfo{Name: "runpod", DisplayName: "RunPod",
				Description: "RunPod GPU cloud computing platform", Mode: gpuflow.ModeLive},
			offers: []gpuflow.Offer{
				{Provider: "runpod", GPUType: "RTX4090", GPUCount: 1, MemoryGB: 32, GPUMemoryGB: 24, VCPUs: 8,
					PricePerHour: 0.69, SpotPricePerHour: 0.35, Region: "US", Available: 3},
				{Provider: "runpod", GPUType: "A100", GPUCount: 8, MemoryGB: 1024, GPUMemoryGB: 80, VCPUs: 128,
					PricePerHour: 1.99, Available: 0},
			},
		},
		tencent: &checkingProvider{fakeProvider: &fakeProvider{
			info: gpuflow.ProviderInfo{Name: "tencent", DisplayName: "Tencent Cloud",
				Description: "Tencent Cloud TKE GPU computing", Mode: gpuflow.ModeEmulated},
			offers: []gpuflow.Offer{{Provider: "tencent", GPUType: "T4", GPUCount: 1, MemoryGB: 16, PricePerHour: 0.5, Available: -1}},
		}},
		local: &fakeProvider{
			info: gpuflow.ProviderInfo{Name: "local", DisplayName: "Local", Description: "this host", Mode: gpuflow.ModeLocal},
			offers: []gpuflow.Offer{
				{GPUType: "", GPUCount: 0, MemoryGB: 8, VCPUs: 4, Available: 1},
			},
		},
	}
	b.checks = map[string]func(context.Context) error{
		"postgres": func(context.Context) error { return nil },
		"temporal": func(context.Context) error { return nil },
	}
	b.srv = New(Config{
		Jobs:          b.store,
		Temporal:      b.temporal,
		Namespace:     "default",
		Providers:     gpuflow.Providers{b.runpod, b.tencent, b.local},
		TemporalUIURL: "http://127.0.0.1:8233/",
		Version:       "v0.1.0-test",
		Now:           func() time.Time { return testNow },
		HealthChecks:  b.checks,
		Auth: AuthConfig{Users: b.users, Secret: testSecret, PasswordCost: auth.MinCost,
			Registration: gpuflow.RegistrationOpen, Local: gpuflow.LocalPolicy{Everyone: true}},
	})
	b.tokens = map[string]string{}
	for id, email := range map[string]string{aliceID: "alice@example.com", bobID: "bob@example.com", adminID: "admin@example.com"} {
		b.addUser(t, id, email, id == adminID)
	}
	return b
}

// addUser creates an active account whose password is its email followed
// by "-password", and a token for it.
func (b *bundle) addUser(t testing.TB, id, email string, superuser bool) {
	t.Helper()
	hash, err := b.srv.auth.hasher.Hash(email + "-password")
	if err != nil {
		t.Fatal(err)
	}
	u := &gpuflow.User{ID: id, Email: email, HashedPassword: hash, IsActive: true, IsSuperuser: superuser,
		CreatedAt: testNow}
	if err := b.users.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	tok, _, err := b.srv.auth.tokens.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	b.tokens[id] = tok
}

// as is the Authorization header of user id.
func (b *bundle) as(id string) header { return header{"Authorization", "Bearer " + b.tokens[id]} }

// anonymous is a request without credentials.
var anonymous = header{"Authorization", ""}

// expectStart makes ExecuteWorkflow succeed and records its options and input.
func (b *bundle) expectStart(t *testing.T) (*client.StartWorkflowOptions, *workflows.RunJobInput) {
	t.Helper()
	var opts client.StartWorkflowOptions
	var in workflows.RunJobInput
	run := &mocks.WorkflowRun{}
	run.On("GetRunID").Return("run-1").Maybe()
	run.On("GetID").Return("").Maybe()
	b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) {
			opts = args.Get(1).(client.StartWorkflowOptions)
			in = args.Get(3).(workflows.RunJobInput)
		}).Return(run, nil).Once()
	return &opts, &in
}

type header struct{ k, v string }

func (b *bundle) do(t *testing.T, method, path, body string, headers ...header) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Authorization", "Bearer "+b.tokens[aliceID])
	for _, h := range headers {
		req.Header.Set(h.k, h.v)
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	return rec
}

var jsonCT = header{"Content-Type", "application/json"}

func (b *bundle) submit(t *testing.T, body string) *httptest.ResponseRecorder {
	t.Helper()
	return b.do(t, http.MethodPost, "/api/gpu/jobs/submit", body, jsonCT)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

type apiError struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
}

// wantError checks the status and the error shape and returns the error.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) apiError {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want JSON", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw) != 1 || raw["error"] == nil {
		t.Fatalf("body %s is not {\"error\":{...}}", rec.Body)
	}
	e := decode[apiError](t, rec)
	if e.Error.Code != code {
		t.Fatalf("code = %q, want %q; body %s", e.Error.Code, code, rec.Body)
	}
	if e.Error.Message == "" {
		t.Fatalf("empty message: %s", rec.Body)
	}
	return e
}

func fieldError(t *testing.T, e apiError, field string) string {
	t.Helper()
	fields, _ := e.Error.Details["fields"].(map[string]any)
	msg, _ := fields[field].(string)
	if msg == "" {
		t.Fatalf("details.fields has no %q: %v", field, e.Error.Details)
	}
	return msg
}

func (b *bundle) assertNothingStarted(t *testing.T) {
	t.Helper()
	if n := len(b.temporal.Calls); n != 0 {
		t.Fatalf("temporal called %d times: %v", n, b.temporal.Calls)
	}
	b.store.mu.Lock()
	defer b.store.mu.Unlock()
	if b.store.creates != 0 || len(b.store.jobs) != 0 {
		t.Fatalf("store written: %d creates, %d jobs", b.store.creates, len(b.store.jobs))
	}
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestSubmit(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		opts, in := b.expectStart(t)
		rec := b.submit(t, `{"name":"train","command":["python","train.py"],"gpu_type":"RTX4090",
			"memory_gb":16,"vcpus":4,"provider":null,"max_price_per_hour":null}`)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[map[string]any](t, rec)
		wantKeys := []string{"created_at", "message", "provider", "queue", "routing_key", "run_id",
			"scheduling_info", "status", "task_id", "workflow_id"}
		if !slices.Equal(keys(got), wantKeys) {
			t.Fatalf("keys = %v, want %v", keys(got), wantKeys)
		}
		id, _ := got["task_id"].(string)
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 {
			t.Fatalf("task_id %q is not a uuid v4", id)
		}
		for k, want := range map[string]any{
			"workflow_id": "job-" + id, "run_id": "run-1", "provider": "runpod",
			"routing_key": "runpod_RTX4090_1", "queue": "gpuflow-runpod", "status": "queued",
			"message": "Job intelligently scheduled to runpod", "created_at": "2025-09-06T14:35:41.818341Z",
		} {
			if got[k] != want {
				t.Errorf("%s = %v, want %v", k, got[k], want)
			}
		}
		si, _ := got["scheduling_info"].(map[string]any)
		if si["strategy"] != "balanced" || si["estimated_duration"] != 60.0 || !inUnit(si["provider_score"]) {
			t.Errorf("scheduling_info = %v", si)
		}
		wantSpec := map[string]any{"gpu_type": "RTX4090", "gpu_count": 1.0, "memory_gb": 16.0, "vcpus": 4.0, "priority": 5.0}
		gs, _ := si["gpu_spec"].(map[string]any)
		if fmt.Sprint(gs) != fmt.Sprint(wantSpec) {
			t.Errorf("gpu_spec = %v, want %v", gs, wantSpec)
		}

		// The workflow was started as the contract says.
		if opts.ID != "job-"+id || opts.TaskQueue != workflows.TaskQueue ||
			opts.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL ||
			!opts.WorkflowExecutionErrorWhenAlreadyStarted {
			t.Errorf("start options = %+v", opts)
		}
		for key, want := range map[string]string{
			workflows.SearchAttrOwner: aliceID, workflows.SearchAttrStatus: "queued",
			workflows.SearchAttrGPUType: "RTX4090", workflows.SearchAttrProvider: "runpod",
		} {
			v, ok := opts.TypedSearchAttributes.GetKeyword(temporal.NewSearchAttributeKeyKeyword(key))
			if !ok || v != want {
				t.Errorf("search attribute %s = %q (set %v), want %q", key, v, ok, want)
			}
		}
		if opts.Memo["provider_mode"] != gpuflow.ModeLive {
			t.Errorf("memo = %v", opts.Memo)
		}
		if in.JobID != id || in.OwnerID != aliceID || in.Spec.GPUCount != 1 || in.Spec.Priority != 5 || in.Spec.Strategy != "balanced" ||
			in.Spec.EstimatedDuration != 60 || !in.CreatedAt.Equal(testNow) || in.Spec.Name != "train" {
			t.Errorf("input = %+v", in)
		}

		// The job was recorded.
		j, err := b.store.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != gpuflow.StatusQueued || j.WorkflowID != "job-"+id || j.RunID != "run-1" || j.Provider != "runpod" ||
			j.OwnerID != aliceID {
			t.Errorf("stored job = %+v", j)
		}
		b.temporal.AssertExpectations(t)
	})

	t.Run("OKCPUOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		opts, in := b.expectStart(t)
		rec := b.submit(t, `{"command":["echo","hi"],"gpu_count":0,"priority":0,"estimated_duration":0}`)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[submitResponse](t, rec)
		if got.Provider != "local" || got.RoutingKey != "local_CPU_0" || got.Queue != "gpuflow-local" {
			t.Errorf("answer = %+v", got)
		}
		if in.Spec.GPUCount != 0 || in.Spec.Priority != 0 || in.Spec.EstimatedDuration != 0 {
			t.Errorf("explicit zeros lost: %+v", in.Spec)
		}
		if v, _ := opts.TypedSearchAttributes.GetKeyword(saGPUType); v != gpuflow.CPUOnly {
			t.Errorf("gpu type attribute = %q", v)
		}
		if opts.Memo["provider_mode"] != gpuflow.ModeLocal {
			t.Errorf("memo = %v", opts.Memo)
		}
	})

	t.Run("OKStoreFailsAfterStart", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.expectStart(t)
		b.store.createErr = errors.New("db down")
		rec := b.submit(t, `{"command":["x"],"gpu_type":"RTX4090"}`)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
	})

	t.Run("ErrTemporalDown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).
			Return(nil, errors.New("connection refused: secret-host:7233")).Once()
		b.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").
			Return(nil, serviceerror.NewNotFound("workflow not found")).Once()
		rec := b.submit(t, `{"command":["x"],"gpu_type":"RTX4090"}`)
		e := wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
		if strings.Contains(rec.Body.String(), "secret-host") {
			t.Errorf("cause leaked: %s", rec.Body)
		}
		_ = e
		if b.store.creates != 0 || b.store.count() != 0 {
			t.Errorf("job stored after a failed start")
		}
	})

	t.Run("ErrUnschedulable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.tencent.checkErr = errors.New("images must come from ccr.ccs.tencentyun.com")
		b.local.offersErr = errors.New("docker not running")
		rec := b.submit(t, `{"command":["x"],"gpu_type":"H200"}`)
		e := wantError(t, rec, http.StatusUnprocessableEntity, "unschedulable")
		reasons, _ := e.Error.Details["reasons"].(map[string]any)
		want := map[string]string{
			"runpod":  "gpu type RTX4090, job wants H200",
			"tencent": "images must come from ccr.ccs.tencentyun.com",
			"local":   "offers unavailable: docker not running",
		}
		for p, w := range want {
			rs, _ := reasons[p].([]any)
			if !slices.Contains(rs, any(w)) {
				t.Errorf("reasons[%s] = %v, want to contain %q", p, rs, w)
			}
		}
		b.assertNothingStarted(t)
	})

	t.Run("ErrUnschedulableOnlyAllowedProviders", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.submit(t, `{"command":["x"],"gpu_type":"RTX4090","gpu_count":2,"providers":["runpod"]}`)
		e := wantError(t, rec, http.StatusUnprocessableEntity, "unschedulable")
		reasons, _ := e.Error.Details["reasons"].(map[string]any)
		if _, ok := reasons["local"]; ok || reasons["runpod"] == nil {
			t.Errorf("reasons = %v", reasons)
		}
		b.assertNothingStarted(t)
	})
}

func TestSubmitBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", gpuflow.MaxNameLen+1)
	tests := []struct {
		name, body string
		headers    []header
		status     int
		code       string
		field      string // in details.fields
		contains   string // in the message
	}{
		{name: "MalformedJSON", body: `{"command": ["x",`, status: 400, code: "invalid_json", contains: "byte"},
		{name: "SyntaxError", body: `{"command": x}`, status: 400, code: "invalid_json", contains: "byte 13"},
		{name: "TrailingData", body: `{"command":["x"],"gpu_type":"T4"} {}`, status: 400, code: "invalid_json", contains: "after"},
		{name: "EmptyBody", body: ``, status: 400, code: "invalid_json"},
		{name: "NotAnObject", body: `[1,2]`, status: 400, code: "validation_failed"},
		{name: "UnknownField", body: `{"command":["x"],"gpu_type":"T4","gpus":2}`, status: 400,
			code: "validation_failed", field: "gpus", contains: `"gpus"`},
		{name: "WrongType", body: `{"command":["x"],"gpu_type":"T4","gpu_count":"two"}`, status: 400,
			code: "validation_failed", field: "gpu_count"},
		{name: "MissingCommand", body: `{"gpu_type":"RTX4090"}`, status: 400, code: "validation_failed", field: "command"},
		{name: "MissingGPUType", body: `{"command":["x"]}`, status: 400, code: "validation_failed", field: "gpu_type"},
		{name: "GPUCount9", body: `{"command":["x"],"gpu_type":"T4","gpu_count":9}`, status: 400,
			code: "validation_failed", field: "gpu_count", contains: "gpu_count must be between 0 and 8"},
		{name: "GPUCountNegative", body: `{"command":["x"],"gpu_type":"T4","gpu_count":-1}`, status: 400,
			code: "validation_failed", field: "gpu_count"},
		{name: "NegativeMaxPrice", body: `{"command":["x"],"gpu_type":"T4","max_price_per_hour":-0.5}`, status: 400,
			code: "validation_failed", field: "max_price_per_hour"},
		{name: "UnknownStrategy", body: `{"command":["x"],"gpu_type":"T4","strategy":"fastest"}`, status: 400,
			code: "validation_failed", field: "strategy"},
		{name: "UnknownProvider", body: `{"command":["x"],"gpu_type":"T4","provider":"aws"}`, status: 400,
			code: "validation_failed", field: "provider"},
		{name: "UnknownProviders", body: `{"command":["x"],"gpu_type":"T4","providers":["runpod","aws"]}`, status: 400,
			code: "validation_failed", field: "providers"},
		{name: "NameTooLong", body: `{"command":["x"],"gpu_type":"T4","name":"` + long + `"}`, status: 400,
			code: "validation_failed", field: "name"},
		{name: "TooLarge", body: `{"command":["x"],"gpu_type":"T4","name":"` + strings.Repeat("a", 1<<20) + `"}`,
			status: 413, code: "payload_too_large"},
		{name: "WrongContentType", body: `{"command":["x"],"gpu_type":"T4"}`,
			headers: []header{{"Content-Type", "text/plain"}}, status: 415, code: "unsupported_media_type"},
		{name: "FormContentType", body: `command=x`,
			headers: []header{{"Content-Type", "application/x-www-form-urlencoded"}}, status: 415, code: "unsupported_media_type"},
		{name: "NoContentType", body: `{"command":["x"],"gpu_type":"T4"}`,
			headers: []header{{"Content-Type", ""}}, status: 415, code: "unsupported_media_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			headers := append([]header{jsonCT}, tt.headers...)
			rec := b.do(t, http.MethodPost, "/api/gpu/jobs/submit", tt.body, headers...)
			e := wantError(t, rec, tt.status, tt.code)
			if tt.field != "" {
				fieldError(t, e, tt.field)
			}
			if !strings.Contains(e.Error.Message, tt.contains) {
				t.Errorf("message %q does not contain %q", e.Error.Message, tt.contains)
			}
			b.assertNothingStarted(t)
		})
	}

	t.Run("TooLargeChunked", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		body := `{"command":["x"],"gpu_type":"T4","name":"` + strings.Repeat("a", 1<<20) + `"}`
		req := httptest.NewRequest(http.MethodPost, "/api/gpu/jobs/submit", io.MultiReader(strings.NewReader(body)))
		req.ContentLength = -1 // unknown length: the limit applies while reading
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Authorization", "Bearer "+b.tokens[aliceID])
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		wantError(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
		b.assertNothingStarted(t)
	})
}

func runningJob(id string, created time.Time) *gpuflow.Job {
	started := created.Add(time.Minute)
	return &gpuflow.Job{
		ID: id, OwnerID: aliceID, Status: gpuflow.StatusRunning, Provider: "runpod", MachineID: "pod-1", PricePerHour: 2,
		Spec: gpuflow.JobSpec{Name: "train", Command: []string{"python"}, GPUType: "RTX4090", GPUCount: 1,
			Priority: 5, Strategy: "balanced"},
		Attempts:   []gpuflow.Attempt{{Provider: "runpod", GPUType: "RTX4090", StartedAt: started}},
		WorkflowID: "job-" + id, RunID: "run-1", CreatedAt: created, UpdatedAt: started, StartedAt: &started,
	}
}

func TestGetTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	b.store.put(runningJob(id, testNow.Add(-time.Hour-time.Minute)))

	t.Run("OK", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+id, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[map[string]any](t, rec)
		want := []string{"attempts", "cost_so_far", "created_at", "error", "exit_code", "finished_at", "id",
			"instance_id", "name", "owner_id", "price_per_hour", "provider", "run_id", "spec", "started_at",
			"status", "task_id", "temporal_ui_url", "updated_at", "workflow_id"}
		if !slices.Equal(keys(got), want) {
			t.Fatalf("keys = %v, want %v", keys(got), want)
		}
		for k, w := range map[string]any{
			"id": id, "task_id": id, "name": "train", "status": "running", "provider": "runpod",
			"instance_id": "pod-1", "workflow_id": "job-" + id, "run_id": "run-1", "error": nil, "exit_code": nil,
			"finished_at": nil, "cost_so_far": 2.0,
			"temporal_ui_url": "http://127.0.0.1:8233/namespaces/default/workflows/job-" + id,
		} {
			if got[k] != w {
				t.Errorf("%s = %v, want %v", k, got[k], w)
			}
		}
		if a, _ := got["attempts"].([]any); len(a) != 1 {
			t.Errorf("attempts = %v", got["attempts"])
		}
	})

	t.Run("ErrUnknown", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks/"+uuid.NewString(), ""), http.StatusNotFound, "not_found")
	})

	t.Run("ErrMalformedID", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks/not-a-uuid", ""), http.StatusNotFound, "not_found")
	})

	t.Run("ErrStoreInternalHidden", func(t *testing.T) {
		b := setup(t)
		b.store.getErr = errors.New("pq: password authentication failed for secret")
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+uuid.NewString(), "")
		e := wantError(t, rec, http.StatusInternalServerError, "internal")
		if e.Error.Message != "internal error" || strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("internal cause leaked: %s", rec.Body)
		}
	})
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for i := range 5 {
		j := runningJob(uuid.NewString(), testNow.Add(time.Duration(i)*time.Minute))
		if i%2 == 0 {
			j.Status = gpuflow.StatusSucceeded
		}
		b.store.put(j)
		ids = append(ids, j.ID)
	}
	type page struct {
		Tasks      []jobView `json:"tasks"`
		NextCursor *string   `json:"next_cursor"`
	}

	t.Run("Paginated", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks?limit=3", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		p := decode[page](t, rec)
		if len(p.Tasks) != 3 || p.NextCursor == nil {
			t.Fatalf("page 1 = %d tasks, cursor %v", len(p.Tasks), p.NextCursor)
		}
		if p.Tasks[0].ID != ids[4] || p.Tasks[2].ID != ids[2] {
			t.Errorf("not newest first")
		}
		rec = b.do(t, http.MethodGet, "/api/gpu/tasks?limit=3&cursor="+*p.NextCursor, "")
		p = decode[page](t, rec)
		if len(p.Tasks) != 2 || p.NextCursor != nil || p.Tasks[1].ID != ids[0] {
			t.Fatalf("page 2 = %+v", p)
		}
		if !strings.Contains(rec.Body.String(), `"next_cursor":null`) {
			t.Errorf("next_cursor not null: %s", rec.Body)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks?status=running&provider=runpod", "")
		p := decode[page](t, rec)
		if len(p.Tasks) != 2 {
			t.Fatalf("got %d running tasks", len(p.Tasks))
		}
		b.store.mu.Lock()
		f := b.store.lastFilter
		b.store.mu.Unlock()
		if f.Status != gpuflow.StatusRunning || f.Provider != "runpod" || f.Limit != defaultListLimit || f.OwnerID != aliceID {
			t.Errorf("filter = %+v", f)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks?status=cancelled", "")
		if !strings.Contains(rec.Body.String(), `"tasks":[]`) {
			t.Errorf("body = %s", rec.Body)
		}
	})

	for _, q := range []string{"status=done", "limit=0", "limit=201", "limit=ten"} {
		t.Run("Err_"+q, func(t *testing.T) {
			field, _, _ := strings.Cut(q, "=")
			e := wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks?"+q, ""), http.StatusBadRequest, "validation_failed")
			fieldError(t, e, field)
		})
	}

	t.Run("ErrBadCursor", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks?cursor=zzz", ""), http.StatusBadRequest, "validation_failed")
	})
}

func TestCancelTask(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		b.temporal.On("SignalWorkflow", mock.Anything, "job-"+id, "", workflows.SignalCancel,
			workflows.CancelSignal{Reason: "too slow", RequestedBy: aliceID}).Return(nil).Once()
		rec := b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", `{"reason":"too slow"}`, jsonCT)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		if v := decode[jobView](t, rec); v.ID != id {
			t.Errorf("answer = %+v", v)
		}
		b.temporal.AssertExpectations(t)
	})

	t.Run("OKNoBody", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		b.temporal.On("SignalWorkflow", mock.Anything, "job-"+id, "", workflows.SignalCancel,
			workflows.CancelSignal{RequestedBy: aliceID}).Return(nil).Once()
		rec := b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", "")
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		b.temporal.AssertExpectations(t)
	})

	t.Run("ErrTerminal", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		j := runningJob(id, testNow)
		j.Status = gpuflow.StatusSucceeded
		b.store.put(j)
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", ""), http.StatusConflict, "conflict")
		if len(b.temporal.Calls) != 0 {
			t.Errorf("signal sent to a finished job")
		}
	})

	t.Run("ErrWorkflowGone", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		b.temporal.On("SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
			Return(serviceerror.NewNotFound("workflow execution already completed")).Once()
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", ""), http.StatusConflict, "conflict")
	})

	t.Run("ErrTemporalDown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		b.temporal.On("SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
			Return(serviceerror.NewUnavailable("down")).Once()
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", ""), http.StatusServiceUnavailable, "unavailable")
	})

	t.Run("ErrUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+uuid.NewString()+"/cancel", ""), http.StatusNotFound, "not_found")
	})

	t.Run("ErrBadBody", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", `{"reason":`, jsonCT),
			http.StatusBadRequest, "invalid_json")
		e := wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", `{"why":"x"}`, jsonCT),
			http.StatusBadRequest, "validation_failed")
		fieldError(t, e, "why")
		if len(b.temporal.Calls) != 0 {
			t.Errorf("signal sent despite a bad body")
		}
	})
}

func TestTaskLogs(t *testing.T) {
	t.Parallel()

	t.Run("Page", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		_ = b.store.AppendLog(context.Background(), id, 0, []byte("hello\nworld\n"))
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+id+"/logs?offset=6", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[logsResponse](t, rec)
		if got != (logsResponse{TaskID: id, Offset: 6, NextOffset: 12, Logs: "world\n"}) {
			t.Errorf("logs = %+v", got)
		}
		rec = b.do(t, http.MethodGet, "/api/gpu/tasks/"+id+"/logs", "")
		if got := decode[logsResponse](t, rec); got.Logs != "hello\nworld\n" || got.Offset != 0 {
			t.Errorf("logs = %+v", got)
		}
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks/"+id+"/logs?offset=-1", ""), 400, "validation_failed")
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks/"+uuid.NewString()+"/logs", ""), 404, "not_found")
	})

	t.Run("Follow", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.logPoll = 5 * time.Millisecond
		id := uuid.NewString()
		b.store.put(runningJob(id, testNow))
		ctx := context.Background()
		_ = b.store.AppendLog(ctx, id, 0, []byte("hello\n"))
		ts := httptest.NewServer(b.srv.Handler())
		defer ts.Close()

		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/gpu/tasks/"+id+"/logs?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+b.tokens[aliceID])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("Content-Type = %q", ct)
		}
		r := bufio.NewReader(resp.Body)
		line, err := r.ReadString('\n')
		if err != nil || line != "hello\n" {
			t.Fatalf("first line = %q, %v", line, err)
		}
		// More output, then the job ends: the stream sends the rest and closes.
		_ = b.store.AppendLog(ctx, id, 6, []byte("world\n"))
		b.store.setStatus(id, gpuflow.StatusSucceeded)
		rest, err := io.ReadAll(r)
		if err != nil || string(rest) != "world\n" {
			t.Fatalf("rest = %q, %v", rest, err)
		}
	})

	t.Run("FollowFinishedJob", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		id := uuid.NewString()
		j := runningJob(id, testNow)
		j.Status = gpuflow.StatusFailed
		b.store.put(j)
		_ = b.store.AppendLog(context.Background(), id, 0, []byte("boom\n"))
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+id+"/logs?follow=true&offset=1", "")
		if rec.Code != http.StatusOK || rec.Body.String() != "oom\n" {
			t.Fatalf("status %d, body %q", rec.Code, rec.Body)
		}
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()

	t.Run("Healthy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.do(t, http.MethodGet, "/health", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != `{"checks":{"postgres":"ok","temporal":"ok"},"status":"healthy"}` {
			t.Errorf("body = %s", got)
		}
	})

	t.Run("Unhealthy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.checks["temporal"] = func(context.Context) error { return errors.New("connection refused") }
		b.srv.cfg.HealthChecks = b.checks
		rec := b.do(t, http.MethodGet, "/health", "")
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status = %d", rec.Code)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != `{"checks":{"postgres":"ok","temporal":"connection refused"},"status":"unhealthy"}` {
			t.Errorf("body = %s", got)
		}
	})

	t.Run("CheckIgnoringContextTimesOut", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		defer close(block)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the request is gone: runCheck must not wait for the check
		err := runCheck(ctx, func(context.Context) error { <-block; return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestServiceRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("Root", func(t *testing.T) {
		got := decode[map[string]any](t, b.do(t, http.MethodGet, "/", ""))
		want := map[string]any{"name": "gpuflow", "version": "v0.1.0-test", "docs": "/docs",
			"openapi": "/openapi.json", "temporal_ui": "http://127.0.0.1:8233/", "health": "/health"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("root = %v", got)
		}
	})

	t.Run("ErrUnknownRoute", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/nope", ""), http.StatusNotFound, "not_found")
		// Without a token, an unknown route tells nothing either.
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/nope", "", anonymous), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("ErrMethodNotAllowed", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodDelete, "/api/gpu/tasks", ""), http.StatusMethodNotAllowed, "method_not_allowed")
	})
}

func TestProviders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tencent.healthErr = errors.New("no credentials")

	t.Run("List", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/providers", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d", rec.Code)
		}
		got := decode[struct {
			Providers []providerView `json:"providers"`
		}](t, rec).Providers
		if len(got) != 3 {
			t.Fatalf("providers = %+v", got)
		}
		rp := got[0]
		if rp.Name != "runpod" || rp.DisplayName != "RunPod" || rp.Description != "RunPod GPU cloud computing platform" ||
			rp.Mode != "live" || !rp.Healthy || !slices.Equal(rp.GPUTypes, []string{"A100", "RTX4090"}) {
			t.Errorf("runpod = %+v", rp)
		}
		if tc := got[1]; tc.Name != "tencent" || tc.Healthy || tc.HealthError != "no credentials" || tc.Mode != "emulated" {
			t.Errorf("tencent = %+v", tc)
		}
		if l := got[2]; !slices.Equal(l.GPUTypes, []string{"CPU"}) {
			t.Errorf("local = %+v", l)
		}
	})

	t.Run("GPUs", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/providers/runpod/gpus", "")
		got := decode[struct {
			Provider string    `json:"provider"`
			GPUs     []gpuView `json:"gpus"`
		}](t, rec)
		if got.Provider != "runpod" || len(got.GPUs) != 2 {
			t.Fatalf("gpus = %+v", got)
		}
		g := got.GPUs[0]
		if g.GPUType != "RTX4090" || g.MemoryGB != 24 || g.VCPUs != 8 || g.PricePerHour != 0.69 ||
			g.SpotPricePerHour != 0.35 || !g.Available || g.Stock != 3 {
			t.Errorf("gpu = %+v", g)
		}
		if got.GPUs[1].Available {
			t.Errorf("out-of-stock offer shown available")
		}
	})

	t.Run("ErrUnknownProvider", func(t *testing.T) {
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/providers/aws/gpus", ""), http.StatusNotFound, "not_found")
	})

	t.Run("ErrOffersFail", func(t *testing.T) {
		b := setup(t)
		b.runpod.offersErr = errors.New("rate limited by runpod")
		wantError(t, b.do(t, http.MethodGet, "/api/gpu/providers/runpod/gpus", ""), http.StatusServiceUnavailable, "unavailable")
	})
}

func TestStartShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- b.srv.Serve(ln) }()

	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if err := CheckPortFree(addr); err == nil || err.Error() != "address "+addr+" is in use" {
		t.Errorf("CheckPortFree on a taken port = %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if err := CheckPortFree(addr); err != nil {
		t.Errorf("CheckPortFree after shutdown = %v", err)
	}
}

// inUnit reports whether v is a score in (0, 1].
func inUnit(v any) bool {
	f, ok := v.(float64)
	return ok && f > 0 && f <= 1
}
