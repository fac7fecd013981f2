package postgres

import (
	"context"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.InvitationStore = (*DB)(nil)

const (
	invitationInsertSQL = `INSERT INTO invitations (id, code_hash, email, created_by, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6)`

	// invitationUseSQL marks the invitation used by $3, if it is usable
	// for the email $2 at $4. The row lock orders two registrations with
	// one code: the second finds it used.
	invitationUseSQL = `UPDATE invitations SET used_at = $4, used_by = $3
	WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $4 AND (email IS NULL OR email = $2)`
)

// CreateInvitation stores inv under codeHash (the SHA-256 of its code),
// filling in inv.ID and inv.CreatedAt (db.Now) when empty. It returns
// EINVALID for a hash that is not 32 bytes, a malformed email or an
// expiry not after its creation, and ECONFLICT for a hash already stored.
func (db *DB) CreateInvitation(ctx context.Context, inv *gpuflow.Invitation, codeHash []byte) error {
	if len(codeHash) != 32 {
		return gpuflow.Errorf(gpuflow.EINVALID, "an invitation's code hash must be 32 bytes")
	}
	if inv.Email != "" {
		email, err := gpuflow.NormalizeEmail(inv.Email)
		if err != nil {
			return err
		}
		inv.Email = email
	}
	if inv.ID == "" {
		inv.ID = uuid.NewString()
	}
	id, ok := canonicalUUID(inv.ID)
	if !ok {
		return gpuflow.Errorf(gpuflow.EINVALID, "invitation id %q is not a UUID", inv.ID)
	}
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = db.now()
	}
	if !inv.ExpiresAt.After(inv.CreatedAt) {
		return gpuflow.Errorf(gpuflow.EINVALID, "an invitation must expire after it is made")
	}
	var createdBy *string
	if inv.CreatedBy != "" {
		createdBy = &inv.CreatedBy
	}
	inv.ID, inv.CreatedAt, inv.ExpiresAt = id, dbTime(inv.CreatedAt), dbTime(inv.ExpiresAt)
	_, err := db.Pool.Exec(ctx, invitationInsertSQL, inv.ID, codeHash, nullString(inv.Email), createdBy,
		inv.CreatedAt, inv.ExpiresAt)
	return translate(err, "create invitation", "invitation")
}

// CreateUserInvited creates u as CreateUser does and marks the invitation
// whose code hashes to codeHash used by it, in one transaction. It returns
// EFORBIDDEN when no usable invitation has that hash (unknown, used,
// expired at db.Now, or for another email), ECONFLICT when the email is
// taken, and nothing is changed then.
func (db *DB) CreateUserInvited(ctx context.Context, u *gpuflow.User, codeHash []byte) error {
	if err := db.settleUser(u); err != nil {
		return err
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err, "register invited user", "user")
	}
	defer rollback(ctx, tx)
	// The account first: the invitation's used_by refers to it.
	_, err = tx.Exec(ctx, userInsertSQL, u.ID, u.Email, u.HashedPassword, u.IsActive, u.IsSuperuser,
		u.IsVerified, u.CanRunLocal, u.CreatedAt)
	if err != nil {
		return translate(err, "create user "+u.ID, "user with this email")
	}
	tag, err := tx.Exec(ctx, invitationUseSQL, codeHash, u.Email, u.ID, dbTime(db.now()))
	if err != nil {
		return translate(err, "use invitation", "invitation")
	}
	if tag.RowsAffected() == 0 {
		return gpuflow.Errorf(gpuflow.EFORBIDDEN, "the invitation code is unknown, used, expired or for another email")
	}
	return translate(tx.Commit(ctx), "register invited user", "user")
}
