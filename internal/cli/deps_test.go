package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientOnly keeps the client a client: it speaks the API over the
// network and links no package of the server (nor Temporal, nor the
// embedded server of the dev build).
func TestClientOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/gpuflow/gpuflow"
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, mod) && pkg != mod+"/internal/cli" || strings.HasPrefix(pkg, "go.temporal.io/") {
			t.Errorf("the client links %s", pkg)
		}
	}
}
