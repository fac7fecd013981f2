package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func progress(job string, pct float64, at time.Time) gpuflow.AgentReport {
	return gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportProgress, Percent: pct, Message: fmt.Sprintf("at %g", pct), ReceivedAt: at}
}

func finished(job string, code int, at time.Time) gpuflow.AgentReport {
	return gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportFinished, ExitCode: code, ReceivedAt: at}
}

func mustRecord(t *testing.T, db *DB, r gpuflow.AgentReport) (gpuflow.AgentReport, bool) {
	t.Helper()
	kept, created, err := db.RecordReport(testCtx(t), r)
	if err != nil {
		t.Fatalf("RecordReport(%+v): %v", r, err)
	}
	return kept, created
}

// reportRow is a row of agent_reports, as stored.
type reportRow struct {
	id                int64
	kind              string
	percent           *float64
	exitCode          *int
	notBefore         time.Time
	claim, note, lerr *string
	attempts          int
	delivered         *time.Time
}

func reportRows(t *testing.T, db *DB, job string) []reportRow {
	t.Helper()
	rows, err := db.Pool.Query(testCtx(t), `SELECT id, kind, percent, exit_code, not_before, claim, note, last_error, attempts, delivered_at
		FROM agent_reports WHERE job_id = $1 ORDER BY kind, id`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []reportRow
	for rows.Next() {
		var r reportRow
		if err := rows.Scan(&r.id, &r.kind, &r.percent, &r.exitCode, &r.notBefore, &r.claim, &r.note, &r.lerr, &r.attempts, &r.delivered); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordReportCoalescesProgress(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	j := mustCreate(t, db, newJob())
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

	// Many reports in a row, and from several writers at once: one row,
	// the latest, with an id newer than every one before.
	var last int64
	for i := range 200 {
		kept, created := mustRecord(t, db, progress(j.ID, float64(i)/2, t0.Add(time.Duration(i)*time.Millisecond)))
		if !created || kept.ID <= last {
			t.Fatalf("report %d: id %d (previous %d), created %v", i, kept.ID, last, created)
		}
		last = kept.ID
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if _, _, err := db.RecordReport(testCtx(t), progress(j.ID, float64(w*10+i%10), t0.Add(time.Second))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	kept, _ := mustRecord(t, db, progress(j.ID, 99.5, t0.Add(2*time.Second)))
	rows := reportRows(t, db, j.ID)
	if len(rows) != 1 || rows[0].kind != "progress" || *rows[0].percent != 99.5 || rows[0].id != kept.ID || kept.ID <= last ||
		rows[0].delivered != nil || !rows[0].notBefore.Equal(t0) {
		t.Fatalf("rows after 401 progress reports: %+v (kept %+v)", rows, kept)
	}
}

func TestRecordReportFinishedOnce(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.Status = gpuflow.StatusRunning }))
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

	first, created := mustRecord(t, db, finished(j.ID, 3, t0))
	if !created || first.ExitCode != 3 || first.ID == 0 {
		t.Fatalf("first finished: %+v %v", first, created)
	}
	for _, code := range []int{3, 0, -1} {
		kept, created := mustRecord(t, db, finished(j.ID, code, t0.Add(time.Second)))
		if created || kept.ID != first.ID || kept.ExitCode != 3 || !kept.ReceivedAt.Equal(t0) || kept.Kind != gpuflow.ReportFinished {
			t.Fatalf("finished %d again: %+v %v, want the first kept", code, kept, created)
		}
	}
	// Concurrent duplicates (an agent retrying while its first try is
	// still in flight) keep one.
	other := mustCreate(t, db, newJob())
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdN := 0
	for i := range 8 {
		wg.Go(func() {
			_, c, err := db.RecordReport(testCtx(t), finished(other.ID, i, t0))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if c {
				createdN++
			}
		})
	}
	wg.Wait()
	if rows := reportRows(t, db, other.ID); len(rows) != 1 || createdN != 1 {
		t.Fatalf("concurrent finished: %d created, rows %+v", createdN, rows)
	}
	if rows := reportRows(t, db, j.ID); len(rows) != 1 || *rows[0].exitCode != 3 {
		t.Fatalf("rows: %+v", rows)
	}
}

func TestRecordReportRefusals(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, st := range []gpuflow.JobStatus{gpuflow.StatusSucceeded, gpuflow.StatusFailed, gpuflow.StatusCancelled} {
		j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.Status = st }))
		for _, r := range []gpuflow.AgentReport{progress(j.ID, 10, t0), finished(j.ID, 0, t0)} {
			_, _, err := db.RecordReport(ctx, r)
			wantCode(t, string(st)+" job, "+string(r.Kind), err, gpuflow.ECONFLICT)
		}
		if rows := reportRows(t, db, j.ID); len(rows) != 0 {
			t.Errorf("%s job: recorded %+v", st, rows)
		}
	}
	j := mustCreate(t, db, newJob())
	for name, r := range map[string]gpuflow.AgentReport{
		"bad id":      progress("not-a-uuid", 1, t0),
		"percent":     progress(j.ID, 100.5, t0),
		"exit code":   finished(j.ID, 256, t0),
		"kind":        {JobID: j.ID, Kind: "logs", ReceivedAt: t0},
		"long string": {JobID: j.ID, Kind: gpuflow.ReportProgress, Message: string(make([]byte, 1001)), ReceivedAt: t0},
	} {
		_, _, err := db.RecordReport(ctx, r)
		wantCode(t, name, err, gpuflow.EINVALID)
	}
	if rows := reportRows(t, db, j.ID); len(rows) != 0 {
		t.Errorf("invalid reports recorded: %+v", rows)
	}
	// A job without a row (not expected) is recorded: the relay decides.
	ghost := newID()
	if _, created := mustRecord(t, db, finished(ghost, 0, t0)); !created {
		t.Fatal("report of a job without a row not recorded")
	}
}

func TestReportClaimAndComplete(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	a, b := mustCreate(t, db, newJob()), mustCreate(t, db, newJob())
	if _, ok, err := db.NextReportDue(ctx); err != nil || ok {
		t.Fatalf("next due with nothing recorded: %v %v", ok, err)
	}
	pa, _ := mustRecord(t, db, progress(a.ID, 10, t0))
	fa, _ := mustRecord(t, db, finished(a.ID, 0, t0.Add(time.Second)))
	pb, _ := mustRecord(t, db, progress(b.ID, 20, t0.Add(2*time.Second)))
	if at, ok, err := db.NextReportDue(ctx); err != nil || !ok || !at.Equal(t0) {
		t.Fatalf("next due: %v %v %v, want %v", at, ok, err, t0)
	}

	lease := time.Minute
	claim := func(token string, now time.Time, limit int) map[int64]gpuflow.AgentReport {
		t.Helper()
		got, err := db.ClaimReports(ctx, gpuflow.ReportClaim{Token: token, Now: now, Lease: lease, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		m := map[int64]gpuflow.AgentReport{}
		for _, r := range got {
			m[r.ID] = r
		}
		return m
	}
	// Due by t0+1s: a's progress and finished, not b's progress.
	got := claim("r1", t0.Add(time.Second), 10)
	if len(got) != 2 || got[pa.ID].Percent != 10 || got[pa.ID].Message != "at 10" || got[fa.ID].Kind != gpuflow.ReportFinished || got[fa.ID].JobID != a.ID {
		t.Fatalf("first claim: %+v", got)
	}
	// Leased: nobody else gets them, until the lease ends.
	now := t0.Add(3 * time.Second)
	if got := claim("r2", now, 10); len(got) != 1 || got[pb.ID].JobID != b.ID {
		t.Fatalf("second claim: %+v", got)
	}
	if got := claim("r3", t0.Add(time.Second+lease-time.Millisecond), 10); len(got) != 0 {
		t.Fatalf("claimed during the lease: %+v", got)
	}

	// a's progress is replaced while r1 delivers the old one.
	pa2, _ := mustRecord(t, db, progress(a.ID, 30, now))
	// r1 delivered the finished and the old progress.
	gap := 5 * time.Second
	if err := db.CompleteReports(ctx, "r1", now, gap, []gpuflow.ReportOutcome{
		{Report: fa, Done: true}, {Report: pa, Done: true},
	}); err != nil {
		t.Fatal(err)
	}
	rows := reportRows(t, db, a.ID)
	if len(rows) != 2 || rows[0].kind != "finished" || rows[0].delivered == nil || !rows[0].delivered.Equal(now) || rows[0].claim != nil {
		t.Fatalf("finished after completion: %+v", rows)
	}
	// The replaced progress is still to deliver, after the interval.
	p := rows[1]
	if p.id != pa2.ID || p.delivered != nil || p.claim != nil || !p.notBefore.Equal(now.Add(gap)) {
		t.Fatalf("replaced progress after completion: %+v", p)
	}
	if got := claim("r4", now.Add(gap-time.Millisecond), 10); len(got) != 0 {
		t.Fatalf("progress claimed within the interval: %+v", got)
	}
	got = claim("r4", now.Add(gap), 10)
	if len(got) != 1 || got[pa2.ID].Percent != 30 {
		t.Fatalf("claim after the interval: %+v", got)
	}

	// A failed delivery is retried from RetryAt.
	retry := now.Add(30 * time.Second)
	if err := db.CompleteReports(ctx, "r4", now.Add(gap), gap, []gpuflow.ReportOutcome{{Report: got[pa2.ID], RetryAt: retry, Error: "temporal unavailable"}}); err != nil {
		t.Fatal(err)
	}
	if rows := reportRows(t, db, a.ID); rows[1].attempts != 1 || *rows[1].lerr != "temporal unavailable" || !rows[1].notBefore.Equal(retry) || rows[1].claim != nil {
		t.Fatalf("after a failed delivery: %+v", rows[1])
	}
	if at, ok, _ := db.NextReportDue(ctx); !ok || !at.Equal(retry) {
		t.Fatalf("next due %v %v, want the retry at %v (b's is leased to r3 until %v)", at, ok, retry, t0.Add(3*time.Second+2*lease))
	}
	got = claim("r5", retry, 10)
	if r := got[pa2.ID]; r.Attempts != 1 {
		t.Fatalf("retried claim: %+v", got)
	}
	// Dropped with a note (the workflow has closed).
	if err := db.CompleteReports(ctx, "r5", retry, gap, []gpuflow.ReportOutcome{{Report: got[pa2.ID], Done: true, Note: "workflow not found"}}); err != nil {
		t.Fatal(err)
	}
	rows = reportRows(t, db, a.ID)
	if p := rows[1]; p.delivered == nil || *p.note != "workflow not found" || p.attempts != 0 || p.lerr != nil {
		t.Fatalf("dropped progress: %+v", p)
	}
	// r2's claim ended (it crashed) and r3 took b's progress over: r2's
	// completion changes nothing.
	if got := claim("r3", t0.Add(3*time.Second+lease), 10); len(got) != 1 || got[pb.ID].ID != pb.ID {
		t.Fatalf("claim after the lease: %+v", got)
	}
	if err := db.CompleteReports(ctx, "r2", now, gap, []gpuflow.ReportOutcome{{Report: pb, Done: true}}); err != nil {
		t.Fatal(err)
	}
	if rows := reportRows(t, db, b.ID); rows[0].delivered != nil || *rows[0].claim != "r3" {
		t.Fatalf("stale completion took effect: %+v", rows)
	}

	// A later progress of the job is due after the interval from the
	// last delivery; recording one announces nothing before then.
	pa3, _ := mustRecord(t, db, progress(a.ID, 40, retry.Add(time.Second)))
	if rows := reportRows(t, db, a.ID); rows[1].id != pa3.ID || rows[1].delivered != nil || !rows[1].notBefore.Equal(retry.Add(gap)) {
		t.Fatalf("progress after a delivery: %+v", rows[1])
	}

	// Pruning removes delivered rows only.
	if n, err := db.PruneReports(ctx, retry.Add(time.Second), 100); err != nil || n != 1 {
		t.Fatalf("prune: %d %v, want the delivered finished", n, err)
	}
	if rows := reportRows(t, db, a.ID); len(rows) != 1 || rows[0].id != pa3.ID {
		t.Fatalf("after pruning: %+v", rows)
	}
}

// Two relays (two pools, as two API replicas) claim and complete until
// nothing is due: every report is claimed once.
func TestReportClaimConcurrent(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	other := openDB(t, url)
	ctx := testCtx(t)
	now := time.Now()
	const jobs = 150
	want := map[int64]bool{}
	for i := range jobs {
		j := mustCreate(t, db, newJob())
		f, _ := mustRecord(t, db, finished(j.ID, i%256, now))
		p, _ := mustRecord(t, db, progress(j.ID, float64(i%100), now))
		want[f.ID], want[p.ID] = true, true
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w, store := range []*DB{db, other, db, other} {
		wg.Go(func() {
			for n := 0; ; n++ {
				token := fmt.Sprintf("relay%d-%d", w, n)
				got, err := store.ClaimReports(ctx, gpuflow.ReportClaim{Token: token, Now: now, Lease: time.Hour, Limit: 7})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				var outs []gpuflow.ReportOutcome
				mu.Lock()
				for _, r := range got {
					seen[r.ID]++
					outs = append(outs, gpuflow.ReportOutcome{Report: r, Done: true})
				}
				mu.Unlock()
				if err := store.CompleteReports(ctx, token, now, time.Second, outs); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != len(want) {
		t.Fatalf("%d reports claimed, want %d", len(seen), len(want))
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Fatalf("report %d claimed %d times (recorded: %v)", id, n, want[id])
		}
	}
	var pending int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM agent_reports WHERE delivered_at IS NULL`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d undelivered after the relays: %v", pending, err)
	}
}

func TestListenReports(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx, stop := context.WithCancel(testCtx(t))
	defer stop()
	woken := make(chan struct{}, 16)
	go func() { _ = db.ListenReports(ctx, func() { woken <- struct{}{} }) }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake-up: %s", what)
		}
	}
	wait("subscribed")
	j := mustCreate(t, db, newJob())
	mustRecord(t, db, finished(j.ID, 0, time.Now()))
	wait("finished recorded")
	mustRecord(t, db, progress(j.ID, 1, time.Now()))
	wait("progress recorded")
}

func TestRecordReportWithdrawOnce(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	// The job has no row: the API withdraws a submission it did not record.
	job := newJob().ID
	withdraw := func(reason string, at time.Time) gpuflow.AgentReport {
		return gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportWithdraw, Message: reason, ReceivedAt: at}
	}
	first, created := mustRecord(t, db, withdraw("not confirmed", t0))
	if !created || first.ID == 0 || first.Kind != gpuflow.ReportWithdraw || first.Message != "not confirmed" {
		t.Fatalf("first withdraw: %+v %v", first, created)
	}
	again, created := mustRecord(t, db, withdraw("again", t0.Add(time.Second)))
	if created || again.ID != first.ID || again.Message != "not confirmed" || again.Kind != gpuflow.ReportWithdraw {
		t.Fatalf("second withdraw: %+v %v, want the first kept", again, created)
	}
	// It lives beside the job's other reports, and is claimed first.
	mustRecord(t, db, finished(job, 0, t0))
	rows := reportRows(t, db, job)
	if len(rows) != 2 || rows[1].kind != "withdraw" || rows[1].percent != nil || rows[1].exitCode != nil {
		t.Fatalf("rows %+v", rows)
	}
	claimed, err := db.ClaimReports(testCtx(t), gpuflow.ReportClaim{Token: "c", Now: t0.Add(time.Minute), Lease: time.Minute, Limit: 10})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %+v, %v", claimed, err)
	}
	outcomes := []gpuflow.ReportOutcome{}
	for _, r := range claimed {
		outcomes = append(outcomes, gpuflow.ReportOutcome{Report: r, Done: true})
	}
	if err := db.CompleteReports(testCtx(t), "c", t0.Add(time.Minute), 0, outcomes); err != nil {
		t.Fatal(err)
	}
	for _, r := range reportRows(t, db, job) {
		if r.delivered == nil {
			t.Fatalf("%s not marked delivered: %+v", r.kind, r)
		}
	}
	if _, _, err := db.RecordReport(testCtx(t), withdraw(strings.Repeat("x", 1001), t0)); gpuflow.ErrorCode(err) != gpuflow.EINVALID {
		t.Fatalf("an over-long reason: %v", err)
	}
}

func TestRetractWithdraw(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	withdraw := func(job string) {
		t.Helper()
		mustRecord(t, db, gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportWithdraw, Message: "not confirmed", ReceivedAt: t0})
	}
	retract := func(job string, at time.Time, want gpuflow.WithdrawState) {
		t.Helper()
		got, err := db.RetractWithdraw(testCtx(t), job, at)
		if err != nil || got != want {
			t.Fatalf("retract %s at %v: %q %v, want %q", job, at, got, err, want)
		}
	}
	claim := func(token string, at time.Time) []gpuflow.AgentReport {
		t.Helper()
		claimed, err := db.ClaimReports(testCtx(t), gpuflow.ReportClaim{Token: token, Now: at, Lease: time.Minute, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		return claimed
	}

	// None, then an undelivered one: deleted, and a second retract finds none.
	job := newJob().ID
	retract(job, t0, gpuflow.WithdrawNone)
	withdraw(job)
	retract(job, t0, gpuflow.WithdrawRetracted)
	if rows := reportRows(t, db, job); len(rows) != 0 {
		t.Fatalf("rows after the retract: %+v", rows)
	}
	retract(job, t0, gpuflow.WithdrawNone)

	// Held by a relay: kept while the lease runs, taken once it lapses.
	held := newJob().ID
	withdraw(held)
	if c := claim("relay-1", t0); len(c) != 1 {
		t.Fatalf("claimed %+v", c)
	}
	retract(held, t0.Add(30*time.Second), gpuflow.WithdrawDelivering)
	if rows := reportRows(t, db, held); len(rows) != 1 {
		t.Fatalf("a held withdraw was deleted: %+v", rows)
	}
	retract(held, t0.Add(2*time.Minute), gpuflow.WithdrawRetracted)

	// Delivered: its cancel reached the workflow. Dropped because the
	// workflow was unknown: as good as none.
	delivered, unknown := newJob().ID, newJob().ID
	withdraw(delivered)
	withdraw(unknown)
	var outcomes []gpuflow.ReportOutcome
	for _, r := range claim("relay-2", t0.Add(3*time.Minute)) {
		o := gpuflow.ReportOutcome{Report: r, Done: true}
		if r.JobID == unknown {
			o.Note = gpuflow.NoteWorkflowNotFound + ": workflow execution not found"
		}
		outcomes = append(outcomes, o)
	}
	if len(outcomes) != 2 {
		t.Fatalf("claimed %+v", outcomes)
	}
	if err := db.CompleteReports(testCtx(t), "relay-2", t0.Add(3*time.Minute), 0, outcomes); err != nil {
		t.Fatal(err)
	}
	retract(delivered, t0.Add(4*time.Minute), gpuflow.WithdrawDelivered)
	retract(unknown, t0.Add(4*time.Minute), gpuflow.WithdrawNone)
}
