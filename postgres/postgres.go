// Package postgres is the PostgreSQL adapter: it implements
// gpuflow.JobStore over pgx, applies the embedded migrations of package
// schema, and carries job events between processes with LISTEN/NOTIFY.
//
// Every store method runs in one transaction (BeginTx, deferred Rollback,
// Commit) and translates PostgreSQL errors into gpuflow error codes here, so
// callers only ever see *gpuflow.Error codes or internal errors.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultMaxConns is the pool size unless the URL sets pool_max_conns.
const DefaultMaxConns = 10

// DB is a gpuflow.JobStore backed by PostgreSQL.
type DB struct {
	// Pool is the connection pool every method uses.
	Pool *pgxpool.Pool
	// Now is the clock for timestamps the caller leaves zero.
	Now func() time.Time
	// Logger receives the adapter's diagnostics.
	Logger *slog.Logger
}

var _ gpuflow.JobStore = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN), checks that it answers and returns the DB. It returns EUNAVAILABLE
// when the database cannot be reached and EINVALID for a malformed url. The
// url is never logged: it may hold a password.
func Open(ctx context.Context, url string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the url; keep it out of the message.
		return nil, &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid database URL"}
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := &DB{Pool: pool, Now: time.Now, Logger: logger}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	logger.DebugContext(ctx, "database connected", "host", cfg.ConnConfig.Host, "database", cfg.ConnConfig.Database)
	return db, nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (db *DB) Close() { db.Pool.Close() }

// Ping checks that the database answers, within five seconds at most. It
// returns EUNAVAILABLE when it does not.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.Pool.Ping(ctx); err != nil {
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "database unavailable", Err: err}
	}
	return nil
}

// now returns the current time as stored: UTC, in microseconds.
func (db *DB) now() time.Time {
	if db.Now == nil {
		return dbTime(time.Now())
	}
	return dbTime(db.Now())
}

func (db *DB) logger() *slog.Logger {
	if db.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return db.Logger
}

// dbTime rounds t the way timestamptz stores it.
func dbTime(t time.Time) time.Time { return t.UTC().Round(time.Microsecond) }

// dbTimePtr is dbTime for optional times.
func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := dbTime(*t)
	return &v
}

// canonicalUUID returns id in PostgreSQL's canonical text form, or false
// when PostgreSQL would reject it as a uuid.
func canonicalUUID(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	var u pgtype.UUID
	if err := u.Scan(id); err != nil || !u.Valid {
		return "", false
	}
	return u.String(), true
}

// nullString maps "" to SQL NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// SQLSTATEs the adapter translates.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	codeInvalidText         = "22P02"
	codeStringTooLong       = "22001"
	codeNumericOutOfRange   = "22003"
	codeUntranslatable      = "22P05"
	codeCharacterNotInRepr  = "22021"
)

// translate turns err from pgx into a gpuflow error: constraint and input
// violations become ECONFLICT, ENOTFOUND or EINVALID, an unreachable
// database EUNAVAILABLE. what names the thing being written or read, op the
// operation, for the wrapped internal errors.
func translate(err error, op, what string) error {
	if err == nil {
		return nil
	}
	var ge *gpuflow.Error
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeUniqueViolation:
			return &gpuflow.Error{Code: gpuflow.ECONFLICT, Message: what + " already exists", Err: err}
		case codeForeignKeyViolation:
			if pgErr.ConstraintName == "jobs_owner_id_fkey" {
				return &gpuflow.Error{Code: gpuflow.EINVALID, Message: "the job's owner is not a user", Err: err}
			}
			return &gpuflow.Error{Code: gpuflow.ENOTFOUND, Message: "job not found", Err: err}
		case codeCheckViolation, codeNotNullViolation, codeInvalidText, codeStringTooLong,
			codeNumericOutOfRange, codeUntranslatable, codeCharacterNotInRepr:
			return &gpuflow.Error{Code: gpuflow.EINVALID, Message: "invalid " + what, Err: err}
		}
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") {
			// connection exceptions, admin shutdown, cannot connect now
			return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "database unavailable", Err: err}
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || lostConnection(err) {
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "database unavailable", Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// lostConnection reports whether err is a connection that broke under a
// statement (the server crashed or restarted, a proxy cut it, a pooled
// connection went stale): the database is unavailable, not the request
// wrong. Without it such an error was answered 500.
func lostConnection(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// notFound is the ENOTFOUND error for the job with id.
func notFound(id string) error {
	return gpuflow.Errorf(gpuflow.ENOTFOUND, "job %s not found", id)
}

// rollback ends tx when the method returns before Commit.
func rollback(ctx context.Context, tx pgx.Tx) {
	_ = tx.Rollback(context.WithoutCancel(ctx))
}
