package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/admission"
)

// admitWhenUp admits the job on testOffer, failing while the store is down
// (the queue lives in it).
func (b *bundle) admitWhenUp() {
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(
		func(context.Context, *activities.AdmitInput) (*activities.AdmitResult, error) {
			if b.storeDown() {
				return nil, errStoreDown
			}
			return admitted(&activities.SelectResult{Offer: testOffer}), nil
		})
}

// A PostgreSQL outage, however long, loses no state change: each is
// written once the store answers again, in order, the final status too;
// an outage at the workflow's start does not fail the accepted job.
func TestRunJobStoreOutage(t *testing.T) {
	t.Parallel()

	t.Run("AtStart", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.admitWhenUp()
		b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(machine("m1", gpuflow.MachinePending), nil)
		b.terminateOK()
		b.outage(0, time.Hour)
		b.watch(0, 2*time.Hour) // running at 1 s (reported again below), exited after 2 h
		b.at(time.Hour+time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusSucceeded {
			t.Fatalf("result %+v", res)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusSucceeded)
	})

	t.Run("BeforeTheEnd", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.happyPath()
		b.terminateOK()
		b.watch(3, time.Minute) // running at 1 s, exits with 3 at 61 s, in the outage
		b.outage(30*time.Second, 3*time.Hour)
		b.env.ExecuteWorkflow(RunJob, input())
		res := b.result(t)
		if res.Status != gpuflow.StatusFailed || res.ExitCode == nil || *res.ExitCode != 3 {
			t.Fatalf("result %+v", res)
		}
		wantStatuses(t, b.statuses(t), gpuflow.StatusScheduling, gpuflow.StatusProvisioning, gpuflow.StatusRunning, gpuflow.StatusFailed)
		b.mu.Lock()
		last := b.updates[len(b.updates)-1]
		leaves := b.leaves
		b.mu.Unlock()
		if last.ExitCode == nil || *last.ExitCode != 3 || last.Error == nil {
			t.Fatalf("final update %+v", last)
		}
		if leaves != 2 { // after provisioning, and at the end
			t.Fatalf("left the queue %d times", leaves)
		}
	})
}

// terminateSlow tears machines down after d, counting them.
func (b *bundle) terminateSlow(d time.Duration) {
	b.env.OnActivity(a.TerminateMachine, mock.Anything, mock.Anything).After(d).Return(
		func(context.Context, *activities.TerminateInput) (*activities.TerminateResult, error) {
			b.mu.Lock()
			b.terminates++
			b.mu.Unlock()
			return &activities.TerminateResult{}, nil
		})
}

// A cancel that arrives while a machine is torn down before the job is
// tried again ends the job cancelled: nothing is provisioned again.
func TestRunJobCancelDuringRetryTeardown(t *testing.T) {
	t.Parallel()
	for name, m1 := range map[string]gpuflow.Machine{
		"Preempted":    {ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted by the provider"},
		"LaunchFailed": {ID: "m1", State: gpuflow.MachineFailed, Reason: "boot timed out"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.happyPath()
			b.terminateSlow(5 * time.Minute)
			if m1.Preempted() {
				b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
			}
			b.at(time.Minute, m1) // teardown of m1 runs from 1 to 6 minutes
			code := 0
			b.at(10*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineRunning})
			b.at(11*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineExited, ExitCode: &code})
			b.env.RegisterDelayedCallback(func() {
				b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "user", RequestedBy: "u1"})
			}, 3*time.Minute)
			in := input()
			in.Spec.Spot, in.Spec.MaxRestarts = true, 2
			b.env.ExecuteWorkflow(RunJob, in)
			res := b.result(t)
			if res.Status != gpuflow.StatusCancelled || b.provisions != 1 || b.terminates != 1 {
				t.Fatalf("result %+v after %d provisions, %d terminates", res, b.provisions, b.terminates)
			}
			st := b.statuses(t)
			if st[len(st)-2] != gpuflow.StatusCancelling || st[len(st)-1] != gpuflow.StatusCancelled {
				t.Fatalf("statuses %v", st)
			}
		})
	}
}

// A cancel that arrives while a long watch waits for its writes before it
// continues as new ends the job cancelled; it is not left behind.
func TestRunJobCancelWhileContinuingAsNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.happyPath()
	b.terminateOK()
	b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
	b.outage(time.Minute, time.Hour)
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 42, ReportID: 7}) // waits for the store
	}, 90*time.Second)
	b.env.RegisterDelayedCallback(func() { b.env.SetContinueAsNewSuggested(true) }, 2*time.Minute)
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "user"})
	}, 3*time.Minute)
	b.env.ExecuteWorkflow(RunJob, input())
	res := b.result(t)
	if res.Status != gpuflow.StatusCancelled || b.terminates != 1 {
		t.Fatalf("result %+v, terminates %d", res, b.terminates)
	}
}

// The agent's exit report that arrives while a long watch waits for its
// writes before it continues as new is carried into the next run.
func TestRunJobFinishedWhileContinuingAsNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.happyPath()
	b.terminateOK()
	b.at(time.Second, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
	b.outage(time.Minute, time.Hour)
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalProgress, ProgressSignal{Percent: 42, ReportID: 7}) // waits for the store
	}, 90*time.Second)
	b.env.RegisterDelayedCallback(func() { b.env.SetContinueAsNewSuggested(true) }, 2*time.Minute)
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalFinished, FinishedSignal{ExitCode: 5, ReportID: 9})
	}, 3*time.Minute)
	in := input()
	in.Spec.MaxDurationMinutes = ptr(600)
	b.env.ExecuteWorkflow(RunJob, in)
	var can *workflow.ContinueAsNewError
	if err := b.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want ContinueAsNewError", err)
	}
	next := decodeInput(t, can)
	if f := next.Resume.Finished; f == nil || f.ExitCode != 5 {
		t.Fatalf("resume %+v: the exit report was left behind", next.Resume)
	}
	b2 := setup(t)
	b2.terminateOK()
	b2.env.ExecuteWorkflow(RunJob, next)
	if res := b2.result(t); res.Status != gpuflow.StatusFailed || res.ExitCode == nil || *res.ExitCode != 5 || b2.terminates != 1 {
		t.Fatalf("next run's result %+v, terminates %d", res, b2.terminates)
	}
}

// An offer that does not say its stock and answers "no capacity" each time
// is tried again with a growing wait, capped, and the job gives up after
// maxNoCapacityAttempts with a clear reason (it used to try every few
// minutes until the history limit killed the workflow).
func TestRunJobNoCapacityIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	unknown := gpuflow.Offer{Provider: "runpod", GPUType: "A100", Region: "US", Available: -1}
	// The dispatcher's rule: a blocked offer is not admitted until its block ends.
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.AdmitInput) (*activities.AdmitResult, error) {
			if blk, ok := in.Entry.Blocked[unknown.Key()]; ok && b.env.Now().Before(blk.Expiry(admission.DefaultBlockTTL)) {
				return &activities.AdmitResult{Reason: "offers blocked"}, nil
			}
			return admitted(&activities.SelectResult{Offer: unknown}), nil
		})
	var tries []time.Time
	b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
		func(context.Context, *activities.ProvisionInput) (*activities.ProvisionResult, error) {
			b.mu.Lock()
			tries = append(tries, b.env.Now())
			b.mu.Unlock()
			return nil, temporal.NewNonRetryableApplicationError("runpod: no_capacity: no A100 left in US", activities.ErrTypeNoCapacity, nil)
		})
	b.env.RegisterDelayedCallback(func() {
		b.env.SignalWorkflow(SignalCancel, CancelSignal{Reason: "gave up waiting"})
	}, 3*24*time.Hour)
	b.env.ExecuteWorkflow(RunJob, input())
	res := b.result(t)
	if res.Status != gpuflow.StatusFailed || !strings.Contains(res.Error, "no capacity") || !strings.Contains(res.Error, "no A100 left") {
		t.Fatalf("result %+v after %d attempts", res, len(tries))
	}
	if len(tries) != maxNoCapacityAttempts {
		t.Fatalf("%d attempts, want %d", len(tries), maxNoCapacityAttempts)
	}
	for i := 2; i < len(tries); i++ {
		if gap, prev := tries[i].Sub(tries[i-1]), tries[i-1].Sub(tries[i-2]); gap < prev || gap > maxNoCapacityBackoff+admitRecheck {
			t.Fatalf("wait before attempt %d: %s after %s: want growing waits capped near %s", i+1, gap, prev, maxNoCapacityBackoff)
		}
	}
	if last := tries[len(tries)-1].Sub(tries[len(tries)-2]); last < maxNoCapacityBackoff {
		t.Fatalf("last wait %s, want the cap %s", last, maxNoCapacityBackoff)
	}
}

// A local job's machine activities go to the task queue of the host that
// picked the job (any host that runs local jobs, on the shared queue), so
// that its watch and teardown never land on a host without the job.
func TestRunJobLocalMachineStaysOnItsHost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer, Mode: gpuflow.ModeLocal}), nil)
	b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(machine("m1", gpuflow.MachinePending), nil)
	b.terminateOK()
	b.watch(0, 2*time.Hour) // long enough for safety checks
	queues := map[string][]string{}
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		b.mu.Lock()
		defer b.mu.Unlock()
		queues[info.ActivityType.Name] = append(queues[info.ActivityType.Name], info.TaskQueue)
	})
	b.env.ExecuteWorkflow(RunJob, input())
	if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
		t.Fatalf("result %+v", res)
	}
	want := map[string]string{"PickHost": "gpuflow-local", "Provision": "gpuflow-local-h1", "CheckMachine": "gpuflow-local-h1", "TerminateMachine": "gpuflow-local-h1"}
	for act, q := range want {
		got := queues[act]
		if len(got) == 0 {
			t.Errorf("%s never ran", act)
		}
		for _, g := range got {
			if g != q {
				t.Errorf("%s ran on task queue %s, want %s", act, g, q)
			}
		}
	}
}

// Each provisioning outcome carries a key of its own (job, attempt,
// outcome), so a write retried after it committed is recorded once.
func TestRunJobOutcomeKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.happyPath()
	b.terminateOK()
	code := 0
	b.at(time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineRunning})
	b.at(5*time.Minute, gpuflow.Machine{ID: "m1", State: gpuflow.MachineFailed, Reason: "preempted by the provider"})
	b.at(11*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineRunning})
	b.at(15*time.Minute, gpuflow.Machine{ID: "m2", State: gpuflow.MachineExited, ExitCode: &code})
	in := input()
	in.Spec.Spot, in.Spec.MaxRestarts = true, 1
	b.env.ExecuteWorkflow(RunJob, in)
	if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
		t.Fatalf("result %+v", res)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	for _, o := range b.outcomes {
		keys = append(keys, o.Key)
	}
	if got, want := strings.Join(keys, " "), "j1/a1/started j1/a1/preempted j1/a2/started j1/a2/spot_finished"; got != want {
		t.Fatalf("outcome keys %q, want %q", got, want)
	}
}

// A machine whose watch the store did not take (Provision during an
// outage) is checked soon, not on the long safety timer: the check records
// the watch, or finds the job's end itself.
func TestRunJobUnwatchedMachineCheckedSoon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(admitted(&activities.SelectResult{Offer: testOffer}), nil)
	b.env.OnActivity(a.Provision, mock.Anything, mock.Anything).Return(
		&activities.ProvisionResult{Machine: gpuflow.Machine{ID: "m1", Provider: "local", State: gpuflow.MachinePending}, Unwatched: true}, nil)
	b.terminateOK()
	code := 0
	b.check = func() *activities.CheckMachineResult { // no watcher signals this machine
		return &activities.CheckMachineResult{Machine: &gpuflow.Machine{ID: "m1", State: gpuflow.MachineExited, ExitCode: &code}}
	}
	start := b.env.Now()
	var end time.Time
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "TerminateMachine" {
			end = b.env.Now()
		}
	})
	b.env.ExecuteWorkflow(RunJob, input())
	if res := b.result(t); res.Status != gpuflow.StatusSucceeded {
		t.Fatalf("result %+v", res)
	}
	if took := end.Sub(start); took >= safetyCheck {
		t.Fatalf("the job's end was found after %s: the unwatched machine waited for the long safety timer", took)
	}
}
