package workflows

import (
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
)

// Names that cross process boundaries: the API, the worker, other services
// and the Temporal Web UI all use them. They never change.
const (
	// TaskQueue is the workflow task queue every worker polls.
	TaskQueue = "gpuflow"
	// JobWorkflowName is the registered name of RunJob.
	JobWorkflowName = "GpuJob"

	// SignalCancel asks the job to stop: payload CancelSignal.
	SignalCancel = "cancel"
	// SignalProgress reports progress from the machine: payload ProgressSignal.
	SignalProgress = "progress"
	// SignalFinished reports the job's exit code from the machine: payload FinishedSignal.
	SignalFinished = "finished"
	// SignalMachine is sent by a provider's machine watcher when a job's
	// machine changed state (running, exited, failed, gone, preempted):
	// payload MachineSignal. Internal; other services do not send it.
	SignalMachine = "machine"
	// SignalQueue is sent by the dispatcher to a job waiting in the queue:
	// admitted (with the decision), unschedulable, or a new reason to wait;
	// payload QueueSignal. Internal; other services do not send it.
	SignalQueue = "queue"
	// QueryStatus returns a JobSnapshot.
	QueryStatus = "status"

	// Search attributes (all keyword) set on every job workflow.
	SearchAttrOwner    = "GpuflowOwner"
	SearchAttrProvider = "GpuflowProvider"
	SearchAttrGPUType  = "GpuflowGpuType"
	SearchAttrStatus   = "GpuflowStatus"
)

// SearchAttributeNames lists the custom search attributes the namespace needs.
var SearchAttributeNames = []string{SearchAttrOwner, SearchAttrProvider, SearchAttrGPUType, SearchAttrStatus}

// JobWorkflowID is the workflow id of the job with taskID.
func JobWorkflowID(taskID string) string { return gpuflow.WorkflowIDOf(taskID) }

// ProviderTaskQueue is the activity task queue of a provider: workers that
// can reach the provider (for "local", the host that runs the jobs) poll it.
func ProviderTaskQueue(provider string) string { return "gpuflow-" + provider }

// HostTaskQueue is the activity task queue of one host of a provider whose
// machines run on the worker's own host (local): the activities on a
// machine there (provisioning, the safety check, teardown) go to the host
// that has it, named in gpuflow.Machine.Host; only that host's workers
// poll it.
func HostTaskQueue(provider, host string) string { return "gpuflow-" + provider + "-" + host }

// RunJobInput starts a job workflow. Fields may be added, never renamed.
type RunJobInput struct {
	JobID     string          `json:"job_id"`
	OwnerID   string          `json:"owner_id,omitempty"`
	Spec      gpuflow.JobSpec `json:"spec"`
	CreatedAt time.Time       `json:"created_at"`
	// Resume is set when a run continues an earlier one as new during the
	// watch of its machine: the state it carries on with.
	Resume *JobResume `json:"resume,omitempty"`
}

// JobResume is the state a job's workflow carries into its next run.
type JobResume struct {
	Seq           int                      `json:"seq"`
	Snapshot      JobSnapshot              `json:"snapshot"`
	Machine       *gpuflow.Machine         `json:"machine"`
	Provider      string                   `json:"provider"`
	Offer         gpuflow.Offer            `json:"offer"`
	Blocked       map[string]gpuflow.Block `json:"blocked,omitempty"`
	Ran           bool                     `json:"ran"`
	RunningAt     time.Time                `json:"running_at"`
	LaunchRetries int                      `json:"launch_retries"`
	LastReport    int64                    `json:"last_report,omitempty"`
	// Seen are machine reports not handled yet.
	Seen []gpuflow.Machine `json:"seen,omitempty"`
	// Finished is the agent's exit report when it arrived as the run
	// ended (not handled yet).
	Finished *FinishedSignal `json:"finished,omitempty"`
	// Unwatched: the machine's watch is not recorded yet.
	Unwatched bool `json:"unwatched,omitempty"`
}

// RunJobResult is the job's outcome.
type RunJobResult struct {
	Status   gpuflow.JobStatus `json:"status"`
	ExitCode *int              `json:"exit_code,omitempty"`
	Error    string            `json:"error,omitempty"`
}

// CancelSignal is the payload of SignalCancel.
type CancelSignal struct {
	Reason      string `json:"reason,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
}

// ProgressSignal is the payload of SignalProgress.
type ProgressSignal struct {
	Percent float64 `json:"percent"`
	Message string  `json:"message,omitempty"`
	// ReportID is the agent report's id when the relay delivers it (0 from
	// other senders): ids grow, and a progress no newer than the last one
	// applied is ignored.
	ReportID int64 `json:"report_id,omitempty"`
}

// FinishedSignal is the payload of SignalFinished.
type FinishedSignal struct {
	ExitCode int `json:"exit_code"`
	// ReportID is the agent report's id in the store when the relay
	// delivers it (0 from other senders); a report delivered twice is
	// applied once.
	ReportID int64 `json:"report_id,omitempty"`
}

// QueueSignal is the payload of SignalQueue.
type QueueSignal struct {
	Admitted *activities.SelectResult `json:"admitted,omitempty"`
	// Failure: no offer fits the job any more.
	Failure string              `json:"failure,omitempty"`
	Reasons map[string][]string `json:"reasons,omitempty"`
	// Reason the job waits, when neither of the above.
	Reason string `json:"reason,omitempty"`
}

// MachineSignal is the payload of SignalMachine: the machine as the
// watcher saw it.
type MachineSignal struct {
	Machine gpuflow.Machine `json:"machine"`
	SeenAt  time.Time       `json:"seen_at"`
}

// JobSnapshot is the answer to QueryStatus.
type JobSnapshot struct {
	JobID     string            `json:"task_id"`
	Status    gpuflow.JobStatus `json:"status"`
	Provider  string            `json:"provider,omitempty"`
	MachineID string            `json:"machine_id,omitempty"`
	ExitCode  *int              `json:"exit_code,omitempty"`
	Error     string            `json:"error,omitempty"`
	Progress  *ProgressSignal   `json:"progress,omitempty"`
	Attempts  []gpuflow.Attempt `json:"attempts"`
	Restarts  int               `json:"restarts"`
	Cancel    *CancelSignal     `json:"cancel,omitempty"`
	// QueueReason says why a queued job waits.
	QueueReason string    `json:"queue_reason,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}
