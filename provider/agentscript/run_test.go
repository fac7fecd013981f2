package agentscript

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// These tests run the generated scripts for real (bash for the boot script,
// sh for the runner) against an agent endpoint that fails for a while.

const testToken = "tok'en $x"

// agentAPI is an agent endpoint: it answers 503 to the first fail[kind]
// requests of each kind, status[kind] when set, and 202 otherwise; it keeps
// what it acknowledged.
type agentAPI struct {
	t  *testing.T
	mu sync.Mutex
	// fail counts the 503s still to answer per kind ("logs", "progress",
	// "finished"); status, when set, answers every request of a kind.
	fail, status map[string]int
	hits         map[string]int
	logs         bytes.Buffer
	finished     []int
	stops        []string // bodies of RunPod stop actions; "DELETE" for a removal
	cond         *sync.Cond
}

func newAgentAPI(t *testing.T) *agentAPI {
	a := &agentAPI{t: t, fail: map[string]int{}, status: map[string]int{}, hits: map[string]int{}}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *agentAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.cond.Broadcast()
	if strings.HasPrefix(r.URL.Path, "/v2/pods/") {
		switch {
		case r.Header.Get("Authorization") != "Bearer pod-key":
			w.WriteHeader(http.StatusUnauthorized)
			return
		case r.Method == http.MethodDelete && r.URL.Path == "/v2/pods/pod1":
			a.stops = append(a.stops, "DELETE")
		case r.Method == http.MethodPost && r.URL.Path == "/v2/pods/pod1/action":
			a.stops = append(a.stops, string(body))
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	kind := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	a.hits[kind]++
	if r.Header.Get("Authorization") != "Bearer "+testToken || !strings.HasPrefix(r.URL.Path, "/agent/v1/jobs/j1/") {
		a.t.Errorf("%s: bad authorization or path", r.URL.Path)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if a.fail[kind] > 0 {
		a.fail[kind]--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if s := a.status[kind]; s != 0 {
		w.WriteHeader(s)
		return
	}
	switch kind {
	case "logs":
		// As the API should: a chunk sent again after a lost
		// acknowledgement (its offset is behind the output kept) is
		// acknowledged and dropped; a gap is an error.
		off, err := strconv.Atoi(r.Header.Get(HeaderLogOffset))
		switch {
		case err != nil || off > a.logs.Len():
			a.t.Errorf("log chunk at offset %q, want at most %d", r.Header.Get(HeaderLogOffset), a.logs.Len())
		case off+len(body) > a.logs.Len():
			a.logs.Write(body[a.logs.Len()-off:])
		}
	case "finished":
		var in struct {
			ExitCode *int `json:"exit_code"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.ExitCode == nil || r.Header.Get("Content-Type") != "application/json" {
			a.t.Errorf("finished: bad report %q (%v)", body, err)
		} else {
			a.finished = append(a.finished, *in.ExitCode)
		}
	case "progress":
	default:
		a.t.Errorf("unexpected report %s", r.URL.Path)
	}
	w.WriteHeader(http.StatusAccepted)
}

// waitFor blocks until ok holds (called with a.mu held).
func (a *agentAPI) waitFor(ok func() bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for !ok() {
		a.cond.Wait()
	}
}

func (a *agentAPI) snapshot() (logs string, finished []int, hits map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := map[string]int{}
	for k, v := range a.hits {
		h[k] = v
	}
	return a.logs.String(), append([]int(nil), a.finished...), h
}

// serve serves a on ln until the test ends.
func serve(t *testing.T, ln net.Listener, a *agentAPI) {
	srv := &http.Server{Handler: a}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// fastEnv are the knobs that keep the agent quick in tests.
func fastEnv(state string) []string {
	return []string{EnvRetryMinMS + "=10", EnvRetryMaxMS + "=40", EnvLogIntervalMS + "=20", EnvLogChunk + "=4096", EnvStateDir + "=" + state}
}

// stubDocker puts a docker on PATH that prints its argv (one <arg> a
// line), STUB_LINES lines, one line on stderr, and exits STUB_EXIT; and a
// poweroff (and shutdown) that only appends a line to STUB_HALTED (see
// halts), so that no test powers the machine it runs on off.
func stubDocker(t *testing.T) string {
	dir := t.TempDir()
	stub := `#!/bin/sh
for a in "$@"; do printf '<%s>\n' "$a"; done
i=0
while [ "$i" -lt "${STUB_LINES:-0}" ]; do echo "line $i"; i=$((i + 1)); done
echo "on stderr" >&2
exit "${STUB_EXIT:-0}"
`
	halt := "#!/bin/sh\necho \"$0 $*\" >>\"${STUB_HALTED:-/dev/null}\"\n"
	for name, body := range map[string]string{"docker": stub, "poweroff": halt, "shutdown": halt} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bootEnv is the environment of a boot script run: the fast knobs, the
// stubs first on PATH, STUB_HALTED at halted, and extra.
func bootEnv(t *testing.T, halted string, extra ...string) []string {
	return append(append(fastEnv(t.TempDir()), "PATH="+stubDocker(t)+":"+os.Getenv("PATH"), "STUB_HALTED="+halted), extra...)
}

// halts counts the poweroffs the stub recorded in file.
func halts(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// setHeader replaces the value of an exported variable in a boot script's
// header.
func setHeader(t *testing.T, script, name, value string) string {
	t.Helper()
	head, rest, ok := strings.Cut(script, "export "+name+"=")
	if !ok {
		t.Fatalf("no %s in the script's header", name)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	return head + "export " + name + "=" + quote(value) + "\n" + rest
}

func bootRequest(agentURL string) gpuflow.ProvisionRequest {
	return gpuflow.ProvisionRequest{
		JobID: "j1",
		Spec:  gpuflow.JobSpec{Command: []string{"python", "-c", "print('hi'); import os", "$HOME", ""}, Env: map[string]string{"A": "it's $HOME", "B": "2"}},
		Agent: &gpuflow.AgentEndpoint{URL: agentURL + "/agent/v1/jobs/j1", Token: testToken},
	}
}

func expectedOutput(lines int) string {
	var b strings.Builder
	for _, a := range []string{"run", "--rm", "--gpus", "all", "--name", "gpuflow-j1", "-e", "A=it's $HOME", "-e", "B=2", DefaultImage,
		"python", "-c", "print('hi'); import os", "$HOME", ""} {
		fmt.Fprintf(&b, "<%s>\n", a)
	}
	for i := range lines {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	b.WriteString("on stderr\n")
	return b.String()
}

// lineWatcher reads r and signals each line matching one of the patterns
// given to wait.
type lineWatcher struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
	eof   bool
}

func watchLines(r io.Reader) *lineWatcher {
	w := &lineWatcher{}
	w.cond = sync.NewCond(&w.mu)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.cond.Broadcast()
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.eof = true
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
	return w
}

// wait blocks until n lines containing sub have been read; false at EOF.
func (w *lineWatcher) wait(sub string, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		c := 0
		for _, l := range w.lines {
			if strings.Contains(l, sub) {
				c++
			}
		}
		if c >= n {
			return true
		}
		if w.eof {
			return false
		}
		w.cond.Wait()
	}
}

func (w *lineWatcher) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

func startBoot(t *testing.T, script string, env ...string) (*exec.Cmd, *lineWatcher) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "boot.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", path)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, watchLines(stderr)
}

func TestBootScriptReportsThroughFailures(t *testing.T) {
	t.Parallel()
	// The API is down (a closed port) when the job starts, then answers
	// 503 for a while, then acknowledges.
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	api := newAgentAPI(t)
	api.fail = map[string]int{"logs": 3, "finished": 4, "progress": 2}
	script, err := Script(bootRequest("http://" + addr))
	if err != nil {
		t.Fatal(err)
	}
	const lines = 3000
	halted := filepath.Join(t.TempDir(), "halted")
	cmd, stderr := startBoot(t, script, bootEnv(t, halted, "STUB_LINES="+strconv.Itoa(lines), "STUB_EXIT=3")...)
	if !stderr.wait("again in", 3) {
		t.Fatalf("the agent did not retry the refused connection:\n%s", stderr.text())
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("reopen %s: %v", addr, err)
	}
	serve(t, ln, api)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("boot script: %v\n%s", err, stderr.text())
	}
	logs, finished, hits := api.snapshot()
	if len(finished) != 1 || finished[0] != 3 {
		t.Errorf("finished reports acknowledged %v, want exactly [3]", finished)
	}
	if want := expectedOutput(lines); logs != want {
		t.Errorf("output: got %d bytes, want %d:\n%.300s", len(logs), len(want), logs)
	}
	if hits["logs"] < 3+lines*8/4096 || hits["finished"] != 5 {
		t.Errorf("hits %v: want the 503s retried and output in chunks", hits)
	}
	if n := halts(t, halted); n != 0 {
		t.Errorf("the machine was powered off %d times after its end was acknowledged", n)
	}
}

func TestBootScriptStopsOnRefusal(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusConflict, "logs": http.StatusUnauthorized}
	ln := listen(t)
	serve(t, ln, api)
	script, err := Script(bootRequest("http://" + ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	halted := filepath.Join(t.TempDir(), "halted")
	cmd, stderr := startBoot(t, script, bootEnv(t, halted, "STUB_LINES=10")...)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("boot script: %v, want exit status 1 (refused)\n%s", err, stderr.text())
	}
	if _, _, hits := api.snapshot(); hits["finished"] != 1 || hits["logs"] != 1 {
		t.Errorf("hits %v: a 409 or 401 must not be retried", hits)
	}
	if n := halts(t, halted); n != 1 {
		t.Errorf("powered off %d times, want once: an end refused for good is never acknowledged", n)
	}
}

func TestBootScriptGivesUpAtTheDeadline(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusServiceUnavailable, "logs": http.StatusBadGateway, "progress": http.StatusTooManyRequests}
	ln := listen(t)
	serve(t, ln, api)
	script, err := Script(bootRequest("http://" + ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	// A job whose allowed life has passed.
	script = setHeader(t, script, EnvDeadline, strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10))
	halted := filepath.Join(t.TempDir(), "halted")
	cmd, stderr := startBoot(t, script, bootEnv(t, halted)...)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("boot script: %v, want exit status 2 (deadline)\n%s", err, stderr.text())
	}
	if _, _, hits := api.snapshot(); hits["finished"] != 1 || hits["logs"] != 1 {
		t.Errorf("hits %v: nothing is retried past the deadline", hits)
	}
	if !strings.Contains(stderr.text(), "deadline passed") {
		t.Errorf("no word of the deadline:\n%s", stderr.text())
	}
	if n := halts(t, halted); n != 1 {
		t.Errorf("powered off %d times, want once", n)
	}
}

func TestBootScriptPowersOffWhenItsEndIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	// The API answers every finished report 503, as while it cannot be
	// reached: past the report grace (2 s here) the agent gives up and
	// powers the VM off, so that the cloud shows it stopped.
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusServiceUnavailable}
	ln := listen(t)
	serve(t, ln, api)
	script, err := Script(bootRequest("http://" + ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(script, "export "+EnvReportGrace+"='600'\n") {
		t.Errorf("the header does not carry the default report grace")
	}
	script = setHeader(t, script, EnvReportGrace, "2") // whole seconds: at least 1 s of retries
	halted := filepath.Join(t.TempDir(), "halted")
	cmd, stderr := startBoot(t, script, bootEnv(t, halted, "STUB_LINES=5", "STUB_EXIT=4")...)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("boot script: %v, want exit status 2 (gave up)\n%s", err, stderr.text())
	}
	logs, finished, hits := api.snapshot()
	if hits["finished"] < 2 || len(finished) != 0 {
		t.Errorf("finished hits %d, acknowledged %v: want retries and no acknowledgement", hits["finished"], finished)
	}
	if logs != expectedOutput(5) {
		t.Errorf("the output was not shipped before giving up: %q", logs)
	}
	if n := halts(t, halted); n != 1 {
		t.Errorf("powered off %d times, want once\n%s", n, stderr.text())
	}
	if !strings.Contains(stderr.text(), "report grace") || !strings.Contains(stderr.text(), "powering this machine off") {
		t.Errorf("the agent did not say why it powered off:\n%s", stderr.text())
	}
}
