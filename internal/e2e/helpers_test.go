package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/freeport"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/internal/testutil"
	enumspb "go.temporal.io/api/enums/v1"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// testConfig is a config on free ports, a fresh database and a temp data dir.
func testConfig(t testing.TB) app.Config {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{
		"GPUFLOW_DATA_DIR":        dir,
		"HTTP_ADDR":               freeAddr(t),
		"TEMPORAL_ADDRESS":        freeAddr(t),
		"TEMPORAL_UI_ADDR":        freeAddr(t),
		"DATABASE_URL":            pgtest.NewDB(t),
		"GPUFLOW_LOCAL_CPU_SLOTS": "4",
		"LOG_LEVEL":               "warn",
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// env turns cfg back into environment variables for a child process.
func env(cfg app.Config) []string {
	return append(os.Environ(),
		"GPUFLOW_DATA_DIR="+cfg.DataDir,
		"HTTP_ADDR="+cfg.HTTPAddr,
		"TEMPORAL_ADDRESS="+cfg.TemporalAddress,
		"TEMPORAL_UI_ADDR="+cfg.TemporalUIAddr,
		"DATABASE_URL="+cfg.DatabaseURL,
		fmt.Sprintf("GPUFLOW_LOCAL_CPU_SLOTS=%d", cfg.LocalCPUSlots),
		"GPUFLOW_QUEUE_RECHECK="+cfg.QueueRecheck.String(),
		fmt.Sprintf("GPUFLOW_MAX_RUNNING_JOBS=%d", cfg.Limits.MaxRunning),
		"METRICS_ADDR=off",
		"LOG_LEVEL=warn",
	)
}

// startStack starts an in-process stack, stopped when the test ends.
func startStack(t testing.TB, cfg app.Config, opts devstack.Options) *devstack.Stack {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := devstack.Start(context.Background(), cfg, opts, logger)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Stop)
	stacks.Store(s.APIURL(), s)
	t.Cleanup(func() { stacks.Delete(s.APIURL()) })
	return s
}

// stacks are the in-process stacks by API URL, so that a wait that
// fails can say what the job's workflow did.
var stacks sync.Map

// workflowTrace tells what the workflow of job id went through: its
// status, its pending activities with their last failures, and the
// types of its last history events. "" when the API at base is not an
// in-process stack.
func workflowTrace(base, id string) string {
	v, ok := stacks.Load(base)
	if !ok {
		return ""
	}
	c := v.(*devstack.Stack).Client
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wid := "job-" + id
	var b strings.Builder
	d, err := c.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		return fmt.Sprintf("describe %s: %v", wid, err)
	}
	fmt.Fprintf(&b, "workflow %s: %s, %d history events\n", wid, d.WorkflowExecutionInfo.GetStatus(), d.WorkflowExecutionInfo.GetHistoryLength())
	for _, pa := range d.PendingActivities {
		fmt.Fprintf(&b, "  pending %s: %s, attempt %d, last failure %v\n", pa.ActivityType.GetName(), pa.State, pa.Attempt, pa.LastFailure.GetMessage())
	}
	var events []string
	it := c.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			events = append(events, "history: "+err.Error())
			break
		}
		line := fmt.Sprintf("%s %s", e.EventTime.AsTime().Format("15:04:05.000"), e.EventType)
		if at := e.GetActivityTaskScheduledEventAttributes(); at != nil {
			line += " " + at.GetActivityType().GetName()
		}
		if sa := e.GetWorkflowExecutionSignaledEventAttributes(); sa != nil {
			line += " " + sa.GetSignalName()
		}
		events = append(events, line)
	}
	if len(events) > 40 {
		events = append([]string{"..."}, events[len(events)-40:]...)
	}
	b.WriteString("  " + strings.Join(events, "\n  "))
	return b.String()
}

// child is this test binary running as a worker or a whole stack.
type child struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startChild(t testing.TB, role string, cfg app.Config) *child {
	t.Helper()
	cmd := childCmd(t, role, env(cfg))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: &out}
	t.Cleanup(func() { c.kill() })
	return c
}

// childCmd is this test binary run as role (TestMain's runChild) with
// environ, in a process group of its own; not started.
func childCmd(t testing.TB, role string, environ []string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$") // #nosec G204 -- this test binary
	cmd.Env = append(environ, childEnv+"="+role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// kill stops the child with SIGKILL: no cleanup of any kind runs.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// api is a small client of the HTTP API, logged in as its own user.
type api struct {
	t     testing.TB
	base  string
	token string
}

// newAPI registers a fresh account on the stack at base and logs it in.
func newAPI(t testing.TB, base string) api {
	t.Helper()
	a := api{t: t, base: base}
	email := fmt.Sprintf("e2e-%d@example.com", time.Now().UnixNano())
	if code, out := a.do(http.MethodPost, "/auth/register", map[string]any{"email": email, "password": "e2e-password"}); code != http.StatusCreated {
		t.Fatalf("register: %d %v", code, out)
	}
	return loginAPI(t, base, email, "e2e-password")
}

// loginAPI logs an existing account in on the stack at base.
func loginAPI(t testing.TB, base, email, password string) api {
	t.Helper()
	a := api{t: t, base: base}
	code, out := a.do(http.MethodPost, "/auth/jwt/login", map[string]any{"username": email, "password": password})
	if code != http.StatusOK {
		t.Fatalf("login: %d %v", code, out)
	}
	a.token = out["access_token"].(string)
	return a
}

func (a api) do(method, path string, body any) (int, map[string]any) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (a api) submit(spec map[string]any) string {
	a.t.Helper()
	code, out := a.do(http.MethodPost, "/api/gpu/jobs/submit", spec)
	if code != http.StatusAccepted {
		a.t.Fatalf("submit: %d %v", code, out)
	}
	return out["task_id"].(string)
}

func (a api) job(id string) map[string]any {
	a.t.Helper()
	code, out := a.do(http.MethodGet, "/api/gpu/tasks/"+id, nil)
	if code != http.StatusOK {
		a.t.Fatalf("get %s: %d %v", id, code, out)
	}
	return out
}

// waitStatus polls the job until it has status (failing on another
// terminal status) or the deadline passes.
func (a api) waitStatus(id, status string, within time.Duration) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(within)
	var j map[string]any
	for time.Now().Before(deadline) {
		j = a.job(id)
		s := j["status"].(string)
		if s == status {
			return j
		}
		if s != status && (s == "succeeded" || s == "failed" || s == "cancelled") {
			a.t.Fatalf("job %s ended %s, want %s: %v", id, s, status, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What the job went through, to tell why it did not get there.
	_, ev := a.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
	a.t.Fatalf("job %s still %v after %s, want %s\njob: %s\nevents: %s\n%s", id, j["status"], within, status, fmtJSON(j), fmtJSON(ev), workflowTrace(a.base, id))
	return nil
}

func (a api) logs(id string) string {
	a.t.Helper()
	code, out := a.do(http.MethodGet, "/api/gpu/tasks/"+id+"/logs", nil)
	if code != http.StatusOK {
		a.t.Fatalf("logs: %d %v", code, out)
	}
	s, _ := out["logs"].(string)
	return s
}

// jobPGID reads the process group the local provider started for a job.
func jobPGID(t testing.TB, cfg app.Config, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.LocalDir, id, "pid"))
	if err != nil {
		t.Fatalf("job pid file: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.Fields(string(b))[0], &pid); err != nil {
		t.Fatalf("job pid file %q: %v", b, err)
	}
	return pid
}

// groupGone reports whether no live process of the group is left (a zombie
// waiting to be reaped by its parent runs nothing and counts as gone).
func groupGone(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces) start after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if fields[2] == fmt.Sprint(pgid) {
			return false
		}
	}
	return true
}

func waitGroupGone(t testing.TB, pgid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if groupGone(pgid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process group %d still alive after %s", pgid, within)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer = testutil.SyncBuffer
