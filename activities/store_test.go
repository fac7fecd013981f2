package activities

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgStore is a fresh, migrated PostgreSQL database for one test, and the
// means to cut it off (an outage: its sessions ended, new ones refused).
type pgStore struct {
	*postgres.DB
	admin, name string
}

func newPGStore(t *testing.T) *pgStore {
	t.Helper()
	u := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	parsed, _ := url.Parse(u)
	s := &pgStore{DB: db, admin: pgtest.URL(t), name: strings.TrimPrefix(parsed.Path, "/")}
	t.Cleanup(func() { s.up(t) }) // so that the database can be dropped
	return s
}

func (s *pgStore) exec(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// down cuts the database off: its sessions end and new ones are refused.
func (s *pgStore) down(t *testing.T) {
	t.Helper()
	id := pgx.Identifier{s.name}.Sanitize()
	s.exec(t, "ALTER DATABASE "+id+" ALLOW_CONNECTIONS false")
	s.exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+s.name+"' AND pid <> pg_backend_pid()")
	s.Pool.Reset() // no pooled session outlives the outage
}

// up ends the outage.
func (s *pgStore) up(t *testing.T) {
	t.Helper()
	s.exec(t, "ALTER DATABASE "+pgx.Identifier{s.name}.Sanitize()+" ALLOW_CONNECTIONS true")
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (s *pgStore) job(t *testing.T) string {
	t.Helper()
	id := uuid()
	j := &gpuflow.Job{ID: id, Status: gpuflow.StatusQueued, WorkflowID: "job-" + id,
		Spec: gpuflow.JobSpec{Command: []string{"true"}, Strategy: gpuflow.StrategyBalanced}}
	if err := s.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return id
}

// A store that is down fails a write with an error the workflow retries
// until the store is back; a write the store refuses for good fails with
// ErrTypeInvalidRecord, which the workflow does not retry.
func TestStoreWritesRetriedOnlyWhileTheStoreIsDown(t *testing.T) {
	t.Parallel()
	s := newPGStore(t)
	acts := &Activities{Jobs: s.DB}
	e := env(t, acts)
	id := s.job(t)
	u := &RecordUpdateInput{Update: gpuflow.JobUpdate{JobID: id, Seq: 1, Type: gpuflow.EventStatus, Status: gpuflow.StatusScheduling, At: time.Now()}}

	s.down(t)
	_, err := e.ExecuteActivity(acts.RecordUpdate, u)
	var ae *temporal.ApplicationError
	if err == nil || (errors.As(err, &ae) && ae.NonRetryable()) {
		t.Fatalf("write while the store is down: %v; want a retryable error", err)
	}
	s.up(t)
	if _, err := e.ExecuteActivity(acts.RecordUpdate, u); err != nil {
		t.Fatalf("write once the store is back: %v", err)
	}
	if j, _ := s.Job(context.Background(), id); j.Status != gpuflow.StatusScheduling {
		t.Fatalf("job %+v", j)
	}

	for name, in := range map[string]*RecordUpdateInput{
		"unknown job": {Update: gpuflow.JobUpdate{JobID: uuid(), Seq: 1, Type: gpuflow.EventStatus}},
		"bad status":  {Update: gpuflow.JobUpdate{JobID: id, Seq: 2, Type: gpuflow.EventStatus, Status: "bogus"}},
	} {
		_, err := e.ExecuteActivity(acts.RecordUpdate, in)
		if !errors.As(err, &ae) || ae.Type() != ErrTypeInvalidRecord || !ae.NonRetryable() {
			t.Errorf("%s: %v; want non-retryable %s", name, err, ErrTypeInvalidRecord)
		}
	}
}

// A local job's output reaches the store even when the store was down as
// the teardown began and came back before it ended: the teardown ships the
// output once the machine is gone, and fails (to be retried) until the
// store has taken it.
func TestTerminateMachineShipsOutputAcrossAnOutage(t *testing.T) {
	t.Parallel()
	s := newPGStore(t)
	id := s.job(t)
	ctx := context.Background()
	if err := s.AppendLog(ctx, id, 0, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddWatch(ctx, gpuflow.Watch{JobID: id, WorkflowID: "job-" + id, Provider: "fake", MachineID: "m1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkWatch(ctx, id, "m1", gpuflow.MachineExited, 6); err != nil {
		t.Fatal(err)
	}
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{"m1": {ID: "m1", State: gpuflow.MachineExited}},
		out: []byte("hello\nworld\n")}
	// The outage ends while the machine is being removed.
	p.onTerminate = func() { s.up(t) }
	acts := &Activities{Jobs: s.DB, Providers: gpuflow.Providers{p}, Watches: s.DB}
	e := env(t, acts)
	s.down(t)
	in := &TerminateInput{Provider: "fake", JobID: id, MachineID: "m1"}
	var err error
	for range 3 { // the workflow retries a teardown until it succeeds
		if _, err = e.ExecuteActivity(acts.TerminateMachine, in); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("teardown: %v", err)
	}
	got, err := s.Logs(ctx, id, 0, 0)
	if err != nil || string(got) != "hello\nworld\n" {
		t.Fatalf("stored output %q (%v), want %q", got, err, "hello\nworld\n")
	}
}

// A machine created while the store is down is returned all the same
// (marked unwatched, for the job's safety check to record its watch once
// the store is back): failing instead would leave the machine without a
// job that knows it, and fail a job that has its machine.
func TestProvisionDuringAnOutageReturnsTheMachine(t *testing.T) {
	t.Parallel()
	s := newPGStore(t)
	id := s.job(t)
	p := &fakeProvider{machines: map[string]*gpuflow.Machine{}, provisioned: map[string]*gpuflow.Machine{}}
	acts := &Activities{Jobs: s.DB, Providers: gpuflow.Providers{p}, Watches: s.DB}
	e := env(t, acts)
	s.down(t)
	v, err := e.ExecuteActivity(acts.Provision, &ProvisionInput{Provider: "fake", WorkflowID: "job-" + id,
		Request: gpuflow.ProvisionRequest{JobID: id, IdempotencyKey: id + "-a1"}})
	if err != nil {
		t.Fatalf("provision while the store is down: %v", err)
	}
	var res ProvisionResult
	if err := v.Get(&res); err != nil || res.Machine.ID == "" || !res.Unwatched {
		t.Fatalf("result %+v (%v), want the machine, unwatched", res, err)
	}
	s.up(t)
	// The safety check records the watch.
	if _, err := e.ExecuteActivity(acts.CheckMachine, &CheckMachineInput{Provider: "fake", JobID: id, WorkflowID: "job-" + id, MachineID: res.Machine.ID}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.GetWatch(context.Background(), id); err != nil || w == nil || w.MachineID != res.Machine.ID {
		t.Fatalf("watch %+v (%v)", w, err)
	}
}
