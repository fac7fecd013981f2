package emulator

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Persisted state (Options.StateFile): every pod as RunPod keeps it, its
// volume and container disk (the runner's state directories: whether the
// job started and when, its plan, its exit code, whether the finished
// report was acknowledged, its output), and what its container is doing,
// written after every call or clock step that changed them and before the
// call is answered. On restore a container that was running goes on: a
// runner's job from its start time, a bare command for what is left of its
// run.

// stateVersion is the layout of the state file.
const stateVersion = 1

type savedState struct {
	Version int                  `json:"version"`
	Pods    []savedPod           `json:"pods"` // oldest first
	Removed map[string]savedRuns `json:"removed"`
	Creates map[string]int       `json:"creates"`
}

type savedRuns struct {
	ContainerStarts int `json:"container_starts"`
	CommandRuns     int `json:"command_runs"`
}

type savedPod struct {
	ID               string                 `json:"id"`
	Name             string                 `json:"name"`
	Image            string                 `json:"image"`
	Args             string                 `json:"args"`
	Env              map[string]string      `json:"env"`
	Ports            []string               `json:"ports"`
	GPUID            string                 `json:"gpu_id"`
	GPUCount         int                    `json:"gpu_count"`
	CPUID            string                 `json:"cpu_id"`
	VCPUs            int                    `json:"vcpus"`
	Cloud            string                 `json:"cloud"`
	DataCenter       string                 `json:"data_center"`
	Disk             int                    `json:"disk"`
	Spot             bool                   `json:"spot"`
	Cost             float64                `json:"cost"`
	Created          time.Time              `json:"created"`
	Boot             time.Time              `json:"boot"`
	Stopped          bool                   `json:"stopped"`
	Preempted        bool                   `json:"preempted"`
	TerminateAfter   time.Time              `json:"terminate_after"`
	VolumePath       string                 `json:"volume_path"`
	VolumeSize       int                    `json:"volume_size"`
	JobStarted       bool                   `json:"job_started"`
	ContainerStarted time.Time              `json:"container_started"`
	ContainerStarts  int                    `json:"container_starts"`
	CommandRuns      int                    `json:"command_runs"`
	Volume           map[string]savedRunner `json:"volume,omitempty"`
	ContainerDisk    map[string]savedRunner `json:"container_disk,omitempty"`
}

type savedRunner struct {
	Started   bool            `json:"started"`
	StartedAt time.Time       `json:"started_at"`
	Plan      emulate.JobPlan `json:"plan"`
	ExitCode  *int            `json:"exit_code,omitempty"`
	Acked     bool            `json:"acked"`
	Output    []byte          `json:"output,omitempty"`
}

func saveStorage(s storage) map[string]savedRunner {
	if s == nil {
		return nil
	}
	out := make(map[string]savedRunner, len(s))
	for dir, st := range s {
		out[dir] = savedRunner{Started: st.started, StartedAt: st.startedAt, Plan: st.plan, ExitCode: st.exitCode,
			Acked: st.acked, Output: st.out.Bytes()}
	}
	return out
}

func loadStorage(s map[string]savedRunner) storage {
	if s == nil {
		return nil
	}
	out := make(storage, len(s))
	for dir, st := range s {
		out[dir] = &runnerState{started: st.Started, startedAt: st.StartedAt, plan: st.Plan, exitCode: st.ExitCode,
			acked: st.Acked, out: emulate.NewSpool(st.Output)}
	}
	return out
}

// changed persists the state, which just changed: every change is
// written before the call that made it is answered. The caller holds e.mu.
func (e *Emulator) changed() {
	e.dirty = true
	e.flush()
}

// flush persists the state if it changed. Once Close began nothing is
// written: a closed emulator leaves its file as a killed one would. The
// caller holds e.mu.
func (e *Emulator) flush() {
	if !e.dirty || e.opts.StateFile == "" || e.closed {
		return
	}
	st := savedState{Version: stateVersion, Removed: make(map[string]savedRuns, len(e.removed)), Creates: e.creates}
	for id, r := range e.removed {
		st.Removed[id] = savedRuns{ContainerStarts: r.containerStarts, CommandRuns: r.commandRuns}
	}
	for _, p := range e.sortedPods() {
		st.Pods = append(st.Pods, savedPod{
			ID: p.id, Name: p.name, Image: p.image, Args: p.args, Env: p.env, Ports: p.ports, GPUID: p.gpuID,
			GPUCount: p.gpuCount, CPUID: p.cpuID, VCPUs: p.vcpus, Cloud: p.cloud, DataCenter: p.dataCenter, Disk: p.disk,
			Spot: p.spot, Cost: p.cost, Created: p.created, Boot: p.boot, Stopped: p.stopped, Preempted: p.preempted,
			TerminateAfter: p.terminateAfter, VolumePath: p.volumePath, VolumeSize: p.volumeSize, JobStarted: p.jobStarted,
			ContainerStarted: p.containerStarted, ContainerStarts: p.containerStarts, CommandRuns: p.commandRuns,
			Volume: saveStorage(p.volume), ContainerDisk: saveStorage(p.containerDisk),
		})
	}
	if err := emulate.SaveJSON(e.opts.StateFile, st); err != nil {
		e.log.Error("runpod emulator: persisting the state failed", "file", e.opts.StateFile, "err", err)
		return
	}
	e.dirty = false
}

// restore loads the state file, if any: the pods come back with their ids
// and states, running containers go on, and the clock catches up with
// what came due while the emulator was down.
func (e *Emulator) restore() {
	if e.opts.StateFile == "" {
		return
	}
	var st savedState
	ok, err := emulate.LoadJSON(e.opts.StateFile, &st)
	if err != nil {
		e.log.Error("runpod emulator: the state could not be read; starting empty", "file", e.opts.StateFile, "err", err)
		return
	}
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, r := range st.Removed {
		e.removed[id] = podRuns{containerStarts: r.ContainerStarts, commandRuns: r.CommandRuns}
	}
	if st.Creates != nil {
		e.creates = st.Creates
	}
	for _, sp := range st.Pods {
		p := &pod{
			id: sp.ID, name: sp.Name, image: sp.Image, args: sp.Args, env: sp.Env, ports: sp.Ports, gpuID: sp.GPUID,
			gpuCount: sp.GPUCount, cpuID: sp.CPUID, vcpus: sp.VCPUs, cloud: sp.Cloud, dataCenter: sp.DataCenter, disk: sp.Disk,
			spot: sp.Spot, cost: sp.Cost, created: sp.Created, boot: sp.Boot, stopped: sp.Stopped, preempted: sp.Preempted,
			terminateAfter: sp.TerminateAfter, volumePath: sp.VolumePath, volumeSize: sp.VolumeSize, jobStarted: sp.JobStarted,
			containerStarted: sp.ContainerStarted, containerStarts: sp.ContainerStarts, commandRuns: sp.CommandRuns,
			volume: loadStorage(sp.Volume), containerDisk: loadStorage(sp.ContainerDisk),
		}
		if p.env == nil {
			p.env = map[string]string{}
		}
		if p.containerDisk == nil && p.jobStarted {
			p.containerDisk = storage{}
		}
		e.pods[p.id] = p
	}
	for _, p := range e.sortedPods() {
		if p.jobStarted && !p.stopped {
			e.startContainer(p, true)
		}
	}
	e.advance()
	e.log.Info("runpod emulator: state restored", "file", e.opts.StateFile, "pods", len(e.pods))
	e.flush()
}

// LiveReport is what GET /_emulator/live answers: the pods not deleted
// (Live), with their names, statuses and the gpuflow job in their env,
// and the pods created per name (gpuflow names a pod after its
// idempotency key).
func (e *Emulator) LiveReport() emulate.LiveReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance()
	defer e.flush()
	rep := emulate.LiveReport{Creates: maps.Clone(e.creates)}
	for _, p := range e.sortedPods() {
		status, _ := p.phase(e.now(), e.timing)
		rep.Machines = append(rep.Machines, emulate.LiveMachine{ID: p.id, Name: p.name, State: status, Created: p.created,
			JobID: p.env[agentscript.EnvJobID], Key: p.name})
	}
	slices.SortFunc(rep.Machines, func(a, b emulate.LiveMachine) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range rep.Machines {
		rep.Instances = append(rep.Instances, m.ID)
	}
	return rep
}
