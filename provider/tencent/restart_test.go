package tencent_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// finishedCount counts the job's finished reports.
func (a *fakeAgent) finishedCount(jobID string) int {
	n := 0
	for _, r := range a.reports() {
		if r.Path == "/jobs/"+jobID+"/finished" {
			n++
		}
	}
	return n
}

// TestEmulatorRestartKeepsMachines: the emulator process dies (its
// in-memory state is dropped) and a new one starts on its state file. The
// instances keep their ids and states, a create repeated with the same
// ClientToken still answers the first instance, a job that finished before
// is not reported again, and a job that was running finishes afterwards
// with its exit code.
func TestEmulatorRestartKeepsMachines(t *testing.T) {
	state := filepath.Join(t.TempDir(), "tencent.json")
	e := newEnv(t, envOptions{emu: func(o *emulator.Options) { o.StateFile = state }})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)

	done := e.request("job-done", "job-done-a1", o, map[string]string{emulate.EnvExitCode: "0", emulate.EnvRunSeconds: "0.05"})
	mDone, err := e.p.Provision(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	running := e.request("job-run", "job-run-a1", o, map[string]string{emulate.EnvExitCode: "3", emulate.EnvRunSeconds: "1"})
	mRun, err := e.p.Provision(ctx, running)
	if err != nil {
		t.Fatal(err)
	}
	e.agent.waitFinished(t, "job-done")
	for deadline := time.Now().Add(10 * time.Second); !e.em.JobAcked(mDone.ID); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the emulator never recorded the acknowledgement")
		}
	}
	e.waitState(t, mRun.ID, gpuflow.MachineRunning)

	e.restart(t, nil)

	for _, id := range []string{mDone.ID, mRun.ID} {
		if m := e.waitState(t, id, gpuflow.MachineRunning); m.ID != id {
			t.Errorf("after the restart: %+v", m)
		}
	}
	again, err := e.p.Provision(ctx, running)
	if err != nil || again.ID != mRun.ID {
		t.Errorf("the same key after the restart: %+v, %v; want %s", again, err, mRun.ID)
	}
	if body := e.agent.waitFinished(t, "job-run"); !strings.Contains(body, `"exit_code":3`) {
		t.Errorf("the running job finished with %s, want exit code 3", body)
	}
	if n := e.agent.finishedCount("job-done"); n != 1 {
		t.Errorf("the job acknowledged before the restart reported %d times, want once", n)
	}
	rep := e.em.LiveReport()
	if len(rep.Machines) != 2 {
		t.Errorf("live machines after the restart: %+v", rep.Machines)
	}
	for _, m := range rep.Machines {
		if m.JobID == "" || m.Key == "" || rep.Creates[m.Key] != 1 {
			t.Errorf("machine %+v: job and ClientToken, created once; creates %v", m, rep.Creates)
		}
	}
	e.terminate(t, mDone.ID)
	e.terminate(t, mRun.ID)
}

// TestEmulatorRestartEndsOverdueJob: a job whose end passed while the
// emulator was down ends when it is back and reports its exit code then.
func TestEmulatorRestartEndsOverdueJob(t *testing.T) {
	clock := newClock()
	state := filepath.Join(t.TempDir(), "tencent.json")
	e := newEnv(t, envOptions{clock: clock, emu: func(o *emulator.Options) { o.StateFile = state }})
	ctx := context.Background()
	o := e.offer(t, "T4", 1, "ap-guangzhou-3", 8)
	req := e.request("job-late", "job-late-a1", o, map[string]string{emulate.EnvExitCode: "7", emulate.EnvRunSeconds: "600"})
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	e.waitState(t, m.ID, gpuflow.MachineRunning)
	e.waitReport(t, "/jobs/job-late/progress")

	// Down for longer than the job runs (on the emulator's clock).
	e.restart(t, func() { clock.Add(11 * time.Minute) })

	if body := e.agent.waitFinished(t, "job-late"); !strings.Contains(body, `"exit_code":7`) {
		t.Errorf("finished %s, want exit code 7", body)
	}
	if got := e.waitState(t, m.ID, gpuflow.MachineRunning); got.ID != m.ID {
		t.Errorf("after the restart: %+v", got)
	}
	e.terminate(t, m.ID)
}

// waitReport waits for a report on path.
func (e *env) waitReport(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range e.agent.reports() {
			if r.Path == path {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no report on %s; reports: %+v", path, e.agent.reports())
}
