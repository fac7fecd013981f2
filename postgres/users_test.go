package postgres

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// ensureUser creates a user with id unless one exists.
func ensureUser(t *testing.T, db *DB, id string) {
	t.Helper()
	_, err := db.Pool.Exec(testCtx(t), `INSERT INTO users (id, email, hashed_password) VALUES ($1, $2, 'x')
		ON CONFLICT (id) DO NOTHING`, id, id+"@example.com")
	if err != nil {
		t.Fatalf("ensure user %s: %v", id, err)
	}
}

func newUser(email string) *gpuflow.User {
	return &gpuflow.User{Email: email, HashedPassword: "$2a$04$hash", IsActive: true}
}

func TestCreateUser(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)

	t.Run("OK", func(t *testing.T) {
		now := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
		db := *db
		db.Now = func() time.Time { return now }
		u := newUser("  Alice@Example.COM ")
		u.IsSuperuser = true
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if len(u.ID) != 36 || u.Email != "alice@example.com" || !u.CreatedAt.Equal(now.Round(time.Microsecond)) {
			t.Fatalf("CreateUser did not settle the user: %+v", u)
		}
		got, err := db.User(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if *got != *u {
			t.Errorf("User() = %+v, want %+v", got, u)
		}
		if got, err := db.User(ctx, strings.ToUpper(u.ID)); err != nil || got.ID != u.ID {
			t.Errorf("User(upper-case id) = %+v, %v", got, err)
		}
	})

	t.Run("GivenID", func(t *testing.T) {
		u := newUser("given@example.com")
		u.ID = newID()
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		got, err := db.UserByEmail(ctx, "given@example.com")
		if err != nil || got.ID != u.ID || !got.IsActive || got.IsSuperuser || got.IsVerified {
			t.Errorf("UserByEmail = %+v, %v", got, err)
		}
	})

	t.Run("ErrDuplicateAnyCase", func(t *testing.T) {
		if err := db.CreateUser(ctx, newUser("bob@example.com")); err != nil {
			t.Fatal(err)
		}
		for _, email := range []string{"bob@example.com", "BOB@example.com", "Bob@Example.Com", " bob@EXAMPLE.com"} {
			wantCode(t, "duplicate "+email, db.CreateUser(ctx, newUser(email)), gpuflow.ECONFLICT)
		}
		// The unique index holds even for a row written around CreateUser.
		_, err := db.Pool.Exec(ctx, `INSERT INTO users (id, email, hashed_password) VALUES ($1, 'bob@example.com', 'x')`, newID())
		wantCode(t, "raw duplicate", translate(err, "insert", "user"), gpuflow.ECONFLICT)
		// So does the lower-case check.
		_, err = db.Pool.Exec(ctx, `INSERT INTO users (id, email, hashed_password) VALUES ($1, 'Carol@example.com', 'x')`, newID())
		wantCode(t, "raw upper-case", translate(err, "insert", "user"), gpuflow.EINVALID)
	})

	t.Run("ErrDuplicateID", func(t *testing.T) {
		u := newUser("dave@example.com")
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		again := newUser("dave2@example.com")
		again.ID = u.ID
		wantCode(t, "duplicate id", db.CreateUser(ctx, again), gpuflow.ECONFLICT)
	})

	t.Run("ErrConcurrentDuplicates", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Go(func() {
				email := "erin@example.com"
				if i%2 == 1 {
					email = "ERIN@example.com"
				}
				errs[i] = db.CreateUser(ctx, newUser(email))
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch gpuflow.ErrorCode(err) {
			case "":
				ok++
			case gpuflow.ECONFLICT:
			default:
				t.Errorf("concurrent CreateUser: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of the concurrent creates succeeded, want 1", ok)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		for name, u := range map[string]*gpuflow.User{
			"email":         newUser("not an email"),
			"display name":  newUser("Frank <frank@example.com>"),
			"empty email":   newUser(""),
			"id":            {ID: "nope", Email: "f@example.com", HashedPassword: "x"},
			"password hash": {Email: "g@example.com"},
		} {
			wantCode(t, name, db.CreateUser(ctx, u), gpuflow.EINVALID)
		}
	})
}

func TestUserLookups(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	u := newUser("Grace@Example.com")
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"grace@example.com", "GRACE@EXAMPLE.COM", " Grace@example.com\n"} {
		got, err := db.UserByEmail(ctx, email)
		if err != nil || got.ID != u.ID || got.Email != "grace@example.com" || got.HashedPassword != u.HashedPassword {
			t.Errorf("UserByEmail(%q) = %+v, %v", email, got, err)
		}
	}
	for _, email := range []string{"", "grac@example.com", "grace@example.co", strings.Repeat("a", 300)} {
		_, err := db.UserByEmail(ctx, email)
		wantCode(t, "UserByEmail("+email+")", err, gpuflow.ENOTFOUND)
	}
	for _, id := range []string{"", "nope", newID()} {
		_, err := db.User(ctx, id)
		wantCode(t, "User("+id+")", err, gpuflow.ENOTFOUND)
	}
}

func TestJobOwnerForeignKey(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	u := newUser("heidi@example.com")
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = u.ID }))

	// A job must belong to an existing user.
	err := db.CreateJob(ctx, newJob(func(j *gpuflow.Job) { j.OwnerID = newID() }))
	wantCode(t, "unknown owner", err, gpuflow.EINVALID)

	// Deleting the user keeps the job, ownerless.
	if _, err := db.Pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	got := mustJob(t, db, j.ID)
	if got.OwnerID != "" {
		t.Errorf("job of a deleted user has owner %q, want none", got.OwnerID)
	}
	if jobs, _, err := db.Jobs(ctx, gpuflow.JobFilter{}); err != nil || len(jobs) != 1 {
		t.Errorf("Jobs() after deleting the owner = %d jobs, %v", len(jobs), err)
	}
}
