package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cliRunTimeout bounds one run of the command-line client: a deadline for
// a broken test, not a measurement.
const cliRunTimeout = 90 * time.Second

// buildCLI builds the production binary (no dev tag), as a user gets it.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gpuflow")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gpuflow/gpuflow/cmd/gpuflow").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cliEnv runs the client binary with its own config directory and no
// GPUFLOW_SERVER/GPUFLOW_TOKEN from the test's environment.
type cliEnv struct {
	t     *testing.T
	bin   string
	home  string
	extra []string
}

func (c *cliEnv) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "GPUFLOW_SERVER" || k == "GPUFLOW_TOKEN" || k == "GPUFLOW_CONFIG" ||
			k == "XDG_CONFIG_HOME" || k == "HOME" || k == "NO_COLOR" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+c.home, "XDG_CONFIG_HOME="+filepath.Join(c.home, ".config"))
	return append(append(env, c.extra...), extra...)
}

// cliResult is one finished run.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the client to its end with stdin and extra environment.
func (c *cliEnv) run(stdin string, env []string, args ...string) cliResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("gpuflow %s: still running after %s\n%s\n%s", strings.Join(args, " "), cliRunTimeout, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("gpuflow %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// expect runs the client and checks its exit code.
func (c *cliEnv) expect(code int, args ...string) cliResult {
	c.t.Helper()
	r := c.run("", nil, args...)
	if r.code != code {
		c.t.Fatalf("gpuflow %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	return r
}

// jsonLines decodes -o jsonl output.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// checkEvents checks a job's events as jsonl gave them: each once, in
// order, ending with the final status.
func checkEvents(t *testing.T, lines []map[string]any, id, final string) {
	t.Helper()
	var last float64
	var statuses []string
	for _, l := range lines {
		if !strings.HasPrefix(fmt.Sprint(l["type"]), "job.") {
			continue
		}
		if l["task_id"] != id {
			t.Fatalf("an event of another job: %v", l)
		}
		seq := l["seq"].(float64)
		if seq <= last {
			t.Fatalf("event seq %v after %v: out of order or twice", seq, last)
		}
		last = seq
		if s, ok := l["status"].(string); ok && l["type"] == "job.status" {
			statuses = append(statuses, s)
		}
	}
	if len(statuses) == 0 || statuses[len(statuses)-1] != final {
		t.Fatalf("status events %v, want them to end with %s", statuses, final)
	}
}

// TestCLI drives the built gpuflow binary against a real stack: login,
// submit and follow (success, failure), cancel, ls/status/logs, watch
// (through a restart of the stack), the catalogue, and the exit codes of a
// missing login and of bad usage.
func TestCLI(t *testing.T) {
	bin := buildCLI(t)
	cfg := testConfig(t)
	server := "http://" + cfg.HTTPAddr
	stack := startChild(t, "dev", cfg) // a process of its own, restarted below
	waitUp(t, server+"/health", stack)
	c := &cliEnv{t: t, bin: bin, home: t.TempDir()}

	// An account, made through the API.
	email := fmt.Sprintf("cli-%d@example.com", time.Now().UnixNano())
	reg := api{t: t, base: server}
	if code, out := reg.do(http.MethodPost, "/auth/register", map[string]any{"email": email, "password": "cli-password"}); code != http.StatusCreated {
		t.Fatalf("register: %d %v", code, out)
	}

	// Not logged in: 4, with a hint; bad usage: 2.
	r := c.expect(4, "ls")
	if !strings.Contains(r.stderr, "not logged in") || !strings.Contains(r.stderr, "gpuflow login") || r.stdout != "" {
		t.Fatalf("not logged in: %s", r)
	}
	c.expect(2, "frobnicate")
	c.expect(2, "ls", "--no-such-flag")
	c.expect(2, "status")
	c.expect(2, "ls", "-o", "yaml", "--server", server, "--token", "x")

	// Login: a wrong password is refused (4); the right one is kept.
	if r := c.run("wrong-password\n", nil, "login", "--server", server, "--email", email, "--password-stdin"); r.code != 4 {
		t.Fatalf("login with a wrong password: %s", r)
	}
	if r := c.run("cli-password\n", nil, "login", "--server", server, "--email", email, "--password-stdin"); r.code != 0 ||
		!strings.Contains(r.stdout, "Logged in") {
		t.Fatalf("login: %s", r)
	}
	confPath := filepath.Join(c.home, ".config", "gpuflow", "config.json")
	st, err := os.Stat(confPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, %v", st, err)
	}
	if b, _ := os.ReadFile(confPath); bytes.Contains(b, []byte("cli-password")) || !bytes.Contains(b, []byte(server)) {
		t.Fatalf("config file %s", b)
	}
	// Usage errors need no server: nothing to run.
	c.expect(2, "submit", "--gpu", "none")
	c.expect(2, "submit", "--gpu", "A100:x", "--", "true")

	// A job that succeeds: the plan, its output, exit 0.
	r = c.expect(0, "submit", "--name", "hello", "--gpu", "none", "--", "echo", "hi")
	if !strings.Contains(r.stdout, "Plan (balanced): local cpu") || !strings.Contains(r.stdout, "hi\n") {
		t.Fatalf("submit: %s", r)
	}
	if !strings.Contains(r.stderr, "running") || !strings.Contains(r.stderr, "succeeded (exit code 0)") {
		t.Fatalf("submit progress: %s", r)
	}
	okID := strings.Fields(strings.TrimPrefix(r.stdout, "Job "))[0]

	// A job that fails: exit 3; in jsonl, every event once and in order.
	r = c.expect(3, "submit", "--gpu", "none", "-o", "jsonl", "--", "sh", "-c", "echo bad >&2; exit 7")
	lines := jsonLines(t, r.stdout)
	if lines[0]["type"] != "submitted" || lines[0]["provider"] != "local" {
		t.Fatalf("first line %v", lines[0])
	}
	failID := lines[0]["task_id"].(string)
	checkEvents(t, lines, failID, "failed")
	res := lines[len(lines)-1]
	if job, _ := res["job"].(map[string]any); res["type"] != "result" || job["exit_code"] != float64(7) || job["status"] != "failed" {
		t.Fatalf("last line %v", res)
	}

	// ls, status and logs in JSON.
	r = c.expect(0, "ls", "-o", "json")
	var jobs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil || len(jobs) != 2 || jobs[0]["id"] != failID || jobs[1]["id"] != okID {
		t.Fatalf("ls: %v %s", err, r)
	}
	r = c.expect(0, "ls", "--status", "succeeded", "-o", "jsonl")
	if l := jsonLines(t, r.stdout); len(l) != 1 || l[0]["id"] != okID {
		t.Fatalf("ls --status: %s", r)
	}
	r = c.expect(0, "status", okID, "-o", "json")
	var job map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job["status"] != "succeeded" || job["exit_code"] != float64(0) {
		t.Fatalf("status: %v %s", err, r)
	}
	r = c.expect(0, "logs", okID, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job["logs"] != "hi\n" {
		t.Fatalf("logs: %v %s", err, r)
	}
	if r = c.expect(0, "logs", "-f", failID); r.stdout != "bad\n" {
		t.Fatalf("logs -f: %s", r)
	}
	c.expect(1, "status", "00000000-0000-0000-0000-000000000000")
	// A finished job's watch ends at once, with its outcome.
	c.expect(3, "watch", failID)

	// Cancel: a long job from a job file, watched live through a restart
	// of the whole stack; cancel --wait and the watch both exit 6.
	jobFile := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(jobFile, []byte("name: long\ncommand: [sleep, \"300\"]\nresources:\n  gpu: none\npriority: 8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.expect(0, "submit", "-f", jobFile, "--detach", "-o", "json")
	var sub map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &sub); err != nil || sub["task_id"] == nil {
		t.Fatalf("submit --detach: %v %s", err, r)
	}
	longID := sub["task_id"].(string)
	watch := c.start("watch", longID, "-o", "jsonl")
	watch.waitLine(t, func(l map[string]any) bool { return l["type"] == "job.status" && l["status"] == "running" })
	stack.kill() // SIGKILL: the watch loses its connection, the job runs on
	stack = startChild(t, "dev", cfg)
	waitUp(t, server+"/health", stack)
	r = c.expect(6, "cancel", "--wait", longID)
	if !strings.Contains(r.stderr, "cancelled") {
		t.Fatalf("cancel --wait: %s", r)
	}
	wr := watch.wait(t)
	if wr.code != 6 || !strings.Contains(wr.stderr, "reconnecting") {
		t.Fatalf("watch of a cancelled job, through a restart: %s", wr)
	}
	checkEvents(t, jsonLines(t, wr.stdout), longID, "cancelled")
	if r = c.expect(1, "cancel", longID); !strings.Contains(r.stderr, "already finished") {
		t.Fatalf("cancel of a finished job: %s", r)
	}

	// The catalogue.
	r = c.expect(0, "providers", "-o", "jsonl")
	names := map[string]bool{}
	for _, l := range jsonLines(t, r.stdout) {
		names[l["name"].(string)] = true
	}
	if !names["local"] || !names["runpod"] {
		t.Fatalf("providers: %s", r)
	}
	r = c.expect(0, "gpus", "runpod", "-o", "json")
	var offers map[string][]map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &offers); err != nil || len(offers["runpod"]) == 0 {
		t.Fatalf("gpus: %v %s", err, r)
	}
	gpu := fmt.Sprint(offers["runpod"][0]["gpu_type"])
	r = c.expect(0, "recommend", "--gpu", gpu+":1", "-o", "json")
	var rec struct {
		Recommendations map[string]struct {
			Provider string `json:"provider"`
		} `json:"recommendations"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Recommendations["cost"].Provider == "" {
		t.Fatalf("recommend: %v %s", err, r)
	}
	if r = c.expect(0, "recommend", "--gpu", gpu); !strings.Contains(r.stdout, "balanced") {
		t.Fatalf("recommend text: %s", r)
	}

	// The environment overrides the file, and a bad token is refused (4).
	c.extra = []string{"GPUFLOW_TOKEN=not-a-token"}
	if r = c.expect(4, "ls"); !strings.Contains(r.stderr, "log in again") {
		t.Fatalf("bad token: %s", r)
	}
	c.extra = nil
	c.expect(0, "logout")
	c.expect(4, "ls")
	// Without the file's token, GPUFLOW_TOKEN alone is enough.
	c.extra = []string{"GPUFLOW_TOKEN=" + loginAPI(t, reg.base, email, "cli-password").token}
	if r = c.expect(0, "ls", "-o", "json"); !strings.Contains(r.stdout, okID) {
		t.Fatalf("ls with GPUFLOW_TOKEN: %s", r)
	}
}

// bgRun is a client run in the background whose stdout is read as it
// comes.
type bgRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	cond   *sync.Cond
	closed bool
	stderr bytes.Buffer
}

func (c *cliEnv) start(args ...string) *bgRun {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env()
	b := &bgRun{cmd: cmd}
	b.cond = sync.NewCond(&b.mu)
	cmd.Stderr = &b.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.cond.Broadcast()
			b.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		b.mu.Lock()
		b.closed = true
		b.cond.Broadcast()
		b.mu.Unlock()
	}()
	return b
}

// waitLine waits for a JSON line of stdout that match accepts.
func (b *bgRun) waitLine(t *testing.T, match func(map[string]any) bool) {
	t.Helper()
	timer := time.AfterFunc(cliRunTimeout, b.giveUp)
	defer timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	next := 0
	for {
		for ; next < len(b.lines); next++ {
			var m map[string]any
			if json.Unmarshal([]byte(b.lines[next]), &m) == nil && match(m) {
				return
			}
		}
		if b.closed {
			t.Fatalf("no such line; stdout:\n%s", strings.Join(b.lines, "\n"))
		}
		b.cond.Wait()
	}
}

// giveUp ends the waits on a run that hangs.
func (b *bgRun) giveUp() {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	_ = b.cmd.Process.Kill()
}

// wait waits for the run to end: its stdout read to the end, then the
// process.
func (b *bgRun) wait(t *testing.T) cliResult {
	t.Helper()
	timer := time.AfterFunc(cliRunTimeout, b.giveUp)
	defer timer.Stop()
	b.mu.Lock()
	for !b.closed {
		b.cond.Wait()
	}
	b.mu.Unlock()
	err := b.cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return cliResult{code: code, stdout: strings.Join(b.lines, "\n"), stderr: b.stderr.String()}
}
