// Package auth holds gpuflow's credentials logic without any I/O: the
// password policy, password hashing (bcrypt) and the API's access tokens
// (JWT, HS256). The HTTP API and the `gpuflow user` command use it; accounts
// themselves live in a gpuflow.UserStore.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Password policy.
const (
	// MinPasswordLen is the fewest characters a password may have.
	MinPasswordLen = 8
	// MaxPasswordBytes is the most bytes a password may have: bcrypt reads
	// no further, so a longer one would be silently cut.
	MaxPasswordBytes = 72
)

// Costs of the bcrypt hash.
const (
	// DefaultCost is the production cost (about a quarter of a second a hash).
	DefaultCost = 12
	// MinCost is the cheapest cost, for tests only.
	MinCost = bcrypt.MinCost
)

// CheckPassword returns an error whose message says what is wrong with
// password for the account email, or nil when the policy accepts it.
func CheckPassword(password, email string) error {
	switch {
	case !utf8.ValidString(password):
		return errors.New("password must be valid UTF-8")
	case utf8.RuneCountInString(password) < MinPasswordLen:
		return fmt.Errorf("password must be at least %d characters", MinPasswordLen)
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("password must be at most %d bytes", MaxPasswordBytes)
	case strings.TrimSpace(password) == "":
		return errors.New("password must not be blank")
	case email != "" && strings.Contains(strings.ToLower(password), strings.ToLower(email)):
		return errors.New("password must not contain the email address")
	}
	return nil
}

// Hasher hashes and verifies passwords with bcrypt. The zero value uses
// DefaultCost. It is safe for concurrent use.
type Hasher struct {
	// Cost is the bcrypt cost; 0 means DefaultCost.
	Cost int

	once  sync.Once
	dummy []byte // a hash of a random password, for unknown accounts
}

func (h *Hasher) cost() int {
	if h.Cost == 0 {
		return DefaultCost
	}
	return h.Cost
}

// Hash returns the bcrypt hash of password. It does not apply the policy
// (see CheckPassword) but refuses a password bcrypt would cut.
func (h *Hasher) Hash(password string) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("hash password: longer than %d bytes", MaxPasswordBytes)
	}
	b, err := bcrypt.GenerateFromPassword([]byte(password), h.cost())
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}

// Verify reports whether password matches hash. The comparison takes the
// time the hash's cost dictates whatever the password, and compares the
// digests in constant time.
func (h *Hasher) Verify(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// VerifyNone spends the time of a Verify against an account that does not
// exist, and reports false: a login for an unknown email then takes as long
// as one for a known email with a wrong password.
func (h *Hasher) VerifyNone(password string) bool {
	h.once.Do(func() {
		// The dummy's password is never known to anyone: it is the cost
		// of the comparison that matters, not its outcome.
		h.dummy, _ = bcrypt.GenerateFromPassword([]byte("gpuflow: no such account"), h.cost())
	})
	_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(password))
	return false
}

// invitationPrefix starts every invitation code, so that one is easy to
// recognise (and to scan for in leaked text).
const invitationPrefix = "gfinv_"

// NewInvitationCode returns a new invitation code (192 random bits) and its
// SHA-256, which is all the server keeps.
func NewInvitationCode() (code string, hash []byte, err error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("invitation code: %w", err)
	}
	code = invitationPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return code, HashInvitationCode(code), nil
}

// HashInvitationCode is the SHA-256 of code, surrounding space removed.
// A code this long needs no slow hash: it cannot be guessed.
func HashInvitationCode(code string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(code)))
	return h[:]
}
