package auth

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AgentAudience is the aud claim of agent tokens: a user token is never an
// agent token, nor the reverse.
const AgentAudience = "gpuflow:agent"

// AgentTokens issues and verifies the tokens a job's machine uses to report
// to the agent endpoint: HS256 JWTs valid for one job (sub) until they
// expire.
type AgentTokens struct {
	secret []byte
	now    func() time.Time
}

// NewAgentTokens returns AgentTokens signing with secret (at least
// MinSecretLen bytes). now is the clock; nil means time.Now.
func NewAgentTokens(secret []byte, now func() time.Time) (*AgentTokens, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("token secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	if now == nil {
		now = time.Now
	}
	return &AgentTokens{secret: append([]byte(nil), secret...), now: now}, nil
}

// Issue returns a token for jobID valid for ttl.
func (t *AgentTokens) Issue(jobID string, ttl time.Duration) (string, error) {
	if jobID == "" || ttl <= 0 {
		return "", fmt.Errorf("issue agent token: job id and a positive lifetime are required")
	}
	now := t.now().Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Issuer: Issuer, Subject: jobID, Audience: jwt.ClaimStrings{AgentAudience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("sign agent token: %w", err)
	}
	return s, nil
}

// Verify checks that token is a valid, unexpired agent token for jobID.
// Every refusal wraps ErrInvalidToken.
func (t *AgentTokens) Verify(token, jobID string) error {
	if token == "" || len(token) > maxTokenLen {
		return fmt.Errorf("%w: empty or too long", ErrInvalidToken)
	}
	if !compactJWS(token) {
		return fmt.Errorf("%w: not three base64url segments", ErrInvalidToken)
	}
	// jwt.WithSubject("") checks nothing: without this, any job's token
	// passed for the empty job id (found by FuzzVerifyAgentToken; the
	// route /agent/v1/jobs//finished reached it).
	if jobID == "" {
		return fmt.Errorf("%w: no job id", ErrInvalidToken)
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(AgentAudience),
		jwt.WithSubject(jobID),
		jwt.WithTimeFunc(t.now),
		jwt.WithStrictDecoding(),
	)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return nil
}
