package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/workflows"
)

// TestLocalJobSucceeds: a job submitted through the API runs on this host,
// reaches succeeded with its output in the logs, its events are recorded in
// order, and the Temporal search attributes follow its state.
func TestLocalJobSucceeds(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	c := newAPI(t, s.APIURL())

	id := c.submit(map[string]any{"name": "hello", "command": []string{"echo", "hello"}, "gpu_count": 0})
	j := c.waitStatus(id, "succeeded", 30*time.Second)
	if j["exit_code"].(float64) != 0 || j["provider"] != "local" {
		t.Fatalf("job %v", j)
	}
	if logs := c.logs(id); logs != "hello\n" {
		t.Fatalf("logs %q", logs)
	}

	code, ev := c.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
	if code == http.StatusOK {
		t.Logf("events: %v", ev)
	}
	events, err := s.DB.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for i, e := range events {
		if e.JobSeq != i+1 {
			t.Fatalf("event %d has job_seq %d", i, e.JobSeq)
		}
		if e.Status != "" {
			statuses = append(statuses, string(e.Status))
		}
	}
	if got := strings.Join(statuses, ","); got != "scheduling,provisioning,running,succeeded" {
		t.Fatalf("status events %s", got)
	}

	// Visibility is eventually consistent: wait for the search attribute.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: cfg.TemporalNamespace,
			Query:     fmt.Sprintf("WorkflowId = '%s' AND GpuflowStatus = 'succeeded' AND GpuflowProvider = 'local'", workflows.JobWorkflowID(id)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Executions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("search attributes never showed the job as succeeded on local")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJobFailsWithExitCode: a non-zero exit fails the job with the code.
func TestJobFailsWithExitCode(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"sh", "-c", "echo oops >&2; exit 3"}, "gpu_count": 0})
	j := c.waitStatus(id, "failed", 30*time.Second)
	if j["exit_code"].(float64) != 3 || !strings.Contains(j["error"].(string), "3") {
		t.Fatalf("job %v", j)
	}
	if logs := c.logs(id); !strings.Contains(logs, "oops") {
		t.Fatalf("logs %q", logs)
	}
}

// TestCancel: a running `sleep 300` cancelled through the API, or through
// Temporal (as the Web UI's button does), ends cancelled with its process
// group gone.
func TestCancel(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	c := newAPI(t, s.APIURL())

	for _, via := range []string{"api", "temporal"} {
		t.Run(via, func(t *testing.T) {
			c.t = t
			id := c.submit(map[string]any{"command": []string{"sleep", "300"}, "gpu_count": 0})
			c.waitStatus(id, "running", 30*time.Second)
			pgid := jobPGID(t, cfg, id)
			if groupGone(pgid) {
				t.Fatal("job process not running")
			}
			switch via {
			case "api":
				code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", map[string]any{"reason": "test"})
				if code != http.StatusAccepted {
					t.Fatalf("cancel: %d %v", code, out)
				}
			case "temporal":
				if err := s.Client.CancelWorkflow(context.Background(), workflows.JobWorkflowID(id), ""); err != nil {
					t.Fatal(err)
				}
			}
			c.waitStatus(id, "cancelled", 30*time.Second)
			if !groupGone(pgid) {
				t.Fatal("job marked cancelled while its process group lives")
			}
			// A finished job cannot be cancelled again.
			if code, _ := c.do(http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", nil); code != http.StatusConflict {
				t.Fatalf("second cancel: %d, want 409", code)
			}
		})
	}
}

// TestWorkerKilledMidJob: the worker process is killed with SIGKILL while
// the job runs; a new worker takes over, and the job finishes exactly once
// with one process having run.
func TestWorkerKilledMidJob(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoWorker: true})
	c := newAPI(t, s.APIURL())
	marker := filepath.Join(t.TempDir(), "runs")

	w1 := startChild(t, "worker", cfg)
	id := c.submit(map[string]any{"command": []string{"sh", "-c", "echo run >> " + marker + "; sleep 3; echo done"}, "gpu_count": 0})
	c.waitStatus(id, "running", 30*time.Second)
	w1.kill()

	startChild(t, "worker", cfg)
	j := c.waitStatus(id, "succeeded", 60*time.Second)
	if j["exit_code"].(float64) != 0 {
		t.Fatalf("job %v", j)
	}
	runs, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if string(runs) != "run\n" {
		t.Fatalf("the job's command ran %d times", strings.Count(string(runs), "run"))
	}
	if logs := c.logs(id); !strings.Contains(logs, "done") {
		t.Fatalf("logs %q", logs)
	}
	events, err := s.DB.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	succeeded := 0
	for _, e := range events {
		if e.Status == "succeeded" {
			succeeded++
		}
	}
	if succeeded != 1 {
		t.Fatalf("%d succeeded events", succeeded)
	}
}

// TestStackRestartMidJob: the whole stack (Temporal, worker, API) is killed
// with SIGKILL mid-job and started again on the same data directory; the
// job still finishes.
func TestStackRestartMidJob(t *testing.T) {
	cfg := testConfig(t)
	base := "http://" + cfg.HTTPAddr
	first := startChild(t, "dev", cfg)
	waitUp(t, base+"/health", first)
	c := newAPI(t, base)

	id := c.submit(map[string]any{"command": []string{"sh", "-c", "sleep 4; echo survived"}, "gpu_count": 0})
	c.waitStatus(id, "running", 30*time.Second)
	first.kill()

	second := startChild(t, "dev", cfg)
	waitUp(t, c.base+"/health", second)
	c.waitStatus(id, "succeeded", 90*time.Second)
	if logs := c.logs(id); !strings.Contains(logs, "survived") {
		t.Fatalf("logs %q", logs)
	}
}

func waitUp(t *testing.T, url string, ch *child) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stack did not come up: %s", ch.out.String())
}

// TestReconcilerRemovesOrphans: a job's workflow terminated by force
// (`temporal workflow terminate`) leaves its machine running; the
// reconciler's schedule finds it, terminates it and fails the job.
func TestReconcilerRemovesOrphans(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReconcileInterval, cfg.ReconcileGrace = 2*time.Second, time.Second
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"sleep", "300"}, "gpu_count": 0})
	c.waitStatus(id, "running", 30*time.Second)
	pgid := jobPGID(t, cfg, id)
	if err := s.Client.TerminateWorkflow(context.Background(), workflows.JobWorkflowID(id), "", "forced by test"); err != nil {
		t.Fatal(err)
	}
	waitGroupGone(t, pgid, 30*time.Second)
	j := c.waitStatus(id, "failed", 10*time.Second)
	if !strings.Contains(j["error"].(string), "reconciler") {
		t.Fatalf("job %v", j)
	}
}
