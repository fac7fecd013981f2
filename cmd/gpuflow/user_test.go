package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// memUsers is an in-memory gpuflow.UserStore.
type memUsers struct {
	mu    sync.Mutex
	users []*gpuflow.User
}

func (m *memUsers) CreateUser(_ context.Context, u *gpuflow.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.users {
		if strings.EqualFold(o.Email, u.Email) {
			return gpuflow.Errorf(gpuflow.ECONFLICT, "user already exists")
		}
	}
	u.ID = "5b7c1d5e-3f1a-4c2b-9a8e-1d2c3b4a5f60"
	c := *u
	m.users = append(m.users, &c)
	return nil
}

func (m *memUsers) User(context.Context, string) (*gpuflow.User, error) {
	return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
}

func (m *memUsers) UserByEmail(context.Context, string) (*gpuflow.User, error) {
	return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
}

func (m *memUsers) UpdateUser(context.Context, string, gpuflow.UserUpdate) (*gpuflow.User, error) {
	return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
}

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	users := &memUsers{}
	h := &auth.Hasher{Cost: auth.MinCost}
	u, err := createUser(ctx, users, h, " Root@Example.com ", "correct horse", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.Email != "root@example.com" || !u.IsSuperuser || !u.IsActive || !u.IsVerified || !u.CanRunLocal {
		t.Errorf("user = %+v", u)
	}
	if !h.Verify(users.users[0].HashedPassword, "correct horse") {
		t.Error("the stored hash does not verify the password")
	}
	if strings.Contains(users.users[0].HashedPassword, "correct horse") {
		t.Error("the password is stored in clear")
	}
	for name, tc := range map[string]struct{ email, password, want string }{
		"duplicate":    {"ROOT@example.com", "correct horse", "already exists"},
		"bad email":    {"root", "correct horse", "email"},
		"weak":         {"a@example.com", "short", "at least 8"},
		"has email":    {"a@example.com", "a@example.com!", "email"},
		"display name": {"Root <r@example.com>", "correct horse", "email"},
	} {
		_, err := createUser(ctx, users, h, tc.email, tc.password, false, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one about %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

func TestParseUserCreate(t *testing.T) {
	o, err := parseUserCreate([]string{"--email", "a@example.com", "--superuser", "--local", "--password-stdin"}, io.Discard)
	if err != nil || o != (userCreateOptions{email: "a@example.com", superuser: true, local: true, passwordStdin: true}) {
		t.Errorf("parse = %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{},                                      // no email
		{"--email", "a@example.com", "hunter2"}, // a password as an argument
		{"--email", "a@example.com", "--password", "hunter2"},
	} {
		if _, err := parseUserCreate(args, io.Discard); err == nil {
			t.Errorf("parse %q succeeded", args)
		}
	}
}

func TestReadPassword(t *testing.T) {
	noTerm := func() ([]byte, error) { t.Fatal("read from the terminal"); return nil, nil }
	for in, want := range map[string]string{
		"correct horse\n":          "correct horse",
		"correct horse\r\n":        "correct horse",
		"correct horse":            "correct horse",
		" spaced  \nsecond line\n": " spaced  ",
	} {
		got, err := readPassword(strings.NewReader(in), io.Discard, false, noTerm)
		if err != nil || got != want {
			t.Errorf("readPassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := readPassword(strings.NewReader(""), io.Discard, false, noTerm); err == nil {
		t.Error("an empty stdin gave a password")
	}

	// On a terminal: asked twice, without echo.
	answers := func(a ...string) func() ([]byte, error) {
		return func() ([]byte, error) {
			if len(a) == 0 {
				return nil, errors.New("no more input")
			}
			s := a[0]
			a = a[1:]
			return []byte(s), nil
		}
	}
	var prompt strings.Builder
	got, err := readPassword(strings.NewReader("not this"), &prompt, true, answers("correct horse", "correct horse"))
	if err != nil || got != "correct horse" || !strings.Contains(prompt.String(), "Repeat password") {
		t.Errorf("terminal: %q, %v, prompt %q", got, err, prompt.String())
	}
	if _, err := readPassword(nil, io.Discard, true, answers("correct horse", "correct hors")); err == nil {
		t.Error("differing passwords accepted")
	}
}
