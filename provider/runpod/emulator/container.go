package emulator

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// A pod's container, as RunPod runs it:
//
//   - The container's command is the pod's args (split as a shell splits
//     words) given to the image's entrypoint; the emulated image has none,
//     so args is the command. An empty args runs the image's default
//     command, which the emulator plays as the job itself.
//   - When the command ends, RunPod restarts the container: the command
//     runs again, on a fresh container disk ("Container disk in GB
//     (ephemeral, wiped on restart)", v2 spec, BaseContainerConfig.disk).
//     The pod stays RUNNING.
//   - The pod's volume (REST mounts.persistent, GraphQL volumeInGb at
//     volumeMountPath) survives container restarts, stop and start, and
//     goes with the pod ("Data stored in the /workspace directory survives
//     Pod stops and restarts, but is deleted when the Pod is terminated",
//     pods/storage/types.mdx).
//   - stop moves the pod to EXITED and ends the container; start boots it
//     again and runs the command again; restart restarts the container in
//     place.
//   - The container's env is the pod's env plus RunPod's own variables,
//     RUNPOD_POD_ID and a pod-scoped RUNPOD_API_KEY
//     (pods/references/environment-variables.mdx).
//
// The emulator cannot run a shell, so it plays the two commands gpuflow
// can give a pod. agentscript's runner (sh -c 'eval "$GPUFLOW_RUNNER"'
// gpuflow ARGV... with the runner in the env) is played by runRunner, as
// the script does it, keeping its state files where the script keeps them
// (GPUFLOW_STATE_DIR: on the volume when it is under the mount path, on
// the container disk otherwise). Any other command is played as a bare job
// (emulate.PlanJob reads its run time and exit code from the env) that
// reports nothing, as a command that knows nothing of gpuflow.

// runnerState is the runner's state directory: whether the job started,
// its exit code, whether the finished report was acknowledged, and the
// output spool with its shipped offset.
type runnerState struct {
	started, acked bool
	startedAt      time.Time       // when the job started
	plan           emulate.JobPlan // what the job does, once started
	exitCode       *int
	out            *emulate.Spool
}

// storage is one disk's runner state directories, by path.
type storage map[string]*runnerState

// stateDir returns the runner state at dir on the volume or the container
// disk. The caller holds e.mu.
func (p *pod) stateDir(dir string) *runnerState {
	disk := p.containerDisk
	if p.volumePath != "" && (dir == p.volumePath || strings.HasPrefix(dir, strings.TrimSuffix(p.volumePath, "/")+"/")) {
		if p.volume == nil {
			p.volume = storage{}
		}
		disk = p.volume
	}
	st := disk[dir]
	if st == nil {
		st = &runnerState{out: &emulate.Spool{}}
		disk[dir] = st
	}
	return st
}

// startContainer starts p's container; resumed, it goes on with the
// container that ran when the emulator stopped (restore). The caller holds
// e.mu.
func (e *Emulator) startContainer(p *pod, resumed bool) {
	if !resumed {
		p.jobStarted = true
		p.containerStarts++
		p.containerDisk = storage{}
		p.containerStarted = e.now()
		e.changed()
	}
	ctx, cancel := context.WithCancel(e.ctx)
	p.cancelJob = cancel
	gen := p.containerStarts
	env := maps.Clone(p.env)
	env["RUNPOD_POD_ID"] = p.id
	env["RUNPOD_API_KEY"] = "pod-scoped-" + p.id
	argv, err := splitArgs(p.args)
	if err != nil {
		// RunPod would fail to start it: the command exits at once.
		argv = []string{"false"}
	}
	if len(argv) >= 4 && argv[0] == "sh" && argv[1] == "-c" && argv[2] == `eval "$`+agentscript.EnvRunner+`"` &&
		agentscript.IsRunner(env[agentscript.EnvRunner]) {
		e.wg.Go(func() { e.runRunner(ctx, p, gen, env, resumed) })
		return
	}
	e.wg.Go(func() { e.runBare(ctx, p, gen, env, resumed) })
}

// containerEnded restarts p's container after its command ended, as
// RunPod does, unless it was stopped, restarted or removed meanwhile.
func (e *Emulator) containerEnded(p *pod, gen int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.current(p, gen) {
		return
	}
	e.log.Info("runpod emulator: container exited; restarting it", "pod_id", p.id, "starts", p.containerStarts)
	e.stopJob(p)
	p.jobStarted = false // advance starts it again
	e.changed()
}

// current reports whether container gen is still the one p runs: p was
// neither removed nor stopped, nor its container restarted, meanwhile. The
// caller holds e.mu.
func (e *Emulator) current(p *pod, gen int) bool {
	return e.pods[p.id] == p && !p.stopped && p.containerStarts == gen
}

// restartContainer restarts p's container in place (the restart action).
// The caller holds e.mu.
func (e *Emulator) restartContainer(p *pod) {
	e.stopJob(p)
	p.jobStarted = false
	e.changed()
	if _, up := p.phase(e.now(), e.timing); up && !e.closed {
		e.startContainer(p, false)
	}
}

// runBare plays a command that is not gpuflow's runner: it runs for the
// planned time and exits; nothing reports. Resumed, it runs what is left
// of that time since its container started.
func (e *Emulator) runBare(ctx context.Context, p *pod, gen int, env map[string]string, resumed bool) {
	plan := emulate.PlanJob(env, e.timing)
	left := plan.Run
	e.mu.Lock()
	if resumed {
		left -= e.now().Sub(p.containerStarted)
	} else {
		p.commandRuns++
		e.changed()
	}
	e.mu.Unlock()
	t := time.NewTimer(max(left, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	e.containerEnded(p, gen)
}

// runRunner plays agentscript's runner: the job runs once per state
// directory; its output and exit code are reported until acknowledged;
// then the container idles until the deadline, when the runner stops the
// pod through RunPod's API with its pod-scoped key. An end not
// acknowledged within the report grace stops the pod at once. Resumed (the
// emulator restarted while the container ran), a job that was running goes
// on from its start time, as it would have on the pod.
func (e *Emulator) runRunner(ctx context.Context, p *pod, gen int, env map[string]string, resumed bool) {
	agent := emulate.AgentFromEnv(env, e.agent)
	agent.Backoff, agent.LogInterval = e.opts.AgentBackoff, e.opts.AgentLogInterval
	jobID := env[agentscript.EnvJobID]
	e.mu.Lock()
	st := p.stateDir(env[agentscript.EnvStateDir])
	run := false
	var code int
	var elapsed time.Duration
	switch {
	case st.exitCode != nil:
		code = *st.exitCode
	case st.started && resumed:
		run = true
		elapsed = max(e.now().Sub(st.startedAt), 0)
	case st.started:
		code = -1
		st.exitCode = &code
		fmt.Fprintln(st.out, "gpuflow: the container restarted while the job ran; the job is not run again")
	default:
		st.started, run = true, true
		st.startedAt, st.plan = e.now(), emulate.PlanJob(env, e.timing)
		emulate.BeginJob(st.out, jobID)
		p.commandRuns++
	}
	plan := st.plan
	acked := st.acked
	e.changed()
	e.mu.Unlock()
	r := emulate.StartReporter(ctx, agent, st.out)
	if run {
		if !emulate.PlayJobFrom(ctx, plan, jobID, st.out, r.Progress, elapsed) {
			r.Stop()
			return
		}
		code = plan.ExitCode
		e.mu.Lock()
		st.exitCode = &code
		e.changed()
		e.mu.Unlock()
	}
	if acked {
		r.Stop()
	} else {
		err := r.Finish(code)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Not acknowledged within the report grace: the runner stops
			// its pod through RunPod's API, so that gpuflow sees it EXITED.
			e.mu.Lock()
			defer e.mu.Unlock()
			// A spot pod is removed instead: stopped, it would read as
			// reclaimed.
			if e.current(p, gen) {
				if p.spot {
					e.log.Info("runpod emulator: the runner removed its spot pod: the job's end was not acknowledged", "pod_id", p.id, "err", err)
					e.remove(p)
				} else {
					e.log.Info("runpod emulator: the runner stopped its pod: the job's end was not acknowledged", "pod_id", p.id, "err", err)
					e.stop(p)
				}
				e.flush()
			}
			return
		}
		e.mu.Lock()
		st.acked = true
		e.changed()
		e.mu.Unlock()
	}
	deadline := agentscript.ParseDeadline(env[agentscript.EnvDeadline])
	if deadline.IsZero() {
		return // idles until the container is stopped
	}
	t := time.NewTimer(deadline.Sub(e.now()))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current(p, gen) {
		e.log.Info("runpod emulator: the runner stopped its pod at the job's deadline", "pod_id", p.id)
		e.stop(p)
		e.flush()
	}
}

// splitArgs splits a command line into words as a POSIX shell does
// (single quotes, double quotes with backslash escapes, backslashes), as
// RunPod reads args.
func splitArgs(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			in = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated double quote")
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// CommandRuns returns how many times the job's command has started in pod
// id's containers: with gpuflow's runner, once however often the
// container restarts; with a bare command, once per container start. A
// deleted pod's count stays (tests count a job's runs after its pod is
// gone); an unknown id has 0.
func (e *Emulator) CommandRuns(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pods[id]; p != nil {
		return p.commandRuns
	}
	return e.removed[id].commandRuns
}

// ContainerStarts returns how many times pod id's container has started,
// restarts included; like CommandRuns, also after the pod was deleted.
func (e *Emulator) ContainerStarts(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pods[id]; p != nil {
		return p.containerStarts
	}
	return e.removed[id].containerStarts
}

// RunnerDone reports whether the runner's state on pod id's volume says its
// finished report was acknowledged (the runner's finished.acked file).
func (e *Emulator) RunnerDone(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pods[id]
	if p == nil {
		return false
	}
	st := p.volume[p.env[agentscript.EnvStateDir]]
	return st != nil && st.acked
}
