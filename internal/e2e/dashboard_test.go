package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/devstack"
)

// TestDashboardInBrowser drives the web dashboard (/ui/) in Debian's
// Chromium through playwright-core (web/e2e/dashboard.mjs) against the
// whole stack: register, log in, submit a job and watch it succeed live
// (no reload, no polling), cancel another, switch to Chinese, and see
// none of another user's jobs. Registration is by invitation, as a
// shared server would have it: a superuser (made as `gpuflow user create
// --superuser` makes one) creates two codes; the first user types one
// after the form has shown why it is needed and refused a wrong one, the
// second follows an invitation link that fills it in. It needs Node.js, the front end's npm
// packages and Chromium, which `make test/ui` installs (web/e2e/setup.sh)
// before running it with GPUFLOW_UI_TEST=1; without that it is skipped,
// so that `go test` needs no Node.js. Screenshots of each page go to
// web/e2e/artifacts (or GPUFLOW_UI_ARTIFACTS).
func TestDashboardInBrowser(t *testing.T) {
	if os.Getenv("GPUFLOW_UI_TEST") != "1" {
		t.Skip("the browser test runs from `make test/ui` (GPUFLOW_UI_TEST=1), which installs Node's packages and Chromium")
	}
	cfg := testConfig(t)
	cfg.Registration = gpuflow.RegistrationInvite
	s := startStack(t, cfg, devstack.Options{NoUI: true})
	invites := invitations(t, s, 2)

	web, err := filepath.Abs(filepath.Join("..", "..", "web"))
	if err != nil {
		t.Fatal(err)
	}
	artifacts := os.Getenv("GPUFLOW_UI_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(web, "e2e", "artifacts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e/dashboard.mjs")
	cmd.Dir = web
	cmd.Env = append(os.Environ(), "GPUFLOW_UI_BASE=http://"+cfg.HTTPAddr, "GPUFLOW_UI_ARTIFACTS="+artifacts,
		"GPUFLOW_UI_INVITES="+invites[0]+","+invites[1])
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the dashboard's browser test failed: %v (screenshots in %s)", err, artifacts)
	}
}

// invitations makes a superuser in the store and has it create n
// invitation codes through the API.
func invitations(t *testing.T, s *devstack.Stack, n int) []string {
	t.Helper()
	const email, password = "root@example.com", "root-password-for-invites"
	hash, err := (&auth.Hasher{}).Hash(password)
	if err != nil {
		t.Fatal(err)
	}
	root := &gpuflow.User{Email: email, HashedPassword: hash, IsActive: true, IsSuperuser: true, IsVerified: true,
		CreatedAt: time.Now().UTC()}
	if err := s.DB.CreateUser(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	a := loginAPI(t, s.APIURL(), email, password)
	var codes []string
	for range n {
		code, out := a.do(http.MethodPost, "/users/invitations", map[string]any{"expires_in_hours": 1})
		inv, _ := out["code"].(string)
		if code != http.StatusCreated || inv == "" {
			t.Fatalf("create invitation: %d %v", code, out)
		}
		codes = append(codes, inv)
	}
	return codes
}
