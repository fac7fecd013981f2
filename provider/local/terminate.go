package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Terminate stops the job: SIGTERM to its whole process group, SIGKILL
// after the grace period, "docker rm -f" of its container for an image
// job. Once nothing of it runs it marks the directory terminated, which
// frees its GPUs; the directory and its log stay. It returns nil only when
// the process group is confirmed gone, and nil for an unknown job.
func (p *Provider) Terminate(ctx context.Context, machineID string) error {
	defer p.invalidateOffers()
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validID(machineID) {
		return nil
	}
	dir := p.jobDir(machineID)

	unlock, err := p.lock(true)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() || exists(filepath.Join(dir, terminatedFile)) {
		unlock()
		return nil
	}
	md, _ := readMeta(dir)
	rec, pidErr := readPid(dir)
	if pidErr != nil && !errors.Is(pidErr, fs.ErrNotExist) {
		unlock()
		return p.transient("read pid file", pidErr)
	}
	started := pidErr == nil
	if started {
		err = writeAtomic(filepath.Join(dir, terminatingFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"))
	}
	unlock()
	if err != nil {
		return p.transient("mark job terminating", err)
	}

	if started {
		p.log.InfoContext(ctx, "terminating job", "job_id", machineID, "pgid", rec.PID)
		if err := p.stop(ctx, rec, md); err != nil {
			return err
		}
	}
	// A recorded exit code means the client returned with the container's
	// status and "--rm" removes it; otherwise it may outlive the client.
	if _, exited, _ := readExitCode(dir); md != nil && md.Container != "" && !exited {
		if err := p.removeContainer(ctx, md); err != nil {
			return err
		}
	}

	unlock, err = p.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	// A new attempt may have started meanwhile (the old one had ended):
	// then this Terminate is about an attempt that no longer exists.
	now, nowErr := readPid(dir)
	if started != (nowErr == nil) || (started && now != rec) {
		p.log.InfoContext(ctx, "job restarted while terminating; leaving the new attempt", "job_id", machineID)
		return nil
	}
	if err := writeAtomic(filepath.Join(dir, terminatedFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return p.transient("mark job terminated", err)
	}
	p.log.InfoContext(ctx, "job terminated", "job_id", machineID)
	return nil
}

// stop ends the job's process group: SIGTERM, then SIGKILL after the grace
// period (removing the container too, since the client's death does not
// stop it).
func (p *Provider) stop(ctx context.Context, rec pidRecord, md *meta) error {
	if !jobAlive(rec.PID, rec.Start, scanProcs()) {
		return nil
	}
	err := p.killGroup(ctx, rec, syscall.SIGTERM, p.killGrace)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if md != nil && md.Container != "" {
		if err := p.removeContainer(ctx, md); err != nil {
			p.log.WarnContext(ctx, "cannot remove container", "job_id", md.JobID, "err", err)
		}
	}
	if err := p.killGroup(ctx, rec, syscall.SIGKILL, killWait); err != nil {
		return p.transient("kill job", err)
	}
	return nil
}

var errStillRunning = errors.New("process group still running")

// killGroup sends sig to the job's process group and waits up to wait for
// the group to be gone.
func (p *Provider) killGroup(ctx context.Context, rec pidRecord, sig syscall.Signal, wait time.Duration) error {
	if !jobAlive(rec.PID, rec.Start, scanProcs()) {
		return nil
	}
	if err := syscall.Kill(-rec.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", rec.PID, err)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !jobAlive(rec.PID, rec.Start, scanProcs()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w after %s (pgid %d)", errStillRunning, sig, rec.PID)
		case <-tick.C:
		}
	}
}

// removeContainer runs "docker rm -f" (or podman's) on the job's container;
// a container that does not exist is fine.
func (p *Provider) removeContainer(ctx context.Context, md *meta) error {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, md.Runtime, "rm", "-f", md.Container) // #nosec G204 -- the container runtime found at startup, removing the container this provider named (validID)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = envList(p.baseEnv)
	if err := cmd.Run(); err != nil {
		if strings.Contains(strings.ToLower(out.String()), "no such container") {
			return nil
		}
		return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient,
			Message: fmt.Sprintf("remove container %s: %s", md.Container, strings.TrimSpace(out.String())), Err: err}
	}
	return nil
}
