package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/relay"
	"github.com/gpuflow/gpuflow/workflows"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// signal is one SignalWorkflow call the fake saw.
type signal struct {
	WorkflowID, Name string
	Payload          any
}

// reportID is the ReportID of the signal's payload.
func (s signal) reportID() int64 {
	switch p := s.Payload.(type) {
	case workflows.FinishedSignal:
		return p.ReportID
	case workflows.ProgressSignal:
		return p.ReportID
	}
	return -1
}

// fakeSignaler records signals; fail, when set, decides each call's error
// (the call is recorded as sent only when it returns nil).
type fakeSignaler struct {
	mu    sync.Mutex
	sent  []signal
	calls int
	fail  func(signal) error
	// notify, when set, receives every signal sent.
	notify chan signal
}

func (f *fakeSignaler) SignalWorkflow(_ context.Context, workflowID, runID, name string, arg any) error {
	s := signal{WorkflowID: workflowID, Name: name, Payload: arg}
	f.mu.Lock()
	f.calls++
	fail := f.fail
	f.mu.Unlock()
	if runID != "" {
		return fmt.Errorf("the relay signals the current run, not %q", runID)
	}
	if fail != nil {
		if err := fail(s); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.sent = append(f.sent, s)
	f.mu.Unlock()
	if f.notify != nil {
		f.notify <- s
	}
	return nil
}

func (f *fakeSignaler) setFail(fn func(signal) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// take returns the signals sent since the last take, and how many calls
// were made (sent or failed).
func (f *fakeSignaler) take() ([]signal, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, n := f.sent, f.calls
	f.sent, f.calls = nil, 0
	return s, n
}

// clock is a settable clock for the relay.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newDB(t *testing.T) (*postgres.DB, string) {
	t.Helper()
	url := pgtest.NewDB(t)
	db := openDB(t, url)
	if err := db.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return db, url
}

func openDB(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(testCtx(t), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// newJob records a running job and returns its id.
func newJob(t *testing.T, db *postgres.DB) string {
	t.Helper()
	id := uuid.NewString()
	err := db.CreateJob(testCtx(t), &gpuflow.Job{ID: id, Status: gpuflow.StatusRunning, WorkflowID: workflows.JobWorkflowID(id),
		Spec: gpuflow.JobSpec{Command: []string{"true"}}, CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func record(t *testing.T, db *postgres.DB, r gpuflow.AgentReport) gpuflow.AgentReport {
	t.Helper()
	kept, _, err := db.RecordReport(testCtx(t), r)
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

func progressAt(job string, pct float64, at time.Time) gpuflow.AgentReport {
	return gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportProgress, Percent: pct, Message: "working", ReceivedAt: at}
}

func finishedAt(job string, code int, at time.Time) gpuflow.AgentReport {
	return gpuflow.AgentReport{JobID: job, Kind: gpuflow.ReportFinished, ExitCode: code, ReceivedAt: at}
}

// pass runs one pass at time now and returns when the next report is due.
func pass(t *testing.T, r *relay.Relay, c *clock, now time.Time) time.Time {
	t.Helper()
	c.Set(now)
	next, err := r.Pass(testCtx(t))
	if err != nil {
		t.Fatalf("pass at %v: %v", now, err)
	}
	return next
}

// undelivered counts the reports not yet delivered.
func undelivered(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(testCtx(t), `SELECT count(*) FROM agent_reports WHERE delivered_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRelayDeliversAndRateLimitsProgress(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	sig := &fakeSignaler{}
	c := &clock{t: t0}
	r := relay.New(db, sig, relay.Options{Now: c.Now, ProgressInterval: 5 * time.Second})
	job := newJob(t, db)

	p := record(t, db, progressAt(job, 10, t0))
	f := record(t, db, finishedAt(job, 3, t0))
	if next := pass(t, r, c, t0); !next.IsZero() {
		t.Fatalf("next due after delivering everything: %v", next)
	}
	sent, _ := sig.take()
	want := map[string]signal{
		workflows.SignalFinished: {workflows.JobWorkflowID(job), workflows.SignalFinished, workflows.FinishedSignal{ExitCode: 3, ReportID: f.ID}},
		workflows.SignalProgress: {workflows.JobWorkflowID(job), workflows.SignalProgress, workflows.ProgressSignal{Percent: 10, Message: "working", ReportID: p.ID}},
	}
	if len(sent) != 2 || sent[0] != want[sent[0].Name] || sent[1] != want[sent[1].Name] || sent[0].Name == sent[1].Name {
		t.Fatalf("sent %+v, want %+v", sent, want)
	}
	if n := undelivered(t, db); n != 0 {
		t.Fatalf("%d undelivered", n)
	}

	// 2,000 progress reports over 20 s of the job's life, a pass after
	// each (as if every one woke the relay): one signal per interval, the
	// latest each time.
	other := newJob(t, db)
	var signals []signal
	var last gpuflow.AgentReport
	for i := range 2000 {
		now := t0.Add(time.Second + time.Duration(i)*10*time.Millisecond)
		last = record(t, db, progressAt(other, float64(i)/20, now))
		pass(t, r, c, now)
		s, _ := sig.take()
		signals = append(signals, s...)
	}
	// What is left goes when its time comes.
	for next := pass(t, r, c, t0.Add(21*time.Second)); !next.IsZero(); next = pass(t, r, c, next) {
		s, _ := sig.take()
		signals = append(signals, s...)
	}
	s, _ := sig.take()
	signals = append(signals, s...)
	if len(signals) < 4 || len(signals) > 6 {
		t.Fatalf("%d progress signals for 2,000 reports over 20 s, want one per 5 s", len(signals))
	}
	var prev int64
	for _, s := range signals {
		if s.Name != workflows.SignalProgress || s.WorkflowID != workflows.JobWorkflowID(other) || s.reportID() <= prev {
			t.Fatalf("signals out of order or for the wrong job: %+v", signals)
		}
		prev = s.reportID()
	}
	if got := signals[len(signals)-1].Payload.(workflows.ProgressSignal); got.ReportID != last.ID || got.Percent != last.Percent {
		t.Fatalf("last signal %+v, want the last report %+v", got, last)
	}
	if st := r.Stats(); st.Delivered != int64(2+len(signals)) || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRelayTemporalUnreachable(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	sig := &fakeSignaler{}
	c := &clock{t: t0}
	r := relay.New(db, sig, relay.Options{Now: c.Now, Parallel: 1, MinBackoff: time.Second, MaxBackoff: 8 * time.Second})
	var reports []gpuflow.AgentReport
	for range 5 {
		reports = append(reports, record(t, db, finishedAt(newJob(t, db), 0, t0)))
	}
	sig.setFail(func(signal) error { return serviceerror.NewUnavailable("connection refused") })

	// The first signal finds Temporal away: the batch is put back unsent.
	next := pass(t, r, c, t0)
	if sent, calls := sig.take(); len(sent) != 0 || calls != 1 {
		t.Fatalf("while unreachable: %d sent in %d calls, want one try", len(sent), calls)
	}
	if next.Before(t0.Add(800*time.Millisecond)) || next.After(t0.Add(time.Second)) {
		t.Fatalf("next try at %v, want after the first backoff", next)
	}
	if n := undelivered(t, db); n != 5 {
		t.Fatalf("%d undelivered, want all 5 kept", n)
	}
	// Nothing is tried before then; each failure doubles the wait.
	pass(t, r, c, next.Add(-time.Millisecond))
	if _, calls := sig.take(); calls != 0 {
		t.Fatalf("%d calls before the retry was due", calls)
	}
	next2 := pass(t, r, c, next)
	if _, calls := sig.take(); calls != 1 || next2.Sub(next) < 1600*time.Millisecond {
		t.Fatalf("second try: %d calls, next after %v", calls, next2.Sub(next))
	}

	// Temporal is back: everything is delivered, with the report ids it
	// was recorded with.
	sig.setFail(nil)
	if next := pass(t, r, c, next2); !next.IsZero() {
		t.Fatalf("next due after delivery: %v", next)
	}
	sent, _ := sig.take()
	got := map[int64]bool{}
	for _, s := range sent {
		got[s.reportID()] = true
	}
	for _, rep := range reports {
		if !got[rep.ID] {
			t.Fatalf("report %d not delivered (sent %+v)", rep.ID, sent)
		}
	}
	if len(sent) != len(reports) || undelivered(t, db) != 0 {
		t.Fatalf("sent %d, undelivered %d", len(sent), undelivered(t, db))
	}
}

func TestRelayDropsReportsOfClosedWorkflows(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	sig := &fakeSignaler{}
	c := &clock{t: t0}
	r := relay.New(db, sig, relay.Options{Now: c.Now})
	gone, live := newJob(t, db), newJob(t, db)
	record(t, db, finishedAt(gone, 0, t0))
	record(t, db, progressAt(gone, 50, t0))
	fl := record(t, db, finishedAt(live, 1, t0))
	sig.setFail(func(s signal) error {
		if s.WorkflowID == workflows.JobWorkflowID(gone) {
			return serviceerror.NewNotFound("workflow execution already completed")
		}
		return nil
	})
	if next := pass(t, r, c, t0); !next.IsZero() {
		t.Fatalf("a dropped report is due again at %v", next)
	}
	sent, calls := sig.take()
	if len(sent) != 1 || sent[0].reportID() != fl.ID || calls != 3 {
		t.Fatalf("sent %+v in %d calls", sent, calls)
	}
	var notes []string
	rows, err := db.Pool.Query(testCtx(t), `SELECT note FROM agent_reports WHERE job_id = $1 AND delivered_at IS NOT NULL`, gone)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		notes = append(notes, n)
	}
	if len(notes) != 2 || notes[0] == "" || notes[1] == "" {
		t.Fatalf("notes of the dropped reports: %q", notes)
	}
	if st := r.Stats(); st.Dropped != 2 || st.Delivered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// crashingStore fails CompleteReports, as a relay that died after its
// signals and before marking them.
type crashingStore struct{ gpuflow.ReportOutbox }

func (crashingStore) CompleteReports(context.Context, string, time.Time, time.Duration, []gpuflow.ReportOutcome) error {
	return errors.New("the relay died")
}

func TestRelayRedeliversAfterACrashBetweenSignalAndMark(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	sig := &fakeSignaler{}
	c := &clock{t: t0}
	lease := time.Minute
	dying := relay.New(crashingStore{db}, sig, relay.Options{Now: c.Now, Lease: lease})
	other := relay.New(db, sig, relay.Options{Now: c.Now, Lease: lease})
	job := newJob(t, db)
	f := record(t, db, finishedAt(job, 7, t0))
	p := record(t, db, progressAt(job, 80, t0))

	c.Set(t0)
	if _, err := dying.Pass(testCtx(t)); err == nil {
		t.Fatal("the dying relay's pass succeeded")
	}
	first, _ := sig.take()
	if len(first) != 2 {
		t.Fatalf("the dying relay sent %+v", first)
	}
	// Its lease holds: nobody sends them again meanwhile.
	pass(t, other, c, t0.Add(lease-time.Second))
	if s, _ := sig.take(); len(s) != 0 {
		t.Fatalf("sent again during the lease: %+v", s)
	}
	// After it, the other relay sends them again, with the same ids.
	if next := pass(t, other, c, t0.Add(lease)); !next.IsZero() {
		t.Fatalf("next due %v", next)
	}
	again, _ := sig.take()
	ids := map[string]int64{}
	for _, s := range again {
		ids[s.Name] = s.reportID()
	}
	if len(again) != 2 || ids[workflows.SignalFinished] != f.ID || ids[workflows.SignalProgress] != p.ID {
		t.Fatalf("redelivered %+v, want report ids %d and %d", again, f.ID, p.ID)
	}
	if undelivered(t, db) != 0 {
		t.Fatal("reports left undelivered")
	}
}

// Two relays running on their own connections, woken by NOTIFY (the
// recheck is an hour): each report is signalled once.
func TestRelaysRunConcurrently(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	db2 := openDB(t, url)
	sig := &fakeSignaler{notify: make(chan signal, 1000)}
	ctx, stop := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	for _, store := range []*postgres.DB{db, db2} {
		r := relay.New(store, sig, relay.Options{Recheck: time.Hour, Batch: 5, Parallel: 4, Listen: store.ListenReports})
		wg.Go(func() { _ = r.Run(ctx) })
	}
	defer func() { stop(); wg.Wait() }()

	const n = 200
	want := map[int64]bool{}
	for i := range n {
		job := newJob(t, db)
		want[record(t, db, finishedAt(job, i%256, time.Now())).ID] = true
	}
	got := map[int64]int{}
	deadline := time.After(time.Minute)
	for len(got) < n {
		select {
		case s := <-sig.notify:
			got[s.reportID()]++
		case <-deadline:
			t.Fatalf("%d of %d reports delivered", len(got), n)
		}
	}
	for id, k := range got {
		if k != 1 || !want[id] {
			t.Fatalf("report %d signalled %d times (recorded: %v)", id, k, want[id])
		}
	}
	// Wait for both relays to mark what they sent, then check nothing
	// went twice meanwhile.
	for undelivered(t, db) > 0 {
		select {
		case s := <-sig.notify:
			t.Fatalf("report %d sent twice", s.reportID())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRelayDeliversWithdrawals: the API's withdrawal of a submission it
// could not confirm is delivered as the workflow's cancel signal, kept
// while Temporal is away, and dropped when the workflow never started.
func TestRelayDeliversWithdrawals(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	sig := &fakeSignaler{}
	c := &clock{t: t0}
	r := relay.New(db, sig, relay.Options{Now: c.Now, Parallel: 1, MinBackoff: time.Second, MaxBackoff: time.Second})
	const reason = "submission withdrawn: the API could not confirm it started"
	// No job rows: the API records none for a withdrawn submission.
	started, never := uuid.NewString(), uuid.NewString()
	for _, j := range []string{started, never} {
		record(t, db, gpuflow.AgentReport{JobID: j, Kind: gpuflow.ReportWithdraw, Message: reason, ReceivedAt: t0})
	}

	sig.setFail(func(signal) error { return serviceerror.NewUnavailable("connection refused") })
	next := pass(t, r, c, t0)
	if sent, _ := sig.take(); len(sent) != 0 || undelivered(t, db) != 2 || next.IsZero() {
		t.Fatalf("while temporal is away: sent %+v, %d undelivered, next %v", sent, undelivered(t, db), next)
	}

	sig.setFail(func(s signal) error {
		if s.WorkflowID == workflows.JobWorkflowID(never) {
			return serviceerror.NewNotFound("workflow execution not found")
		}
		return nil
	})
	next = pass(t, r, c, next)
	sent, calls := sig.take()
	want := signal{WorkflowID: workflows.JobWorkflowID(started), Name: workflows.SignalCancel,
		Payload: workflows.CancelSignal{Reason: reason, RequestedBy: relay.WithdrawRequestedBy}}
	if calls != 2 || len(sent) != 1 || sent[0] != want {
		t.Fatalf("sent %+v in %d calls, want %+v", sent, calls, want)
	}
	// The unknown workflow's start may still land: its withdrawal is kept
	// and tried again until relay.WithdrawWindow has passed, then dropped.
	if undelivered(t, db) != 1 || next.IsZero() {
		t.Fatalf("a withdrawal whose workflow is not known yet was dropped at once (%d undelivered, next %v)", undelivered(t, db), next)
	}
	if next := pass(t, r, c, t0.Add(relay.WithdrawWindow+time.Second)); !next.IsZero() {
		t.Fatalf("due again at %v after the window", next)
	}
	if sent, calls := sig.take(); calls != 1 || len(sent) != 0 {
		t.Fatalf("after the window: sent %+v in %d calls", sent, calls)
	}
	var note string
	if err := db.Pool.QueryRow(testCtx(t), `SELECT note FROM agent_reports WHERE job_id = $1 AND delivered_at IS NOT NULL`,
		never).Scan(&note); err != nil || note == "" {
		t.Fatalf("the withdrawal of a workflow that never started is not dropped with a note: %q %v", note, err)
	}
	if st := r.Stats(); st.Delivered != 1 || st.Dropped != 1 || undelivered(t, db) != 0 {
		t.Fatalf("stats %+v, %d undelivered", st, undelivered(t, db))
	}
}
