package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow/activities"
)

// Reconciler names.
const (
	// ReconcileWorkflowName is the registered name of Reconcile.
	ReconcileWorkflowName = "GpuflowReconcile"
	// ReconcileScheduleID is the Temporal Schedule that runs Reconcile.
	ReconcileScheduleID = "gpuflow-reconciler"
)

// ReconcileInput lists the providers to reconcile.
type ReconcileInput struct {
	Providers []string      `json:"providers"`
	Grace     time.Duration `json:"grace"`
}

// ReconcileResult is what each provider's reconciliation found and did.
type ReconcileResult struct {
	Results []activities.ReconcileResult `json:"results"`
	Errors  []string                     `json:"errors,omitempty"`
}

// Reconcile terminates machines that no live job owns, one provider at a
// time in parallel, each on its provider's task queue. A provider that
// fails does not stop the others; the next run tries again.
func Reconcile(ctx workflow.Context, in *ReconcileInput) (*ReconcileResult, error) {
	futures := make([]workflow.Future, len(in.Providers))
	for i, p := range in.Providers {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:           ProviderTaskQueue(p),
			StartToCloseTimeout: 5 * time.Minute,
			HeartbeatTimeout:    time.Minute,
			// Do not pile up: the schedule starts the next run soon anyway.
			ScheduleToCloseTimeout: 10 * time.Minute,
			RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 5 * time.Second, MaximumAttempts: 3},
		})
		futures[i] = workflow.ExecuteActivity(actx, a.ReconcileProvider, &activities.ReconcileInput{Provider: p, Grace: in.Grace})
	}
	res := &ReconcileResult{}
	for i, f := range futures {
		var r activities.ReconcileResult
		if err := f.Get(ctx, &r); err != nil {
			res.Errors = append(res.Errors, in.Providers[i]+": "+errMessage(err))
			continue
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}
