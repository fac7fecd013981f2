package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow/workflows"
)

// EnsureReconcileSchedule creates the Temporal Schedule that runs the
// reconciler every interval over providers, or updates it to these
// settings if it exists. Several workers may call it at once.
func EnsureReconcileSchedule(ctx context.Context, c client.Client, providers []string, interval, grace time.Duration) error {
	action := &client.ScheduleWorkflowAction{
		ID:        workflows.ReconcileScheduleID,
		Workflow:  workflows.ReconcileWorkflowName,
		Args:      []any{&workflows.ReconcileInput{Providers: providers, Grace: grace}},
		TaskQueue: workflows.TaskQueue,
	}
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: interval}}}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: workflows.ReconcileScheduleID, Spec: spec, Action: action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	var exists *serviceerror.AlreadyExists
	if err == nil {
		return nil
	}
	if !errors.As(err, &exists) && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create reconcile schedule: %w", err)
	}
	h := c.ScheduleClient().GetHandle(ctx, workflows.ReconcileScheduleID)
	err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		s := in.Description.Schedule
		s.Spec = &spec
		s.Action = action
		return &client.ScheduleUpdate{Schedule: &s}, nil
	}})
	if err != nil {
		return fmt.Errorf("update reconcile schedule: %w", err)
	}
	return nil
}
