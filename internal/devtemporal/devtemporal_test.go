package devtemporal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// The attribute names gpuflow uses (workflows.SearchAttributeNames); spelled
// out so this package's tests do not depend on the workflows package.
var testSearchAttributes = []string{"GpuflowOwner", "GpuflowProvider", "GpuflowGpuType", "GpuflowStatus"}

const testTaskQueue = "devtemporal-test"

var statusKey = temporal.NewSearchAttributeKeyKeyword("GpuflowStatus")

// upsertStatusWorkflow sets GpuflowStatus to status and returns it.
func upsertStatusWorkflow(ctx workflow.Context, status string) (string, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, statusKey.ValueSet(status)); err != nil {
		return "", err
	}
	return status, nil
}

// waitForSignalWorkflow blocks until the "finish" signal and returns its
// payload.
func waitForSignalWorkflow(ctx workflow.Context) (string, error) {
	var msg string
	workflow.GetSignalChannel(ctx, "finish").Receive(ctx, &msg)
	return msg, nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func dial(t *testing.T, s *Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.FrontendAddr(),
		Namespace: "default",
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.FrontendAddr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

func startWorker(t *testing.T, c client.Client) worker.Worker {
	t.Helper()
	w := worker.New(c, testTaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(upsertStatusWorkflow, workflow.RegisterOptions{Name: "upsertStatus"})
	w.RegisterWorkflowWithOptions(waitForSignalWorkflow, workflow.RegisterOptions{Name: "waitForSignal"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// poll calls f until it returns nil or 10 s pass.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestInMemoryWorkflowSearchAttributeAndUI(t *testing.T) {
	s := startServer(t, Options{UIPort: FreePort, SearchAttributes: testSearchAttributes})
	if !strings.HasPrefix(s.FrontendAddr(), "127.0.0.1:") {
		t.Errorf("FrontendAddr = %q, want 127.0.0.1:<port>", s.FrontendAddr())
	}
	c := dial(t, s)
	startWorker(t, c)

	ctx := t.Context()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "upsert-1", TaskQueue: testTaskQueue}, "upsertStatus", "RUNNING")
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "RUNNING" {
		t.Fatalf("workflow result = %q, %v; want RUNNING", got, err)
	}

	// Visibility is eventually consistent.
	poll(t, "find workflow by GpuflowStatus", func() error {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default",
			Query:     "GpuflowStatus = 'RUNNING'",
		})
		if err != nil {
			return err
		}
		if n := len(resp.GetExecutions()); n != 1 || resp.GetExecutions()[0].GetExecution().GetWorkflowId() != "upsert-1" {
			return errors.New("upsert-1 not listed yet")
		}
		return nil
	})

	// The Web UI serves its page and reaches the server.
	if !strings.HasPrefix(s.UIURL(), "http://127.0.0.1:") {
		t.Fatalf("UIURL = %q", s.UIURL())
	}
	for _, tc := range []struct{ path, contentType, body string }{
		{"/", "text/html", "<html"},
		{"/api/v1/namespaces", "application/json", `"default"`},
	} {
		resp, err := http.Get(s.UIURL() + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %s", tc.path, resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("GET %s Content-Type = %q, want %s", tc.path, ct, tc.contentType)
		}
		if !strings.Contains(string(body), tc.body) {
			t.Errorf("GET %s body lacks %q", tc.path, tc.body)
		}
	}
}

// helperEnv makes TestHelperStartBlockedWorkflow run: it is the first life of
// the server in TestDBFileSurvivesRestart, in its own process.
const helperEnv = "DEVTEMPORAL_TEST_HELPER_DB"

func TestHelperStartBlockedWorkflow(t *testing.T) {
	dbFile := os.Getenv(helperEnv)
	if dbFile == "" {
		t.Skip("helper process for TestDBFileSurvivesRestart")
	}
	s := startServer(t, Options{DBFile: dbFile, SearchAttributes: testSearchAttributes})
	c := dial(t, s)
	startWorker(t, c)
	ctx := t.Context()
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "persist-1", TaskQueue: testTaskQueue}, "waitForSignal"); err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	// Wait until the worker has run the first workflow task: the workflow is
	// then blocked on the signal.
	poll(t, "workflow blocked on signal", func() error {
		d, err := c.DescribeWorkflowExecution(ctx, "persist-1", "")
		if err != nil {
			return err
		}
		if d.GetPendingWorkflowTask() != nil || d.GetWorkflowExecutionInfo().GetHistoryLength() < 4 {
			return errors.New("first workflow task not completed yet")
		}
		return nil
	})
}

func TestDBFileSurvivesRestart(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "data", "temporal.db") // "data" does not exist yet

	// Run 1 in a separate process, so run 2 really reopens the file.
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperStartBlockedWorkflow$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dbFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run 1: %v\n%s", err, out)
	}
	for _, f := range []string{dbFile, dbFile + ".schema-version"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("after run 1: %v", err)
		}
	}

	s := startServer(t, Options{DBFile: dbFile, SearchAttributes: testSearchAttributes})

	// A second copy on the same file fails fast, before touching ports.
	_, err := Start(t.Context(), Options{DBFile: dbFile, Port: DefaultPort})
	want := "another gpuflow dev server is using " + dbFile + " (lock " + dbFile + ".lock held)"
	if err == nil || err.Error() != want {
		t.Errorf("second Start error = %v, want %q", err, want)
	}

	c := dial(t, s)
	ctx := t.Context()
	d, err := c.DescribeWorkflowExecution(ctx, "persist-1", "")
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("status after restart = %v, want RUNNING", st)
	}

	startWorker(t, c)
	if err := c.SignalWorkflow(ctx, "persist-1", "", "finish", "done"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	var got string
	if err := c.GetWorkflow(ctx, "persist-1", "").Get(ctx, &got); err != nil || got != "done" {
		t.Fatalf("result = %q, %v; want done", got, err)
	}
}

func TestSearchAttributesAddedToExistingDB(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "temporal.db")
	old := startServer(t, Options{DBFile: dbFile}) // a DB from before the attributes existed
	began := time.Now()
	old.Stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Stop took %v, want a few seconds at most", d)
	}

	s := startServer(t, Options{DBFile: dbFile, SearchAttributes: testSearchAttributes})
	c := dial(t, s)
	ctx := t.Context()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatalf("list search attributes: %v", err)
	}
	for _, name := range testSearchAttributes {
		if typ := resp.GetCustomAttributes()[name]; typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("search attribute %s: type %v, want Keyword", name, typ)
		}
	}

	// They are usable at once: a start that sets one and a query on it.
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "with-attrs",
		TaskQueue:             testTaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(statusKey.ValueSet("QUEUED")),
	}, "waitForSignal"); err != nil {
		t.Fatalf("start workflow with search attribute: %v", err)
	}
	poll(t, "count by GpuflowStatus", func() error {
		n, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: "default",
			Query:     "GpuflowStatus = 'QUEUED'",
		})
		if err != nil {
			return err
		}
		if n.GetCount() != 1 {
			return errors.New("not counted yet")
		}
		return nil
	})
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	want := "port " + strconv.Itoa(busy) + " is in use: "

	dbFile := filepath.Join(t.TempDir(), "temporal.db")
	for name, opts := range map[string]Options{
		"frontend": {Port: busy, DBFile: dbFile},
		"ui":       {UIPort: busy, DBFile: dbFile},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Start(t.Context(), opts)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Start error = %v, want prefix %q", err, want)
			}
			// Nothing is left behind: no DB, and the lock is free again.
			if _, err := os.Stat(dbFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("DB file after failed start: %v", err)
			}
			lock := flock.New(dbFile + ".lock")
			if ok, err := lock.TryLock(); !ok || err != nil {
				t.Errorf("lock after failed start: %v, %v", ok, err)
			}
			_ = lock.Close()
		})
	}
}

func TestSchemaVersionCheck(t *testing.T) {
	for name, sidecar := range map[string]string{
		"Mismatch": "temporal-sqlite-schema 0.1 visibility 0.1\n",
		"Missing":  "", // a DB from elsewhere, e.g. the temporal CLI
	} {
		t.Run(name, func(t *testing.T) {
			dbFile := filepath.Join(t.TempDir(), "temporal.db")
			if err := os.WriteFile(dbFile, []byte("not touched"), 0o644); err != nil {
				t.Fatal(err)
			}
			if sidecar != "" {
				if err := os.WriteFile(dbFile+".schema-version", []byte(sidecar), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Start(t.Context(), Options{DBFile: dbFile})
			if err == nil || !strings.Contains(err.Error(), "move "+dbFile) {
				t.Fatalf("Start error = %v, want advice to move %s away", err, dbFile)
			}
			if b, _ := os.ReadFile(dbFile); string(b) != "not touched" {
				t.Errorf("DB file changed: %q", b)
			}
		})
	}
}

func TestRejectsNonLoopbackHost(t *testing.T) {
	for _, host := range []string{"0.0.0.0", "192.0.2.1", "example.com"} {
		if _, err := Start(t.Context(), Options{Host: host}); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Start(Host: %q) error = %v, want a loopback error", host, err)
		}
	}
}
