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
	HashedPassword string    `json:"-"`
	IsActive       bool      `json:"is_active"`
	IsSuperuser    bool      `json:"is_superuser"`
	IsVerified     bool      `json:"is_verified"`
	CreatedAt      time.Time `json:"created_at"`
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
