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
	outcomes   []gpuflow.ProvisionOutcome
}

func setup(t *testing.T) *bundle {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	b := &bundle{env: s.NewTestWorkflowEnvironment()}
	b.env.RegisterWorkflowWithOptions(RunJob, workflow.RegisterOptions{Name: JobWorkflowName})
	b.env.RegisterActivity(&activities.Activities{})
	b.env.OnActivity(a.CreateJob, mock.Anything, mock.Anything).Return(nil)
	b.env.OnActivity(a.LeaveQueue, mock.Anything, mock.Anything).Return(func(context.Context, string) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.leaves++
		return nil
	})
	b.env.OnActivity(a.RecordOutcome, mock.Anything, mock.Anything).Return(func(_ context.Context, o *gpuflow.ProvisionOutcome) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.outcomes = append(b.outcomes, *o)
		return nil
	})
	b.env.OnActivity(a.RecordUpdate, mock.Anything, mock.Anything).Return(
		func(_ context.Context, u *gpuflow.JobUpdate) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.updates = append(b.updates, *u)
			return nil
		})
	return b
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
		func(_ context.Context, in *activities.ProvisionInput) (*gpuflow.Machine, error) {
			b.mu.Lock()
			b.provisions++
			b.mu.Unlock()
			return &gpuflow.Machine{ID: "m1", Provider: "local", State: gpuflow.MachinePending}, nil
		})
}

// watch mocks WatchMachine: running at once, then exitCode after runFor.
func (b *bundle) watch(exitCode int, runFor time.Duration) {
	b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.Until == activities.UntilRunning })).
		Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning}, LogOffset: 5}, nil)
	b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.Until == activities.UntilExit })).
		After(runFor).Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &exitCode}, LogOffset: 11}, nil)
}

func (b *bundle) terminateOK() {
	b.env.OnActivity(a.TerminateMachine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.TerminateInput) (*activities.TerminateResult, error) {
			b.mu.Lock()
			b.terminates++
			b.mu.Unlock()
			return &activities.TerminateResult{LogOffset: in.LogOffset}, nil
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
			Return(&gpuflow.Machine{ID: "m1", State: gpuflow.MachinePending}, nil)
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
			func(_ context.Context, _ *activities.ProvisionInput) (*gpuflow.Machine, error) {
				calls++
				if calls < 3 {
					return nil, errors.New("HTTP 503 from provider")
				}
				return &gpuflow.Machine{ID: "m1", State: gpuflow.MachinePending}, nil
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
			func(_ context.Context, in *activities.ProvisionInput) (*gpuflow.Machine, error) {
				calls++
				if calls == 1 {
					return nil, temporal.NewNonRetryableApplicationError("full", activities.ErrTypeNoCapacity, nil)
				}
				if !strings.HasSuffix(in.Request.IdempotencyKey, "-a2") || in.Request.Offer.Provider != "runpod" {
					t.Errorf("second attempt %+v", in.Request)
				}
				return &gpuflow.Machine{ID: "m1", State: gpuflow.MachinePending}, nil
			})
		b.watch(0, time.Minute)
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
			func(_ context.Context, in *activities.ProvisionInput) (*gpuflow.Machine, error) {
				calls++
				if calls == 1 {
					return nil, temporal.NewNonRetryableApplicationError("full", activities.ErrTypeNoCapacity, nil)
				}
				if in.Request.Offer.Provider != "runpod" {
					t.Errorf("provisioned %+v", in.Request.Offer)
				}
				return &gpuflow.Machine{ID: "m1", State: gpuflow.MachinePending}, nil
			})
		b.watch(0, time.Minute)
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
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.Anything).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted"}}, nil)
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
			func(_ context.Context, in *activities.ProvisionInput) (*gpuflow.Machine, error) {
				b.mu.Lock()
				defer b.mu.Unlock()
				b.provisions++
				return &gpuflow.Machine{ID: fmt.Sprintf("m%d", b.provisions), Provider: in.Provider, State: gpuflow.MachinePending}, nil
			})
		// m1 dies while booting; m2 runs the job.
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.MachineID == "m1" })).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "boot timed out"}}, nil)
		zero := 0
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool {
			return in.MachineID == "m2" && in.Until == activities.UntilRunning
		})).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m2", State: gpuflow.MachineRunning}}, nil)
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.MachineID == "m2" && in.Until == activities.UntilExit })).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m2", State: gpuflow.MachineExited, ExitCode: &zero}}, nil)
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
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.Anything).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineGone}}, nil)
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
		exits := 0
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.Until == activities.UntilRunning })).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning}}, nil)
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.MatchedBy(func(in *activities.WatchInput) bool { return in.Until == activities.UntilExit })).Return(
			func(context.Context, *activities.WatchInput) (*activities.WatchResult, error) {
				exits++
				if exits <= 2 {
					return &activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted by the provider"}}, nil
				}
				code := 0
				return &activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code}}, nil
			})
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
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.Anything).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted"}}, nil)
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
		b.env.OnActivity(a.WatchMachine, mock.Anything, mock.Anything).After(10*time.Hour).
			Return(&activities.WatchResult{Machine: gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning}}, nil)
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
