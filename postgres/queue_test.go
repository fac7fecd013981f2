package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
)

func queueEntry(j *gpuflow.Job, prio int) gpuflow.QueueEntry {
	return gpuflow.QueueEntry{JobID: j.ID, OwnerID: j.OwnerID, WorkflowID: j.WorkflowID, Priority: prio,
		SubmittedAt: j.CreatedAt, Spec: j.Spec}
}

func TestQueue(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	owner := newID()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var jobs []*gpuflow.Job
	for i := range 3 {
		jobs = append(jobs, mustCreate(t, db, newJob(func(j *gpuflow.Job) {
			j.OwnerID = owner
			j.CreatedAt = t0.Add(time.Duration(i) * time.Second)
		})))
	}
	// A running job of the owner, out of the queue, counts towards usage.
	mustCreate(t, db, newJob(func(j *gpuflow.Job) {
		j.OwnerID, j.Status, j.PricePerHour = owner, gpuflow.StatusRunning, 1.5
	}))

	woken := make(chan struct{}, 16)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = db.ListenQueue(lctx, func() { woken <- struct{}{} }) }()
	select {
	case <-woken: // subscribed
	case <-time.After(10 * time.Second):
		t.Fatal("queue listener did not subscribe")
	}

	// Another process's listener: every dispatcher hears of a job that
	// waits (another worker may be the only one able to serve it); this
	// process's own listener does not (its Admit passes anyway).
	other, err := pgx.Connect(ctx, db.Pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.WithoutCancel(ctx))
	if _, err := other.Exec(ctx, "LISTEN "+QueueChannel); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if _, err := db.Enqueue(ctx, queueEntry(j, []int{1, 9, 9}[i])); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := other.WaitForNotification(wctx)
		cancel()
		if err != nil || n.Channel != QueueChannel {
			t.Fatalf("Enqueue woke no other listener: %v %+v", err, n)
		}
	}
	select {
	case <-woken:
		t.Fatal("this process's enqueue woke its own listener")
	case <-time.After(300 * time.Millisecond):
	}
	// Re-enqueueing keeps the place and updates the blocked offers.
	e := queueEntry(jobs[0], 7)
	e.Blocked = map[string]gpuflow.Block{"local/CPU/local": {Reason: "no capacity", At: t0}}
	got, err := db.Enqueue(ctx, e)
	if err != nil || got.Priority != 1 || got.Blocked["local/CPU/local"].Reason != "no capacity" || got.Admitted {
		t.Fatalf("re-enqueue: %+v %v", got, err)
	}
	for id, want := range map[string]int{jobs[1].ID: 1, jobs[2].ID: 2, jobs[0].ID: 3} {
		if pos, _, err := db.QueuePosition(ctx, id); err != nil || pos != want {
			t.Fatalf("position of %s: %d %v, want %d", id, pos, err, want)
		}
	}

	// A pass sees the entries in order and the usage; admits one, records a reason.
	err = db.QueuePass(ctx, func(st gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error) {
		if len(st.Entries) != 3 || st.Entries[0].JobID != jobs[1].ID || st.Entries[2].JobID != jobs[0].ID ||
			st.Entries[0].JobStatus != gpuflow.StatusQueued {
			t.Errorf("entries %+v", st.Entries)
		}
		if u := st.Usage[owner]; u.Running != 1 || u.SpendPerHour != 1.5 {
			t.Errorf("usage %+v", st.Usage)
		}
		return []gpuflow.Admission{{JobID: jobs[1].ID, Decision: []byte(`{"offer":{"provider":"local"}}`), OfferKey: "local/CPU/local/0", Units: 1, PricePerHour: 0.5}},
			map[string]string{jobs[2].ID: "waiting for capacity"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pos, reason, _ := db.QueuePosition(ctx, jobs[2].ID); pos != 1 || reason != "waiting for capacity" {
		t.Fatalf("after the pass: %d %q", pos, reason)
	}
	if got, _ := db.Enqueue(ctx, queueEntry(jobs[1], 9)); !got.Admitted || string(got.Decision) != `{"offer": {"provider": "local"}}` || got.OfferKey != "local/CPU/local/0" {
		t.Fatalf("admitted entry: %+v (%s)", got, got.Decision)
	}
	// The admitted entry's price counts; admissions of admitted entries change nothing.
	err = db.QueuePass(ctx, func(st gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error) {
		if u := st.Usage[owner]; u.Running != 2 || u.SpendPerHour != 2 {
			t.Errorf("usage %+v", st.Usage)
		}
		return nil, nil, errors.New("nothing to do")
	})
	if err == nil || err.Error() != "nothing to do" {
		t.Fatalf("pass error %v", err)
	}

	for len(woken) > 0 {
		<-woken
	}
	if err := db.Dequeue(ctx, jobs[1].ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("Dequeue woke no listener")
	}
	if pos, _, _ := db.QueuePosition(ctx, jobs[1].ID); pos != 0 {
		t.Fatalf("dequeued job at %d", pos)
	}
	if err := db.Dequeue(ctx, jobs[1].ID); err != nil {
		t.Fatalf("second dequeue: %v", err)
	}
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i, oc := range []string{"started", "no_capacity", "failed"} {
		if err := db.RecordOutcome(ctx, gpuflow.ProvisionOutcome{Provider: "tencent", OfferKey: "tencent/A10/ap-guangzhou",
			Outcome: oc, Duration: time.Duration(i+1) * time.Second, At: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "bad outcome", db.RecordOutcome(ctx, gpuflow.ProvisionOutcome{Provider: "x", Outcome: "exploded"}), gpuflow.EINVALID)
	outs, err := db.Outcomes(ctx, 0, t0.Add(30*time.Second), 10)
	if err != nil || len(outs) != 2 || outs[0].Outcome != "no_capacity" || outs[0].Duration != 2*time.Second || outs[1].ID <= outs[0].ID {
		t.Fatalf("outcomes %+v %v", outs, err)
	}
	if more, _ := db.Outcomes(ctx, outs[1].ID, t0, 10); len(more) != 0 {
		t.Fatalf("after the last: %+v", more)
	}
}

// An outcome written again by a retried activity (its first write had
// committed) is recorded once; outcomes without a key are all recorded.
func TestOutcomeRecordedOncePerKey(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	o := gpuflow.ProvisionOutcome{Provider: "runpod", OfferKey: "runpod/A100/US", Outcome: "started", Duration: time.Second, At: t0,
		Key: "job-1/a1/started"}
	for range 3 {
		if err := db.RecordOutcome(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	other := o
	other.Key, other.Outcome = "job-1/a2/started", "started"
	if err := db.RecordOutcome(ctx, other); err != nil {
		t.Fatal(err)
	}
	keyless := o
	keyless.Key = ""
	for range 2 {
		if err := db.RecordOutcome(ctx, keyless); err != nil {
			t.Fatal(err)
		}
	}
	outs, err := db.Outcomes(ctx, 0, t0, 100)
	if err != nil || len(outs) != 4 {
		t.Fatalf("%d outcomes recorded (%v), want 4: one per key, and both without", len(outs), err)
	}
}

func TestQueueForgetsEndedJobs(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	ended := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.Status = gpuflow.StatusCancelled }))
	if _, err := db.Enqueue(ctx, queueEntry(ended, 5)); gpuflow.ErrorCode(err) != gpuflow.ECONFLICT {
		t.Fatalf("enqueue of an ended job: %v", err)
	}
	// An entry left over by a job that ended since is removed by the next pass.
	left := mustCreate(t, db, newJob())
	if _, err := db.Enqueue(ctx, queueEntry(left, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE jobs SET status = 'failed' WHERE id = $1`, left.ID); err != nil {
		t.Fatal(err)
	}
	err := db.QueuePass(ctx, func(st gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error) {
		if len(st.Entries) != 0 {
			t.Errorf("entries of ended jobs: %+v", st.Entries)
		}
		return nil, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM job_queue`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d entries left (%v)", n, err)
	}
}
