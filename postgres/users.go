package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.UserStore = (*DB)(nil)

// userColumns is the column list scanUser reads.
const userColumns = `id::text, email, hashed_password, is_active, is_superuser, is_verified, can_run_local, created_at`

const (
	userInsertSQL = `INSERT INTO users (id, email, hashed_password, is_active, is_superuser, is_verified, can_run_local, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

	// userUpdateSQL changes the flags given (NULL: unchanged).
	userUpdateSQL = `UPDATE users SET
		is_active = COALESCE($2, is_active),
		is_superuser = COALESCE($3, is_superuser),
		can_run_local = COALESCE($4, can_run_local)
	WHERE id = $1
	RETURNING ` + userColumns

	userGetSQL = `SELECT ` + userColumns + ` FROM users WHERE id = $1`

	// lower(email) uses users_email_key; emails are stored lower-cased.
	userByEmailSQL = `SELECT ` + userColumns + ` FROM users WHERE lower(email) = lower($1)`
)

func scanUser(row pgx.Row) (*gpuflow.User, error) {
	var u gpuflow.User
	if err := row.Scan(&u.ID, &u.Email, &u.HashedPassword, &u.IsActive, &u.IsSuperuser, &u.IsVerified,
		&u.CanRunLocal, &u.CreatedAt); err != nil {
		return nil, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return &u, nil
}

// userNotFound is the ENOTFOUND error of the user look-ups. It names
// neither the id nor the email.
func userNotFound() error { return gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found") }

// CreateUser inserts u. It normalises u.Email (gpuflow.NormalizeEmail) and
// fills in u.ID (a random UUID) when empty and u.CreatedAt (db.Now) when
// zero, rounding it as stored. It returns ECONFLICT when an account with the
// same email in any case exists, and EINVALID for a malformed id or email or
// an empty password hash.
func (db *DB) CreateUser(ctx context.Context, u *gpuflow.User) error {
	if err := db.settleUser(u); err != nil {
		return err
	}
	_, err := db.Pool.Exec(ctx, userInsertSQL, u.ID, u.Email, u.HashedPassword, u.IsActive, u.IsSuperuser,
		u.IsVerified, u.CanRunLocal, u.CreatedAt)
	if err != nil {
		return translate(err, "create user "+u.ID, "user with this email")
	}
	return nil
}

// settleUser checks u and fills in what CreateUser fills in.
func (db *DB) settleUser(u *gpuflow.User) error {
	email, err := gpuflow.NormalizeEmail(u.Email)
	if err != nil {
		return err
	}
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	id, ok := canonicalUUID(u.ID)
	if !ok {
		return gpuflow.Errorf(gpuflow.EINVALID, "user id %q is not a UUID", u.ID)
	}
	if u.HashedPassword == "" {
		return gpuflow.Errorf(gpuflow.EINVALID, "user %s has no password hash", u.ID)
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = db.now()
	}
	u.ID, u.Email, u.CreatedAt = id, email, dbTime(u.CreatedAt)
	return nil
}

// User returns the account with id. It returns ENOTFOUND when there is
// none, including when id is not a UUID.
func (db *DB) User(ctx context.Context, id string) (*gpuflow.User, error) {
	uid, ok := canonicalUUID(id)
	if !ok {
		return nil, userNotFound()
	}
	u, err := scanUser(db.Pool.QueryRow(ctx, userGetSQL, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, userNotFound()
	}
	if err != nil {
		return nil, translate(err, "get user "+id, "user")
	}
	return u, nil
}

// UserByEmail returns the account with email, compared without regard to
// case (and surrounding space). It returns ENOTFOUND when there is none.
func (db *DB) UserByEmail(ctx context.Context, email string) (*gpuflow.User, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" || len(email) > gpuflow.MaxEmailLen {
		return nil, userNotFound()
	}
	u, err := scanUser(db.Pool.QueryRow(ctx, userByEmailSQL, email))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, userNotFound()
	}
	if err != nil {
		return nil, translate(err, "get user by email", "user")
	}
	return u, nil
}

// UpdateUser changes the flags of the account with id that up sets and
// returns the account. It returns ENOTFOUND when there is none (also for
// an id that is not a UUID).
func (db *DB) UpdateUser(ctx context.Context, id string, up gpuflow.UserUpdate) (*gpuflow.User, error) {
	uid, ok := canonicalUUID(id)
	if !ok {
		return nil, userNotFound()
	}
	u, err := scanUser(db.Pool.QueryRow(ctx, userUpdateSQL, uid, up.IsActive, up.IsSuperuser, up.CanRunLocal))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, userNotFound()
	}
	if err != nil {
		return nil, translate(err, "update user "+id, "user")
	}
	return u, nil
}
