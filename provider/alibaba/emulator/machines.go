package emulator

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// ECS instance statuses the emulator uses.
const (
	statusPending  = "Pending"
	statusStarting = "Starting"
	statusRunning  = "Running"
	statusStopped  = "Stopped"
)

// machine is one emulated ECS instance.
type machine struct {
	id, name, hostName, description string
	region, zone                    string
	typ                             InstanceType
	imageID                         string
	instanceChargeType              string
	spot                            bool
	spotStrategy                    string
	spotPriceLimit                  float64
	interruptionBehavior            string
	securityGroup, vswitch, keyPair string
	bandwidthOut                    int
	privateIP, publicIP             string
	tags                            []tagJSON
	script                          string // the decoded user data
	created, started                time.Time
	autoRelease                     time.Time // zero: none
	status, stoppedMode             string
	locks                           []lockReason
	preemptedAt                     time.Time
	jobStarted                      bool
	clientToken                     string
	job                             *emulate.JobState // the emulated job, once it started
	cancelJob                       context.CancelFunc
	seq                             int64  // creation order
	wake                            uint64 // ticket of its live entry in Emulator.wakeups; 0 for none
}

// stopJob cancels the machine's emulated job, if it runs.
func (m *machine) stopJob() {
	if m.cancelJob != nil {
		m.cancelJob()
		m.cancelJob = nil
	}
}

// preempt reclaims a spot instance: the job stops and the Recycling lock
// shows until the instance is released.
func (m *machine) preempt(now time.Time) {
	m.stopJob()
	m.status = statusStopped
	m.stoppedMode = "Not-applicable"
	m.preemptedAt = now
	m.locks = append(m.locks, lockReason{LockReason: LockRecycling,
		LockMsg: "The spot instance is being reclaimed because of a price or inventory change."})
}

// advance moves every instance something is due for along the clock
// (schedule.go): Pending → Starting → Running (starting its job), and
// releases instances whose auto-release time has come or that were
// preempted RecycleAfter ago. The caller holds e.mu.
func (e *Emulator) advance() {
	if e.closed {
		return
	}
	now := e.now()
	e.wakeups.Due(now, func(id string, ticket uint64) {
		m := e.machines[id]
		if m == nil || m.wake != ticket {
			return // released, or rescheduled since
		}
		m.wake = 0
		e.advanceOne(m, now)
		if e.machines[id] != nil {
			e.schedule(m)
		}
	})
}

// advanceOne moves one instance along the clock. The caller holds e.mu.
func (e *Emulator) advanceOne(m *machine, now time.Time) {
	t := e.opts.Timing
	if !m.autoRelease.IsZero() && !now.Before(m.autoRelease) {
		e.log.Info("instance auto-released", "instance_id", m.id)
		e.release(m.id)
		return
	}
	if !m.preemptedAt.IsZero() {
		if !now.Before(m.preemptedAt.Add(e.opts.RecycleAfter)) {
			e.log.Info("preempted spot instance released", "instance_id", m.id)
			e.release(m.id)
		}
		return
	}
	if m.status == statusPending && !now.Before(m.created.Add(t.Pending)) {
		m.status = statusStarting
	}
	if m.status == statusStarting && !now.Before(m.created.Add(t.Pending+t.Starting)) {
		m.status = statusRunning
		m.started = now
	}
	if m.status == statusRunning && !m.jobStarted {
		m.jobStarted = true
		e.startJob(m)
	}
}

// release removes an instance for good.
func (e *Emulator) release(id string) {
	if m, ok := e.machines[id]; ok {
		m.stopJob()
		delete(e.machines, id)
		e.dirty = true
	}
	if len(e.order) > 64 && len(e.order) > 2*len(e.machines) {
		e.order = slices.DeleteFunc(e.order, func(id string) bool { return e.machines[id] == nil })
	}
}

// startJob runs the instance's emulated job: the boot script's header says
// where the agent is and what the job's environment is. An instance
// without a gpuflow boot script just runs. While restoring (e.catchUp), a
// job whose instance booted while the emulator was down starts at the
// boot time. The caller holds e.mu.
func (e *Emulator) startJob(m *machine) {
	env := agentscript.Env(m.script)
	if env[agentscript.EnvAgentURL] == "" {
		return
	}
	jobEnv := map[string]string{}
	for k, v := range env {
		if name, ok := strings.CutPrefix(k, agentscript.EnvPrefixJob); ok {
			jobEnv[name] = v
		}
	}
	m.job = &emulate.JobState{Plan: emulate.PlanJob(jobEnv, e.opts.Timing), Started: e.now()}
	if e.catchUp {
		m.job.Started = m.created.Add(e.opts.Timing.Pending + e.opts.Timing.Starting)
	}
	e.dirty = true
	e.playJob(m, e.catchUp)
	e.log.Debug("emulated job started", "instance_id", m.id, "job_id", env[agentscript.EnvJobID])
}

// playJob runs (or, resumed, goes on with) the instance's job from its
// state, persisting its end and acknowledgement. A resumed job goes on
// from its start time on the clock; a new one starts now. The caller
// holds e.mu.
func (e *Emulator) playJob(m *machine, resumed bool) {
	if e.closed || m.job == nil || m.job.Acked {
		return
	}
	client := e.opts.AgentClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var elapsed time.Duration
	if resumed {
		elapsed = max(e.now().Sub(m.job.Started), 0)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	m.cancelJob = cancel
	emulate.PlayMachineJob(ctx, cancel, &e.wg, m.script, client, *m.job, elapsed, func(f func(*emulate.JobState)) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.machines[m.id] == m && m.job != nil {
			f(m.job)
			e.dirty = true
			e.flush()
		}
	}, func() { e.powerOff(m) })
}

// powerOff is the guest powering the instance off (the job's agent does
// when its end is not acknowledged): ECS shows a running instance Stopped,
// still charged (StoppedMode KeepCharging: economical mode applies only to
// a StopInstance call that asks for it).
func (e *Emulator) powerOff(m *machine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.machines[m.id] != m || m.status != statusRunning || !m.preemptedAt.IsZero() {
		return
	}
	e.log.Info("the guest powered the instance off", "instance_id", m.id)
	m.stopJob()
	m.status, m.stoppedMode = statusStopped, "KeepCharging"
	e.dirty = true
	e.schedule(m)
	e.flush()
}
