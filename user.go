package gpuflow

import (
	"context"
	"net/mail"
	"strings"
	"time"
)

// MaxEmailLen is the longest email address an account may have (RFC 5321's
// limit on a forward path, less the angle brackets).
const MaxEmailLen = 254

// User is an account of the API. Jobs belong to the user who submitted
// them; a superuser sees and acts on every job.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"` // lower-cased, see NormalizeEmail
	// HashedPassword is the password's hash (bcrypt); never shown.
	HashedPassword string `json:"-"`
	IsActive       bool   `json:"is_active"`
	IsSuperuser    bool   `json:"is_superuser"`
	IsVerified     bool   `json:"is_verified"`
	// CanRunLocal lets the account run jobs on the local provider (the
	// worker's own host); superusers always may. See LocalPolicy.
	CanRunLocal bool      `json:"can_run_local"`
	CreatedAt   time.Time `json:"created_at"`
}

// UserUpdate changes an account's flags; nil fields stay as they are.
type UserUpdate struct {
	IsActive    *bool
	IsSuperuser *bool
	CanRunLocal *bool
}

// Empty reports whether u changes nothing.
func (u UserUpdate) Empty() bool {
	return u.IsActive == nil && u.IsSuperuser == nil && u.CanRunLocal == nil
}

// UserStore keeps accounts.
type UserStore interface {
	// CreateUser inserts u, filling in its ID when empty and CreatedAt when
	// zero. It returns ECONFLICT when another account has the same email in
	// any case, and EINVALID for a malformed id or email.
	CreateUser(ctx context.Context, u *User) error
	// User returns the account with id, or ENOTFOUND (also for an id that is
	// not a UUID).
	User(ctx context.Context, id string) (*User, error)
	// UserByEmail returns the account with email, compared without regard
	// to case, or ENOTFOUND.
	UserByEmail(ctx context.Context, email string) (*User, error)
	// UpdateUser applies up to the account with id and returns it as
	// stored. It returns ENOTFOUND when there is none.
	UpdateUser(ctx context.Context, id string, up UserUpdate) (*User, error)
}

// Invitation is a code a superuser made that registers one account while
// registration is by invitation. Only the code's hash is kept.
type Invitation struct {
	ID string `json:"id"`
	// Email, when set, is the only address the code registers.
	Email     string     `json:"email,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
	UsedBy    string     `json:"used_by,omitempty"`
}

// InvitationStore keeps invitations and redeems them.
type InvitationStore interface {
	// CreateInvitation stores inv (filling in ID and CreatedAt when empty)
	// under codeHash, the SHA-256 of its code.
	CreateInvitation(ctx context.Context, inv *Invitation, codeHash []byte) error
	// CreateUserInvited creates u (as CreateUser does) and marks the
	// invitation with codeHash used by it, in one transaction. It returns
	// EFORBIDDEN, creating nothing, when no such invitation is usable
	// (unknown, used, expired, or made for another email), and ECONFLICT
	// when the email is taken (the invitation stays unused).
	CreateUserInvited(ctx context.Context, u *User, codeHash []byte) error
}

// Registration modes (GPUFLOW_REGISTRATION): who may create an account
// through POST /auth/register.
const (
	RegistrationOpen   = "open"   // anyone
	RegistrationInvite = "invite" // holders of a superuser's invitation code
	RegistrationClosed = "closed" // no one; operators use `gpuflow user create`
)

// LocalPolicy says who may run jobs on the local provider, the worker's
// own host: superusers, accounts with CanRunLocal, and those listed here.
type LocalPolicy struct {
	// Everyone lets every account run local jobs (the dev default).
	Everyone bool
	// Users are emails (lower-cased) or user ids allowed besides.
	Users []string
}

// Allows reports whether u may run jobs on the local provider.
func (p LocalPolicy) Allows(u *User) bool {
	if u == nil {
		return false
	}
	if p.Everyone || u.IsSuperuser || u.CanRunLocal {
		return true
	}
	for _, x := range p.Users {
		if x == u.ID || strings.EqualFold(x, u.Email) {
			return true
		}
	}
	return false
}

// NormalizeEmail checks that s is one plain email address (no display
// name, no angle brackets, no list) and returns it trimmed and lower-cased,
// the form accounts are stored and looked up in. It returns an EINVALID
// *Error otherwise.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	bad := func(msg string) (string, error) {
		return "", (&Error{Code: EINVALID, Message: msg}).
			WithDetails(map[string]any{"fields": map[string]any{"email": msg}})
	}
	if s == "" {
		return bad("email is required")
	}
	if len(s) > MaxEmailLen {
		return bad("email must be at most 254 characters")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || strings.ContainsAny(s, "<>\" \t\r\n") {
		return bad("email must be a single address such as user@example.com")
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.HasPrefix(domain, "[") {
		return bad("email must be a single address such as user@example.com")
	}
	return strings.ToLower(s), nil
}
