package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/schema"
)

// tables lists the tables of the public schema.
func tables(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	rows, err := db.Pool.Query(testCtx(t), `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[n] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func appliedVersions(t *testing.T, db *DB) []int {
	t.Helper()
	rows, err := db.Pool.Query(testCtx(t), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	db := openDB(t, pgtest.NewDB(t))
	ctx := testCtx(t)
	migs, err := loadMigrations(schema.Migrations)
	if err != nil || len(migs) == 0 {
		t.Fatalf("loadMigrations: %v, %d", err, len(migs))
	}

	for range 2 { // the second run is a no-op
		if err := Migrate(ctx, db.Pool); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	if ts := tables(t, db); !ts["jobs"] || !ts["job_events"] || !ts["job_logs"] {
		t.Fatalf("tables after up: %v", ts)
	}
	if v := appliedVersions(t, db); len(v) != len(migs) {
		t.Fatalf("applied %v, want %d migrations", v, len(migs))
	}
	// The schema works.
	mustCreate(t, db, newJob())

	if err := MigrateDown(ctx, db.Pool, len(migs)+5); err != nil {
		t.Fatalf("MigrateDown: %v", err)
	}
	if ts := tables(t, db); len(ts) != 1 || !ts["schema_migrations"] {
		t.Fatalf("tables after down: %v", ts)
	}
	if v := appliedVersions(t, db); len(v) != 0 {
		t.Fatalf("applied after down: %v", v)
	}

	if err := Migrate(ctx, db.Pool); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	j := mustCreate(t, db, newJob())
	if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 1, Type: gpuflow.EventStatus}); err != nil {
		t.Fatalf("ApplyUpdate after up-down-up: %v", err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	a, b := openDB(t, url), openDB(t, url)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Migrate(ctx, db.Pool)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	migs, _ := loadMigrations(schema.Migrations)
	if v := appliedVersions(t, a); len(v) != len(migs) {
		t.Errorf("applied %v, want each of %d migrations once", v, len(migs))
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	t.Parallel()
	db := openDB(t, pgtest.NewDB(t))
	ctx := context.Background()
	fsys := fstest.MapFS{
		"migrations/0001_one.up.sql":   {Data: []byte("CREATE TABLE one (id int);")},
		"migrations/0001_one.down.sql": {Data: []byte("DROP TABLE one;")},
		"migrations/0002_two.up.sql":   {Data: []byte("CREATE TABLE two (id int); SELECT nonsense FROM nowhere;")},
		"migrations/0002_two.down.sql": {Data: []byte("DROP TABLE two;")},
	}
	if err := migrateUp(ctx, db.Pool, fsys); err == nil {
		t.Fatal("migrateUp with a broken migration succeeded")
	}
	if ts := tables(t, db); !ts["one"] || ts["two"] {
		t.Errorf("tables %v: want one applied, two rolled back", ts)
	}
	if v := appliedVersions(t, db); len(v) != 1 || v[0] != 1 {
		t.Errorf("applied %v, want [1]", v)
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fstest.MapFS{
		"bad name": {"migrations/one.up.sql": {}},
		"no up":    {"migrations/0001_one.down.sql": {}},
		"two names": {
			"migrations/0001_one.up.sql": {},
			"migrations/0001_two.up.sql": {},
		},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations accepted it", name)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, err := Open(ctx, "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", nil)
	wantCode(t, "Open(closed port)", err, gpuflow.EUNAVAILABLE)
	if err != nil && strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
	_, err = Open(ctx, "postgres://user:secret@host:notaport/db", nil)
	wantCode(t, "Open(bad url)", err, gpuflow.EINVALID)
	if err != nil && strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
}
