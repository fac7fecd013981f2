package runpod

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Pod statuses of REST v2.
const (
	statusProvisioning = "PROVISIONING"
	statusStarting     = "STARTING"
	statusRunning      = "RUNNING"
	statusExited       = "EXITED"
	statusError        = "ERROR"
	statusTerminated   = "TERMINATED"
)

// Reasons of failed machines.
const (
	ReasonPreempted = "preempted: RunPod reclaimed the interruptible pod"
	ReasonError     = "the pod is in an unrecoverable error state"
)

// Describe reads the pod (GET /v2/pods/{id}); a pod that does not exist is
// returned as gone.
func (p *Provider) Describe(ctx context.Context, machineID string) (*gpuflow.Machine, error) {
	if err := p.checkKey(); err != nil {
		return nil, err
	}
	if machineID == "" {
		return p.gone(machineID), nil
	}
	pd, err := p.c.getPod(ctx, machineID)
	if errNotFound(err) {
		return p.gone(machineID), nil
	}
	if err != nil {
		return nil, classify("get pod "+machineID, err, false)
	}
	return p.machine(pd), nil
}

func (p *Provider) gone(id string) *gpuflow.Machine {
	return &gpuflow.Machine{ID: id, Provider: Name, State: gpuflow.MachineGone}
}

// Terminate deletes the pod (DELETE /v2/pods/{id}). A pod that does not
// exist counts as gone.
func (p *Provider) Terminate(ctx context.Context, machineID string) error {
	if err := p.checkKey(); err != nil {
		return err
	}
	if machineID == "" {
		return nil
	}
	err := p.c.deletePod(ctx, machineID)
	if err == nil || errNotFound(err) {
		p.log.InfoContext(ctx, "pod terminated", "machine_id", machineID)
		return nil
	}
	return classify("delete pod "+machineID, err, false)
}

// List returns gpuflow's pods: those named NamePrefix-something, from one
// listing of the account's pods (shared with concurrent callers, repeated
// with backoff when throttled).
func (p *Provider) List(ctx context.Context) ([]gpuflow.Machine, error) {
	if err := p.checkKey(); err != nil {
		return nil, err
	}
	pods, err := p.sharedPods(ctx)
	if err != nil {
		return nil, classify("list pods", err, false)
	}
	out := []gpuflow.Machine{}
	for i := range pods {
		if strings.HasPrefix(pods[i].Name, NamePrefix) && pods[i].Status != statusTerminated {
			out = append(out, *p.machine(&pods[i]))
		}
	}
	return out, nil
}

// machine maps a v2 pod to a machine.
func (p *Provider) machine(pd *pod) *gpuflow.Machine {
	m := &gpuflow.Machine{ID: pd.ID, Provider: Name, Tags: tagsOf(pd.Name, pd.Env.Tags, pd.Env.JobID)}
	if t, err := time.Parse(time.RFC3339, pd.CreatedAt); err == nil {
		m.CreatedAt = t
	}
	if pd.GPU != nil {
		m.GPUType, m.GPUCount = pd.GPU.ID, max(pd.GPU.Count, 1)
	}
	if pd.DataCenterID != nil {
		m.Region = *pd.DataCenterID
	}
	if pd.Cost > 0 {
		m.PricePerHour = pd.Cost / float64(max(m.GPUCount, 1)) // per GPU-hour, as offers
	}
	switch pd.Status {
	case statusProvisioning:
		m.State = gpuflow.MachinePending
	case statusStarting:
		m.State = gpuflow.MachineStarting
	case statusRunning:
		m.State = gpuflow.MachineStarting
		if pd.hasRuntime() { // RUNNING is reported before the container is up
			m.State = gpuflow.MachineRunning
		}
	case statusExited:
		if pd.Env.Spot == "true" {
			m.State, m.Reason = gpuflow.MachineFailed, ReasonPreempted
		} else {
			// The runner stops its pod only when the job's end was not
			// acknowledged, or at the deadline; a stop outside gpuflow
			// kills the job: no report follows either way.
			m.State, m.Reason = gpuflow.MachineFailed, "the pod stopped: its runner stops it when the job's end cannot be reported (the exit code is unknown), or it was stopped outside gpuflow"
		}
	case statusError:
		m.State, m.Reason = gpuflow.MachineFailed, ReasonError
	case statusTerminated:
		m.State = gpuflow.MachineGone
	default: // unknown statuses are not ready yet
		m.State = gpuflow.MachinePending
	}
	return m
}

// tagsOf recovers a pod's tags from its env's EnvTags (tagsJSON), or, for
// a pod without them, from its name and job id (agentscript.EnvJobID).
func tagsOf(name, tagsJSON, jobID string) map[string]string {
	tags := map[string]string{}
	if tagsJSON != "" {
		_ = json.Unmarshal([]byte(tagsJSON), &tags) // not ours to fail on
	}
	if strings.HasPrefix(name, NamePrefix) {
		if _, ok := tags[gpuflow.TagManaged]; !ok {
			tags[gpuflow.TagManaged] = "true"
		}
		if jobID != "" && tags[gpuflow.TagJob] == "" {
			tags[gpuflow.TagJob] = jobID
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}
