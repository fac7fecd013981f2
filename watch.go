package gpuflow

import (
	"context"
	"time"
)

// Watch is a job's machine as its provider's watcher follows it: one row
// per job, from the moment the machine exists until it is torn down.
type Watch struct {
	JobID      string `json:"job_id"`
	WorkflowID string `json:"workflow_id"`
	Provider   string `json:"provider"`
	// Host is the worker host that runs the machine for the local
	// provider (its watcher watches only its own); "" for clouds.
	Host      string `json:"host,omitempty"`
	MachineID string `json:"machine_id"`
	// State is the last state the workflow is known to have of the
	// machine ("" none yet): what the watcher last told it, or "running"
	// once the job's status says it runs (the job store sets it then).
	State MachineState `json:"state,omitempty"`
	// LogOffset is how much of the machine's output has reached the job
	// store (providers whose output the watcher ships: local).
	LogOffset int64     `json:"log_offset"`
	CreatedAt time.Time `json:"created_at"`
}

// WatchStore keeps the watched machines and each watcher's sweeps. Costs
// grow with changes, not with machines times time: a sweep that finds
// nothing new writes one row (RecordSweep), whatever the number of
// machines.
type WatchStore interface {
	// AddWatch starts watching the job's machine (or updates the row to a
	// new machine of the job). A second call for the same machine keeps
	// the recorded state and offset.
	AddWatch(ctx context.Context, w Watch) error
	// RemoveWatch stops watching the job's machine; a row for another
	// machine of the job stays.
	RemoveWatch(ctx context.Context, jobID, machineID string) error
	// Watches lists the machines watched for provider on host.
	Watches(ctx context.Context, provider, host string) ([]Watch, error)
	// GetWatch returns the job's watch, or nil when there is none.
	GetWatch(ctx context.Context, jobID string) (*Watch, error)
	// MarkWatch records the state told to the workflow and the log offset.
	MarkWatch(ctx context.Context, jobID, machineID string, state MachineState, logOffset int64) error
	// RecordSweep records that the watcher of provider on host looked at
	// all its machines at time at; LastSweep reads it (zero: never).
	RecordSweep(ctx context.Context, provider, host string, at time.Time) error
	LastSweep(ctx context.Context, provider, host string) (time.Time, error)
}
