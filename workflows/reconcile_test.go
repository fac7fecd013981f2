package workflows

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/gpuflow/gpuflow/activities"
)

func TestReconcile(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity(a.ReconcileProvider, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in *activities.ReconcileInput) (*activities.ReconcileResult, error) {
			if in.Provider == "broken" {
				return nil, errors.New("list failed")
			}
			return &activities.ReconcileResult{Provider: in.Provider, Seen: 2, Terminated: []string{"m1"}}, nil
		})
	env.ExecuteWorkflow(Reconcile, &ReconcileInput{Providers: []string{"local", "broken"}})
	var res ReconcileResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Terminated[0] != "m1" || len(res.Errors) != 1 {
		t.Fatalf("result %+v: want one provider reconciled and one error", res)
	}
}
