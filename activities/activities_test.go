package activities

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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
	terminated []string
	out        []byte
}

func (f *fakeProvider) Info() gpuflow.ProviderInfo { return gpuflow.ProviderInfo{Name: "fake"} }
func (f *fakeProvider) Offers(context.Context) ([]gpuflow.Offer, error) {
	return []gpuflow.Offer{{Provider: "fake", GPUType: gpuflow.CPUOnly, Available: 1}}, nil
}
func (f *fakeProvider) Provision(_ context.Context, r gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	return nil, &gpuflow.ProviderError{Provider: "fake", Kind: gpuflow.KindNoCapacity, Message: "sold out"}
}
func (f *fakeProvider) Describe(_ context.Context, id string) (*gpuflow.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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

func env(t *testing.T, acts *Activities) *testsuite.TestActivityEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := s.NewTestActivityEnvironment()
	e.RegisterActivity(acts)
	return e
}

func TestWatchMachineShipsLogsUntilExit(t *testing.T) {
	t.Parallel()
	p := &fakeProvider{
		machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineStarting}},
		states:   map[string][]gpuflow.MachineState{"m1": {gpuflow.MachineStarting, gpuflow.MachineRunning, gpuflow.MachineRunning, gpuflow.MachineExited}},
		out:      []byte("hello\nworld\n"),
	}
	store := &memStore{}
	acts := &Activities{Jobs: store, Providers: gpuflow.Providers{p}}
	e := env(t, acts)
	v, err := e.ExecuteActivity(acts.WatchMachine, &WatchInput{Provider: "fake", JobID: "j", MachineID: "m1", Until: UntilExit})
	if err != nil {
		t.Fatal(err)
	}
	var res WatchResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Machine.State != gpuflow.MachineExited || res.LogOffset != 12 || string(store.logs[0]) != "hello\nworld\n" {
		t.Fatalf("result %+v, logs %v", res, store.logs)
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
