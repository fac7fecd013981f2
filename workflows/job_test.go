package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/scheduler"
)

// bundle is one workflow test: the environment, the recorded state changes
// and call counters.
type bundle struct {
	env *testsuite.TestWorkflowEnvironment

	mu         sync.Mutex
	updates    []gpuflow.JobUpdate
	terminates int
	provisions int
	leaves     int
	checks     int
	// check answers the safety check (nil: the watcher is alive).
	check    func() *activities.CheckMachineResult
	outcomes []gpuflow.ProvisionOutcome
	// down: the job store is unreachable (an outage); every write fails.
	down bool
	// lost: the changes a lost workflow task left in the store, by seq
	// (nil: none); the store then answers as gpuflow.JobStore says.
	lost map[int]gpuflow.JobUpdate
}

// applyOnly is a job store that only applies updates (any other call
// panics on the nil JobStore).
type applyOnly struct {
	gpuflow.JobStore
	apply func(gpuflow.JobUpdate) (*gpuflow.Event, error)
}

func (f applyOnly) ApplyUpdate(_ context.Context, u gpuflow.JobUpdate) (*gpuflow.Event, error) {
	return f.apply(u)
}

// applyOverLost applies u to a store holding b.lost (b.mu held): a seq it
// holds answers nil for the same change, SeqTaken for another.
func (b *bundle) applyOverLost(u gpuflow.JobUpdate) (*gpuflow.Event, error) {
	last := len(b.lost)
	if n := len(b.updates); n > 0 {
		last = max(last, b.updates[n-1].Seq)
	}
	if u.Seq <= last {
		held, ok := b.lost[u.Seq]
		for _, w := range b.updates {
			if w.Seq == u.Seq {
				held, ok = w, true
			}
		}
		if ok && held.Type == u.Type && held.Status == u.Status && string(held.Data) == string(u.Data) {
			return nil, nil
		}
		return nil, &gpuflow.Error{Code: gpuflow.ECONFLICT, Message: "seq taken", Err: &gpuflow.SeqTaken{JobID: u.JobID, Seq: u.Seq, LastSeq: last}}
	}
	b.updates = append(b.updates, u)
	return &gpuflow.Event{JobSeq: u.Seq}, nil
}

// errStoreDown is what the store's writes fail with during an outage.
var errStoreDown = errors.New("database unavailable: connection refused")

// storeDown reports whether the store is down now.
func (b *bundle) storeDown() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down
}

// outage makes the store unreachable from `from` to `to` into the test.
func (b *bundle) outage(from, to time.Duration) {
	set := func(v bool) func() {
		return func() { b.mu.Lock(); b.down = v; b.mu.Unlock() }
	}
	if from == 0 {
		set(true)()
	} else {
		b.env.RegisterDelayedCallback(set(true), from)
	}
	b.env.RegisterDelayedCallback(set(false), to)
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupLogged(t, nil)
}

// setupLogged is setup with the workflows' and the SDK's logs going to
// logger (nil: the test suite's own).
func setupLogged(t *testing.T, logger log.Logger) *bundle {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	if logger != nil {
		s.SetLogger(logger)
	}
	b := &bundle{env: s.NewTestWorkflowEnvironment()}
	b.env.RegisterWorkflowWithOptions(RunJob, workflow.RegisterOptions{Name: JobWorkflowName})
	b.env.RegisterActivity(&activities.Activities{})
	b.env.OnActivity(a.CreateJob, mock.Anything, mock.Anything).Return(func(context.Context, *activities.CreateJobInput) (*activities.CreateJobResult, error) {
		if b.storeDown() {
			return nil, errStoreDown
		}
		return &activities.CreateJobResult{}, nil
	})
	b.env.OnActivity(a.LeaveQueue, mock.Anything, mock.Anything).Return(func(context.Context, *activities.LeaveQueueInput) (*activities.LeaveQueueResult, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.down {
			return nil, errStoreDown
		}
		b.leaves++
		return &activities.LeaveQueueResult{}, nil
	})
	b.env.OnActivity(a.RecordOutcome, mock.Anything, mock.Anything).Return(func(_ context.Context, in *activities.RecordOutcomeInput) (*activities.RecordOutcomeResult, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.down {
			return nil, errStoreDown
		}
		b.outcomes = append(b.outcomes, in.Outcome)
		return &activities.RecordOutcomeResult{}, nil
	})
	b.env.OnActivity(a.RecordUpdate, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.RecordUpdateInput) (*activities.RecordUpdateResult, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.down {
				return nil, errStoreDown
			}
			if b.lost != nil {
				// Through the activity, to its answer for a taken seq.
				return (&activities.Activities{Jobs: applyOnly{apply: b.applyOverLost}}).RecordUpdate(context.Background(), in)
			}
			b.updates = append(b.updates, in.Update)
			return &activities.RecordUpdateResult{}, nil
		})
	// A local job's host: whichever took PickHost.
	b.env.OnActivity(a.PickHost, mock.Anything, mock.Anything).Return(&activities.PickHostResult{Host: "h1"}, nil).Maybe()
	// The provider's watcher is alive unless a test says otherwise: the
	// safety check has nothing to add.
	b.env.OnActivity(a.CheckMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.CheckMachineInput) (*activities.CheckMachineResult, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.checks++
			if b.check != nil {
				return b.check(), nil
			}
			return &activities.CheckMachineResult{}, nil
		}).Maybe()
	return b
}

// at sends the watcher's signal that machine m is as given, at d into the test.
func (b *bundle) at(d time.Duration, m gpuflow.Machine) {
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalMachine, MachineSignal{Machine: m})
	}, d)
}

var testOffer = gpuflow.Offer{Provider: "local", GPUType: gpuflow.CPUOnly, Region: "local", Available: 1}

func admitted(sel *activities.SelectResult) *activities.AdmitResult {
	return &activities.AdmitResult{Admitted: sel}
}

func input() *RunJobInput {
	return &RunJobInput{JobID: "j1", OwnerID: "u1", Spec: gpuflow.JobSpec{Command: []string{"true"}, Strategy: "balanced"}}
}

// happyPath mocks select and provision to succeed.
func (b *bundle) happyPath() {
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer, Mode: gpuflow.ModeLocal, Score: 1,
		Breakdown: map[string]float64{"cost": 1}, Alternatives: []scheduler.Candidate{{Offer: gpuflow.Offer{Provider: "runpod", GPUType: "T4"}, Score: 0.5}}}), nil)
	b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.ProvisionInput) (*activities.ProvisionResult, error) {
			b.mu.Lock()
			b.provisions++
			n := b.provisions
			b.mu.Unlock()
			return machine(fmt.Sprintf("m%d", n), gpuflow.MachinePending), nil
		})
}

func machine(id string, st gpuflow.MachineState) *activities.ProvisionResult {
	return &activities.ProvisionResult{Machine: gpuflow.Machine{ID: id, Provider: "local", State: st}}
}

// watch plays the watcher for machine m1: running after a second, then
// exited with exitCode after runFor.
func (b *bundle) watch(exitCode int, runFor time.Duration) {
	b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
	b.at(time.Second+runFor, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &exitCode})
}

func (b *bundle) terminateOK() {
	b.env.OnActivity(a.TerminateMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.TerminateInput) (*activities.TerminateResult, error) {
			b.mu.Lock()
			b.terminates++
			b.mu.Unlock()
			return &activities.TerminateResult{}, nil
		})
}

func (b *bundle) result(t *testing.T) *RunJobResult {
	t.Helper()
	if !b.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := b.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var res RunJobResult
	if err := b.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// statuses returns the statuses the job went through, in recorded order,
// and checks that sequence numbers are 1, 2, 3... without gaps.
func (b *bundle) statuses(t *testing.T) []gpuflow.JobStatus {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []gpuflow.JobStatus
	for i, u := range b.updates {
		if u.Seq != i+1 {
			t.Fatalf("update %d has seq %d", i, u.Seq)
		}
		if u.Status != "" {
			out = append(out, u.Status)
		}
	}
	return out
}

func wantStatuses(t *testing.T, got []gpuflow.JobStatus, want ...gpuflow.JobStatus) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
}

func TestRunJob(t *testing.T) {
	t.Parallel()

	t.Run("Succeeded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, time.Minute)
		b.terminateOK()
		var mid JobSnapshot
		b.env.RegisterDelayedCallback(func() {
			v, err := b.env.QueryWorkflow(QueryStatus)
			if err != nil {
				t.Errorf("query: %v", err)
				return
			}
			_ = v.Get(&mid)
		}, 30*time.Second)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded || res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("result %+v", res)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusSucceeded)
		if b.terminates != 1 {
			t.Fatalf("terminate ran %d times", b.terminates)
		}
		if mid.Status != gpuflow.StatusRunning || mid.MachineID != "m1" || len(mid.Attempts) != 1 {
			t.Fatalf("mid-run snapshot %+v", mid)
		}
		// The decision is recorded with the provisioning event: offer,
		// score, breakdown and the alternatives.
		var decision struct {
			Score        float64               `json:"score"`
			Breakdown    map[string]float64    `json:"breakdown"`
			Alternatives []scheduler.Candidate `json:"alternatives"`
		}
		for _, u := range b.updates {
			if u.Status == gpuflow.StatusProvisioning {
				_ = json.Unmarshal(u.Data, &decision)
			}
		}
		if decision.Score != 1 || decision.Breakdown["cost"] != 1 || len(decision.Alternatives) != 1 {
			t.Fatalf("recorded decision %+v", decision)
		}
	})

	// A lost workflow task wrote seq 1 as this run does, and seq 2 as a
	// change this run never makes: every change of the run is recorded,
	// numbered on from the store's last.
	t.Run("SeqsTakenByALostTask", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.lost = map[int]gpuflow.JobUpdate{
			1: {Seq: 1, Type: gpuflow.EventStatus, Status: gpuflow.StatusScheduling},
			2: {Seq: 2, Type: gpuflow.EventProgress, Data: json.RawMessage(`{"percent":42}`)},
		}
		b.happyPath()
		b.watch(0, time.Minute)
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
			t.Fatalf("result %+v", res)
		}
		var got []gpuflow.JobStatus
		for i, u := range b.updates {
			if u.Seq != 3+i {
				t.Fatalf("update %d (%s %s) has seq %d, want %d", i, u.Type, u.Status, u.Seq, 3+i)
			}
			if u.Status != "" {
				got = append(got, u.Status)
			}
		}
		wantStatuses(t, got, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusSucceeded)
	})

	t.Run("FailedExitCode", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(3, time.Minute)
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || *res.ExitCode != 3 || !strings.Contains(res.Error, "code 3") {
			t.Fatalf("result %+v", res)
		}
		if b.terminates != 1 {
			t.Fatalf("terminate ran %d times", b.terminates)
		}
	})

	t.Run("CancelDuringProvisioning", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer}), nil)
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).After(time.Minute).
			Return(machine("m1", gpuflow.MachinePending), nil)
		b.terminateOK()
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "user", RequestedBy: "u1"})
		}, 10*time.Second)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusCancelled {
			t.Fatalf("result %+v", res)
		}
		if b.terminates != 1 {
			t.Fatalf("the machine created during the cancel was not torn down (%d)", b.terminates)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusCancelling, gpuflow.StatusCancelled)
	})

	t.Run("CancelWhileRunning", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, 10*time.Hour)
		b.terminateOK()
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "user"})
		}, 10*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusCancelled || !strings.Contains(res.Error, "user") {
			t.Fatalf("result %+v", res)
		}
		if b.terminates != 1 {
			t.Fatalf("terminate ran %d times", b.terminates)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusCancelling, gpuflow.StatusCancelled)
	})

	t.Run("CancelDuringTeardown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, time.Minute)
		b.env.OnActivity(a.TerminateMachine, mock.Anything, mock.Anything).After(5 * time.Minute).Return(
			func(_ context.Context, in *activities.TerminateInput) (*activities.TerminateResult, error) {
				b.mu.Lock()
				b.terminates++
				b.mu.Unlock()
				return &activities.TerminateResult{}, nil
			})
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "late"})
		}, 3*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		// The job had ended: the late cancel changes nothing and teardown completes once.
		if res.Status != gpuflow.StatusSucceeded || b.terminates != 1 {
			t.Fatalf("result %+v, terminates %d", res, b.terminates)
		}
	})

	t.Run("TemporalCancellation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, 10*time.Hour)
		b.terminateOK()
		b.env.RegisterDelayedCallback(b.env.CancelWorkflow, 10*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		if !b.env.IsWorkflowCompleted() {
			t.Fatal("not completed")
		}
		var canceled *temporal.CanceledError
		if err := b.env.GetWorkflowError(); !errors.As(err, &canceled) {
			t.Fatalf("workflow error %v, want CanceledError", err)
		}
		if b.terminates != 1 {
			t.Fatalf("terminate ran %d times", b.terminates)
		}
		st := b.statuses(t)
		if st[len(st)-1] != gpuflow.StatusCancelled {
			t.Fatalf("statuses %v", st)
		}
	})

	t.Run("ActivityFailuresRetried", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer}), nil)
		calls := 0
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
			func(_ context.Context, _ *activities.ProvisionInput) (*activities.ProvisionResult, error) {
				calls++
				if calls < 3 {
					return nil, errors.New("HTTP 503 from provider")
				}
				return machine("m1", gpuflow.MachinePending), nil
			})
		b.watch(0, time.Minute)
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded || calls != 3 {
			t.Fatalf("result %+v after %d provision calls", res, calls)
		}
	})

	t.Run("TeardownRetriedUntilGone", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, time.Minute)
		calls := 0
		b.env.OnActivity(a.TerminateMachine, mock.Anything, mock.Anything).Return(
			func(_ context.Context, _ *activities.TerminateInput) (*activities.TerminateResult, error) {
				calls++
				if calls <= 5 {
					return nil, temporal.NewApplicationError("machine m1 still running", activities.ErrTypeMachineExists)
				}
				return &activities.TerminateResult{}, nil
			})
		var statusDuringTeardown gpuflow.JobStatus
		b.env.RegisterDelayedCallback(func() {
			v, _ := b.env.QueryWorkflow(QueryStatus)
			var s JobSnapshot
			_ = v.Get(&s)
			statusDuringTeardown = s.Status
		}, time.Minute+10*time.Second)
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded || calls != 6 {
			t.Fatalf("result %+v after %d terminate calls", res, calls)
		}
		if statusDuringTeardown.Terminal() {
			t.Fatalf("job was marked %s while its machine still existed", statusDuringTeardown)
		}
	})

	t.Run("MaxDurationReached", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, 10*time.Hour)
		b.terminateOK()
		in := input()
		in.Spec.MaxDurationMinutes = ptr(30)
		b.env.ExecuteWorkflow(RunJob, in)
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "max_duration_minutes") {
			t.Fatalf("result %+v", res)
		}
		if b.terminates != 1 {
			t.Fatalf("terminate ran %d times", b.terminates)
		}
	})

	t.Run("Unschedulable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(nil,
			temporal.NewNonRetryableApplicationError("no provider can serve the job", activities.ErrTypeUnschedulable, nil))
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "no provider") {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("NoCapacityBlocksTheOfferAndWaitsInQueue", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var entries []gpuflow.QueueEntry
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.AdmitInput) (*activities.AdmitResult, error) {
				entries = append(entries, in.Entry)
				if len(in.Entry.Blocked) == 0 {
					return admitted(&activities.SelectResult{Offer: testOffer}), nil
				}
				return &activities.AdmitResult{Reason: "waiting for capacity"}, nil
			})
		calls := 0
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.ProvisionInput) (*activities.ProvisionResult, error) {
				calls++
				if calls == 1 {
					return nil, temporal.NewNonRetryableApplicationError("full", activities.ErrTypeNoCapacity, nil)
				}
				if !strings.HasSuffix(in.Request.IdempotencyKey, "-a2") || in.Request.Offer.Provider != "runpod" {
					t.Errorf("second attempt %+v", in.Request)
				}
				return machine("m1", gpuflow.MachinePending), nil
			})
		zero := 0
		b.at(3*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(4*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &zero})
		b.terminateOK()
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalQueue, QueueSignal{Reason: "owner limit: 2 of 2 jobs running"})
		}, time.Minute)
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalQueue, QueueSignal{Admitted: &activities.SelectResult{Offer: gpuflow.Offer{Provider: "runpod", GPUType: "A40"}}})
		}, 2*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
			t.Fatalf("result %+v", res)
		}
		if len(entries) != 2 || entries[1].Blocked[testOffer.Key()].Reason != "no capacity" || entries[1].Priority != 0 {
			t.Fatalf("queue entries %+v", entries)
		}
		var reasons []string
		b.mu.Lock()
		for _, u := range b.updates {
			if u.Status == gpuflow.StatusQueued {
				var d struct{ Reason string }
				_ = json.Unmarshal(u.Data, &d)
				reasons = append(reasons, d.Reason)
			}
		}
		outcomes := b.outcomes
		leaves := b.leaves
		b.mu.Unlock()
		if strings.Join(reasons, "|") != "waiting for capacity|owner limit: 2 of 2 jobs running" {
			t.Fatalf("queued reasons %q", reasons)
		}
		if len(outcomes) != 2 || outcomes[0].Outcome != "no_capacity" || outcomes[0].OfferKey != testOffer.Key() ||
			outcomes[1].Outcome != "started" || outcomes[1].Provider != "runpod" {
			t.Fatalf("outcomes %+v", outcomes)
		}
		if leaves != 3 { // after each provision, and at the end
			t.Fatalf("left the queue %d times", leaves)
		}
	})

	t.Run("LostSignalRecheckedAndStaleAdmissionIgnored", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		admits := 0
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.AdmitInput) (*activities.AdmitResult, error) {
				admits++
				switch admits {
				case 1:
					return admitted(&activities.SelectResult{Offer: testOffer}), nil
				case 2:
					return &activities.AdmitResult{Reason: "waiting for capacity"}, nil
				}
				// The dispatcher's signal was lost; asking again finds the admission.
				return admitted(&activities.SelectResult{Offer: gpuflow.Offer{Provider: "runpod", GPUType: "A40"}, PricePerHour: 0.8}), nil
			})
		calls := 0
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.ProvisionInput) (*activities.ProvisionResult, error) {
				calls++
				if calls == 1 {
					return nil, temporal.NewNonRetryableApplicationError("full", activities.ErrTypeNoCapacity, nil)
				}
				if in.Request.Offer.Provider != "runpod" {
					t.Errorf("provisioned %+v", in.Request.Offer)
				}
				return machine("m1", gpuflow.MachinePending), nil
			})
		zero := 0 // admitted again after the 10-minute recheck
		b.at(11*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(12*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &zero})
		b.terminateOK()
		// A late admission from the first stay names the offer that just failed.
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalQueue, QueueSignal{Admitted: &activities.SelectResult{Offer: testOffer}})
		}, time.Second)
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded || admits != 3 || calls != 2 {
			t.Fatalf("result %+v after %d admits, %d provisions", res, admits, calls)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		var prices []float64
		for _, u := range b.updates {
			if u.Price != nil {
				prices = append(prices, *u.Price)
			}
		}
		if len(prices) != 2 || prices[1] != 0.8 {
			t.Fatalf("prices recorded %v: want the job's price from the decision", prices)
		}
	})

	t.Run("CancelWhileQueuedLeavesAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(&activities.AdmitResult{Reason: "waiting for capacity"}, nil)
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "not needed"})
		}, time.Hour)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusCancelled || b.provisions != 0 || b.terminates != 0 || b.leaves != 1 {
			t.Fatalf("result %+v, provisions %d, terminates %d, leaves %d", res, b.provisions, b.terminates, b.leaves)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusQueued, gpuflow.StatusCancelling, gpuflow.StatusCancelled)
	})

	t.Run("QueuedThenUnschedulable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(&activities.AdmitResult{Reason: "waiting for capacity"}, nil)
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalQueue, QueueSignal{Failure: "no provider can serve the job",
				Reasons: map[string][]string{"local": {"provider not configured"}}})
		}, time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || res.Error != "scheduling: no provider can serve the job; local: provider not configured" {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("MachineFailed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted"})
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "preempted") || b.terminates != 1 {
			t.Fatalf("result %+v, terminates %d", res, b.terminates)
		}
	})

	t.Run("LaunchFailureTriesElsewhere", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var blocked []map[string]gpuflow.Block
		b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.AdmitInput) (*activities.AdmitResult, error) {
				blocked = append(blocked, maps.Clone(in.Entry.Blocked))
				if len(in.Entry.Blocked) == 0 {
					return admitted(&activities.SelectResult{Offer: testOffer}), nil
				}
				return admitted(&activities.SelectResult{Offer: gpuflow.Offer{Provider: "runpod", GPUType: "A40", Region: "EU"}}), nil
			})
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
			func(_ context.Context, in *activities.ProvisionInput) (*activities.ProvisionResult, error) {
				b.mu.Lock()
				defer b.mu.Unlock()
				b.provisions++
				return machine(fmt.Sprintf("m%d", b.provisions), gpuflow.MachinePending), nil
			})
		// m1 dies while booting; m2 runs the job.
		zero := 0
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "boot timed out"})
		b.at(2*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineRunning})
		b.at(3*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineExited, ExitCode: &zero})
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded || b.provisions != 2 || b.terminates != 2 {
			t.Fatalf("result %+v after %d provisions, %d terminates", res, b.provisions, b.terminates)
		}
		if len(blocked) != 2 || blocked[1][testOffer.Key()].Reason != "launch failed" {
			t.Fatalf("blocked offers per admission: %v", blocked)
		}
		b.mu.Lock()
		outcomes := b.outcomes
		b.mu.Unlock()
		if len(outcomes) != 2 || outcomes[0].Outcome != "failed" || outcomes[1].Outcome != "started" || outcomes[1].Provider != "runpod" {
			t.Fatalf("outcomes %+v", outcomes)
		}
	})

	t.Run("LaunchFailuresAreBounded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		for i := range 1 + maxLaunchRetries {
			b.at(time.Duration(i+1)*time.Minute, gpuflow.Machine{ID: fmt.Sprintf("m%d", i+1), State: gpuflow.MachineGone})
		}
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || res.Error != "the machine disappeared" || b.provisions != 1+maxLaunchRetries || b.terminates != 1+maxLaunchRetries {
			t.Fatalf("result %+v after %d provisions, %d terminates", res, b.provisions, b.terminates)
		}
	})

	t.Run("FinishedSignal", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, 10*time.Hour)
		b.terminateOK()
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 50, Message: "half"})
		}, time.Minute)
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalFinished, FinishedSignal{ExitCode: 7})
		}, 2*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || *res.ExitCode != 7 || b.terminates != 1 {
			t.Fatalf("result %+v", res)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		progress := 0
		for _, u := range b.updates {
			if u.Type == gpuflow.EventProgress {
				progress++
			}
		}
		if progress != 1 {
			t.Fatalf("%d progress events", progress)
		}
	})

	t.Run("PreemptedSpotRestarts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		code := 0
		for i, id := range []string{"m1", "m2", "m3"} {
			start := time.Duration(i) * 10 * time.Minute
			b.at(start+time.Minute, gpuflow.Machine{ID: id, State: gpuflow.MachineRunning})
			if i < 2 {
				b.at(start+5*time.Minute, gpuflow.Machine{ID: id, State: gpuflow.MachineFailed, Reason: "preempted by the provider"})
			} else {
				b.at(start+5*time.Minute, gpuflow.Machine{ID: id, State: gpuflow.MachineExited, ExitCode: &code})
			}
		}
		in := input()
		in.Spec.Spot, in.Spec.MaxRestarts = true, 2
		b.env.ExecuteWorkflow(RunJob, in)
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded || b.provisions != 3 || b.terminates != 3 {
			t.Fatalf("result %+v after %d provisions, %d terminates", res, b.provisions, b.terminates)
		}
		v, _ := b.env.QueryWorkflow(QueryStatus)
		var snap JobSnapshot
		_ = v.Get(&snap)
		if snap.Restarts != 2 || len(snap.Attempts) != 3 || snap.Attempts[0].Outcome != "preempted" {
			t.Fatalf("snapshot %+v", snap)
		}
	})

	t.Run("PreemptedBeyondMaxRestartsFails", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted"})
		b.at(5*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineFailed, Reason: "preempted"})
		in := input()
		in.Spec.Spot, in.Spec.MaxRestarts = true, 1
		b.env.ExecuteWorkflow(RunJob, in)
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "preempted") || b.provisions != 2 {
			t.Fatalf("result %+v after %d provisions", res, b.provisions)
		}
	})

	t.Run("FinishedBeforeSeenRunning", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		// The machine is slow to show running; its agent reports the exit
		// code first. The workflow must not wait for a state the machine
		// (a VM that stays up) will never leave.
		b.at(10*time.Hour, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalFinished, FinishedSignal{ExitCode: 0})
		}, time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded || b.terminates != 1 {
			t.Fatalf("result %+v, terminates %d", res, b.terminates)
		}
	})
}

// The watch's signals and timers: what a job does when the watcher is
// dead, when a machine stops without an exit code, when reports arrive
// twice or out of order, and when its history grows long.
func TestRunJobWatch(t *testing.T) {
	t.Parallel()

	t.Run("DeadWatcherSafetyCheckFindsTheEnd", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		code := 0
		// No signal ever comes: the safety check looks at the machine itself.
		b.check = func() *activities.CheckMachineResult {
			return &activities.CheckMachineResult{Machine: &gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code}}
		}
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded || b.terminates != 1 {
			t.Fatalf("result %+v, terminates %d", res, b.terminates)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusSucceeded)
	})

	t.Run("AliveWatcherCostsOneCheckPerTimer", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.watch(0, 10*time.Hour)
		b.terminateOK()
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
			t.Fatalf("result %+v", res)
		}
		// Ten hours of running: one safety check per 30 minutes, nothing else.
		if want := int(10 * time.Hour / safetyCheck); b.checks != want {
			t.Fatalf("%d safety checks in 10 h, want %d", b.checks, want)
		}
	})

	t.Run("StaleMachineSignalsIgnored", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		code := 0
		b.at(time.Second, gpuflow.Machine{ID: "m0", State: gpuflow.MachineGone}) // another attempt's machine
		b.at(2*time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineStarting})
		b.at(3*time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(4*time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning}) // told twice
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code})
		b.at(2*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineGone}) // after teardown began
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded || b.terminates != 1 {
			t.Fatalf("result %+v, terminates %d", res, b.terminates)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusSucceeded)
	})

	t.Run("StoppedWithoutExitCodeWaitsForTheReport", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited})
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalFinished, FinishedSignal{ExitCode: 4, ReportID: 9})
		}, 2*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusFailed || res.ExitCode == nil || *res.ExitCode != 4 {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("StoppedWithoutExitCodeAndNoReportFails", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited})
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "without reporting an exit code") || b.terminates != 1 {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("ReportsDeliveredTwiceApplyOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		send := func(d time.Duration, name string, v any) {
			b.env.RegisterDelayedCallback(func() { b.env.SignalWorkflow(name, v) }, d)
		}
		send(time.Minute, SignalProgress, ProgressSignal{Percent: 10, ReportID: 5})
		send(2*time.Minute, SignalProgress, ProgressSignal{Percent: 10, ReportID: 5}) // redelivered
		send(3*time.Minute, SignalProgress, ProgressSignal{Percent: 5, ReportID: 3})  // older
		send(4*time.Minute, SignalProgress, ProgressSignal{Percent: 60, ReportID: 8})
		send(5*time.Minute, SignalFinished, FinishedSignal{ExitCode: 0, ReportID: 9})
		send(6*time.Minute, SignalFinished, FinishedSignal{ExitCode: 0, ReportID: 9})
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusSucceeded || b.terminates != 1 {
			t.Fatalf("result %+v", res)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		var got []float64
		for _, u := range b.updates {
			if u.Type == gpuflow.EventProgress {
				var p ProgressSignal
				_ = json.Unmarshal(u.Data, &p)
				got = append(got, p.Percent)
			}
		}
		if fmt.Sprint(got) != "[10 60]" {
			t.Fatalf("progress recorded %v, want [10 60]", got)
		}
	})

	t.Run("ProgressFloodIsCoalescedAndCancelWorks", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		// 20,000 reports in bursts of 500 (the test environment buffers
		// fewer signals than that per callback).
		const n, burst = 20000, 500
		for k := range n / burst {
			b.env.RegisterDelayedCallback(func() {
				for i := k * burst; i < (k+1)*burst; i++ {
					b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: float64(i%100) + 0.5, ReportID: int64(i + 1)})
				}
			}, time.Minute+time.Duration(k)*time.Second)
		}
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "enough"})
		}, 3*time.Minute)
		b.env.ExecuteWorkflow(RunJob, input())
		if res := b.result(t); res.Status != gpuflow.StatusCancelled || b.terminates != 1 {
			t.Fatalf("result %+v", res)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		progress := 0
		for _, u := range b.updates {
			if u.Type == gpuflow.EventProgress {
				progress++
			}
		}
		if progress == 0 || progress > n/burst*2 {
			t.Fatalf("%d progress updates recorded for %d reports: want them coalesced", progress, n)
		}
	})

	t.Run("LongHistoryContinuesAsNew", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 42, ReportID: 7})
		}, time.Minute)
		b.env.RegisterDelayedCallback(func() { b.env.SetContinueAsNewSuggested(true) }, 2*time.Minute)
		b.env.RegisterDelayedCallback(func() {
			b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 43, ReportID: 8})
		}, 3*time.Minute)
		in := input()
		in.Spec.MaxDurationMinutes = ptr(600)
		b.env.ExecuteWorkflow(RunJob, in)
		if !b.env.IsWorkflowCompleted() {
			t.Fatal("not completed")
		}
		var can *workflow.ContinueAsNewError
		if err := b.env.GetWorkflowError(); !errors.As(err, &can) {
			t.Fatalf("workflow error %v, want ContinueAsNewError", err)
		}
		if b.terminates != 0 {
			t.Fatal("the machine was torn down on continue-as-new")
		}
		next := decodeInput(t, can)
		if r := next.Resume; r == nil || r.Machine == nil || r.Machine.ID != "m1" || !r.Ran || r.LastReport != 7 || r.Seq != len(b.updates) {
			t.Fatalf("resume %+v (updates %d)", next.Resume, len(b.updates))
		}

		// The next run carries on watching the same machine.
		b2 := setup(t)
		b2.terminateOK()
		code := 0
		b2.env.RegisterDelayedCallback(func() {
			b2.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 7, ReportID: 7}) // already applied
			b2.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 50, ReportID: 10})
		}, time.Minute)
		b2.at(2*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code})
		b2.env.ExecuteWorkflow(RunJob, next)
		res := b2.result(t)
		if res.Status != gpuflow.StatusSucceeded || b2.terminates != 1 || b2.provisions != 0 {
			t.Fatalf("result %+v, terminates %d, provisions %d", res, b2.terminates, b2.provisions)
		}
		b2.mu.Lock()
		defer b2.mu.Unlock()
		if len(b2.updates) != 2 || b2.updates[0].Seq != next.Resume.Seq+1 || b2.updates[0].Type != gpuflow.EventProgress {
			t.Fatalf("next run's updates %+v (resume seq %d)", b2.updates, next.Resume.Seq)
		}
	})
}

// decodeInput reads the input a ContinueAsNewError carries.
func decodeInput(t *testing.T, can *workflow.ContinueAsNewError) *RunJobInput {
	t.Helper()
	var in RunJobInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
		t.Fatal(err)
	}
	return &in
}

// The watcher can see a short job's machine end before Provision's answer
// reaches the workflow: the report is kept, not dropped.
func TestRunJobMachineEndsBeforeProvisionAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer}), nil)
	b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).After(10*time.Second).Return(machine("m1", gpuflow.MachineRunning), nil)
	b.terminateOK()
	code := 0
	b.at(5*time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code})
	b.env.ExecuteWorkflow(RunJob, input())
	if res := b.result(t); res.Status != gpuflow.StatusSucceeded || b.checks != 0 {
		t.Fatalf("result %+v after %d safety checks: the early report was lost", res, b.checks)
	}
}

// warnLog keeps the warnings and errors logged.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *warnLog) Debug(string, ...any) {}
func (l *warnLog) Info(string, ...any)  {}
func (l *warnLog) Warn(msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, fmt.Sprint(append([]any{msg}, kv...)...))
}
func (l *warnLog) Error(msg string, kv ...any) { l.Warn(msg, kv...) }

// A queue signal that arrives after the job was admitted (a dispatcher
// pass that read the entry before it went) is dropped when the job ends,
// not left unhandled.
func TestLateQueueSignalIsDropped(t *testing.T) {
	logs := &warnLog{}
	b := setupLogged(t, logs)
	b.happyPath()
	b.watch(0, time.Minute)
	b.terminateOK()
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalQueue, QueueSignal{Admitted: &activities.SelectResult{Offer: testOffer}})
	}, 30*time.Second)
	b.env.ExecuteWorkflow(JobWorkflowName, input())
	if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", res.Status, res.Error)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, m := range logs.msgs {
		if strings.Contains(m, "unhandled signals") {
			t.Errorf("logged %q", m)
		}
	}
}
