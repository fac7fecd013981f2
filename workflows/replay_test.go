package workflows

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// historiesDir holds histories captured from real runs of every path of
// the workflows (make replay-capture); MANIFEST.tsv says where each came
// from. See docs/WORKFLOW-VERSIONING.md.
const historiesDir = "testdata/histories"

// historyFiles lists the captured histories, sorted.
func historyFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no histories in %s: capture them with `make replay-capture`", historiesDir)
	}
	slices.Sort(files)
	return files
}

// TestReplayHistories replays every captured history against the workflow
// code as it is now, registered as the worker registers it: a change that
// would break a running job (a command added, removed or reordered without
// workflow.GetVersion) fails here, naming the history.
func TestReplayHistories(t *testing.T) {
	t.Parallel()
	for _, f := range historyFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			r := worker.NewWorkflowReplayer()
			for _, reg := range Registrations() {
				r.RegisterWorkflowWithOptions(reg.Func, workflow.RegisterOptions{Name: reg.Name})
			}
			var logs bytes.Buffer
			logger := log.NewStructuredLogger(slog.New(slog.NewTextHandler(&logs, nil)))
			if err := r.ReplayWorkflowHistoryFromJSONFile(logger, f); err != nil {
				t.Errorf("%s no longer replays: %v\n"+
					"The workflow code changed in a way that breaks jobs running with this history: "+
					"guard the change with workflow.GetVersion (docs/WORKFLOW-VERSIONING.md).\nreplay log:\n%s",
					f, err, logs.String())
			}
		})
	}
}

// TestEveryWorkflowHasAHistory fails when a workflow the worker registers
// has no captured history (a new workflow must be captured: add its paths
// to the capture in internal/e2e), when a history is of a workflow type no
// worker registers, and when a history file is not in MANIFEST.tsv (every
// file comes from the capture of a real run, not from an editor).
func TestEveryWorkflowHasAHistory(t *testing.T) {
	t.Parallel()
	byType := map[string][]string{}
	for _, f := range historyFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := client.HistoryFromJSON(bytes.NewReader(b), client.HistoryJSONOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		start := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
		if start == nil {
			t.Fatalf("%s does not start with WorkflowExecutionStarted", f)
		}
		typ := start.GetWorkflowType().GetName()
		byType[typ] = append(byType[typ], filepath.Base(f))
	}
	registered := map[string]bool{}
	for _, r := range Registrations() {
		registered[r.Name] = true
		if len(byType[r.Name]) == 0 {
			t.Errorf("workflow %s has no captured history in %s: add its paths to TestCaptureHistories (internal/e2e/capture_test.go) and run `make replay-capture`",
				r.Name, historiesDir)
		}
	}
	for typ, files := range byType {
		if !registered[typ] {
			t.Errorf("%v hold histories of workflow type %q, which the worker does not register", files, typ)
		}
	}

	listed := map[string]bool{}
	m, err := os.Open(filepath.Join(historiesDir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sc := bufio.NewScanner(m)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			listed[strings.Split(line, "\t")[0]] = true
		}
	}
	for _, files := range byType {
		for _, f := range files {
			if !listed[f] {
				t.Errorf("%s is not in %s/MANIFEST.tsv: histories come from `make replay-capture` only", f, historiesDir)
			}
		}
	}
}
