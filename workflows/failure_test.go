package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
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
