package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAgentTokens(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("k", 32))
	now := time.Now()
	clock := func() time.Time { return now }
	at, err := NewAgentTokens(secret, clock)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := at.Issue("job-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := at.Verify(tok, "job-1"); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	for name, check := range map[string]error{
		"other job": at.Verify(tok, "job-2"),
		"garbage":   at.Verify("x.y.z", "job-1"),
		"empty":     at.Verify("", "job-1"),
		"no job id": at.Verify(tok, ""), // found by FuzzVerifyAgentToken
	} {
		if !errors.Is(check, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, check)
		}
	}
	// A user token is not an agent token, and the reverse.
	users, _ := NewTokens(secret, time.Hour, clock)
	ut, _, _ := users.Issue("6f1c7c1e-8d0a-4b43-9c39-7e9c2b1f0a11")
	if err := at.Verify(ut, "6f1c7c1e-8d0a-4b43-9c39-7e9c2b1f0a11"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("user token accepted as agent token: %v", err)
	}
	if _, err := users.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("agent token accepted as user token: %v", err)
	}
	// Expired.
	later, _ := NewAgentTokens(secret, func() time.Time { return now.Add(2 * time.Hour) })
	if err := later.Verify(tok, "job-1"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired token accepted: %v", err)
	}
	// Another key.
	other, _ := NewAgentTokens([]byte(strings.Repeat("o", 32)), clock)
	if err := other.Verify(tok, "job-1"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token of another key accepted: %v", err)
	}
}
