package workflows

// Registration is a workflow and the name the worker registers it under.
type Registration struct {
	Name string
	Func any
}

// Registrations are every workflow the worker registers. A workflow added
// here needs a captured history in testdata/histories before the replay
// tests pass (see docs/WORKFLOW-VERSIONING.md).
func Registrations() []Registration {
	return []Registration{
		{Name: JobWorkflowName, Func: RunJob},
		{Name: ReconcileWorkflowName, Func: Reconcile},
	}
}
