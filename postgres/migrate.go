package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/gpuflow/gpuflow/schema"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrateLockKey is the advisory lock that serialises migrations across
// processes ("gpuflowm" in ASCII).
const migrateLockKey int64 = 0x677075666c6f776d

// migration is one numbered up/down pair.
type migration struct {
	version int
	name    string
	up      string // file names inside the FS
	down    string
}

var migrationFile = regexp.MustCompile(`^(\d+)_([A-Za-z0-9_]+)\.(up|down)\.sql$`)

// Migrate applies every embedded migration not applied yet, in version
// order, each in its own transaction, and records it in schema_migrations.
// A transaction-scoped advisory lock makes concurrent runs (two processes
// starting at once) safe; running it again is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrateUp(ctx, pool, schema.Migrations)
}

// MigrateDown reverts the last steps applied migrations, newest first, each
// in its own transaction, with their .down.sql files.
func MigrateDown(ctx context.Context, pool *pgxpool.Pool, steps int) error {
	return migrateDown(ctx, pool, schema.Migrations, steps)
}

// Migrate applies the embedded migrations to db; see the function Migrate.
func (db *DB) Migrate(ctx context.Context) error {
	if err := Migrate(ctx, db.Pool); err != nil {
		return err
	}
	db.logger().InfoContext(ctx, "database migrated")
	return nil
}

// loadMigrations reads the migrations under migrations/ in fsys.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	byVersion := map[int]*migration{}
	for _, p := range names {
		m := migrationFile.FindStringSubmatch(path.Base(p))
		if m == nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.(up|down).sql", p)
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", p, err)
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &migration{version: v, name: m[2]}
			byVersion[v] = mig
		}
		if mig.name != m[2] {
			return nil, fmt.Errorf("migration version %d has two names: %s and %s", v, mig.name, m[2])
		}
		if m[3] == "up" {
			mig.up = p
		} else {
			mig.down = p
		}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.up == "" {
			return nil, fmt.Errorf("migration %04d_%s has no .up.sql", m.version, m.name)
		}
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// lockMigrations takes the migration lock for tx's lifetime and makes sure
// the bookkeeping table exists.
func lockMigrations(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	const ddl = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
	)`
	if _, err := tx.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

func migrateUp(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) error {
	migs, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	for _, m := range migs {
		if err := applyUp(ctx, pool, fsys, m); err != nil {
			return err
		}
	}
	return nil
}

func applyUp(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, m migration) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %04d_%s: %w", m.version, m.name, err)
	}
	defer rollback(ctx, tx)
	if err := lockMigrations(ctx, tx); err != nil {
		return err
	}
	var applied bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.version).Scan(&applied); err != nil {
		return fmt.Errorf("migrate %04d_%s: %w", m.version, m.name, err)
	}
	if applied {
		return nil
	}
	sql, err := fs.ReadFile(fsys, m.up)
	if err != nil {
		return fmt.Errorf("migrate %04d_%s: %w", m.version, m.name, err)
	}
	if _, err := tx.Exec(ctx, string(sql)); err != nil {
		return fmt.Errorf("migrate %04d_%s: %w", m.version, m.name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
		return fmt.Errorf("migrate %04d_%s: record: %w", m.version, m.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %04d_%s: commit: %w", m.version, m.name, err)
	}
	return nil
}

func migrateDown(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, steps int) error {
	migs, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	for range steps {
		done, err := revertLast(ctx, pool, fsys, migs)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
	return nil
}

// revertLast reverts the newest applied migration; done reports that none
// was left.
func revertLast(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, migs []migration) (done bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate down: %w", err)
	}
	defer rollback(ctx, tx)
	if err := lockMigrations(ctx, tx); err != nil {
		return false, err
	}
	var version int
	err = tx.QueryRow(ctx, "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1").Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, tx.Commit(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("migrate down: %w", err)
	}
	i := slices.IndexFunc(migs, func(m migration) bool { return m.version == version })
	if i < 0 {
		return false, fmt.Errorf("migrate down: version %d is applied but unknown to this binary", version)
	}
	m := migs[i]
	if m.down == "" {
		return false, fmt.Errorf("migrate down %04d_%s: no .down.sql", m.version, m.name)
	}
	sql, err := fs.ReadFile(fsys, m.down)
	if err != nil {
		return false, fmt.Errorf("migrate down %04d_%s: %w", m.version, m.name, err)
	}
	if _, err := tx.Exec(ctx, string(sql)); err != nil {
		return false, fmt.Errorf("migrate down %04d_%s: %w", m.version, m.name, err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM schema_migrations WHERE version = $1", m.version); err != nil {
		return false, fmt.Errorf("migrate down %04d_%s: record: %w", m.version, m.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("migrate down %04d_%s: commit: %w", m.version, m.name, err)
	}
	return false, nil
}
