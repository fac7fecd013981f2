package postgres

import (
	"encoding/json"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func TestCreateJob(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)

	t.Run("OK", func(t *testing.T) {
		started := time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
		price := 2.5
		j := newJob(func(j *gpuflow.Job) {
			j.OwnerID = newID()
			j.Status = gpuflow.StatusRunning
			j.Spec.Env = map[string]string{"A": "1"}
			j.Spec.MaxPricePerHour = &price
			j.Provider = "runpod"
			j.MachineID = "pod-1"
			j.PricePerHour = 1.25
			j.ExitCode = ptr(0)
			j.Error = "oops"
			j.Attempts = []gpuflow.Attempt{{Provider: "runpod", GPUType: "A100", StartedAt: started}}
			j.RunID = "run-1"
			j.CreatedAt = started.Add(-time.Minute)
			j.StartedAt = &started
		})
		mustCreate(t, db, j)
		if j.UpdatedAt != j.CreatedAt || j.CreatedAt.Nanosecond()%1000 != 0 {
			t.Errorf("CreateJob did not settle times: created %v updated %v", j.CreatedAt, j.UpdatedAt)
		}
		got := mustJob(t, db, j.ID)
		want := *j
		if !j.StartedAt.Equal(started.Round(time.Microsecond)) {
			t.Errorf("StartedAt not rounded as stored: %v", j.StartedAt)
		}
		if !reflect.DeepEqual(got, &want) {
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			t.Errorf("Job() =\n%s\nwant\n%s", gb, wb)
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		db := *db
		db.Now = func() time.Time { return now }
		j := newJob(func(j *gpuflow.Job) { j.Status = "" })
		mustCreate(t, &db, j)
		got := mustJob(t, &db, j.ID)
		if got.Status != gpuflow.StatusQueued || !got.CreatedAt.Equal(now) || !got.UpdatedAt.Equal(now) ||
			got.Attempts == nil || len(got.Attempts) != 0 || got.OwnerID != "" || got.ExitCode != nil {
			t.Errorf("defaults not applied: %+v", got)
		}
	})

	t.Run("ExistingIDIsNoop", func(t *testing.T) {
		j := mustCreate(t, db, newJob())
		again := *j
		again.Spec.Name = "other"
		again.Status = gpuflow.StatusFailed
		if err := db.CreateJob(ctx, &again); err != nil {
			t.Fatalf("second CreateJob: %v", err)
		}
		if got := mustJob(t, db, j.ID); got.Spec.Name != "train" || got.Status != gpuflow.StatusQueued {
			t.Errorf("second CreateJob changed the job: %+v", got)
		}
	})

	t.Run("ErrWorkflowIDTaken", func(t *testing.T) {
		j := mustCreate(t, db, newJob())
		other := newJob(func(o *gpuflow.Job) { o.WorkflowID = j.WorkflowID })
		wantCode(t, "duplicate workflow id", db.CreateJob(ctx, other), gpuflow.ECONFLICT)
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		for name, edit := range map[string]func(*gpuflow.Job){
			"id":       func(j *gpuflow.Job) { j.ID = "nope" },
			"owner":    func(j *gpuflow.Job) { j.OwnerID = "nope" },
			"status":   func(j *gpuflow.Job) { j.Status = "paused" },
			"workflow": func(j *gpuflow.Job) { j.WorkflowID = "" },
			"price":    func(j *gpuflow.Job) { j.PricePerHour = -1 },
		} {
			wantCode(t, name, db.CreateJob(ctx, newJob(edit)), gpuflow.EINVALID)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []string{newID(), "not-a-uuid", "", "'; DROP TABLE jobs; --"} {
			_, err := db.Job(ctx, id)
			wantCode(t, "Job("+id+")", err, gpuflow.ENOTFOUND)
		}
	})
}

// ids returns the ids of jobs.
func ids(jobs []*gpuflow.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestJobsPaginationStableUnderInserts(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	initial := map[string]bool{}
	for i := range 40 {
		// Pairs share a created_at, so ties are broken by id.
		j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.CreatedAt = base.Add(time.Duration(i/2) * time.Second) }))
		initial[j.ID] = true
	}

	// Keep creating jobs while paging.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	inserted := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.CreateJob(ctx, newJob()); err != nil {
				t.Errorf("concurrent CreateJob: %v", err)
				return
			}
			inserted++
		}
	}()

	seen := map[string]int{}
	var all []*gpuflow.Job
	cursor, pages := "", 0
	for {
		page, next, err := db.Jobs(ctx, gpuflow.JobFilter{Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatalf("Jobs page %d: %v", pages, err)
		}
		if len(page) > 7 {
			t.Fatalf("page of %d jobs, limit 7", len(page))
		}
		for _, j := range page {
			seen[j.ID]++
		}
		all = append(all, page...)
		pages++
		if next == "" {
			break
		}
		cursor = next
		// New jobs between pages, besides the concurrent ones; one shares the
		// cursor's created_at, and sorts before or after it by id.
		mustCreate(t, db, newJob())
		mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.CreatedAt = page[len(page)-1].CreatedAt }))
	}
	close(stop)
	wg.Wait()

	if inserted == 0 {
		t.Log("the concurrent inserter never got in")
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("job %s seen %d times", id, n)
		}
	}
	for id := range initial {
		if seen[id] != 1 {
			t.Errorf("job %s that existed at the start seen %d times", id, seen[id])
		}
	}
	if !slices.IsSortedFunc(all, func(a, b *gpuflow.Job) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(b.ID, a.ID)
	}) {
		t.Errorf("jobs not newest first: %v", ids(all))
	}
	t.Logf("%d pages, %d jobs created meanwhile", pages, inserted)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestJobsFilters(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	alice, bob := newID(), newID()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var n int
	create := func(owner string, status gpuflow.JobStatus, provider string) string {
		n++
		return mustCreate(t, db, newJob(func(j *gpuflow.Job) {
			j.OwnerID, j.Status, j.Provider = owner, status, provider
			j.CreatedAt = base.Add(time.Duration(n) * time.Second)
		})).ID
	}
	a1 := create(alice, gpuflow.StatusRunning, "runpod")
	a2 := create(alice, gpuflow.StatusQueued, "")
	a3 := create(alice, gpuflow.StatusRunning, "local")
	b1 := create(bob, gpuflow.StatusRunning, "runpod")
	n1 := create("", gpuflow.StatusFailed, "local")

	for _, tc := range []struct {
		name string
		f    gpuflow.JobFilter
		want []string
	}{
		{"All", gpuflow.JobFilter{}, []string{n1, b1, a3, a2, a1}},
		{"Owner", gpuflow.JobFilter{OwnerID: alice}, []string{a3, a2, a1}},
		{"Status", gpuflow.JobFilter{Status: gpuflow.StatusRunning}, []string{b1, a3, a1}},
		{"Provider", gpuflow.JobFilter{Provider: "runpod"}, []string{b1, a1}},
		{"Combined", gpuflow.JobFilter{OwnerID: alice, Status: gpuflow.StatusRunning, Provider: "local"}, []string{a3}},
		{"None", gpuflow.JobFilter{OwnerID: newID()}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := db.Jobs(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tc.want) || next != "" {
				t.Errorf("Jobs = %v next %q, want %v", ids(got), next, tc.want)
			}
		})
	}

	t.Run("PagesKeepFilter", func(t *testing.T) {
		f := gpuflow.JobFilter{OwnerID: alice, Limit: 2}
		p1, next, err := db.Jobs(ctx, f)
		if err != nil || !slices.Equal(ids(p1), []string{a3, a2}) || next == "" {
			t.Fatalf("page 1 = %v %q %v", ids(p1), next, err)
		}
		f.Cursor = next
		p2, next, err := db.Jobs(ctx, f)
		if err != nil || !slices.Equal(ids(p2), []string{a1}) || next != "" {
			t.Fatalf("page 2 = %v %q %v", ids(p2), next, err)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		for name, f := range map[string]gpuflow.JobFilter{
			"cursor not base64": {Cursor: "!!!"},
			"cursor garbage":    {Cursor: "Zm9vYmFy"},
			"cursor bad id":     {Cursor: encodeCursor(base, "nope")},
			"status":            {Status: "paused"},
			"owner":             {OwnerID: "bob"},
		} {
			_, _, err := db.Jobs(ctx, f)
			wantCode(t, name, err, gpuflow.EINVALID)
		}
	})
}

func TestJobsLimit(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	// 205 jobs in one statement: the limits are what is under test.
	_, err := db.Pool.Exec(ctx, `INSERT INTO jobs (id, status, spec, workflow_id, created_at, updated_at)
		SELECT gen_random_uuid(), 'queued', '{}', 'wf-' || i, now(), now() FROM generate_series(1, 205) i`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{{0, DefaultJobsLimit}, {-3, DefaultJobsLimit}, {10, 10}, {1000, MaxJobsLimit}} {
		got, next, err := db.Jobs(ctx, gpuflow.JobFilter{Limit: tc.limit})
		if err != nil || len(got) != tc.want || next == "" {
			t.Errorf("Limit %d: %d jobs, next %q, err %v; want %d", tc.limit, len(got), next, err, tc.want)
		}
	}
}

func TestCountJobsByStatus(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	mustCreate(t, db, newJob())
	mustCreate(t, db, newJob())
	counts, err := db.CountJobsByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[gpuflow.StatusQueued] != 2 || counts[gpuflow.StatusRunning] != 0 {
		t.Fatalf("counts %v", counts)
	}
}
