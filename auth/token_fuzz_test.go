package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fuzz targets for token parsing: any string handed in as a bearer token.
// The property is unforgeability in its strongest form: the only strings
// accepted are the tokens this key issued, byte for byte (so no other
// encoding, algorithm, key or claim set gets through), and every refusal
// wraps ErrInvalidToken. The seeds are issued tokens and the usual attacks
// on them.

// tokenSeeds returns valid tokens (to be mutated) and crafted ones.
func tokenSeeds(t testing.TB, valid ...string) []string {
	t.Helper()
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: Issuer, Subject: userID,
		Audience: jwt.ClaimStrings{Audience}, ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour))}).
		SignedString([]byte("another-secret-another-secret-32"))
	seeds := append([]string{}, valid...)
	for _, v := range valid {
		parts := strings.Split(v, ".")
		seeds = append(seeds,
			parts[0]+"."+parts[1]+".",                                      // no signature
			seg(`{"alg":"none","typ":"JWT"}`)+"."+parts[1]+".",             // alg none
			seg(`{"alg":"HS512","typ":"JWT"}`)+"."+parts[1]+"."+parts[2],   // alg swapped
			parts[0]+"."+parts[1]+"."+parts[2]+"=",                         // padding
			parts[0]+"."+parts[1]+"."+strings.TrimRight(parts[2], "A")+"B", // last bits changed
			" "+v, v+" ", strings.ToUpper(v), v+"."+parts[2],
		)
	}
	return append(seeds, other, "", ".", "..", "a.b.c", "Bearer x", strings.Repeat("a", maxTokenLen+1),
		seg(`{"alg":"HS256"}`)+"."+seg(`{"sub":"`+userID+`","exp":99999999999}`)+".x")
}

func FuzzVerifyToken(f *testing.F) {
	tk, err := NewTokens(secret, time.Hour, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	issued := map[string]string{}
	for _, id := range []string{userID, "00000000-0000-4000-8000-000000000001"} {
		s, _, err := tk.Issue(id)
		if err != nil {
			f.Fatal(err)
		}
		issued[s] = id
	}
	var valid []string
	for s := range issued {
		valid = append(valid, s)
	}
	for _, s := range tokenSeeds(f, valid...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := tk.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refusal of %q does not wrap ErrInvalidToken: %v", token, err)
			}
			return
		}
		want, ok := issued[token]
		if !ok {
			t.Fatalf("accepted a token this key never issued: %q (user %q)", token, id)
		}
		if id != want {
			t.Fatalf("token of %s verified as %s", want, id)
		}
	})
}

func FuzzVerifyAgentToken(f *testing.F) {
	at, err := NewAgentTokens(secret, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	user, err := NewTokens(secret, time.Hour, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	const job = "8b0c9a1e-7d6f-4e5a-9b3c-2d1e0f9a8b7c"
	issued := map[string]string{}
	for _, j := range []string{job, "job-2"} {
		s, err := at.Issue(j, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		issued[s] = j
	}
	userTok, _, _ := user.Issue(userID) // same key, other audience: never an agent token
	var valid []string
	for s := range issued {
		valid = append(valid, s)
	}
	for _, s := range tokenSeeds(f, valid...) {
		f.Add(s, job)
	}
	f.Add(userTok, userID)
	for s, j := range issued {
		f.Add(s, j+"x")
		f.Add(s, strings.ToUpper(j))
	}
	f.Fuzz(func(t *testing.T, token, jobID string) {
		err := at.Verify(token, jobID)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refusal of %q does not wrap ErrInvalidToken: %v", token, err)
			}
			return
		}
		if j, ok := issued[token]; !ok || j != jobID {
			t.Fatalf("accepted %q for job %q; issued for %q (%v)", token, jobID, j, ok)
		}
	})
}
