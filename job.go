package gpuflow

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// JobStatus is where a job is in its life. The values are the API's.
type JobStatus string

// The job statuses, in the order a job normally passes through them.
const (
	StatusQueued       JobStatus = "queued"
	StatusScheduling   JobStatus = "scheduling"
	StatusProvisioning JobStatus = "provisioning"
	StatusRunning      JobStatus = "running"
	StatusCancelling   JobStatus = "cancelling"
	StatusSucceeded    JobStatus = "succeeded"
	StatusFailed       JobStatus = "failed"
	StatusCancelled    JobStatus = "cancelled"
)

// AllStatuses lists every status.
var AllStatuses = []JobStatus{
	StatusQueued, StatusScheduling, StatusProvisioning, StatusRunning,
	StatusCancelling, StatusSucceeded, StatusFailed, StatusCancelled,
}

// Valid reports whether s is a known status.
func (s JobStatus) Valid() bool { return slices.Contains(AllStatuses, s) }

// Terminal reports whether a job in status s is finished for good.
func (s JobStatus) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Strategies the scheduler knows.
const (
	StrategyCost         = "cost"
	StrategyPerformance  = "performance"
	StrategyAvailability = "availability"
	StrategyBalanced     = "balanced"
)

// Strategies lists the valid scheduling strategies.
var Strategies = []string{StrategyCost, StrategyPerformance, StrategyAvailability, StrategyBalanced}

// Limits on a job spec.
const (
	MaxGPUCount       = 8
	MaxNameLen        = 200
	MaxStringLen      = 4096
	MaxCommandArgs    = 256
	MaxEnvVars        = 128
	MaxPriority       = 10
	MaxDurationMinMax = 7 * 24 * 60
	MaxRestartsMax    = 20
)

// JobSpec is what a user asks for. JSON names are the API's; fields may be
// added, never renamed (the spec travels inside workflow inputs).
type JobSpec struct {
	Name               string            `json:"name,omitempty"`
	Image              string            `json:"image,omitempty"`
	Command            []string          `json:"command,omitempty"`
	Env                map[string]string `json:"env,omitempty"`
	GPUType            string            `json:"gpu_type,omitempty"`
	GPUCount           int               `json:"gpu_count"`
	MemoryGB           float64           `json:"memory_gb,omitempty"`
	VCPUs              int               `json:"vcpus,omitempty"`
	DiskGB             int               `json:"disk_gb,omitempty"`
	Priority           int               `json:"priority"`
	Strategy           string            `json:"strategy"`
	Provider           string            `json:"provider,omitempty"`
	Providers          []string          `json:"providers,omitempty"`
	Spot               bool              `json:"spot"`
	MaxPricePerHour    *float64          `json:"max_price_per_hour,omitempty"`
	MaxDurationMinutes *int              `json:"max_duration_minutes,omitempty"`
	EstimatedDuration  int               `json:"estimated_duration,omitempty"`
	// MaxRestarts bounds how often a preempted spot job is re-provisioned.
	MaxRestarts int `json:"max_restarts,omitempty"`
}

// Validate checks s against the API's rules and returns an EINVALID *Error
// whose details map each offending field to a message. knownProviders, when
// not nil, limits provider names.
func (s *JobSpec) Validate(knownProviders []string) error {
	fields := map[string]string{}
	bad := func(field, format string, args ...any) {
		if _, ok := fields[field]; !ok {
			fields[field] = fmt.Sprintf(format, args...)
		}
	}
	if len(s.Name) > MaxNameLen {
		bad("name", "name must be at most %d characters", MaxNameLen)
	}
	if !printable(s.Name) {
		// Names are shown in terminals and pages: no escape sequences.
		bad("name", "name must be UTF-8 text without control characters")
	}
	if len(s.Image) > MaxStringLen {
		bad("image", "image must be at most %d characters", MaxStringLen)
	}
	if s.Image != "" && !imagePattern.MatchString(s.Image) {
		// It becomes a container runtime's argument: never an option
		// ("--privileged") nor anything a shell or a runtime would split.
		bad("image", "image must be an image reference such as nvidia/cuda:12.4.1-runtime-ubuntu22.04 "+
			"(letters, digits and ._/:@-, starting with a letter or digit)")
	}
	if len(s.Command) == 0 && s.Image == "" {
		bad("command", "command is required (or an image)")
	}
	if len(s.Command) > MaxCommandArgs {
		bad("command", "command must have at most %d arguments", MaxCommandArgs)
	}
	for i, a := range s.Command {
		if len(a) > MaxStringLen {
			bad("command", "command[%d] must be at most %d characters", i, MaxStringLen)
		}
		if strings.ContainsRune(a, 0) {
			bad("command", "command[%d] must not contain NUL bytes", i)
		}
	}
	if len(s.Command) > 0 && s.Command[0] == "" {
		bad("command", "command[0] must not be empty")
	}
	if len(s.Env) > MaxEnvVars {
		bad("env", "env must have at most %d variables", MaxEnvVars)
	}
	for k, v := range s.Env {
		if k == "" || len(k) > 256 || len(v) > MaxStringLen {
			bad("env", "env names must be 1 to 256 characters and values at most %d", MaxStringLen)
		}
		if !envNamePattern.MatchString(k) {
			bad("env", "env names must be letters, digits and _, not starting with a digit (got %q)", truncateString(k, 64))
		}
		if strings.ContainsRune(v, 0) {
			bad("env", "env values must not contain NUL bytes")
		}
	}
	if s.GPUCount < 0 || s.GPUCount > MaxGPUCount {
		bad("gpu_count", "gpu_count must be between 0 and %d", MaxGPUCount)
	}
	if s.GPUCount > 0 && s.GPUType == "" {
		bad("gpu_type", "gpu_type is required unless gpu_count is 0")
	}
	if len(s.GPUType) > 64 {
		bad("gpu_type", "gpu_type must be at most 64 characters")
	}
	if !printable(s.GPUType) {
		bad("gpu_type", "gpu_type must be UTF-8 text without control characters")
	}
	if s.MemoryGB < 0 || s.MemoryGB > 4096 {
		bad("memory_gb", "memory_gb must be between 0 and 4096")
	}
	if s.VCPUs < 0 || s.VCPUs > 512 {
		bad("vcpus", "vcpus must be between 0 and 512")
	}
	if s.DiskGB < 0 || s.DiskGB > 65536 {
		bad("disk_gb", "disk_gb must be between 0 and 65536")
	}
	if s.Priority < 0 || s.Priority > MaxPriority {
		bad("priority", "priority must be between 0 and %d", MaxPriority)
	}
	if !slices.Contains(Strategies, s.Strategy) {
		bad("strategy", "strategy must be one of %v", Strategies)
	}
	checkProvider := func(field, p string) {
		if knownProviders != nil && !slices.Contains(knownProviders, p) {
			bad(field, "unknown provider %q; known: %v", p, knownProviders)
		}
	}
	if s.Provider != "" {
		checkProvider("provider", s.Provider)
	}
	for _, p := range s.Providers {
		checkProvider("providers", p)
	}
	if s.MaxPricePerHour != nil && *s.MaxPricePerHour < 0 {
		bad("max_price_per_hour", "max_price_per_hour must not be negative")
	}
	if d := s.MaxDurationMinutes; d != nil && (*d < 1 || *d > MaxDurationMinMax) {
		bad("max_duration_minutes", "max_duration_minutes must be between 1 and %d", MaxDurationMinMax)
	}
	if s.MaxRestarts < 0 || s.MaxRestarts > MaxRestartsMax {
		bad("max_restarts", "max_restarts must be between 0 and %d", MaxRestartsMax)
	}
	if s.EstimatedDuration < 0 || s.EstimatedDuration > MaxDurationMinMax {
		bad("estimated_duration", "estimated_duration must be between 0 and %d minutes", MaxDurationMinMax)
	}
	if len(fields) == 0 {
		return nil
	}
	details := make(map[string]any, len(fields))
	first := ""
	for _, f := range []string{"command", "image", "name", "env", "gpu_type", "gpu_count", "memory_gb", "vcpus",
		"disk_gb", "priority", "strategy", "provider", "providers", "max_price_per_hour",
		"max_duration_minutes", "estimated_duration", "max_restarts"} {
		if m, ok := fields[f]; ok {
			details[f] = m
			if first == "" {
				first = m
			}
		}
	}
	return &Error{Code: EINVALID, Message: first, Details: map[string]any{"fields": details}}
}

var (
	// imagePattern is a container image reference: [registry/]name[:tag][@digest].
	imagePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`)
	// envNamePattern is a variable name every shell and runtime accepts.
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// truncateString shortens s to at most n bytes, for echoing input back.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// AllowsProvider reports whether the spec lets the job run on provider p.
func (s *JobSpec) AllowsProvider(p string) bool {
	if s.Provider != "" && s.Provider != p {
		return false
	}
	return len(s.Providers) == 0 || slices.Contains(s.Providers, p)
}

// MaxJobLife is the longest a job may run: agent tokens and the clouds'
// own safety timers cover it when the job sets no max_duration_minutes.
const MaxJobLife = MaxDurationMinMax * time.Minute

// MaxDuration is the job's wall-clock limit, or 0 for none.
func (s *JobSpec) MaxDuration() time.Duration {
	if s.MaxDurationMinutes == nil {
		return 0
	}
	return time.Duration(*s.MaxDurationMinutes) * time.Minute
}

// Attempt is one try at running a job on one provider.
type Attempt struct {
	Provider  string     `json:"provider"`
	GPUType   string     `json:"gpu_type,omitempty"`
	Region    string     `json:"region,omitempty"`
	MachineID string     `json:"machine_id,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Outcome   string     `json:"outcome,omitempty"`
}

// Job is a submitted job as stored.
type Job struct {
	ID           string     `json:"id"`
	OwnerID      string     `json:"owner_id,omitempty"`
	Status       JobStatus  `json:"status"`
	Spec         JobSpec    `json:"spec"`
	Provider     string     `json:"provider,omitempty"`
	MachineID    string     `json:"machine_id,omitempty"`
	PricePerHour float64    `json:"price_per_hour,omitempty"`
	ExitCode     *int       `json:"exit_code,omitempty"`
	Error        string     `json:"error,omitempty"`
	Attempts     []Attempt  `json:"attempts"`
	WorkflowID   string     `json:"workflow_id"`
	RunID        string     `json:"run_id,omitempty"`
	LastSeq      int        `json:"-"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	StartedAt    *time.Time `json:"started_at,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
}

// CostSoFar is the provider's price times the time the job has held its
// machine (from start to finish, or to now).
func (j *Job) CostSoFar(now time.Time) float64 {
	if j.StartedAt == nil || j.PricePerHour == 0 {
		return 0
	}
	end := now
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return j.PricePerHour * end.Sub(*j.StartedAt).Hours()
}

// Event types.
const (
	EventStatus   = "job.status"
	EventProgress = "job.progress"
	EventLog      = "job.log"
)

// Event is one recorded change of a job. ID is its position in the whole
// feed (strictly increasing across jobs); Seq its position within the job.
type Event struct {
	ID       int64           `json:"seq"`
	JobID    string          `json:"task_id"`
	JobSeq   int             `json:"job_seq"`
	Type     string          `json:"type"`
	Status   JobStatus       `json:"status,omitempty"`
	Provider string          `json:"provider,omitempty"`
	OwnerID  string          `json:"-"`
	Data     json.RawMessage `json:"data,omitempty"`
	At       time.Time       `json:"at"`
}

// JobUpdate is one state change written by the workflow. Seq numbers the
// job's changes; the store applies each (job, seq) once, so a replayed
// activity never duplicates an event or moves a job backwards.
//
// A workflow writes its changes from inside a workflow task (local
// activities), before Temporal has recorded that task: a task that is
// then lost (its worker killed, Temporal cut off before the task
// completed) leaves its changes written, and the task's retry, seeing
// events the lost one had not, may make other changes under the same
// numbers. The store answers such a change with SeqTaken, and the
// workflow numbers its changes on from the store's last.
type JobUpdate struct {
	JobID     string          `json:"job_id"`
	Seq       int             `json:"seq"`
	Type      string          `json:"type"`
	Status    JobStatus       `json:"status,omitempty"`
	Provider  *string         `json:"provider,omitempty"`
	MachineID *string         `json:"machine_id,omitempty"`
	Price     *float64        `json:"price_per_hour,omitempty"`
	ExitCode  *int            `json:"exit_code,omitempty"`
	Error     *string         `json:"error,omitempty"`
	Attempts  []Attempt       `json:"attempts,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	At        time.Time       `json:"at"`
	Started   bool            `json:"started,omitempty"`
}

// SeqTaken is the cause of the ECONFLICT a store's ApplyUpdate returns
// for an update whose Seq the job already holds with another change (its
// type, status or data differ): a lost workflow task wrote it (see
// JobUpdate). LastSeq is the job's last applied seq.
type SeqTaken struct {
	JobID   string
	Seq     int
	LastSeq int
}

func (e *SeqTaken) Error() string {
	return fmt.Sprintf("job %s already holds another change as seq %d (its last is %d)", e.JobID, e.Seq, e.LastSeq)
}

// JobFilter selects jobs for a listing. Cursor is opaque to callers.
type JobFilter struct {
	OwnerID  string // empty: all owners
	Status   JobStatus
	Provider string
	Limit    int
	Cursor   string
}

// JobStore keeps jobs, their events and their logs.
type JobStore interface {
	// CreateJob inserts j unless a job with its id exists (then it is a no-op).
	CreateJob(ctx context.Context, j *Job) error
	// Job returns the job with id, or ENOTFOUND.
	Job(ctx context.Context, id string) (*Job, error)
	// Jobs lists jobs newest first and returns the cursor of the next page ("" at the end).
	Jobs(ctx context.Context, f JobFilter) ([]*Job, string, error)
	// ApplyUpdate applies u and appends its event atomically, once per (job, seq),
	// and publishes the event to listeners. It returns the event, or nil if the
	// update had been applied before; ECONFLICT caused by *SeqTaken when the
	// job holds another change under u.Seq.
	ApplyUpdate(ctx context.Context, u JobUpdate) (*Event, error)
	// Events returns the job's events in order.
	Events(ctx context.Context, jobID string) ([]Event, error)
	// AppendLog stores a chunk of the job's output starting at offset; a
	// chunk already stored at that offset is kept.
	AppendLog(ctx context.Context, jobID string, offset int64, data []byte) error
	// Logs returns the job's output from offset on, at most limit bytes.
	Logs(ctx context.Context, jobID string, offset int64, limit int) ([]byte, error)
}

// WorkflowIDOf is the Temporal workflow id of the job with id jobID.
func WorkflowIDOf(jobID string) string { return "job-" + jobID }
