package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	userID = "5b7c1d5e-3f1a-4c2b-9a8e-1d2c3b4a5f60"
	t0     = time.Date(2025, 9, 6, 14, 0, 0, 0, time.UTC)
)

func TestCheckPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pw, email, want string // want: part of the message, "" for accepted
	}{
		{"correct horse", "a@example.com", ""},
		{"12345678", "", ""},
		{"ünïcödé", "", "at least 8"}, // 7 characters, more bytes
		{"ünïcödé!", "", ""},
		{"short", "", "at least 8"},
		{"", "", "at least 8"},
		{strings.Repeat("a", 72), "", ""},
		{strings.Repeat("a", 73), "", "at most 72 bytes"},
		{strings.Repeat("é", 37), "", "at most 72 bytes"}, // 37 characters, 74 bytes
		{"         ", "", "blank"},
		{"xx-Bob@Example.com-xx", "bob@example.com", "email"},
		{"abc\xffdefgh", "", "UTF-8"},
	} {
		err := CheckPassword(tc.pw, tc.email)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckPassword(%q) = %v, want accepted", tc.pw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckPassword(%q) = %v, want an error about %q", tc.pw, err, tc.want)
		}
	}
}

func TestHasher(t *testing.T) {
	t.Parallel()
	h := &Hasher{Cost: MinCost}
	hash, err := h.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$2a$04$") || strings.Contains(hash, "correct horse") {
		t.Fatalf("hash = %q", hash)
	}
	if again, _ := h.Hash("correct horse"); again == hash {
		t.Error("two hashes of one password are equal: no salt")
	}
	if !h.Verify(hash, "correct horse") {
		t.Error("Verify(right password) = false")
	}
	for _, pw := range []string{"correct hors", "correct horse ", "Correct horse", ""} {
		if h.Verify(hash, pw) {
			t.Errorf("Verify(%q) = true", pw)
		}
	}
	if h.Verify("not a hash", "correct horse") {
		t.Error("Verify(malformed hash) = true")
	}
	if _, err := h.Hash(strings.Repeat("a", 73)); err == nil {
		t.Error("Hash of 73 bytes succeeded: bcrypt would cut it")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if h.VerifyNone("correct horse") {
				t.Error("VerifyNone = true")
			}
		})
	}
	wg.Wait()
	if (&Hasher{}).cost() != DefaultCost {
		t.Error("zero Hasher does not use DefaultCost")
	}
}

func newTokens(t *testing.T, now *time.Time) *Tokens {
	t.Helper()
	tk, err := NewTokens(secret, time.Hour, func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestNewTokens(t *testing.T) {
	t.Parallel()
	if _, err := NewTokens([]byte("too short"), 0, nil); err == nil {
		t.Error("NewTokens with a 9-byte secret succeeded")
	}
	if _, err := NewTokens(secret, -time.Second, nil); err == nil {
		t.Error("NewTokens with a negative lifetime succeeded")
	}
	tk, err := NewTokens(secret, 0, nil)
	if err != nil || tk.Lifetime() != DefaultLifetime {
		t.Fatalf("NewTokens = %v, %v", tk, err)
	}
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	now := t0
	tk := newTokens(t, &now)
	tok, exp, err := tk.Issue(userID)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("exp = %v", exp)
	}
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != userID || claims["exp"] != float64(exp.Unix()) || claims["iat"] != float64(t0.Unix()) ||
		claims["iss"] != Issuer {
		t.Errorf("claims = %v", claims)
	}
	got, err := tk.Verify(tok)
	if err != nil || got != userID {
		t.Fatalf("Verify = %q, %v", got, err)
	}

	now = t0.Add(time.Hour - time.Second)
	if _, err := tk.Verify(tok); err != nil {
		t.Errorf("Verify a second before expiry: %v", err)
	}
	now = t0.Add(time.Hour + time.Second)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify after expiry = %v, want ErrInvalidToken", err)
	}

	for _, bad := range []string{"", "nope", uuidNil} {
		if _, _, err := tk.Issue(bad); err == nil {
			t.Errorf("Issue(%q) succeeded", bad)
		}
	}
}

const uuidNil = "00000000-0000-0000-0000-000000000000"

// sign signs claims with method and key, bypassing Tokens.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRefusesAttacks(t *testing.T) {
	t.Parallel()
	now := t0
	tk := newTokens(t, &now)
	good := func() jwt.RegisteredClaims {
		return jwt.RegisteredClaims{
			Issuer: Issuer, Subject: userID, Audience: jwt.ClaimStrings{Audience},
			IssuedAt: jwt.NewNumericDate(t0), ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
		}
	}
	with := func(edit func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := good()
		edit(&c)
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodHS256, secret, good())
	if _, err := tk.Verify(valid); err != nil {
		t.Fatalf("the control token is refused: %v", err)
	}
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	tokens := map[string]string{
		"AlgNone":      sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good()),
		"AlgNoneEmpty": b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		// Go's base64 skips line breaks even when strict (FuzzVerifyToken).
		"LineBreaks":  parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n\r\n" + parts[2][10:],
		"AlgNoneCaps": b64([]byte(`{"alg":"None","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2],
		"HS512":       sign(t, jwt.SigningMethodHS512, secret, good()),
		"HS384":       sign(t, jwt.SigningMethodHS384, secret, good()),
		// An RS256 token: a server that took the algorithm from the header
		// would check it with the wrong kind of key.
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey, good()),
		// The RS256 header over a body HMAC-signed with the secret: the
		// classic key-confusion forgery.
		"RS256HeaderHMACSig": b64([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2],
		"BadSignature":       parts[0] + "." + parts[1] + "." + b64([]byte("not the signature at all, 32b!!")),
		"OtherSecret":        sign(t, jwt.SigningMethodHS256, []byte("ffffffffffffffffffffffffffffffff"), good()),
		"TamperedBody": parts[0] + "." + b64([]byte(`{"iss":"gpuflow","sub":"6b7c1d5e-3f1a-4c2b-9a8e-1d2c3b4a5f60",`+
			`"aud":["gpuflow:api"],"exp":1957100400}`)) + "." + parts[2],
		"Expired": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(t0.Add(-time.Minute))
		})),
		"MissingExp": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })),
		"NotYetValid": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(t0.Add(time.Minute))
		})),
		"MissingSub": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.Subject = "" })),
		"SubNotUUID": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.Subject = "admin" })),
		"SubNilUUID": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.Subject = uuidNil })),
		"SubURN": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) {
			c.Subject = "urn:uuid:" + userID
		})),
		"SubNumber": sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
			"iss": Issuer, "aud": Audience, "sub": 42, "exp": t0.Add(time.Hour).Unix(),
		}),
		"WrongIssuer": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.Issuer = "other" })),
		"NoAudience":  sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) { c.Audience = nil })),
		"WrongAudience": sign(t, jwt.SigningMethodHS256, secret, with(func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"fastapi-users:auth"}
		})),
		"Empty":       "",
		"Garbage":     "not.a.token",
		"TwoParts":    parts[0] + "." + parts[1],
		"Huge":        parts[0] + "." + strings.Repeat("A", 5000) + "." + parts[2],
		"TrailingDot": valid + ".",
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			id, err := tk.Verify(tok)
			if !errors.Is(err, ErrInvalidToken) || id != "" {
				t.Errorf("Verify = %q, %v; want ErrInvalidToken", id, err)
			}
		})
	}
}
