package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/workflows"
)

// fakeTemporal starts each workflow id once, as Temporal does with
// WorkflowIDConflictPolicy FAIL and WorkflowExecutionErrorWhenAlreadyStarted:
// later starts of the id get WorkflowExecutionAlreadyStarted. With
// barrier > 0 every start waits until barrier starts have arrived, so that
// concurrent duplicates really race.
type fakeTemporal struct {
	mu      sync.Mutex
	started map[string]string // workflow id -> run id
	opts    []client.StartWorkflowOptions
	calls   int
	barrier int
	all     chan struct{}
}

func newFakeTemporal(t *testing.T, m *mocks.Client, barrier int) *fakeTemporal {
	t.Helper()
	f := &fakeTemporal{started: map[string]string{}, barrier: barrier, all: make(chan struct{})}
	m.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).
		Return(func(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
			f.mu.Lock()
			f.calls++
			if f.calls == f.barrier {
				close(f.all)
			}
			f.mu.Unlock()
			if f.barrier > 0 {
				select {
				case <-f.all:
				case <-time.After(10 * time.Second):
					t.Error("not every duplicate reached the workflow start")
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.opts = append(f.opts, o)
			if runID, ok := f.started[o.ID]; ok {
				return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("workflow execution already started", "", runID)
			}
			runID := "run-" + uuid.NewString()
			f.started[o.ID] = runID
			run := &mocks.WorkflowRun{}
			run.On("GetRunID").Return(runID).Maybe()
			run.On("GetID").Return(o.ID).Maybe()
			return run, nil
		})
	return f
}

func (f *fakeTemporal) startedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started)
}

const idemBody = `{"name":"train","command":["python","train.py"],"gpu_type":"RTX4090","memory_gb":16}`

func (b *bundle) submitKeyed(t *testing.T, body, key string, as ...header) *httptest.ResponseRecorder {
	t.Helper()
	hs := append([]header{jsonCT, {HeaderIdempotencyKey, key}}, as...)
	return b.do(t, http.MethodPost, "/api/gpu/jobs/submit", body, hs...)
}

func TestSubmitIdempotent(t *testing.T) {
	t.Parallel()

	t.Run("Replay", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ft := newFakeTemporal(t, b.temporal, 0)
		first := b.submitKeyed(t, idemBody, "retry-1")
		if first.Code != http.StatusAccepted {
			t.Fatalf("first: %d %s", first.Code, first.Body)
		}
		if first.Header().Get(HeaderIdempotentReplayed) != "" {
			t.Error("first answer marked as replayed")
		}
		a := decode[submitResponse](t, first)
		if a.TaskID != idempotentJobID(aliceID, "retry-1") {
			t.Errorf("task_id %s is not derived from the key", a.TaskID)
		}
		if u := uuid.MustParse(a.TaskID); u.Version() != 5 {
			t.Errorf("task_id version %d, want 5", u.Version())
		}
		if o := ft.opts[0]; o.ID != "job-"+a.TaskID || o.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
			o.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL || !o.WorkflowExecutionErrorWhenAlreadyStarted {
			t.Errorf("start options %+v", o)
		}

		// A retry answers with the first job and starts nothing: Temporal
		// is not even asked.
		b.store.setStatus(a.TaskID, gpuflow.StatusRunning)
		again := b.submitKeyed(t, idemBody, "retry-1")
		if again.Code != http.StatusAccepted || again.Header().Get(HeaderIdempotentReplayed) != "true" {
			t.Fatalf("retry: %d %v %s", again.Code, again.Header(), again.Body)
		}
		r := decode[submitResponse](t, again)
		if r.TaskID != a.TaskID || r.WorkflowID != a.WorkflowID || r.RunID != a.RunID || r.Provider != a.Provider ||
			r.RoutingKey != a.RoutingKey || r.Queue != a.Queue || !r.CreatedAt.Equal(a.CreatedAt) ||
			r.SchedulingInfo.GPUSpec != a.SchedulingInfo.GPUSpec || r.SchedulingInfo.Strategy != a.SchedulingInfo.Strategy {
			t.Errorf("replay %+v\nfirst  %+v", r, a)
		}
		if r.Status != string(gpuflow.StatusRunning) {
			t.Errorf("replay status %q, want the job's current one", r.Status)
		}
		if len(ft.opts) != 1 || b.store.count() != 1 {
			t.Errorf("%d starts, %d jobs; want 1 and 1", len(ft.opts), b.store.count())
		}

		// The same body spelled differently (defaults explicit) is the same submission.
		same := b.submitKeyed(t, `{"gpu_count":1,"strategy":"balanced","gpu_type":"RTX4090","name":"train","memory_gb":16,"command":["python","train.py"]}`, "retry-1")
		if same.Code != http.StatusAccepted || decode[submitResponse](t, same).TaskID != a.TaskID {
			t.Errorf("equivalent body: %d %s", same.Code, same.Body)
		}

		// Another body with the key: 409, nothing started.
		reused := b.submitKeyed(t, strings.Replace(idemBody, "train.py", "eval.py", 1), "retry-1")
		e := wantError(t, reused, http.StatusConflict, codeIdempotencyKeyReused)
		if e.Error.Details["task_id"] != a.TaskID {
			t.Errorf("details %v", e.Error.Details)
		}

		// Another key, and the same key of another user, are new jobs.
		other := b.submitKeyed(t, idemBody, "retry-2")
		bobs := b.submitKeyed(t, idemBody, "retry-1", b.as(bobID))
		ids := map[string]bool{a.TaskID: true}
		for _, rec := range []*httptest.ResponseRecorder{other, bobs} {
			if rec.Code != http.StatusAccepted || rec.Header().Get(HeaderIdempotentReplayed) != "" {
				t.Fatalf("new submission: %d %s", rec.Code, rec.Body)
			}
			ids[decode[submitResponse](t, rec).TaskID] = true
		}
		if len(ids) != 3 || ft.startedCount() != 3 || b.store.count() != 3 {
			t.Errorf("ids %v, %d started, %d stored; want 3 of each", ids, ft.startedCount(), b.store.count())
		}
		if j, _ := b.store.Job(t.Context(), idempotentJobID(bobID, "retry-1")); j == nil || j.OwnerID != bobID {
			t.Errorf("bob's job %+v", j)
		}
	})

	t.Run("KeyLength", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		newFakeTemporal(t, b.temporal, 0)
		rec := b.submitKeyed(t, idemBody, strings.Repeat("k", MaxIdempotencyKeyLen+1))
		e := wantError(t, rec, http.StatusBadRequest, "validation_failed")
		fieldError(t, e, "idempotency_key")
		if b.store.count() != 0 {
			t.Error("a job was stored")
		}
		if rec := b.submitKeyed(t, idemBody, strings.Repeat("k", MaxIdempotencyKeyLen)); rec.Code != http.StatusAccepted {
			t.Errorf("key of %d: %d %s", MaxIdempotencyKeyLen, rec.Code, rec.Body)
		}
	})

	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const n = 8
		ft := newFakeTemporal(t, b.temporal, n) // every request reaches the start
		recs := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { recs[i] = b.submitKeyed(t, idemBody, "race") })
		}
		wg.Wait()
		want := idempotentJobID(aliceID, "race")
		var runID string
		replayed := 0
		for i, rec := range recs {
			if rec.Code != http.StatusAccepted {
				t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
			}
			r := decode[submitResponse](t, rec)
			if r.TaskID != want || r.WorkflowID != "job-"+want {
				t.Errorf("request %d: task %s workflow %s, want %s", i, r.TaskID, r.WorkflowID, want)
			}
			if runID == "" {
				runID = r.RunID
			}
			if r.RunID != runID || runID == "" {
				t.Errorf("request %d: run id %q, others %q", i, r.RunID, runID)
			}
			if rec.Header().Get(HeaderIdempotentReplayed) == "true" {
				replayed++
			}
		}
		if ft.calls != n || ft.startedCount() != 1 || b.store.count() != 1 || replayed != n-1 {
			t.Errorf("%d start calls, %d started, %d jobs, %d replayed; want %d, 1, 1, %d",
				ft.calls, ft.startedCount(), b.store.count(), replayed, n, n-1)
		}
	})

	t.Run("StartedElsewhereNotRecorded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.srv.idemWait = 50 * time.Millisecond
		b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).
			Return(nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-x"))
		wantError(t, b.submitKeyed(t, idemBody, "k"), http.StatusConflict, codeIdempotencyKeyInProgress)
	})

	t.Run("StoreRecordsKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		newFakeTemporal(t, b.temporal, 0)
		ks := &keyStore{fakeStore: b.store, keys: map[string]string{}}
		cfg := b.srv.cfg
		cfg.Jobs = ks
		b.srv = New(cfg)
		rec := b.submitKeyed(t, idemBody, "stored")
		if rec.Code != http.StatusAccepted {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		id := decode[submitResponse](t, rec).TaskID
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.keys[id] != "stored" {
			t.Errorf("keys %v", ks.keys)
		}
	})
}

// keyStore is a fakeStore that records idempotency keys.
type keyStore struct {
	*fakeStore
	keys map[string]string // job id -> key
}

func (s *keyStore) CreateJobWithIdempotencyKey(ctx context.Context, j *gpuflow.Job, key string) error {
	if err := s.CreateJob(ctx, j); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[j.ID] = key
	return nil
}
