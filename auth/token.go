package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Token settings.
const (
	// MinSecretLen is the shortest HS256 key accepted: 256 bits.
	MinSecretLen = 32
	// DefaultLifetime is how long a token lives unless configured.
	DefaultLifetime = time.Hour
	// Issuer and Audience are the iss and aud claims of every token; a
	// token without them (say, one of another service sharing the key) is
	// refused.
	Issuer   = "gpuflow"
	Audience = "gpuflow:api"
	// maxTokenLen bounds what Verify parses.
	maxTokenLen = 4096
)

// ErrInvalidToken is returned (wrapped) by Verify for every token it
// refuses: malformed, signed with another algorithm or key, expired, without
// an expiry, or naming no valid user id.
var ErrInvalidToken = errors.New("invalid token")

// Tokens issues and verifies the API's access tokens: JWTs signed with
// HS256 carrying the user id (sub), issue time (iat) and expiry (exp).
type Tokens struct {
	secret   []byte
	lifetime time.Duration
	now      func() time.Time
}

// NewTokens returns Tokens signing with secret (at least MinSecretLen bytes)
// whose tokens live lifetime (DefaultLifetime when 0). now is the clock; nil
// means time.Now.
func NewTokens(secret []byte, lifetime time.Duration, now func() time.Time) (*Tokens, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("token secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("token lifetime must not be negative, got %s", lifetime)
	}
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{secret: append([]byte(nil), secret...), lifetime: lifetime, now: now}, nil
}

// Lifetime is how long an issued token is valid.
func (t *Tokens) Lifetime() time.Duration { return t.lifetime }

// Issue returns a token for userID and when it expires.
func (t *Tokens) Issue(userID string) (string, time.Time, error) {
	if _, err := parseUserID(userID); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	now := t.now().Truncate(time.Second)
	exp := now.Add(t.lifetime)
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   userID,
		Audience:  jwt.ClaimStrings{Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks token and returns the user id it was issued for. Only
// HS256 with this key is accepted (never "none", never another algorithm),
// exp is required and must be in the future, iss and aud must be gpuflow's,
// and sub must be a UUID. Every refusal wraps ErrInvalidToken.
func (t *Tokens) Verify(token string) (string, error) {
	id, _, err := t.VerifyExpiry(token)
	return id, err
}

// VerifyExpiry is Verify that also returns when the token expires.
func (t *Tokens) VerifyExpiry(token string) (string, time.Time, error) {
	if token == "" || len(token) > maxTokenLen {
		return "", time.Time{}, fmt.Errorf("%w: empty or too long", ErrInvalidToken)
	}
	if !compactJWS(token) {
		return "", time.Time{}, fmt.Errorf("%w: not three base64url segments", ErrInvalidToken)
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithTimeFunc(t.now),
		jwt.WithStrictDecoding(),
	)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	id, err := parseUserID(claims.Subject)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return id, claims.ExpiresAt.Time, nil
}

// compactJWS reports whether token is three dot-separated segments of the
// base64url alphabet, nothing else. Go's base64 decoder skips \r and \n
// even in strict mode, so without this a token with line breaks in its
// signature verified as the token without them (found by FuzzVerifyToken).
func compactJWS(token string) bool {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// parseUserID returns id in canonical form if it is a UUID.
func parseUserID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 || u == uuid.Nil {
		return "", fmt.Errorf("subject %q is not a user id", id)
	}
	return u.String(), nil
}
