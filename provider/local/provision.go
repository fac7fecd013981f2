package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Provision starts the job in <Dir>/<job_id>/ and returns its machine,
// whose ID is the job id. It is idempotent: a request with the key of the
// attempt in the directory returns that machine without starting anything,
// and so does any request while the job still runs (one job, one process).
// Once the previous attempt has ended, a request with a new key moves its
// control files into attempt-N/ and starts a new attempt.
//
// Errors are *gpuflow.ProviderError: KindInvalidRequest for a job this host
// cannot run (see Check), KindNoCapacity when its GPUs or the CPU slots are
// taken, KindTransient for a local failure.
func (p *Provider) Provision(ctx context.Context, req gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	defer p.invalidateOffers()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validID(req.JobID) {
		return nil, p.invalid(fmt.Sprintf("job id %q cannot name a directory", req.JobID))
	}
	unlock, err := p.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()

	dir := p.jobDir(req.JobID)
	prev, err := readMeta(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, p.transient("read job", err)
	}
	var (
		rec                         pidRecord
		started, terminated, exited bool
	)
	if prev != nil {
		var pidErr error
		rec, pidErr = readPid(dir)
		started = pidErr == nil
		terminated = exists(filepath.Join(dir, terminatedFile))
		if prev.IdempotencyKey == req.IdempotencyKey && (started || terminated) {
			return p.describe(req.JobID), nil
		}
		_, exited, _ = readExitCode(dir)
		if started && !terminated {
			if !exited && wrapperAlive(rec.PID, rec.Start) {
				p.log.InfoContext(ctx, "job already running; returning it",
					"job_id", req.JobID, "attempt", prev.Attempt)
				return p.describe(req.JobID), nil
			}
		}
	}

	pl, err := p.plan(req.JobID, req.Spec)
	if err != nil {
		return nil, err
	}
	u, err := p.usage(req.JobID)
	if err != nil {
		return nil, err
	}
	var gpus []int
	if req.Spec.GPUCount > 0 {
		for _, g := range pl.candidate {
			if _, used := u.gpus[g.Index]; !used && len(gpus) < req.Spec.GPUCount {
				gpus = append(gpus, g.Index)
			}
		}
		if len(gpus) < req.Spec.GPUCount {
			return nil, p.noCapacity(fmt.Sprintf("%d of %d %s GPUs free, the job wants %d",
				len(gpus), len(pl.candidate), pl.gpuType, req.Spec.GPUCount))
		}
	} else if u.cpuJobs >= p.cpuSlots {
		return nil, p.noCapacity(fmt.Sprintf("all %d CPU slots are taken", p.cpuSlots))
	}

	attempt := 1
	if prev != nil {
		// The previous attempt has ended. Stop what it left behind in its
		// process group (its GPUs go to this attempt) and move its files
		// aside.
		if started && !terminated && jobAlive(rec.PID, rec.Start, scanProcs()) {
			p.log.InfoContext(ctx, "killing processes left by the previous attempt", "job_id", req.JobID, "pgid", rec.PID)
			if err := p.killGroup(ctx, rec, syscall.SIGKILL, killWait); err != nil {
				return nil, p.transient("stop the previous attempt", err)
			}
		}
		if started && !terminated && !exited && prev.Container != "" {
			// Its client vanished; the container may still run under the
			// name the new attempt needs.
			if err := p.removeContainer(ctx, prev); err != nil {
				return nil, err
			}
		}
		if started || terminated {
			if err := archive(dir, prev.Attempt); err != nil {
				return nil, p.transient("move the previous attempt aside", err)
			}
			attempt = prev.Attempt + 1
		} else {
			// Never started (the worker stopped while starting it): start
			// it in place.
			attempt = max(prev.Attempt, 1)
		}
	}

	m := &meta{
		JobID:          req.JobID,
		IdempotencyKey: req.IdempotencyKey,
		Attempt:        attempt,
		GPUType:        pl.gpuType,
		GPUCount:       req.Spec.GPUCount,
		GPUs:           gpus,
		Image:          req.Spec.Image,
		Tags:           maps.Clone(req.Tags),
		CreatedAt:      time.Now().UTC(),
	}
	if req.Spec.Image != "" {
		m.Runtime = pl.runtime
		m.Container = containerName(req.JobID)
	}
	if err := p.start(ctx, dir, m, pl, req.Spec); err != nil {
		return nil, err
	}
	return p.describe(req.JobID), nil
}

// containerName is the name of the container of an image job.
func containerName(jobID string) string { return "gpuflow-" + jobID }

// archive moves the control files of attempt n into attempt-n/.
func archive(dir string, n int) error {
	n = max(n, 1)
	dst := filepath.Join(dir, attemptPrefix+strconv.Itoa(n))
	for exists(dst) { // an attempt-n left by a crash half-way
		n++
		dst = filepath.Join(dir, attemptPrefix+strconv.Itoa(n))
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	for _, f := range controlFiles {
		err := os.Rename(filepath.Join(dir, f), filepath.Join(dst, f))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// start writes the job's files and starts its wrapper. The caller holds
// the exclusive lock, so the pid file exists before anyone else looks; the
// wrapper runs the job only once the pid file names it (the gate), so a
// worker killed in between never leaves a job that is started again.
func (p *Provider) start(ctx context.Context, dir string, m *meta, pl *jobPlan, spec gpuflow.JobSpec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p.transient("create job directory", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return p.transient("encode job", err)
	}
	if err := writeAtomic(filepath.Join(dir, metaFile), append(b, '\n')); err != nil {
		return p.transient("write job", err)
	}
	if err := writeAtomic(filepath.Join(dir, gpusFile), []byte(joinInts(m.GPUs)+"\n")); err != nil {
		return p.transient("write gpus", err)
	}

	var argv []string
	env := p.jobEnv(m.JobID, spec, joinInts(m.GPUs))
	if m.Image != "" {
		argv = containerArgv(pl, m, spec)
		// The values travel in the client's environment ("-e NAME"),
		// never on its command line, where ps would show them.
		delete(env, "CUDA_VISIBLE_DEVICES") // the container sees only its GPUs
	} else {
		argv = append([]string{pl.argv0}, spec.Command[1:]...)
	}

	cwd := dir
	if p.runAs != nil {
		if cwd, err = p.runAs.makeWorkDir(dir); err != nil {
			return p.transient("create the work directory", err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if err != nil {
		return p.transient("open log", err)
	}
	defer logf.Close()
	// The wrapper writes the exit status here (its descriptor 3).
	exitf, err := os.OpenFile(filepath.Join(dir, exitCodeFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- a file in the job directory of a checked id (validID)
	if err != nil {
		return p.transient("create the exit code file", err)
	}
	defer exitf.Close()
	if m.Attempt > 1 {
		_, _ = fmt.Fprintf(logf, "--- gpuflow: attempt %d started %s ---\n", m.Attempt, m.CreatedAt.Format(time.RFC3339))
	}

	// The gate (see wrapperScript): the wrapper runs the job once it reads
	// its own pid here, written after the pid file.
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return p.transient("start job", err)
	}
	defer gateW.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", p.script, "sh"}, argv...)...) // #nosec G204 -- running the job's command is the local provider's purpose: a fixed script, the job's argv passed as arguments, never parsed by a shell
	cmd.Dir = cwd
	cmd.Env = envList(env)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{exitf, gateR} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if p.runAs != nil {
		cmd.SysProcAttr.Credential = p.runAs.credential()
	}
	err = cmd.Start()
	_ = gateR.Close()
	if err != nil {
		return p.transient("start job", err)
	}
	// Reap our own child so that it never lingers as a zombie, and tell
	// the watcher at once; a restarted worker learns the outcome from
	// exit_code on its watcher's sweep.
	go func() {
		_ = cmd.Wait()
		p.changed(m.JobID)
	}()

	if afterStartHook != nil {
		afterStartHook() // tests: a worker killed here
	}
	rec := pidRecord{PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid)}
	if err := writeAtomic(filepath.Join(dir, pidFile), []byte(rec.String())); err != nil {
		_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
		return p.transient("write pid file", err)
	}
	// The pid file names the wrapper: the job may run.
	_, _ = fmt.Fprintf(gateW, "%d\n", rec.PID)
	_ = gateW.Close()
	p.log.InfoContext(ctx, "job started", "job_id", m.JobID, "attempt", m.Attempt, "pid", rec.PID,
		"gpus", joinInts(m.GPUs), "image", m.Image != "")
	return nil
}

// afterStartHook, when set (by tests), runs between starting the wrapper
// and writing its pid file.
var afterStartHook func()

// containerArgv is "docker run ..." for an image job.
func containerArgv(pl *jobPlan, m *meta, spec gpuflow.JobSpec) []string {
	argv := []string{pl.runtime, "run", "--rm", "--name", m.Container,
		"--label", gpuflow.TagManaged + "=true", "--label", gpuflow.TagJob + "=" + m.JobID}
	if len(m.GPUs) > 0 {
		if pl.runtimeNm == "podman" {
			for _, g := range m.GPUs {
				argv = append(argv, "--device", "nvidia.com/gpu="+strconv.Itoa(g))
			}
		} else {
			// docker parses the value as CSV: the quotes keep "0,1" one field.
			argv = append(argv, "--gpus", `"device=`+joinInts(m.GPUs)+`"`)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		argv = append(argv, "-e", k)
	}
	argv = append(argv, "-e", "GPUFLOW_JOB_ID", spec.Image)
	return append(argv, spec.Command...)
}
