package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/workflows"
)

// timingOutTemporal is a Temporal whose workflow starts time out: each
// start fails with DeadlineExceeded, having started the workflow when
// startsAnyway is set (the request reached the server, its answer was
// lost). Describe finds a started workflow; otherwise it answers
// describeErr, NotFound when that is nil.
type timingOutTemporal struct {
	mu           sync.Mutex
	startsAnyway bool
	describeErr  error
	recovered    bool              // Temporal is back: starts succeed (AlreadyStarted for a started one)
	describeDown bool              // every look-up answers describeErr, even of a started workflow
	started      map[string]string // workflow id -> run id
	starts       []string          // workflow ids asked to start
	describes    []string          // workflow ids looked up
}

func newTimingOutTemporal(b *bundle, startsAnyway bool, describeErr error) *timingOutTemporal {
	f := &timingOutTemporal{startsAnyway: startsAnyway, describeErr: describeErr, started: map[string]string{}}
	b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).
		Return(func(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.starts = append(f.starts, o.ID)
			if f.recovered {
				if runID, ok := f.started[o.ID]; ok {
					return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("workflow execution already started", "", runID)
				}
				f.started[o.ID] = "run-of-" + o.ID
				run := &mocks.WorkflowRun{}
				run.On("GetRunID").Return("run-of-" + o.ID).Maybe()
				run.On("GetID").Return(o.ID).Maybe()
				return run, nil
			}
			if f.startsAnyway {
				f.started[o.ID] = "run-of-" + o.ID
			}
			return nil, serviceerror.NewDeadlineExceeded("context deadline exceeded")
		})
	b.temporal.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, "").
		Return(func(_ context.Context, wfID, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.describes = append(f.describes, wfID)
			if runID, ok := f.started[wfID]; ok && !f.describeDown {
				return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
					Execution: &commonpb.WorkflowExecution{WorkflowId: wfID, RunId: runID}}}, nil
			}
			if f.describeErr != nil {
				return nil, f.describeErr
			}
			return nil, serviceerror.NewNotFound("workflow execution not found")
		})
	return f
}

// pgBundle is a test server whose job store is a real, migrated PostgreSQL
// database; the database's URL is returned too.
func pgBundle(t *testing.T) (*bundle, *postgres.DB, string) {
	t.Helper()
	url := pgtest.NewDB(t)
	db, err := postgres.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := setup(t)
	// The requests are alice's: her account owns the jobs.
	alice, err := b.users.User(t.Context(), aliceID)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	b.srv.cfg.Jobs = db
	return b, db, url
}

func countRows(t *testing.T, db *postgres.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSubmitStartTimesOut: a workflow start that fails with a timeout is
// settled by looking the workflow up, so that the answer is never "nothing
// was submitted" while the job runs.
func TestSubmitStartTimesOut(t *testing.T) {
	t.Parallel()
	const body = `{"command":["x"],"gpu_type":"RTX4090"}`

	t.Run("StartedAnyway", func(t *testing.T) {
		t.Parallel()
		b, db, _ := pgBundle(t)
		ft := newTimingOutTemporal(b, true, nil)
		rec := b.submit(t, body)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status %d, want 202 (the workflow started): %s", rec.Code, rec.Body)
		}
		a := decode[submitResponse](t, rec)
		if len(ft.starts) != 1 || a.WorkflowID != ft.starts[0] || a.RunID != "run-of-"+a.WorkflowID {
			t.Errorf("answer %+v; starts %v", a, ft.starts)
		}
		job, err := db.Job(t.Context(), a.TaskID)
		if err != nil {
			t.Fatalf("job row: %v", err)
		}
		if job.Status != gpuflow.StatusQueued || job.RunID != a.RunID || job.WorkflowID != a.WorkflowID {
			t.Errorf("stored job %+v", job)
		}
		if n := countRows(t, db, `SELECT count(*) FROM agent_reports`); n != 0 {
			t.Errorf("%d reports recorded for a submission that stands", n)
		}
	})

	t.Run("NotStarted", func(t *testing.T) {
		t.Parallel()
		b, db, _ := pgBundle(t)
		ft := newTimingOutTemporal(b, false, nil)
		rec := b.submit(t, body)
		e := wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
		if !strings.Contains(e.Error.Message, "temporal") || !strings.Contains(e.Error.Message, "nothing was submitted") {
			t.Errorf("message %q", e.Error.Message)
		}
		if len(ft.describes) != 1 || ft.describes[0] != ft.starts[0] {
			t.Errorf("looked up %v after starting %v: the API must check before saying nothing was submitted",
				ft.describes, ft.starts)
		}
		if n := countRows(t, db, `SELECT count(*) FROM jobs`); n != 0 {
			t.Errorf("%d job rows stored for a submission that did not start", n)
		}
		// A withdraw all the same: a start still in flight may land later.
		if n := countRows(t, db, `SELECT count(*) FROM agent_reports WHERE kind = 'withdraw'`); n != 1 {
			t.Errorf("%d withdraws recorded, want 1 against a late start", n)
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		t.Parallel()
		b, db, _ := pgBundle(t)
		ft := newTimingOutTemporal(b, false, serviceerror.NewUnavailable("connection refused"))
		rec := b.submit(t, body)
		e := wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
		if !strings.Contains(e.Error.Message, "temporal") || !strings.Contains(e.Error.Message, "withdrawn") {
			t.Errorf("message %q", e.Error.Message)
		}
		jobID := strings.TrimPrefix(ft.starts[0], "job-")
		var kind, msg string
		err := db.Pool.QueryRow(t.Context(), `SELECT kind, message FROM agent_reports WHERE job_id = $1`, jobID).Scan(&kind, &msg)
		if err != nil || kind != string(gpuflow.ReportWithdraw) || msg != WithdrawReason {
			t.Fatalf("withdraw of job %s: kind %q message %q err %v", jobID, kind, msg, err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM jobs`); n != 0 {
			t.Errorf("the API recorded a job row for a withdrawn submission")
		}
	})

	t.Run("UnknownAndStoreDown", func(t *testing.T) {
		t.Parallel()
		b, _, url := pgBundle(t)
		down, err := postgres.Open(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		down.Close()
		b.srv.cfg.Jobs = down
		newTimingOutTemporal(b, false, errors.New("connection refused"))
		rec := b.submit(t, body)
		e := wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
		if !strings.Contains(e.Error.Message, "temporal") || !strings.Contains(e.Error.Message, "postgresql") {
			t.Errorf("message %q does not name both", e.Error.Message)
		}
	})

	// A client retrying with the same Idempotency-Key after a 503 gets a
	// job that runs: the earlier try's withdraw is taken back first, so it
	// cannot cancel the job the retry answers 202 for.
	for _, landed := range []bool{false, true} {
		name := map[bool]string{false: "RetryAfterWithdraw", true: "RetryAfterWithdrawFirstStartLanded"}[landed]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, db, _ := pgBundle(t)
			ft := newTimingOutTemporal(b, landed, serviceerror.NewUnavailable("connection refused"))
			// The first start's answer is lost (having started it when
			// landed) and the look-up fails: unknown, so withdrawn.
			ft.describeDown = true
			first := b.submitKeyed(t, body, "retry-1")
			wantError(t, first, http.StatusServiceUnavailable, "unavailable")
			if n := countRows(t, db, `SELECT count(*) FROM agent_reports WHERE kind = 'withdraw'`); n != 1 {
				t.Fatalf("%d withdraws after the first try", n)
			}
			ft.mu.Lock()
			ft.recovered, ft.describeDown = true, false
			ft.mu.Unlock()
			again := b.submitKeyed(t, body, "retry-1")
			switch {
			case landed:
				// The first start stands (AlreadyStarted); its workflow
				// records the job, which this fake Temporal runs none of,
				// so the retry is told to come back (409 in progress).
				if again.Code != http.StatusConflict || !strings.Contains(again.Body.String(), "in_progress") {
					t.Fatalf("retry: %d %s", again.Code, again.Body)
				}
			case again.Code != http.StatusAccepted:
				t.Fatalf("retry: %d %s", again.Code, again.Body)
			}
			if len(ft.started) != 1 {
				t.Errorf("started %v: want the one workflow", ft.started)
			}
			if n := countRows(t, db, `SELECT count(*) FROM agent_reports WHERE kind = 'withdraw'`); n != 0 {
				t.Errorf("the withdraw is still there after the retry's 202: it would cancel the job")
			}
		})
	}

	t.Run("RetryAfterWithdrawDelivered", func(t *testing.T) {
		t.Parallel()
		b, db, _ := pgBundle(t)
		ft := newTimingOutTemporal(b, false, serviceerror.NewUnavailable("connection refused"))
		wantError(t, b.submitKeyed(t, body, "retry-2"), http.StatusServiceUnavailable, "unavailable")
		// The relay delivered its cancel to a workflow that had started.
		if _, err := db.Pool.Exec(t.Context(), `UPDATE agent_reports SET delivered_at = now() WHERE kind = 'withdraw'`); err != nil {
			t.Fatal(err)
		}
		ft.mu.Lock()
		ft.recovered = true
		ft.mu.Unlock()
		n := len(ft.starts)
		e := wantError(t, b.submitKeyed(t, body, "retry-2"), http.StatusConflict, "conflict")
		if !strings.Contains(e.Error.Message, "withdrawn") || !strings.Contains(e.Error.Message, "new Idempotency-Key") {
			t.Errorf("message %q", e.Error.Message)
		}
		if len(ft.starts) != n {
			t.Errorf("the retry started a workflow after its earlier try was withdrawn")
		}
	})
}
