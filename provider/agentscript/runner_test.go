package agentscript

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// container runs the runner as a RunPod container would (sh -c 'eval
// "$GPUFLOW_RUNNER"' gpuflow ARGV...), with its state in state; restart
// kills the whole container (SIGKILL to its process group) as a restart of
// the container does.
type container struct {
	t      *testing.T
	state  string
	env    []string
	argv   []string
	cmd    *exec.Cmd
	stdout *lineWatcher
	stderr *lineWatcher
}

func newContainer(t *testing.T, agentURL string, argv []string, env ...string) *container {
	c := &container{t: t, state: filepath.Join(t.TempDir(), "volume", "j1"), argv: argv}
	c.env = append(os.Environ(), EnvRunner+"="+Runner(), EnvAgentURL+"="+agentURL+"/agent/v1/jobs/j1", EnvAgentToken+"="+testToken, EnvJobID+"=j1")
	c.env = append(append(c.env, fastEnv(c.state)...), env...)
	return c
}

func (c *container) start() {
	c.t.Helper()
	c.cmd = exec.Command("/bin/sh", RunnerArgs(c.argv)[1:]...)
	c.cmd.Env = c.env
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	errp, err := c.cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.stdout, c.stderr = watchLines(out), watchLines(errp)
	cmd := c.cmd
	c.t.Cleanup(func() { c.kill(cmd) })
}

func (c *container) kill(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// waitIdle waits for the runner to say it is idle: the job is done and
// reported.
func (c *container) waitIdle() {
	c.t.Helper()
	if !c.stdout.wait("gpuflow runner: idle", 1) {
		c.t.Fatalf("the runner ended instead of idling:\n%s", c.stderr.text())
	}
}

func (c *container) restart() {
	c.kill(c.cmd)
	c.start()
}

func runs(t *testing.T, counter string) int {
	b, err := os.ReadFile(counter)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "ran\n")
}

// countingJob is a job that records each run in counter, prints its
// argument and exits with code.
func countingJob(counter string, code int, extra string) []string {
	return []string{"sh", "-c", `echo ran >>"$1"; printf 'out: %s\n' "$2"; ` + extra + ` exit ` + strconv.Itoa(code), "job", counter, "a 'b' $HOME"}
}

func TestRunnerRunsTheJobOnceAcrossRestarts(t *testing.T) {
	t.Parallel()
	for _, code := range []int{0, 3} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			api := newAgentAPI(t)
			api.fail = map[string]int{"finished": 2, "logs": 1}
			ln := listen(t)
			serve(t, ln, api)
			counter := filepath.Join(t.TempDir(), "runs")
			c := newContainer(t, "http://"+ln.Addr().String(), countingJob(counter, code, ""))
			c.start()
			c.waitIdle()
			// Restarted twice after the job: it must neither run again nor
			// report again.
			c.restart()
			c.waitIdle()
			c.restart()
			c.waitIdle()
			logs, finished, _ := api.snapshot()
			if len(finished) != 1 || finished[0] != code {
				t.Errorf("finished reports %v, want exactly [%d]", finished, code)
			}
			if n := runs(t, counter); n != 1 {
				t.Errorf("the job ran %d times, want once", n)
			}
			if logs != "out: a 'b' $HOME\n" {
				t.Errorf("output %q", logs)
			}
		})
	}
}

func TestRunnerRedeliversAfterARestartBeforeTheAck(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusServiceUnavailable}
	ln := listen(t)
	serve(t, ln, api)
	counter := filepath.Join(t.TempDir(), "runs")
	c := newContainer(t, "http://"+ln.Addr().String(), countingJob(counter, 7, ""))
	c.start()
	if !c.stderr.wait("finished: 503, again in", 2) {
		t.Fatalf("no retried finished report:\n%s", c.stderr.text())
	}
	// The container restarts while the API is still down; then it is back.
	c.restart()
	if !c.stderr.wait("finished: 503, again in", 1) {
		t.Fatalf("the restarted runner did not report the recorded exit code:\n%s", c.stderr.text())
	}
	api.mu.Lock()
	api.status = nil
	api.mu.Unlock()
	c.waitIdle()
	logs, finished, _ := api.snapshot()
	if len(finished) != 1 || finished[0] != 7 || runs(t, counter) != 1 || logs != "out: a 'b' $HOME\n" {
		t.Errorf("finished %v, runs %d, output %q: want [7], one run and the output once", finished, runs(t, counter), logs)
	}
}

func TestRunnerDoesNotRerunAnInterruptedJob(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	ln := listen(t)
	serve(t, ln, api)
	counter := filepath.Join(t.TempDir(), "runs")
	c := newContainer(t, "http://"+ln.Addr().String(), countingJob(counter, 0, "exec sleep 1000;"))
	c.start()
	api.waitFor(func() bool { return strings.Contains(api.logs.String(), "out: ") })
	c.restart() // kills the job with its container
	c.waitIdle()
	logs, finished, _ := api.snapshot()
	if len(finished) != 1 || finished[0] != -1 || runs(t, counter) != 1 {
		t.Errorf("finished %v, runs %d: want [-1] and one run", finished, runs(t, counter))
	}
	if !strings.HasSuffix(logs, "the job is not run again\n") {
		t.Errorf("output %q does not say why", logs)
	}
}

func TestRunnerStopsItsPodAtTheDeadline(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	ln := listen(t)
	serve(t, ln, api)
	url := "http://" + ln.Addr().String()
	counter := filepath.Join(t.TempDir(), "runs")
	c := newContainer(t, url, countingJob(counter, 0, ""),
		EnvDeadline+"="+strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10),
		"RUNPOD_POD_ID=pod1", "RUNPOD_API_KEY=pod-key", EnvRunPodAPI+"="+url)
	c.start()
	api.waitFor(func() bool { return len(api.stops) > 0 })
	if _, finished, _ := api.snapshot(); len(finished) != 1 || api.stops[0] != `{"action":"stop"}` {
		t.Errorf("finished %v, stop %q", finished, api.stops[0])
	}
}

func TestRunnerStopsItsPodWhenItsEndIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusServiceUnavailable}
	ln := listen(t)
	serve(t, ln, api)
	url := "http://" + ln.Addr().String()
	counter := filepath.Join(t.TempDir(), "runs")
	c := newContainer(t, url, countingJob(counter, 5, ""), EnvReportGrace+"=2",
		"RUNPOD_POD_ID=pod1", "RUNPOD_API_KEY=pod-key", EnvRunPodAPI+"="+url)
	c.start()
	api.waitFor(func() bool { return len(api.stops) > 0 })
	if _, finished, hits := api.snapshot(); len(finished) != 0 || hits["finished"] < 2 || api.stops[0] != `{"action":"stop"}` {
		t.Errorf("finished %v after %d tries, stop %q: want retries, no acknowledgement, then a stop", finished, hits["finished"], api.stops[0])
	}
	if _, err := os.Stat(filepath.Join(c.state, "finished.acked")); !os.IsNotExist(err) {
		t.Errorf("finished.acked exists (%v) though the report was never acknowledged", err)
	}
	if !c.stderr.wait("not acknowledged: stopping this pod", 1) {
		t.Errorf("the runner did not say why it stopped its pod:\n%s", c.stderr.text())
	}
	if n := runs(t, counter); n != 1 {
		t.Errorf("the job ran %d times", n)
	}
}

func TestRunnerRemovesItsSpotPodWhenItsEndIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	// A stopped spot pod reads as one RunPod reclaimed: the runner removes
	// it instead.
	api := newAgentAPI(t)
	api.status = map[string]int{"finished": http.StatusServiceUnavailable}
	ln := listen(t)
	serve(t, ln, api)
	url := "http://" + ln.Addr().String()
	c := newContainer(t, url, countingJob(filepath.Join(t.TempDir(), "runs"), 0, ""), EnvReportGrace+"=1", "GPUFLOW_SPOT=true",
		"RUNPOD_POD_ID=pod1", "RUNPOD_API_KEY=pod-key", EnvRunPodAPI+"="+url)
	c.start()
	api.waitFor(func() bool { return len(api.stops) > 0 })
	if api.stops[0] != "DELETE" {
		t.Errorf("the runner sent %q, want the pod removed (DELETE)", api.stops[0])
	}
}

func TestScriptsParse(t *testing.T) {
	t.Parallel()
	s, err := Script(bootRequest("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
	if out, err := exec.Command("/bin/sh", "-n", "-c", Runner()).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
}
