package postgres

import (
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func TestUpdateUser(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	u := newUser("flags@example.com")
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if u.CanRunLocal {
		t.Fatal("a new account may run local jobs")
	}

	t.Run("OK", func(t *testing.T) {
		got, err := db.UpdateUser(ctx, u.ID, gpuflow.UserUpdate{CanRunLocal: ptr(true), IsSuperuser: ptr(true)})
		if err != nil {
			t.Fatal(err)
		}
		if !got.CanRunLocal || !got.IsSuperuser || !got.IsActive || got.Email != u.Email {
			t.Errorf("UpdateUser = %+v", got)
		}
		// Fields left nil stay as they are.
		got, err = db.UpdateUser(ctx, u.ID, gpuflow.UserUpdate{IsActive: ptr(false)})
		if err != nil || got.IsActive || !got.CanRunLocal || !got.IsSuperuser {
			t.Errorf("UpdateUser(is_active) = %+v, %v", got, err)
		}
		if stored, _ := db.User(ctx, u.ID); *stored != *got {
			t.Errorf("stored %+v, answered %+v", stored, got)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.UpdateUser(ctx, newID(), gpuflow.UserUpdate{IsActive: ptr(true)})
		wantCode(t, "unknown id", err, gpuflow.ENOTFOUND)
		_, err = db.UpdateUser(ctx, "'; DROP TABLE users; --", gpuflow.UserUpdate{IsActive: ptr(true)})
		wantCode(t, "malformed id", err, gpuflow.ENOTFOUND)
	})
}

func TestInvitations(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	db.Now = func() time.Time { return now }
	admin := newUser("admin@example.com")
	admin.IsSuperuser = true
	if err := db.CreateUser(ctx, admin); err != nil {
		t.Fatal(err)
	}
	hash := func(code string) []byte { h := sha256.Sum256([]byte(code)); return h[:] }
	invite := func(t *testing.T, code, email string, ttl time.Duration) *gpuflow.Invitation {
		t.Helper()
		inv := &gpuflow.Invitation{Email: email, CreatedBy: admin.ID, ExpiresAt: now.Add(ttl)}
		if err := db.CreateInvitation(ctx, inv, hash(code)); err != nil {
			t.Fatal(err)
		}
		return inv
	}
	countUsers := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("OK", func(t *testing.T) {
		inv := invite(t, "code-ok", "", time.Hour)
		if len(inv.ID) != 36 || !inv.CreatedAt.Equal(now) {
			t.Errorf("invitation not settled: %+v", inv)
		}
		u := newUser("Invited@Example.com")
		if err := db.CreateUserInvited(ctx, u, hash("code-ok")); err != nil {
			t.Fatal(err)
		}
		if got, err := db.UserByEmail(ctx, "invited@example.com"); err != nil || got.ID != u.ID {
			t.Fatalf("invited user = %+v, %v", got, err)
		}
		var usedBy string
		if err := db.Pool.QueryRow(ctx, `SELECT used_by::text FROM invitations WHERE id = $1`, inv.ID).Scan(&usedBy); err != nil || usedBy != u.ID {
			t.Errorf("used_by = %q, %v", usedBy, err)
		}
		// A code registers one account.
		before := countUsers()
		wantCode(t, "second use", db.CreateUserInvited(ctx, newUser("again@example.com"), hash("code-ok")), gpuflow.EFORBIDDEN)
		if countUsers() != before {
			t.Error("a refused registration created an account")
		}
	})
	t.Run("ErrRefused", func(t *testing.T) {
		invite(t, "code-expired", "", time.Hour)
		invite(t, "code-for-carol", "carol@example.com", time.Hour)
		before := countUsers()
		later := *db
		later.Now = func() time.Time { return now.Add(time.Hour) }
		wantCode(t, "expired", later.CreateUserInvited(ctx, newUser("late@example.com"), hash("code-expired")), gpuflow.EFORBIDDEN)
		wantCode(t, "unknown", db.CreateUserInvited(ctx, newUser("guess@example.com"), hash("guessed")), gpuflow.EFORBIDDEN)
		wantCode(t, "other email", db.CreateUserInvited(ctx, newUser("mallory@example.com"), hash("code-for-carol")), gpuflow.EFORBIDDEN)
		wantCode(t, "email taken", db.CreateUserInvited(ctx, newUser("admin@example.com"), hash("code-expired")), gpuflow.ECONFLICT)
		if countUsers() != before {
			t.Error("a refused registration created an account")
		}
		// The invitation for carol still works for carol, and the one
		// refused for a taken email is still unused.
		if err := db.CreateUserInvited(ctx, newUser("CAROL@example.com"), hash("code-for-carol")); err != nil {
			t.Errorf("carol's invitation: %v", err)
		}
		if err := db.CreateUserInvited(ctx, newUser("dave@example.com"), hash("code-expired")); err != nil {
			t.Errorf("an invitation refused for a taken email was used up: %v", err)
		}
	})
	t.Run("Race", func(t *testing.T) {
		invite(t, "code-race", "", time.Hour)
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if db.CreateUserInvited(ctx, newUser("racer"+string(rune('a'+i))+"@example.com"), hash("code-race")) == nil {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Errorf("%d registrations used one code, want 1", ok.Load())
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		wantCode(t, "short hash", db.CreateInvitation(ctx, &gpuflow.Invitation{ExpiresAt: now.Add(time.Hour)}, []byte("x")), gpuflow.EINVALID)
		wantCode(t, "expired at birth", db.CreateInvitation(ctx, &gpuflow.Invitation{ExpiresAt: now}, hash("c")), gpuflow.EINVALID)
		wantCode(t, "bad email", db.CreateInvitation(ctx, &gpuflow.Invitation{Email: "a@b@c", ExpiresAt: now.Add(time.Hour)}, hash("c")), gpuflow.EINVALID)
	})
}

// TestTakeRate: two pools on one database (two API replicas) share each
// bucket: of many concurrent takes exactly the limit go ahead, the rest
// learn how long to wait, and other keys are not affected.
func TestTakeRate(t *testing.T) {
	t.Parallel()
	a, url := newDB(t)
	b := openDB(t, url)
	ctx := testCtx(t)
	const limit = 5
	var granted, refused atomic.Int32
	var maxWait atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Go(func() {
			wait, err := db.TakeRate(ctx, "submit:user-1", limit, time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			if wait == 0 {
				granted.Add(1)
				return
			}
			refused.Add(1)
			if int64(wait) > maxWait.Load() {
				maxWait.Store(int64(wait))
			}
		})
	}
	wg.Wait()
	if granted.Load() != limit || refused.Load() != 20-limit {
		t.Fatalf("granted %d, refused %d; want %d and %d", granted.Load(), refused.Load(), limit, 20-limit)
	}
	// A token comes back every 12 minutes (5 an hour).
	if w := time.Duration(maxWait.Load()); w <= 11*time.Minute || w > 12*time.Minute {
		t.Errorf("wait = %s, want about 12m", w)
	}
	if wait, err := b.TakeRate(ctx, "cancel:user-1", limit, time.Hour); err != nil || wait != 0 {
		t.Errorf("another key: wait %s, %v", wait, err)
	}
	// A bucket refills at limit per period: with 5 a second, after a
	// fifth of a second there is a token again.
	for range 3 {
		_, _ = a.TakeRate(ctx, "fast", 3, 600*time.Millisecond)
	}
	wait, err := a.TakeRate(ctx, "fast", 3, 600*time.Millisecond)
	if err != nil || wait <= 0 || wait > 200*time.Millisecond {
		t.Fatalf("empty fast bucket: wait %s, %v", wait, err)
	}
	time.Sleep(wait + 20*time.Millisecond)
	if wait, err := b.TakeRate(ctx, "fast", 3, 600*time.Millisecond); err != nil || wait != 0 {
		t.Errorf("after the refill: wait %s, %v", wait, err)
	}
	for _, bad := range []struct {
		key    string
		limit  int
		period time.Duration
	}{{"", 1, time.Second}, {string(make([]byte, 201)), 1, time.Second}, {"k", 0, time.Second}, {"k", 1, 0}} {
		_, err := a.TakeRate(ctx, bad.key, bad.limit, bad.period)
		wantCode(t, "bad take", err, gpuflow.EINVALID)
	}
}

// TestJobsFilterInjection: filter values and cursors are parameters, never
// SQL: hostile ones select nothing or are EINVALID, and change nothing.
func TestJobsFilterInjection(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	owner := newID()
	ensureUser(t, db, owner)
	for range 3 {
		mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = owner; j.Provider = "runpod" }))
	}
	countJobs := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM jobs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, p := range []string{"runpod' OR '1'='1", "x'; DELETE FROM jobs; --", `runpod" OR 1=1 --`, "%", "_unpod"} {
		jobs, _, err := db.Jobs(ctx, gpuflow.JobFilter{Provider: p})
		if err != nil || len(jobs) != 0 {
			t.Errorf("provider %q: %d jobs, %v", p, len(jobs), err)
		}
	}
	for _, o := range []string{"' OR 1=1 --", owner + "' OR '1'='1"} {
		_, _, err := db.Jobs(ctx, gpuflow.JobFilter{OwnerID: o})
		wantCode(t, "owner "+o, err, gpuflow.EINVALID)
	}
	_, _, err := db.Jobs(ctx, gpuflow.JobFilter{Status: "running' OR '1'='1"})
	wantCode(t, "status", err, gpuflow.EINVALID)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []string{"' OR 1=1 --", b64("1_' OR 1=1 --"), b64("1; DROP TABLE jobs_" + owner), b64("x_" + owner),
		b64("99999999999999999999_" + owner), "%00", b64("1_")} {
		_, _, err := db.Jobs(ctx, gpuflow.JobFilter{OwnerID: owner, Cursor: c})
		wantCode(t, "cursor "+c, err, gpuflow.EINVALID)
	}
	if n := countJobs(); n != 3 {
		t.Errorf("%d jobs after the hostile filters, want 3", n)
	}
}
