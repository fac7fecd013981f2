package postgres

import (
	"testing"

	"github.com/gpuflow/gpuflow"
)

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	alice, bob := newID(), newID()
	ensureUser(t, db, alice)
	ensureUser(t, db, bob)

	// The API records the job with its key.
	j := newJob(func(j *gpuflow.Job) { j.OwnerID = alice })
	if err := db.CreateJobWithIdempotencyKey(ctx, j, "key-1"); err != nil {
		t.Fatal(err)
	}
	got, err := db.JobByIdempotencyKey(ctx, alice, "key-1")
	if err != nil || got.ID != j.ID {
		t.Fatalf("JobByIdempotencyKey = %v, %v; want job %s", got, err, j.ID)
	}
	// Another user's key, an unknown key and a malformed owner are not found.
	for _, c := range [][2]string{{bob, "key-1"}, {alice, "key-2"}, {"nope", "key-1"}, {alice, ""}} {
		_, err := db.JobByIdempotencyKey(ctx, c[0], c[1])
		wantCode(t, "JobByIdempotencyKey("+c[0]+", "+c[1]+")", err, gpuflow.ENOTFOUND)
	}
	// Recording it again is a no-op.
	if err := db.CreateJobWithIdempotencyKey(ctx, j, "key-1"); err != nil {
		t.Fatalf("again: %v", err)
	}
	// The same key on another job of the owner is a conflict; of another
	// owner it is fine.
	other := newJob(func(j *gpuflow.Job) { j.OwnerID = alice })
	wantCode(t, "duplicate key", db.CreateJobWithIdempotencyKey(ctx, other, "key-1"), gpuflow.ECONFLICT)
	bobs := newJob(func(j *gpuflow.Job) { j.OwnerID = bob })
	if err := db.CreateJobWithIdempotencyKey(ctx, bobs, "key-1"); err != nil {
		t.Fatalf("bob's key: %v", err)
	}
	wantCode(t, "empty key", db.CreateJobWithIdempotencyKey(ctx, newJob(), ""), gpuflow.EINVALID)

	// The workflow recorded the job first (without a key): the API's
	// insert adds the key to it.
	first := newJob(func(j *gpuflow.Job) { j.OwnerID = alice })
	mustCreate(t, db, first)
	if err := db.CreateJobWithIdempotencyKey(ctx, first, "key-3"); err != nil {
		t.Fatal(err)
	}
	if got, err := db.JobByIdempotencyKey(ctx, alice, "key-3"); err != nil || got.ID != first.ID {
		t.Fatalf("key added to the existing job: %v, %v", got, err)
	}
	// A job that has a key keeps it.
	if err := db.CreateJobWithIdempotencyKey(ctx, first, "key-4"); err != nil {
		t.Fatal(err)
	}
	_, err = db.JobByIdempotencyKey(ctx, alice, "key-4")
	wantCode(t, "second key", err, gpuflow.ENOTFOUND)
}
