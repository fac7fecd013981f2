package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testCtx is a context that ends with the test, or after a minute.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newDB opens a fresh, migrated database for the test.
func newDB(t *testing.T) (*DB, string) {
	t.Helper()
	url := pgtest.NewDB(t)
	db := openDB(t, url)
	if err := db.Migrate(testCtx(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db, url
}

// openDB opens another pool on url, closed with the test.
func openDB(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(testCtx(t), url, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newJob returns a valid queued job; edit customises it.
func newJob(edit ...func(*gpuflow.Job)) *gpuflow.Job {
	id := newID()
	j := &gpuflow.Job{
		ID:         id,
		Status:     gpuflow.StatusQueued,
		Spec:       gpuflow.JobSpec{Name: "train", Command: []string{"python", "train.py"}, GPUType: "A100", GPUCount: 1, Strategy: gpuflow.StrategyCost},
		WorkflowID: "job-" + id,
	}
	for _, e := range edit {
		e(j)
	}
	return j
}

func mustCreate(t *testing.T, db *DB, j *gpuflow.Job) *gpuflow.Job {
	t.Helper()
	if j.OwnerID != "" {
		ensureUser(t, db, j.OwnerID) // jobs.owner_id references users
	}
	if err := db.CreateJob(testCtx(t), j); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	return j
}

func mustJob(t *testing.T, db *DB, id string) *gpuflow.Job {
	t.Helper()
	j, err := db.Job(testCtx(t), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := gpuflow.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func ptr[T any](v T) *T { return &v }
