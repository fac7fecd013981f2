package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/devstack"
)

// TestDashboardInBrowser drives the web dashboard (/ui/) in Debian's
// Chromium through playwright-core (web/e2e/dashboard.mjs) against the
// whole stack: register, log in, submit a job and watch it succeed live
// (no reload, no polling), cancel another, switch to Chinese, and see
// none of another user's jobs. It needs Node.js, the front end's npm
// packages and Chromium, which `make test/ui` installs (web/e2e/setup.sh)
// before running it with GPUFLOW_UI_TEST=1; without that it is skipped,
// so that `go test` needs no Node.js. Screenshots of each page go to
// web/e2e/artifacts (or GPUFLOW_UI_ARTIFACTS).
func TestDashboardInBrowser(t *testing.T) {
	if os.Getenv("GPUFLOW_UI_TEST") != "1" {
		t.Skip("the browser test runs from `make test/ui` (GPUFLOW_UI_TEST=1), which installs Node's packages and Chromium")
	}
	cfg := testConfig(t)
	startStack(t, cfg, devstack.Options{NoUI: true})

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
	cmd.Env = append(os.Environ(), "GPUFLOW_UI_BASE=http://"+cfg.HTTPAddr, "GPUFLOW_UI_ARTIFACTS="+artifacts)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the dashboard's browser test failed: %v (screenshots in %s)", err, artifacts)
	}
}
