package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBinaryLeavesOutTemporalServer checks that the production
// build (api, worker, migrate) links only the Temporal SDK, while the dev
// build carries the embedded server.
func TestProductionBinaryLeavesOutTemporalServer(t *testing.T) {
	deps := func(tags ...string) string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return string(out)
	}
	prod := deps()
	for _, pkg := range []string{"go.temporal.io/server/", "github.com/temporalio/ui-server/", "/internal/devtemporal", "/internal/devstack", "/internal/pgcluster"} {
		if strings.Contains(prod, pkg) {
			t.Errorf("production binary links %s", pkg)
		}
	}
	if !strings.Contains(prod, "go.temporal.io/sdk/client") {
		t.Error("production binary does not link the Temporal SDK client")
	}
	if dev := deps("-tags", "dev"); !strings.Contains(dev, "go.temporal.io/server/temporal") {
		t.Error("dev binary does not link the embedded Temporal server")
	}
}
