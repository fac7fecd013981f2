package worker

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkflowsComeFromTheList: the worker registers exactly
// workflows.Registrations(), the list the replay tests check against the
// captured histories (workflows/replay_test.go). A workflow registered
// anywhere else would escape them.
func TestWorkflowsComeFromTheList(t *testing.T) {
	const loop = "main.RegisterWorkflowWithOptions(r.Func, workflow.RegisterOptions{Name: r.Name})"
	found := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, ".RegisterWorkflow") {
				continue
			}
			if filepath.ToSlash(path) == "../worker/worker.go" && strings.TrimSpace(line) == loop {
				found++
				continue
			}
			t.Errorf("%s:%d registers a workflow outside workflows.Registrations(): %s", path, i+1, strings.TrimSpace(line))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != 1 {
		t.Errorf("worker.New's registration loop over workflows.Registrations() found %d times, want 1", found)
	}
}
