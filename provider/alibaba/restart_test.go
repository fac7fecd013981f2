package alibaba_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/alibaba"
	"github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

func withState(path string) envOption {
	return func(o *emulator.Options, _ *alibaba.Config) { o.StateFile = path }
}

func (a *fakeAgent) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-a.finished:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("no finished report")
		return 0
	}
}

func (e *env) state(t *testing.T, id string) gpuflow.MachineState {
	t.Helper()
	m, err := e.p.Describe(context.Background(), id)
	if err != nil {
		t.Fatalf("Describe %s: %v", id, err)
	}
	return m.State
}

// TestEmulatorRestartKeepsMachines: the emulator process dies (its
// in-memory state is dropped) and a new one starts on its state file. The
// instances keep their ids and states, a create repeated with the same
// ClientToken still answers the first instance, a job that finished before
// is not reported again, and a job that was running finishes afterwards
// with its exit code.
func TestEmulatorRestartKeepsMachines(t *testing.T) {
	e := newEnv(t, withState(filepath.Join(t.TempDir(), "alibaba.json")))
	ctx := context.Background()
	done := e.request("job-done", false)
	done.Spec.Env = map[string]string{emulate.EnvExitCode: "0", emulate.EnvRunSeconds: "0.05"}
	mDone, err := e.p.Provision(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	running := e.request("job-run", false)
	running.Spec.Env = map[string]string{emulate.EnvExitCode: "3", emulate.EnvRunSeconds: "1"}
	mRun, err := e.p.Provision(ctx, running)
	if err != nil {
		t.Fatal(err)
	}
	e.toRunning()
	if s := e.state(t, mRun.ID); s != gpuflow.MachineRunning {
		t.Fatalf("before the restart: %s", s)
	}
	if code := e.agent.waitExit(t); code != 0 {
		t.Fatalf("first finished report: %d, want job-done's 0", code)
	}
	for deadline := time.Now().Add(10 * time.Second); !e.emu.JobAcked(mDone.ID); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the emulator never recorded the acknowledgement")
		}
	}

	e.restart(nil)

	for _, id := range []string{mDone.ID, mRun.ID} {
		if s := e.state(t, id); s != gpuflow.MachineRunning {
			t.Errorf("%s after the restart: %s", id, s)
		}
	}
	again, err := e.p.Provision(ctx, running)
	if err != nil || again.ID != mRun.ID {
		t.Errorf("the same key after the restart: %+v, %v; want %s", again, err, mRun.ID)
	}
	if code := e.agent.waitExit(t); code != 3 {
		t.Errorf("finished after the restart: %d, want job-run's 3 (job-done reported again?)", code)
	}
	select {
	case code := <-e.agent.finished:
		t.Errorf("another finished report: %d", code)
	default:
	}
	rep := e.emu.LiveReport()
	if len(rep.Machines) != 2 {
		t.Errorf("live machines after the restart: %+v", rep.Machines)
	}
	for _, m := range rep.Machines {
		if m.JobID == "" || m.Key != alibaba.ClientToken(m.JobID+"-a1") || rep.Creates[m.Key] != 1 {
			t.Errorf("machine %+v: its job, its ClientToken, created once; creates %v", m, rep.Creates)
		}
	}
	for _, id := range []string{mDone.ID, mRun.ID} {
		if err := e.p.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmulatorRestartEndsOverdueJob: a job whose end passed while the
// emulator was down ends when it is back and reports its exit code then.
func TestEmulatorRestartEndsOverdueJob(t *testing.T) {
	e := newEnv(t, withState(filepath.Join(t.TempDir(), "alibaba.json")))
	ctx := context.Background()
	req := e.request("job-late", false)
	req.Spec.Env = map[string]string{emulate.EnvExitCode: "7", emulate.EnvRunSeconds: "600"}
	m, err := e.p.Provision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.toRunning()
	if s := e.state(t, m.ID); s != gpuflow.MachineRunning {
		t.Fatalf("before the restart: %s", s)
	}
	// Down for longer than the job runs (on the emulator's clock).
	e.restart(func() { e.clock.Advance(11 * time.Minute) })
	if code := e.agent.waitExit(t); code != 7 {
		t.Errorf("finished %d, want 7", code)
	}
	if s := e.state(t, m.ID); s != gpuflow.MachineRunning {
		t.Errorf("after the restart: %s", s)
	}
	if err := e.p.Terminate(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
}
