package runpod_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

// finishedCount counts the job's finished reports.
func (a *fakeAgent) finishedCount(jobID string) int {
	n := 0
	for _, c := range a.Calls() {
		if c.Path == "/agent/jobs/"+jobID+"/finished" {
			n++
		}
	}
	return n
}

func withState(path string) func(*emulator.Options) {
	return func(o *emulator.Options) { o.StateFile = path }
}

// TestEmulatorRestartKeepsPods: the emulator process dies (its in-memory
// state is dropped) and a new one starts on its state file. The pods keep
// their ids and states, provisioning the same key finds the same pod, a
// job whose finished report was acknowledged (the runner's marker on the
// pod's volume) is neither run nor reported again, and a job that was
// running finishes afterwards with its exit code, run once.
func TestEmulatorRestartKeepsPods(t *testing.T) {
	e := setupEmulator(t, withState(filepath.Join(t.TempDir(), "runpod.json")))
	done := e.request("job-done", false)
	done.Spec.Env = map[string]string{emulate.EnvExitCode: "0", emulate.EnvRunSeconds: "0.05"}
	mDone := e.provision(done)
	running := e.request("job-run", false)
	running.Spec.Env = map[string]string{emulate.EnvExitCode: "3", emulate.EnvRunSeconds: "1"}
	mRun := e.provision(running)
	eventually(t, "job-done acknowledged", func() bool { return e.em.RunnerDone(mDone.ID) })
	eventually(t, "job-run started", func() bool { return e.em.CommandRuns(mRun.ID) == 1 })

	e.restart(nil)

	for _, id := range []string{mDone.ID, mRun.ID} {
		if m := e.describe(id); m.State != gpuflow.MachineRunning {
			t.Errorf("%s after the restart: %+v", id, m)
		}
	}
	if !e.em.RunnerDone(mDone.ID) {
		t.Error("the runner's completion marker did not survive the restart")
	}
	again, err := e.p.Provision(context.Background(), running)
	if err != nil || again.ID != mRun.ID {
		t.Errorf("the same key after the restart: %+v, %v; want %s", again, err, mRun.ID)
	}
	eventually(t, "job-run finished", func() bool { return e.em.RunnerDone(mRun.ID) })
	if code, ok := e.agent.finished("job-run"); !ok || code != 3 {
		t.Errorf("job-run finished %d, %v; want 3", code, ok)
	}
	if n := e.agent.finishedCount("job-done"); n != 1 {
		t.Errorf("job-done reported finished %d times, want once", n)
	}
	for _, id := range []string{mDone.ID, mRun.ID} {
		if n := e.em.CommandRuns(id); n != 1 {
			t.Errorf("%s: the command ran %d times, want once", id, n)
		}
	}
	rep := e.em.LiveReport()
	if len(rep.Machines) != 2 {
		t.Errorf("live pods after the restart: %+v", rep.Machines)
	}
	for _, m := range rep.Machines {
		if m.JobID == "" || m.Key != runpod.PodName(m.JobID+"-a1") || rep.Creates[m.Key] != 1 {
			t.Errorf("pod %+v: its job, named after its key, created once; creates %v", m, rep.Creates)
		}
	}
	e.terminate(mDone.ID)
	e.terminate(mRun.ID)
}

// settable is a clock the test moves.
type settable struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settable) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settable) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestEmulatorRestartEndsOverdueJob: a job whose end passed while the
// emulator was down ends when it is back and reports its exit code then.
func TestEmulatorRestartEndsOverdueJob(t *testing.T) {
	clock := &settable{t: time.Now()}
	state := filepath.Join(t.TempDir(), "runpod.json")
	e := setupEmulator(t, func(o *emulator.Options) { o.StateFile, o.Now = state, clock.Now })
	req := e.request("job-late", false)
	req.Spec.Env = map[string]string{emulate.EnvExitCode: "7", emulate.EnvRunSeconds: "600"}
	m := e.provision(req)
	clock.add(time.Second)
	eventually(t, "job-late started", func() bool { return e.em.CommandRuns(m.ID) == 1 })

	// Down for longer than the job runs (on the emulator's clock).
	e.restart(func() { clock.add(11 * time.Minute) })

	eventually(t, "job-late finished", func() bool { return e.em.RunnerDone(m.ID) })
	if code, ok := e.agent.finished("job-late"); !ok || code != 7 {
		t.Errorf("finished %d, %v; want 7", code, ok)
	}
	if n := e.em.CommandRuns(m.ID); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}
	e.terminate(m.ID)
}
