package postgres

import (
	"testing"

	"github.com/gpuflow/gpuflow"
)

// A job's status "running" marks its watched machine as known to run, so
// the watcher's first sight of it running signals nobody; a watch already
// told of another state, or of another machine, is left alone.
func TestRunningStatusMarksTheWatch(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	j := mustCreate(t, db, newJob(func(*gpuflow.Job) {}))
	if err := db.AddWatch(ctx, gpuflow.Watch{JobID: j.ID, WorkflowID: "job-" + j.ID, Provider: "runpod", MachineID: "m1"}); err != nil {
		t.Fatal(err)
	}
	state := func() gpuflow.MachineState {
		t.Helper()
		w, err := db.GetWatch(ctx, j.ID)
		if err != nil || w == nil {
			t.Fatalf("GetWatch: %v %v", w, err)
		}
		return w.State
	}
	apply := func(seq int, u gpuflow.JobUpdate) {
		t.Helper()
		u.JobID, u.Seq, u.Type = j.ID, seq, gpuflow.EventStatus
		if _, err := db.ApplyUpdate(ctx, u); err != nil {
			t.Fatalf("ApplyUpdate %d: %v", seq, err)
		}
	}
	apply(1, gpuflow.JobUpdate{Status: gpuflow.StatusProvisioning, MachineID: ptr("m1")})
	if s := state(); s != "" {
		t.Fatalf("provisioning marked the watch %q", s)
	}
	apply(2, gpuflow.JobUpdate{Status: gpuflow.StatusRunning})
	if s := state(); s != gpuflow.MachineRunning {
		t.Fatalf("after running: watch state %q, want running", s)
	}

	// A new machine (a restart): its watch starts unknown, and a running
	// status recorded before the job names it leaves it so.
	if err := db.AddWatch(ctx, gpuflow.Watch{JobID: j.ID, WorkflowID: "job-" + j.ID, Provider: "runpod", MachineID: "m2"}); err != nil {
		t.Fatal(err)
	}
	apply(3, gpuflow.JobUpdate{Status: gpuflow.StatusRunning})
	if s := state(); s != "" {
		t.Fatalf("running for machine m1 marked m2's watch %q", s)
	}
	if err := db.MarkWatch(ctx, j.ID, "m2", gpuflow.MachineExited, 0); err != nil {
		t.Fatal(err)
	}
	apply(4, gpuflow.JobUpdate{Status: gpuflow.StatusRunning, MachineID: ptr("m2")})
	if s := state(); s != gpuflow.MachineExited {
		t.Fatalf("running overwrote the watch's exited: %q", s)
	}
}
