package emulator

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// GPU is a GPU type of the emulated catalogue; prices are USD per GPU-hour.
type GPU struct {
	ID                 string
	Name               string
	MemoryGB           int
	MaxCount           int
	SecurePrice        float64
	CommunityPrice     float64
	SecureSpotPrice    float64
	CommunitySpotPrice float64
}

// DefaultGPUs is the emulated catalogue: on-demand prices from the seeds
// gpuflow ships (providers.md D.1), spot prices deterministic emulator
// numbers.
var DefaultGPUs = []GPU{
	{ID: "NVIDIA GeForce RTX 4090", Name: "RTX 4090", MemoryGB: 24, MaxCount: 8, SecurePrice: 0.44, CommunityPrice: 0.31, SecureSpotPrice: 0.29, CommunitySpotPrice: 0.2},
	{ID: "NVIDIA GeForce RTX 3090", Name: "RTX 3090", MemoryGB: 24, MaxCount: 8, CommunityPrice: 0.3, CommunitySpotPrice: 0.16},
	{ID: "NVIDIA A100 80GB PCIe", Name: "A100 PCIe", MemoryGB: 80, MaxCount: 8, SecurePrice: 1.79, CommunityPrice: 1.19, SecureSpotPrice: 1.05, CommunitySpotPrice: 0.82},
	{ID: "NVIDIA A100-SXM4-80GB", Name: "A100 SXM", MemoryGB: 80, MaxCount: 8, SecurePrice: 1.79, CommunityPrice: 1.39, SecureSpotPrice: 1.1, CommunitySpotPrice: 0.89},
	{ID: "NVIDIA H100 PCIe", Name: "H100 PCIe", MemoryGB: 80, MaxCount: 8, SecurePrice: 2.89, CommunityPrice: 1.99, SecureSpotPrice: 1.75, CommunitySpotPrice: 1.25},
	{ID: "NVIDIA H100 80GB HBM3", Name: "H100 SXM", MemoryGB: 80, MaxCount: 8, SecurePrice: 3.99, CommunityPrice: 2.69, SecureSpotPrice: 2.39, CommunitySpotPrice: 1.69},
	{ID: "NVIDIA H200", Name: "H200 SXM", MemoryGB: 141, MaxCount: 8, SecurePrice: 4.59, SecureSpotPrice: 2.79},
}

func (e *Emulator) gpu(id string) (GPU, bool) {
	for _, g := range e.opts.GPUs {
		if g.ID == id {
			return g, true
		}
	}
	return GPU{}, false
}

// RunPod's pod statuses (REST v2).
const (
	statusProvisioning = "PROVISIONING"
	statusStarting     = "STARTING"
	statusRunning      = "RUNNING"
	statusExited       = "EXITED"
)

// pod is an emulated pod. Deleted pods leave the map.
type pod struct {
	id, name, image, args string
	env                   map[string]string
	ports                 []string
	gpuID                 string
	gpuCount              int
	cpuID                 string
	vcpus                 int
	cloud, dataCenter     string
	disk                  int
	spot                  bool
	cost                  float64 // USD/hour while not stopped
	created               time.Time
	boot                  time.Time // when the current boot began
	stopped, preempted    bool
	terminateAfter        time.Time // zero: none
	// volumePath is where the pod's volume is mounted ("": none).
	volumePath string
	volumeSize int

	// The container (container.go): jobStarted says it is running;
	// cancelJob ends it. volume outlives restarts, containerDisk does not.
	jobStarted       bool
	containerStarted time.Time // when the running container started
	cancelJob        context.CancelFunc
	containerStarts  int
	commandRuns      int
	volume           storage
	containerDisk    storage
}

// phase returns the pod's status and whether its container is up (its
// runtime block is filled).
func (p *pod) phase(now time.Time, t emulate.Timing) (status string, up bool) {
	if p.stopped {
		return statusExited, false
	}
	switch d := now.Sub(p.boot); {
	case d < t.Pending:
		return statusProvisioning, false
	case d < t.Pending+t.Starting/2:
		return statusStarting, false
	case d < t.Pending+t.Starting:
		return statusRunning, false // RunPod says RUNNING before the container is up
	}
	return statusRunning, true
}

func (p *pod) upSince(t emulate.Timing) time.Time { return p.boot.Add(t.Pending + t.Starting) }

// advance applies the clock: safety timers delete pods, pods that came up
// start their container. The caller holds e.mu.
func (e *Emulator) advance() {
	now := e.now()
	for id, p := range e.pods {
		if !p.terminateAfter.IsZero() && !now.Before(p.terminateAfter) {
			e.remove(p)
			e.log.Info("runpod emulator: pod reached terminateAfter", "pod_id", id)
			continue
		}
		if _, up := p.phase(now, e.timing); up && !p.jobStarted && !e.closed {
			e.startContainer(p, false)
		}
	}
}

func (e *Emulator) stopJob(p *pod) {
	if p.cancelJob != nil {
		p.cancelJob()
		p.cancelJob = nil
	}
}

// stop moves p to EXITED, ending its container; its volume stays. The
// caller holds e.mu.
func (e *Emulator) stop(p *pod) {
	e.stopJob(p)
	p.stopped = true
	p.containerDisk = nil
	e.changed()
}

// start boots a stopped pod again; its container's command runs again.
// The caller holds e.mu.
func (e *Emulator) start(p *pod) {
	p.stopped, p.preempted, p.jobStarted = false, false, false
	p.boot = e.now()
	e.changed()
}

// remove deletes p, keeping what its container did for CommandRuns and
// ContainerStarts. The caller holds e.mu.
func (e *Emulator) remove(p *pod) {
	e.stopJob(p)
	delete(e.pods, p.id)
	e.removed[p.id] = podRuns{containerStarts: p.containerStarts, commandRuns: p.commandRuns}
	e.changed()
}

// addPod adds a pod the API just created. The caller holds e.mu.
func (e *Emulator) addPod(p *pod) {
	e.pods[p.id] = p
	e.creates[p.name]++
	e.changed()
}

// podRuns is what a deleted pod's container did.
type podRuns struct{ containerStarts, commandRuns int }

// sortedPods returns the pods oldest first. The caller holds e.mu.
func (e *Emulator) sortedPods() []*pod {
	ps := slices.Collect(maps.Values(e.pods))
	slices.SortFunc(ps, func(a, b *pod) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return ps
}

// Wire views of a pod.

type podView struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Status           string            `json:"status"`
	Actions          []string          `json:"actions"`
	Image            string            `json:"image"`
	Args             string            `json:"args"`
	Disk             int               `json:"disk"`
	Mounts           map[string]any    `json:"mounts"`
	Ports            []string          `json:"ports"`
	Env              map[string]string `json:"env"`
	Registry         *string           `json:"registry"`
	Cloud            string            `json:"cloud"`
	DataCenterID     *string           `json:"dataCenterId"`
	CudaVersion      *string           `json:"cudaVersion"`
	SSH              sshView           `json:"ssh"`
	Template         *string           `json:"template"`
	Cost             float64           `json:"cost"`
	Locked           bool              `json:"locked"`
	Runtime          *runtimeView      `json:"runtime"`
	CreatedAt        string            `json:"createdAt"`
	StartedAt        *string           `json:"startedAt"`
	GlobalNetworking struct {
		Enabled bool `json:"enabled"`
	} `json:"globalNetworking"`
	GPU *gpuView `json:"gpu,omitempty"`
	CPU *cpuView `json:"cpu,omitempty"`
}

type sshView struct {
	Proxy  *sshEndpoint `json:"proxy"`
	Direct *sshEndpoint `json:"direct"`
}

type sshEndpoint struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Command  string `json:"command"`
}

type runtimeView struct {
	Uptime int           `json:"uptime"`
	Ports  []runtimePort `json:"ports"`
}

type runtimePort struct {
	Private int     `json:"private"`
	Public  *int    `json:"public"`
	Type    string  `json:"type"`
	IP      *string `json:"ip"`
}

type gpuView struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

type cpuView struct {
	ID        string `json:"id"`
	VCPUCount int    `json:"vcpuCount"`
	Memory    int    `json:"memory"`
}

func ptr[T any](v T) *T { return &v }

// view renders p as a v2 Pod. The caller holds e.mu.
func (e *Emulator) view(p *pod) podView {
	now := e.now()
	status, up := p.phase(now, e.timing)
	v := podView{
		ID: p.id, Name: p.name, Status: status, Image: p.image, Args: p.args, Disk: p.disk,
		Ports: slices.Clone(p.ports), Env: maps.Clone(p.env), Cloud: p.cloud, DataCenterID: ptr(p.dataCenter),
		CreatedAt: p.created.UTC().Format(time.RFC3339),
	}
	if v.Ports == nil {
		v.Ports = []string{}
	}
	if v.Env == nil {
		v.Env = map[string]string{}
	}
	v.Mounts = map[string]any{}
	if p.volumePath != "" {
		v.Mounts["persistent"] = map[string]any{"size": p.volumeSize, "path": p.volumePath}
	}
	switch status {
	case statusRunning:
		v.Actions = []string{"stop", "restart", "terminate"}
	case statusExited:
		v.Actions = []string{"start", "terminate"}
	default:
		v.Actions = []string{"stop", "terminate"}
	}
	if p.gpuID != "" {
		v.GPU = &gpuView{ID: p.gpuID, Count: p.gpuCount}
		if status != statusProvisioning {
			v.CudaVersion = ptr("12.8")
		}
	} else {
		v.CPU = &cpuView{ID: p.cpuID, VCPUCount: p.vcpus, Memory: 2 * p.vcpus}
	}
	if status != statusExited {
		v.Cost = p.cost
	}
	if status != statusProvisioning {
		user := p.id + "-64411eb2"
		v.SSH.Proxy = &sshEndpoint{Host: "ssh.runpod.io", Port: 22, Username: user, Command: "ssh " + user + "@ssh.runpod.io"}
	}
	if up {
		v.Runtime = &runtimeView{Uptime: int(now.Sub(p.upSince(e.timing)) / time.Second), Ports: []runtimePort{}}
		v.StartedAt = ptr(p.upSince(e.timing).UTC().Format(time.RFC3339))
	}
	return v
}

// gqlView renders p as GraphQL's Pod, a fixed selection. The caller holds
// e.mu.
func (e *Emulator) gqlView(p *pod) map[string]any {
	status, up := p.phase(e.now(), e.timing)
	desired := statusRunning
	if status == statusExited {
		desired = statusExited
	}
	cost := p.cost
	if p.stopped {
		cost = 0
	}
	var runtime any
	if up {
		runtime = map[string]any{"uptimeInSeconds": int(e.now().Sub(p.upSince(e.timing)) / time.Second), "ports": []any{}}
	}
	env := make([]string, 0, len(p.env))
	for _, k := range slices.Sorted(maps.Keys(p.env)) {
		env = append(env, k+"="+p.env[k])
	}
	return map[string]any{
		"id": p.id, "name": p.name, "desiredStatus": desired, "costPerHr": cost, "imageName": p.image,
		"gpuCount": p.gpuCount, "dockerArgs": p.args, "containerDiskInGb": p.disk, "env": env,
		"volumeInGb": p.volumeSize, "volumeMountPath": p.volumePath,
		"machineId": "m-" + p.id[:8], "machine": map[string]any{"podHostId": p.id + "-64411eb2", "gpuDisplayName": p.gpuID, "location": p.dataCenter},
		"runtime": runtime,
	}
}
