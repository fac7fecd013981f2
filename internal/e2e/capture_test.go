package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/workflows"
)

// captureEnv turns TestCaptureHistories on.
const captureEnv = "GPUFLOW_CAPTURE_HISTORIES"

// captureWait bounds every wait of the capture: generous, it is no
// measure of speed (a loaded machine is slow, nothing more).
const captureWait = 3 * time.Minute

// TestCaptureHistories runs every path of the job and reconciler workflows
// on real stacks — the embedded Temporal server, PostgreSQL, the real
// worker, the local provider and the emulated clouds — and writes each
// run's full history, as `temporal workflow show --output json` does, to
// workflows/testdata/histories, where the replay tests of package
// workflows replay them on every `make test`. On demand only:
//
//	make replay-capture
//	GPUFLOW_CAPTURE_HISTORIES=1 go test -count=1 -timeout 45m -run '^TestCaptureHistories$' -v ./internal/e2e/
//
// One path: -run '^TestCaptureHistories$/main/success-local'.
//
// A capture never replaces a history: a path whose new history has the
// same shape (the commands, markers and signals it holds) as a file kept
// for it writes nothing; one with a new shape is added beside the old
// ones as <path>.<n>.json, so jobs started by older code stay checked.
// MANIFEST.tsv records where every file came from. See
// docs/WORKFLOW-VERSIONING.md.
func TestCaptureHistories(t *testing.T) {
	if os.Getenv(captureEnv) == "" {
		t.Skipf("set %s=1 (make replay-capture) to capture workflow histories", captureEnv)
	}
	cp := newCapturer(t, filepath.Join("..", "..", "workflows", "testdata", "histories"))
	t.Run("main", func(t *testing.T) { captureMain(t, cp) })
	t.Run("queue", func(t *testing.T) { captureQueue(t, cp) })
	t.Run("outage", func(t *testing.T) { captureOutage(t, cp) })
	t.Run("continue-as-new", func(t *testing.T) { captureContinueAsNew(t, cp) })
	t.Run("reconcile", func(t *testing.T) { captureReconcile(t, cp) })
	cp.report(t)
}

// captureMain: one stack with every emulated cloud; paths in turn.
func captureMain(t *testing.T, cp *capturer) {
	cfg := testConfig(t)
	s := cp.stack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	cloud := func(provider, gpu string, env map[string]string) map[string]any {
		return map[string]any{"command": []string{"python", "train.py"}, "gpu_type": gpu, "gpu_count": 1, "provider": provider, "env": env}
	}

	// The deadline takes a minute (its least): started first, captured last.
	timeoutAPI := newAPI(t, s.APIURL())
	spec := localJob("sleep", "600")
	spec["max_duration_minutes"] = 1
	timedOut := timeoutAPI.submit(spec)

	cp.path(t, "success-local", "local job exits 0", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("echo", "hello"))
		c.waitStatus(id, "succeeded", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "success-cloud-agent", "Tencent (emulated) job; the machine's agent reports progress and exit code 0", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(cloud("tencent", "T4", map[string]string{emulate.EnvRunSeconds: "1"}))
		c.waitStatus(id, "succeeded", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "failure-exit-local", "local job exits 3", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("sh", "-c", "echo oops >&2; exit 3"))
		c.waitStatus(id, "failed", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "failure-exit-cloud", "Tencent (emulated) job whose agent reports exit code 3", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(cloud("tencent", "T4", map[string]string{emulate.EnvRunSeconds: "0.5", emulate.EnvExitCode: "3"}))
		c.waitStatus(id, "failed", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "cancel-running", "running local job cancelled through the API", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("sleep", "300"))
		c.waitStatus(id, "running", captureWait)
		cancelJob(t, c, id)
		c.waitStatus(id, "cancelled", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "cancel-running-temporal", "running local job cancelled through Temporal (the Web UI's button)", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("sleep", "300"))
		c.waitStatus(id, "running", captureWait)
		if err := s.Client.CancelWorkflow(context.Background(), workflows.JobWorkflowID(id), ""); err != nil {
			t.Fatal(err)
		}
		c.waitStatus(id, "cancelled", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "cancel-provisioning", "RunPod (emulated) job cancelled while its create call is in flight", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		rp := s.Emulators["runpod"].Faults()
		rp.Set(emulate.Faults{Slow: 3 * time.Second})
		defer rp.Set(emulate.Faults{})
		id := c.submit(cloud("runpod", "RTX4090", nil))
		c.waitStatus(id, "provisioning", captureWait)
		cancelJob(t, c, id)
		c.waitStatus(id, "cancelled", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "preemption-retry", "RunPod (emulated) spot pod preempted while running; the job runs again and succeeds", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		spec := cloud("runpod", "RTX4090", map[string]string{emulate.EnvRunSeconds: "15"})
		spec["spot"], spec["max_restarts"] = true, 2
		id := c.submit(spec)
		j := c.waitStatus(id, "running", captureWait)
		machine := j["instance_id"].(string)
		if err := s.Emulators["runpod"].Preempt(machine); err != nil {
			t.Fatalf("preempt %s: %v", machine, err)
		}
		j = c.waitStatus(id, "succeeded", captureWait)
		if n := len(j["attempts"].([]any)); n != 2 {
			t.Fatalf("%d attempts, want 2 (preempted, then succeeded): %v", n, j["attempts"])
		}
		return jobRuns(t, s, id)
	})
	cp.path(t, "failover-no-capacity", "Tencent (emulated) out of capacity: the job fails over to RunPod", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		tc := s.Emulators["tencent"].Faults()
		tc.Set(emulate.Faults{NoCapacity: true})
		defer tc.Set(emulate.Faults{})
		spec := cloud("", "A100", map[string]string{emulate.EnvRunSeconds: "0.5"})
		delete(spec, "provider")
		spec["providers"], spec["strategy"] = []string{"tencent", "runpod"}, "cost"
		id := c.submit(spec)
		j := c.waitStatus(id, "succeeded", captureWait)
		if j["provider"] != "runpod" {
			t.Fatalf("job ran on %v, want runpod after tencent's no capacity: %v", j["provider"], j)
		}
		return jobRuns(t, s, id)
	})
	cp.path(t, "failure-max-duration", "local job stopped at max_duration_minutes (1)", func(t *testing.T) []runRef {
		timeoutAPI.t = t
		timeoutAPI.waitStatus(timedOut, "failed", captureWait)
		return jobRuns(t, s, timedOut)
	})
}

// captureQueue: one CPU slot, held by a blocker; jobs wait in the queue.
func captureQueue(t *testing.T, cp *capturer) {
	cfg := testConfig(t)
	cfg.LocalCPUSlots = 1
	cfg.QueueRecheck = time.Hour // only freed capacity wakes the queue
	s := cp.stack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true})
	c := newAPI(t, s.APIURL())
	blocker := c.submit(localJob("sleep", "300"))
	c.waitStatus(blocker, "running", captureWait)
	waiter := c.submit(localJob("echo", "waited"))
	waitInQueue(t, c, waiter)

	cp.path(t, "cancel-queued", "local job cancelled while it waits in the queue", func(t *testing.T) []runRef {
		c.t = t
		id := c.submit(localJob("echo", "doomed"))
		waitInQueue(t, c, id)
		cancelJob(t, c, id)
		c.waitStatus(id, "cancelled", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "queue-wait-run", "local job waits in the queue for a CPU slot, then runs and succeeds", func(t *testing.T) []runRef {
		c.t = t
		cancelJob(t, c, blocker)
		c.waitStatus(blocker, "cancelled", captureWait)
		c.waitStatus(waiter, "succeeded", captureWait)
		return jobRuns(t, s, waiter)
	})
}

// captureOutage: the stack reaches Temporal and PostgreSQL through TCP
// proxies the capture cuts.
func captureOutage(t *testing.T, cp *capturer) {
	cfg := testConfig(t)
	temporalProxy := testutil.NewTCPProxy(t, cfg.TemporalAddress)
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	dbProxy := testutil.NewTCPProxy(t, u.Host)
	u.Host = dbProxy.Addr()
	cfg.DatabaseURL = u.String()
	s := cp.stack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true, TemporalClientAddr: temporalProxy.Addr()})

	cp.path(t, "outage-temporal-agent-report", "Temporal cut off while a running job's agent reports progress and exit code 3; the relay delivers both after the outage", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("sleep", "600")) // only the delivered report can end it early
		c.waitStatus(id, "running", captureWait)
		report := agentReporter(t, s, id)
		temporalProxy.Cut()
		restored := false
		defer func() {
			if !restored {
				temporalProxy.Restore()
			}
		}()
		report("progress", `{"percent":42,"message":"during the outage"}`)
		report("finished", `{"exit_code":3}`)
		waitReportTried(t, s, id, "finished")
		temporalProxy.Restore()
		restored = true
		j := c.waitStatus(id, "failed", captureWait)
		if code, _ := j["exit_code"].(float64); code != 3 {
			t.Fatalf("job %v, want exit code 3 from the relayed report", j)
		}
		return jobRuns(t, s, id)
	})
	cp.path(t, "outage-postgres", "PostgreSQL cut off while a running local job is cancelled through Temporal: the state changes and the teardown retry until it is back; the job ends cancelled", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(localJob("sleep", "300"))
		c.waitStatus(id, "running", captureWait)
		pgid := jobPGID(t, cfg, id)
		dbProxy.Cut()
		restored := false
		defer func() {
			if !restored {
				dbProxy.Restore()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.DB.Pool.Ping(ctx); err == nil {
			t.Fatal("PostgreSQL answered through the cut proxy")
		}
		cancel()
		if err := s.Client.CancelWorkflow(context.Background(), workflows.JobWorkflowID(id), ""); err != nil {
			t.Fatal(err)
		}
		// The teardown kills the job during the outage; it cannot finish
		// (the watch row stays) until PostgreSQL is back.
		waitGroupGone(t, pgid, captureWait)
		dbProxy.Restore()
		restored = true
		c.waitStatus(id, "cancelled", captureWait)
		return jobRuns(t, s, id)
	})
}

// agentReporter posts a job's agent reports with its job token; the API
// acknowledges them (202) whether or not Temporal is reachable.
func agentReporter(t *testing.T, s *devstack.Stack, id string) func(kind, body string) {
	tokens, err := auth.NewAgentTokens([]byte(s.Config.JWTSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return func(kind, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.APIURL()+"/agent/v1/jobs/"+id+"/"+kind, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("report %s: %v", kind, err)
		}
		drain(resp)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("report %s: %d, want 202", kind, resp.StatusCode)
		}
	}
}

// waitReportTried waits until the relay has tried the job's report of kind
// and failed (Temporal is away): it is kept, undelivered.
func waitReportTried(t *testing.T, s *devstack.Stack, id, kind string) {
	t.Helper()
	deadline := time.Now().Add(captureWait)
	for {
		var attempts int
		var pending bool
		err := s.DB.Pool.QueryRow(context.Background(), `SELECT attempts, delivered_at IS NULL FROM agent_reports
			WHERE job_id = $1 AND kind = $2`, id, kind).Scan(&attempts, &pending)
		if err != nil {
			t.Fatalf("read the %s report: %v", kind, err)
		}
		if !pending {
			t.Fatalf("the %s report was delivered while Temporal was cut off", kind)
		}
		if attempts > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay never tried the %s report", kind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// captureContinueAsNew: the server suggests continue-as-new after a few
// events, so a job's watch carries on in new runs (JobResume).
func captureContinueAsNew(t *testing.T, cp *capturer) {
	cfg := testConfig(t)
	s := cp.stack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true, SuggestContinueAsNewAt: 20})
	cp.path(t, "continue-as-new", "local job whose watch continues as new (the server suggests it after 20 events); the last run, resumed, succeeds", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(map[string]any{"command": []string{"sh", "-c", "sleep 2; echo done"}, "gpu_count": 0, "provider": "local"})
		c.waitStatus(id, "succeeded", captureWait)
		runs := jobRuns(t, s, id)
		if len(runs) < 2 {
			t.Fatalf("the job ran in %d run(s): it never continued as new", len(runs))
		}
		first, last := runs[0], runs[len(runs)-1]
		first.suffix, last.suffix = "first", "resumed"
		return []runRef{first, last}
	})
}

// captureReconcile: the reconciler's schedule runs every two seconds.
func captureReconcile(t *testing.T, cp *capturer) {
	cfg := testConfig(t)
	cfg.ReconcileInterval, cfg.ReconcileGrace = 2*time.Second, time.Second
	s := cp.stack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	var terminatedAt time.Time

	cp.path(t, "terminated-running", "running local job's workflow terminated by force (temporal workflow terminate)", func(t *testing.T) []runRef {
		c := newAPI(t, s.APIURL())
		id := c.submit(map[string]any{"command": []string{"sleep", "300"}, "gpu_count": 0, "provider": "local"})
		c.waitStatus(id, "running", captureWait)
		pgid := jobPGID(t, cfg, id)
		terminatedAt = time.Now()
		if err := s.Client.TerminateWorkflow(context.Background(), workflows.JobWorkflowID(id), "", "forced by the history capture"); err != nil {
			t.Fatal(err)
		}
		// The orphan's machine (the process) is the reconciler's to end.
		waitGroupGone(t, pgid, captureWait)
		c.waitStatus(id, "failed", captureWait)
		return jobRuns(t, s, id)
	})
	cp.path(t, "reconcile-orphan", "reconciler run that terminated the machine of a job whose workflow was terminated", func(t *testing.T) []runRef {
		if terminatedAt.IsZero() {
			t.Skip("needs terminated-running")
		}
		// The run that ended the orphan may have started up to one
		// interval before the workflow was terminated (it lists the
		// machines after it starts), so look back one interval and more.
		since := terminatedAt.Add(-2 * cfg.ReconcileInterval)
		return []runRef{findReconcile(t, s, since, func(r *workflows.ReconcileResult) bool {
			return slices.ContainsFunc(r.Results, func(p activities.ReconcileResult) bool { return len(p.Terminated) > 0 })
		})}
	})
	cp.path(t, "reconcile-provider-error", "reconciler run in which one provider (Tencent, emulated, answering 5xx) fails and the others are reconciled", func(t *testing.T) []runRef {
		tc := s.Emulators["tencent"].Faults()
		tc.Set(emulate.Faults{ServerErrors: 1 << 20})
		defer tc.Set(emulate.Faults{})
		return []runRef{findReconcile(t, s, time.Now(), func(r *workflows.ReconcileResult) bool {
			return len(r.Errors) > 0 && len(r.Results) > 0
		})}
	})
}

// findReconcile waits for a completed reconciler run started after since
// whose result matches.
func findReconcile(t *testing.T, s *devstack.Stack, since time.Time, match func(*workflows.ReconcileResult) bool) runRef {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	deadline := time.Now().Add(captureWait)
	for time.Now().Before(deadline) {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.Config.TemporalNamespace,
			Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed' AND StartTime > '%s'",
				workflows.ReconcileWorkflowName, since.UTC().Format(time.RFC3339Nano)),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Executions {
			ex := e.GetExecution()
			if seen[ex.GetRunId()] {
				continue
			}
			seen[ex.GetRunId()] = true
			var res workflows.ReconcileResult
			if err := s.Client.GetWorkflow(ctx, ex.GetWorkflowId(), ex.GetRunId()).Get(ctx, &res); err != nil {
				t.Fatalf("reconciler run %s: %v", ex.GetWorkflowId(), err)
			}
			if match(&res) {
				return runRef{client: s.Client, workflowID: ex.GetWorkflowId(), runID: ex.GetRunId()}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no matching reconciler run within %s", captureWait)
	return runRef{}
}

// localJob is the spec of a CPU job on this host.
func localJob(cmd ...string) map[string]any {
	return map[string]any{"command": cmd, "gpu_count": 0, "provider": "local"}
}

func cancelJob(t *testing.T, c api, id string) {
	t.Helper()
	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", map[string]any{"reason": "history capture"}); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel %s: %d %v", id, code, out)
	}
}

// runRef names one workflow run to capture.
type runRef struct {
	client     client.Client
	workflowID string
	runID      string
	// suffix tells the runs of one path apart (continue-as-new).
	suffix string
}

// jobRuns waits until the job's workflow has closed and returns its runs,
// first to last (more than one when it continued as new).
func jobRuns(t *testing.T, s *devstack.Stack, jobID string) []runRef {
	t.Helper()
	wid := workflows.JobWorkflowID(jobID)
	var runs []runRef
	latest := fetchHistory(t, s.Client, wid, "")
	for latest.GetEvents()[len(latest.GetEvents())-1].GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
		latest = fetchHistory(t, s.Client, wid, "") // it carried on in a newer run
	}
	runID := ""
	for {
		h := latest
		if runID != "" {
			h = fetchHistory(t, s.Client, wid, runID)
		}
		start := h.GetEvents()[0]
		runs = append(runs, runRef{client: s.Client, workflowID: wid, runID: start.GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId()})
		prev := start.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if prev == "" {
			break
		}
		runID = prev
	}
	slices.Reverse(runs)
	return runs
}

// fetchHistory waits until the run has closed (runID "" is the latest
// run) and returns its whole history.
func fetchHistory(t *testing.T, c client.Client, workflowID, runID string) *historypb.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), captureWait)
	defer cancel()
	closed := c.GetWorkflowHistory(ctx, workflowID, runID, true, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for closed.HasNext() {
		if _, err := closed.Next(); err != nil {
			t.Fatalf("wait for %s to close: %v", workflowID, err)
		}
	}
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", workflowID, err)
		}
		h.Events = append(h.Events, e)
	}
	if len(h.Events) == 0 || h.Events[0].GetWorkflowExecutionStartedEventAttributes() == nil {
		t.Fatalf("history of %s/%s is empty or does not start the workflow", workflowID, runID)
	}
	if runID != "" && h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId() != runID {
		t.Fatalf("history of run %s is another run's", runID)
	}
	return h
}

// capturer writes captured histories and the manifest.
type capturer struct {
	dir    string
	commit string
	mu     sync.Mutex
	lines  []string // report lines
	// secrets must appear in no history (the stacks' JWT secrets).
	secrets []string
}

// stack starts a stack for a group of paths, and keeps its JWT secret out
// of the histories.
func (cp *capturer) stack(t *testing.T, cfg app.Config, opts devstack.Options) *devstack.Stack {
	t.Helper()
	s := startStack(t, cfg, opts)
	cp.mu.Lock()
	cp.secrets = append(cp.secrets, s.Config.JWTSecret)
	cp.mu.Unlock()
	return s
}

func newCapturer(t *testing.T, dir string) *capturer {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		// Uncommitted workflow or activity code is part of what ran.
		if st, err := exec.Command("git", "status", "--porcelain", "--", "../../workflows/*.go", "../../activities/*.go", ":(top,exclude)*_test.go").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			commit += "+dirty"
		}
	}
	return &capturer{dir: dir, commit: commit}
}

// path runs one path as a subtest and writes the histories of the runs it
// returns, unless a file kept for the path has the same shape.
func (cp *capturer) path(t *testing.T, name, what string, run func(t *testing.T) []runRef) {
	t.Run(name, func(t *testing.T) {
		start := time.Now()
		refs := run(t)
		if t.Failed() || t.Skipped() {
			return
		}
		for _, r := range refs {
			h := fetchHistory(t, r.client, r.workflowID, r.runID)
			stem := name
			if r.suffix != "" {
				stem += "-" + r.suffix
			}
			cp.write(t, stem, what, h, time.Since(start))
		}
	})
}

var numberedHistory = regexp.MustCompile(`^(.+?)(?:\.(\d+))?\.json$`)

// write adds the history as <stem>.json, or <stem>.<n>.json beside the
// files kept for stem, unless one of them has its shape.
func (cp *capturer) write(t *testing.T, stem, what string, h *historypb.History, took time.Duration) {
	t.Helper()
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	typ := h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()
	shape := historyShape(h)

	cp.mu.Lock()
	defer cp.mu.Unlock()
	checkNoSecrets(t, stem, b, cp.secrets)
	existing, _ := filepath.Glob(filepath.Join(cp.dir, stem+"*.json"))
	next := 1
	for _, f := range existing {
		m := numberedHistory.FindStringSubmatch(filepath.Base(f))
		if m == nil || m[1] != stem {
			continue
		}
		n := 1
		if m[2] != "" {
			n, _ = strconv.Atoi(m[2])
		}
		next = max(next, n+1)
		old, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		oh, err := client.HistoryFromJSON(bytes.NewReader(old), client.HistoryJSONOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if slices.Equal(historyShape(oh), shape) {
			cp.lines = append(cp.lines, fmt.Sprintf("%-40s kept %s: same shape (%d events now, took %s)", stem, filepath.Base(f), len(h.Events), took.Round(time.Second)))
			return
		}
	}
	file := stem + ".json"
	if next > 1 {
		file = fmt.Sprintf("%s.%d.json", stem, next)
	}
	if err := os.WriteFile(filepath.Join(cp.dir, file), b, 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(cp.dir, "MANIFEST.tsv")
	header := ""
	if _, err := os.Stat(manifest); os.IsNotExist(err) {
		header = "# file\tworkflow type\tevents\tcaptured (UTC)\tcode (git commit)\tpath\n"
	}
	f, err := os.OpenFile(manifest, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := fmt.Sprintf("%s%s\t%s\t%d\t%s\t%s\t%s\n", header, file, typ, len(h.Events), time.Now().UTC().Format(time.RFC3339), cp.commit, what)
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
	cp.lines = append(cp.lines, fmt.Sprintf("%-40s wrote %s (%d events, took %s)", stem, file, len(h.Events), took.Round(time.Second)))
}

func (cp *capturer) report(t *testing.T) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var b strings.Builder
	for _, l := range cp.lines {
		b.WriteString("  " + l + "\n")
	}
	t.Logf("histories in %s (code %s):\n%s", cp.dir, cp.commit, b.String())
}

var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]+)"`)

// checkNoSecrets fails when a history holds a key or a token: histories
// are committed.
func checkNoSecrets(t *testing.T, stem string, b []byte, jwtSecrets []string) {
	t.Helper()
	secrets := map[string]string{
		"tencent secret key": app.TencentEmulatorKey, "alibaba secret": app.AlibabaEmulatorSecret, "runpod key": "gpuflow-emulator-key",
	}
	for i, s := range jwtSecrets {
		secrets[fmt.Sprintf("JWT secret of stack %d", i+1)] = s
	}
	// Payloads are base64 in the JSON: look into them too.
	text := append([]byte(nil), b...)
	for _, m := range payloadData.FindAllSubmatch(b, -1) {
		if d, err := base64.StdEncoding.DecodeString(string(m[1])); err == nil {
			text = append(append(text, '\n'), d...)
		}
	}
	b = text
	for name, secret := range secrets {
		if secret != "" && bytes.Contains(b, []byte(secret)) {
			t.Fatalf("the history of %s holds the %s", stem, name)
		}
	}
	// A JWT (agent or user token): base64url of `{"` starts with "eyJ".
	if regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.`).Match(b) {
		t.Fatalf("the history of %s holds a token", stem)
	}
}

// historyShape is what a history exercises of the workflow code, with
// timing left out: the distinct commands it holds (activities, timers,
// markers with their local activity or change id, search attribute
// upserts, the close), the signals it took and the other events by type,
// sorted. Workflow task events, activity starts and completions, and how
// often each thing happened are not part of it.
func historyShape(h *historypb.History) []string {
	set := map[string]bool{}
	for _, e := range h.GetEvents() {
		var sig string
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED,
			enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED,
			enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			continue
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			sig = "activity " + e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			a := e.GetMarkerRecordedEventAttributes()
			sig = "marker " + a.GetMarkerName()
			switch a.GetMarkerName() {
			case "LocalActivity":
				var d struct{ ActivityType string }
				if p := a.GetDetails()["data"].GetPayloads(); len(p) > 0 && json.Unmarshal(p[0].GetData(), &d) == nil {
					sig += " " + d.ActivityType
				}
			case "Version":
				var id string
				var v int
				if p := a.GetDetails()["change-id"].GetPayloads(); len(p) > 0 && json.Unmarshal(p[0].GetData(), &id) == nil {
					sig += " " + id
				}
				if p := a.GetDetails()["version"].GetPayloads(); len(p) > 0 && json.Unmarshal(p[0].GetData(), &v) == nil {
					sig += "=" + strconv.Itoa(v)
				}
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			sig = "signal " + e.GetWorkflowExecutionSignaledEventAttributes().GetSignalName()
		case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			var keys []string
			for k := range e.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields() {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			sig = "upsert " + strings.Join(keys, ",")
		default:
			sig = e.GetEventType().String()
		}
		set[sig] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
