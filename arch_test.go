package gpuflow_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyArrows keeps the layout's arrows pointing one way: the
// domain at the bottom, adapters at the edges, wiring in cmd/ and
// internal/app. See docs/ARCHITECTURE.md.
func TestDependencyArrows(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/gpuflow/gpuflow"
	// forbidden maps a package (prefix) to module packages it must not import.
	forbidden := map[string][]string{
		mod + "/scheduler":  {mod + "/"},
		mod + "/activities": {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/workflows", mod + "/internal", mod + "/dispatch", mod + "/watcher", mod + "/relay"},
		// The long-running services: beside the activities, below the wiring.
		mod + "/dispatch":  {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/internal", mod + "/worker", mod + "/watcher", mod + "/relay"},
		mod + "/watcher":   {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/internal", mod + "/worker", mod + "/dispatch", mod + "/relay", mod + "/activities"},
		mod + "/relay":     {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/internal", mod + "/worker", mod + "/dispatch", mod + "/watcher", mod + "/activities"},
		mod + "/workflows": {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/internal", mod + "/dispatch", mod + "/watcher", mod + "/relay"},
		mod + "/worker":    {mod + "/postgres", mod + "/provider", mod + "/api", mod + "/internal", mod + "/dispatch", mod + "/watcher", mod + "/relay"},
		mod + "/api":       {mod + "/activities", mod + "/postgres", mod + "/provider", mod + "/internal", mod + "/worker"},
		mod + "/postgres":  {mod + "/activities", mod + "/workflows", mod + "/provider", mod + "/api", mod + "/worker"},
		mod + "/provider/": {mod + "/activities", mod + "/workflows", mod + "/postgres", mod + "/api", mod + "/worker", mod + "/internal"},
		mod + "/schema":    {mod + "/"},
		mod + "/admission": {mod + "/activities", mod + "/postgres", mod + "/provider", mod + "/api", mod + "/workflows", mod + "/worker", mod + "/internal"},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		if pkg == mod {
			for _, imp := range imports {
				if strings.Contains(strings.Split(imp, "/")[0], ".") {
					t.Errorf("the domain package imports %s: it must use the standard library only", imp)
				}
			}
			continue
		}
		// One provider never imports another; they share only agentscript,
		// emulate and desccache.
		if rest, ok := strings.CutPrefix(pkg, mod+"/provider/"); ok {
			own := mod + "/provider/" + strings.Split(rest, "/")[0]
			for _, imp := range imports {
				if strings.HasPrefix(imp, mod+"/provider/") && !strings.HasPrefix(imp, own) &&
					imp != mod+"/provider/agentscript" && imp != mod+"/provider/emulate" && imp != mod+"/provider/desccache" {
					t.Errorf("%s imports %s: providers must not depend on each other", pkg, imp)
				}
			}
		}
		for prefix, bad := range forbidden {
			if pkg != prefix && !strings.HasPrefix(pkg, prefix) {
				continue
			}
			for _, imp := range imports {
				for _, b := range bad {
					if strings.HasPrefix(imp, b) && !strings.HasPrefix(imp, pkg) {
						t.Errorf("%s imports %s", pkg, imp)
					}
				}
			}
		}
	}
}
