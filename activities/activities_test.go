package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gpuflow/gpuflow"
)

// fakeProvider is a scripted provider: machines with states, terminate
// failures, and output.
type fakeProvider struct {
	mu         sync.Mutex
	machines   map[string]*gpuflow.Machine
	states     map[string][]gpuflow.MachineState // what Describe returns next, per machine
	failTerm   int
	describe   []error // what Describe fails with next, in order
	terminated []string
	out        []byte
	// onTerminate, when set, runs as Terminate removes a machine.
	onTerminate func()
	// provisioned, when not nil, makes Provision create machines (by
	// idempotency key) instead of answering "no capacity".
	provisioned map[string]*gpuflow.Machine
	firstTries  []bool // FirstTry of each Provision request
}

func (f *fakeProvider) Info() gpuflow.ProviderInfo { return gpuflow.ProviderInfo{Name: "fake"} }
func (f *fakeProvider) Offers(context.Context) ([]gpuflow.Offer, error) {
	return []gpuflow.Offer{{Provider: "fake", GPUType: gpuflow.CPUOnly, Available: 1}}, nil
}
func (f *fakeProvider) Provision(_ context.Context, r gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.firstTries = append(f.firstTries, r.FirstTry)
	if f.provisioned == nil {
		return nil, &gpuflow.ProviderError{Provider: "fake", Kind: gpuflow.KindNoCapacity, Message: "sold out"}
	}
	m, ok := f.provisioned[r.IdempotencyKey]
	if !ok {
		m = &gpuflow.Machine{ID: "m-" + r.IdempotencyKey, Provider: "fake", State: gpuflow.MachinePending}
		f.provisioned[r.IdempotencyKey], f.machines[m.ID] = m, m
	}
	c := *m
	return &c, nil
}
func (f *fakeProvider) Describe(_ context.Context, id string) (*gpuflow.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.describe) > 0 {
		err := f.describe[0]
		f.describe = f.describe[1:]
		return nil, err
	}
	m, ok := f.machines[id]
	if !ok {
		return &gpuflow.Machine{ID: id, State: gpuflow.MachineGone}, nil
	}
	if q := f.states[id]; len(q) > 0 {
		m.State, f.states[id] = q[0], q[1:]
		if m.State == gpuflow.MachineExited {
			code := 0
			m.ExitCode = &code
		}
	}
	c := *m
	return &c, nil
}
func (f *fakeProvider) Terminate(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failTerm > 0 {
		f.failTerm--
		return errors.New("HTTP 500")
	}
	delete(f.machines, id)
	f.terminated = append(f.terminated, id)
	if f.onTerminate != nil {
		f.onTerminate()
	}
	return nil
}
func (f *fakeProvider) List(context.Context) ([]gpuflow.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gpuflow.Machine
	for _, m := range f.machines {
		out = append(out, *m)
	}
	return out, nil
}
func (f *fakeProvider) Health(context.Context) error { return nil }
func (f *fakeProvider) PollInterval() time.Duration  { return time.Millisecond }
func (f *fakeProvider) ReadLogs(_ context.Context, _ string, off int64, limit int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.out)) {
		return nil, nil
	}
	return f.out[off:min(int64(len(f.out)), off+int64(limit))], nil
}

// memStore is an in-memory JobStore with what the activities use.
type memStore struct {
	gpuflow.JobStore
	mu      sync.Mutex
	jobs    map[string]*gpuflow.Job
	updates []gpuflow.JobUpdate
	logs    map[int64][]byte
}

func (s *memStore) Job(_ context.Context, id string) (*gpuflow.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "job %s not found", id)
	}
	c := *j
	return &c, nil
}
func (s *memStore) ApplyUpdate(_ context.Context, u gpuflow.JobUpdate) (*gpuflow.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, u)
	if j := s.jobs[u.JobID]; j != nil && u.Status != "" {
		j.Status = u.Status
	}
	return &gpuflow.Event{}, nil
}
func (s *memStore) AppendLog(_ context.Context, _ string, off int64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		s.logs = map[int64][]byte{}
	}
	s.logs[off] = append([]byte(nil), data...)
	return nil
}

type fakeWorkflows map[string]enumspb.WorkflowExecutionStatus

func (f fakeWorkflows) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	st, ok := f[id]
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: st}}, nil
}

// ListWorkflow lists the running ones, one a page.
func (f fakeWorkflows) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	var ids []string
	for id, st := range f {
		if st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	i := 0
	if len(req.NextPageToken) > 0 {
		i, _ = strconv.Atoi(string(req.NextPageToken))
	}
	resp := &workflowservice.ListWorkflowExecutionsResponse{}
	if i < len(ids) {
		resp.Executions = []*workflowpb.WorkflowExecutionInfo{{Execution: &commonpb.WorkflowExecution{WorkflowId: ids[i]}}}
	}
	if i+1 < len(ids) {
		resp.NextPageToken = []byte(strconv.Itoa(i + 1))
	}
	return resp, nil
}

// countingWorkflows counts the look-ups of single workflows.
type countingWorkflows struct {
	fakeWorkflows
	mu        sync.Mutex
	describes []string
	queries   []string
}

func (c *countingWorkflows) ListWorkflow(ctx context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	c.mu.Lock()
	c.queries = append(c.queries, req.Query)
	c.mu.Unlock()
	return c.fakeWorkflows.ListWorkflow(ctx, req)
}

func (c *countingWorkflows) DescribeWorkflowExecution(ctx context.Context, id, run string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.mu.Lock()
	c.describes = append(c.describes, id)
	c.mu.Unlock()
	return c.fakeWorkflows.DescribeWorkflowExecution(ctx, id, run)
}

func env(t *testing.T, acts *Activities) *testsuite.TestActivityEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := s.NewTestActivityEnvironment()
	e.RegisterActivity(acts)
	return e
}

// memWatches is an in-memory WatchStore.
type memWatches struct {
	mu    sync.Mutex
	rows  map[string]gpuflow.Watch
	swept time.Time
}

func (m *memWatches) AddWatch(_ context.Context, w gpuflow.Watch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.rows[w.JobID]; ok && old.MachineID == w.MachineID {
		return nil
	}
	m.rows[w.JobID] = w
	return nil
}
func (m *memWatches) RemoveWatch(_ context.Context, job, machine string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows[job].MachineID == machine {
		delete(m.rows, job)
	}
	return nil
}
func (m *memWatches) Watches(context.Context, string, string) ([]gpuflow.Watch, error) {
	return nil, nil
}
func (m *memWatches) GetWatch(_ context.Context, job string) (*gpuflow.Watch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.rows[job]; ok {
		return &w, nil
	}
	return nil, nil
}
func (m *memWatches) MarkWatch(_ context.Context, job, machine string, st gpuflow.MachineState, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.rows[job]
	w.State, w.LogOffset = st, off
	m.rows[job] = w
	return nil
}
func (m *memWatches) RecordSweep(_ context.Context, _, _ string, at time.Time) error {
	m.swept = at
	return nil
}
func (m *memWatches) LastSweep(context.Context, string, string) (time.Time, error) {
	return m.swept, nil
}

func TestCheckMachineTrustsALiveWatcher(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineRunning}},
		states: map[string][]gpuflow.MachineState{"m1": {gpuflow.MachineExited}}}
	w := &memWatches{rows: map[string]gpuflow.Watch{}, swept: time.Now()}
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{p}, Watches: w}
	e := env(t, acts)
	in := &CheckMachineInput{Provider: "fake", JobID: "j", WorkflowID: "job-j", MachineID: "m1"}
	check := func() *CheckMachineResult {
		t.Helper()
		v, err := e.ExecuteActivity(acts.CheckMachine, in)
		if err != nil {
			t.Fatal(err)
		}
		var res CheckMachineResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return &res
	}
	// The watcher swept just now: no provider call; the missing watch
	// row is put back so the watcher follows the machine.
	if res := check(); res.Machine != nil || len(p.states["m1"]) != 1 {
		t.Fatalf("result %+v with a live watcher; describe queue %v", res, p.states["m1"])
	}
	if wt, _ := w.GetWatch(context.Background(), "j"); wt == nil || wt.MachineID != "m1" || wt.WorkflowID != "job-j" {
		t.Fatalf("watch row %+v", wt)
	}
	// The watcher is dead: the check looks itself.
	w.swept = time.Now().Add(-time.Hour)
	if res := check(); res.Machine == nil || res.Machine.State != gpuflow.MachineExited {
		t.Fatalf("result %+v with a dead watcher", res)
	}
}

func TestTerminateMachineConfirmsGone(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineRunning}}, failTerm: 1}
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{p}}
	e := env(t, acts)
	if _, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"}); err == nil {
		t.Fatal("a failed terminate reported success")
	}
	if _, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"}); err != nil {
		t.Fatalf("second try: %v", err)
	}
	// Terminating what is gone is fine.
	if _, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"}); err != nil {
		t.Fatalf("terminate of a gone machine: %v", err)
	}
}

// TestTerminateMachineStillStoppingIsBenign: a machine the cloud is still
// winding down fails the attempt with the type the retry policy retries,
// marked benign, so the SDK logs it at debug instead of as an error for
// each attempt of every cancelled job.
func TestTerminateMachineStillStoppingIsBenign(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineRunning}}}
	p.onTerminate = func() { p.machines["m1"] = &gpuflow.Machine{ID: "m1", State: gpuflow.MachineStopping} }
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{p}}
	e := env(t, acts)
	_, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeMachineExists || appErr.NonRetryable() ||
		appErr.Category() != temporal.ApplicationErrorCategoryBenign {
		t.Fatalf("err %v, want a retryable, benign %s", err, ErrTypeMachineExists)
	}
}

// TestTerminateMachineHonoursRetryAfter: a teardown whose confirmation the
// cloud throttled is tried again after the provider's hint (jittered by
// the provider), not the policy's growing backoff that would keep the
// retries of teardowns throttled together in step; an error of any kind
// stays retryable.
func TestTerminateMachineHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	throttled := &gpuflow.ProviderError{Provider: "fake", Kind: gpuflow.KindTransient, Code: "RequestLimitExceeded",
		Message: "slow down", RetryAfter: 1300 * time.Millisecond}
	auth := &gpuflow.ProviderError{Provider: "fake", Kind: gpuflow.KindAuth, Message: "key revoked", RetryAfter: time.Second}
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineRunning}},
		describe: []error{throttled, auth}}
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{p}}
	e := env(t, acts)
	for _, want := range []*gpuflow.ProviderError{throttled, auth} {
		_, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"})
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.NextRetryDelay() != want.RetryAfter || ae.NonRetryable() {
			t.Fatalf("confirmation failing with %v: %v, want a retryable error retried after %s", want, err, want.RetryAfter)
		}
	}
	if _, err := e.ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"}); err != nil {
		t.Fatalf("third try: %v", err)
	}
}

func TestTerminateMachineShipsTheRestAndUnwatches(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineExited}}, out: []byte("hello\nworld\n")}
	store := &memStore{}
	w := &memWatches{rows: map[string]gpuflow.Watch{"j": {JobID: "j", MachineID: "m1", LogOffset: 6}}}
	acts := &Activities{Jobs: store, Providers: gpuflow.Providers{p}, Watches: w}
	v, err := env(t, acts).ExecuteActivity(acts.TerminateMachine, &TerminateInput{Provider: "fake", JobID: "j", MachineID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	var res TerminateResult
	_ = v.Get(&res)
	// The watcher had shipped "hello\n"; teardown ships the rest.
	if res.LogOffset != 12 || string(store.logs[6]) != "world\n" || len(store.logs) != 1 {
		t.Fatalf("offset %d, logs %v", res.LogOffset, store.logs)
	}
	if wt, _ := w.GetWatch(context.Background(), "j"); wt != nil {
		t.Fatalf("still watched: %+v", wt)
	}
}

// TestProvisionFirstTry: the activity's first attempt tells the provider
// that nothing can have been made with the request's key yet.
func TestProvisionFirstTry(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{}, provisioned: map[string]*gpuflow.Machine{}}
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{p}}
	if _, err := env(t, acts).ExecuteActivity(acts.Provision, &ProvisionInput{Provider: "fake",
		Request: gpuflow.ProvisionRequest{JobID: "j", IdempotencyKey: "j-a1"}}); err != nil {
		t.Fatal(err)
	}
	if len(p.firstTries) != 1 || !p.firstTries[0] {
		t.Fatalf("FirstTry of attempt 1: %v, want [true]", p.firstTries)
	}
}

func TestProvisionClassifiesNoCapacity(t *testing.T) {
	t.Parallel()
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{&fakeProvider{}}}
	e := env(t, acts)
	_, err := e.ExecuteActivity(acts.Provision, &ProvisionInput{Provider: "fake", Request: gpuflow.ProvisionRequest{JobID: "j"}})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeNoCapacity || !ae.NonRetryable() {
		t.Fatalf("error %v: want non-retryable %s", err, ErrTypeNoCapacity)
	}
	_, err = e.ExecuteActivity(acts.Provision, &ProvisionInput{Provider: "nope", Request: gpuflow.ProvisionRequest{JobID: "j"}})
	if !errors.As(err, &ae) || ae.Type() != ErrTypeUnknownProvide {
		t.Fatalf("unknown provider: %v", err)
	}
}

func TestReconcileProvider(t *testing.T) {
	t.Parallel()
	old := time.Now().Add(-time.Hour)
	tag := func(job string) map[string]string {
		return map[string]string{gpuflow.TagManaged: "true", gpuflow.TagJob: job}
	}
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{
		"live":      {ID: "live", State: gpuflow.MachineRunning, CreatedAt: old, Tags: tag("j-live")},
		"forced":    {ID: "forced", State: gpuflow.MachineRunning, CreatedAt: old, Tags: tag("j-forced")},
		"unknown":   {ID: "unknown", State: gpuflow.MachineRunning, CreatedAt: old, Tags: tag("j-unknown")},
		"too-young": {ID: "too-young", State: gpuflow.MachineRunning, CreatedAt: time.Now(), Tags: tag("j-young")},
	}}
	store := &memStore{jobs: map[string]*gpuflow.Job{"j-forced": {ID: "j-forced", Status: gpuflow.StatusRunning, LastSeq: 4}}}
	wfs := fakeWorkflows{
		"job-j-live":   enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		"job-j-forced": enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED,
	}
	acts := &Activities{Jobs: store, Providers: gpuflow.Providers{p}, Workflows: wfs}
	e := env(t, acts)
	v, err := e.ExecuteActivity(acts.ReconcileProvider, &ReconcileInput{Provider: "fake", Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var res ReconcileResult
	_ = v.Get(&res)
	if res.Seen != 4 || res.Owned != 2 || len(res.Terminated) != 2 {
		t.Fatalf("result %+v", res)
	}
	if _, ok := p.machines["forced"]; ok {
		t.Fatal("the machine of a terminated workflow survived")
	}
	if _, ok := p.machines["live"]; !ok {
		t.Fatal("a live job's machine was terminated")
	}
	if store.jobs["j-forced"].Status != gpuflow.StatusFailed || store.updates[0].Seq != 5 {
		t.Fatalf("forced job %+v, updates %+v", store.jobs["j-forced"], store.updates)
	}
}

// TestReconcileListsRunningJobsOnce: with the job workflow type known, the
// reconciler lists the running jobs (paged) instead of looking up every
// machine's workflow; only machines whose workflow the listing lacks are
// looked up, and a listed-then-gone machine is left alone.
func TestReconcileListsRunningJobsOnce(t *testing.T) {
	t.Parallel()
	old := time.Now().Add(-time.Hour)
	tag := func(job string) map[string]string {
		return map[string]string{gpuflow.TagManaged: "true", gpuflow.TagJob: job}
	}
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{}}
	wfs := &countingWorkflows{fakeWorkflows: fakeWorkflows{}}
	for i := range 5 {
		id := fmt.Sprintf("j%d", i)
		p.machines["m-"+id] = &gpuflow.Machine{ID: "m-" + id, State: gpuflow.MachineRunning, CreatedAt: old, Tags: tag(id)}
		wfs.fakeWorkflows["job-"+id] = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	p.machines["m-done"] = &gpuflow.Machine{ID: "m-done", State: gpuflow.MachineRunning, CreatedAt: old, Tags: tag("done")}
	wfs.fakeWorkflows["job-done"] = enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	store := &memStore{jobs: map[string]*gpuflow.Job{"done": {ID: "done", Status: gpuflow.StatusSucceeded, LastSeq: 3}}}
	acts := &Activities{Jobs: store, Providers: gpuflow.Providers{p}, Workflows: wfs, JobWorkflowType: "GpuJob", ProviderAttribute: "GpuflowProvider"}
	v, err := env(t, acts).ExecuteActivity(acts.ReconcileProvider, &ReconcileInput{Provider: "fake", Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var res ReconcileResult
	_ = v.Get(&res)
	if res.Owned != 5 || len(res.Terminated) != 1 || res.Terminated[0] != "m-done" {
		t.Fatalf("result %+v", res)
	}
	if !slices.Equal(wfs.describes, []string{"job-done"}) {
		t.Fatalf("looked up %v, want only the workflow the listing lacked", wfs.describes)
	}
	want := "WorkflowType = 'GpuJob' AND ExecutionStatus = 'Running' AND GpuflowProvider = 'fake'"
	if len(wfs.queries) != 5 || wfs.queries[0] != want {
		t.Fatalf("queries %q, want 5 pages of %q", wfs.queries, want)
	}
}

func TestPickHostNamesTheWorkersOwnHost(t *testing.T) {
	t.Parallel()
	acts := &Activities{Jobs: &memStore{}, Providers: gpuflow.Providers{&fakeProvider{}}, Hosts: map[string]string{"fake": "h2"}}
	e := env(t, acts)
	v, err := e.ExecuteActivity(acts.PickHost, &PickHostInput{Provider: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	var res PickHostResult
	if err := v.Get(&res); err != nil || res.Host != "h2" {
		t.Fatalf("host %q (%v)", res.Host, err)
	}
	acts.Hosts = nil // a cloud: machines are not on the worker's host
	if _, err := e.ExecuteActivity(acts.PickHost, &PickHostInput{Provider: "fake"}); err == nil {
		t.Fatal("a worker without the provider's machines picked itself")
	}
}
