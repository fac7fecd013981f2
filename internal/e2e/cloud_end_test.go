package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"

	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/testutil"
	"github.com/gpuflow/gpuflow/provider/emulate"
	runpodemu "github.com/gpuflow/gpuflow/provider/runpod/emulator"
	"github.com/gpuflow/gpuflow/workflows"
)

// The end of a running cloud job is pushed (the agent's report, the
// watcher's batched sweep), never polled per job: these tests follow it
// through the whole stack — the API, the workflow on the embedded Temporal
// server, the worker's activities and per-provider watchers, the agent
// report relay, PostgreSQL — and the real cloud clients against the
// emulators.

// events returns the job's recorded events.
func (a api) events(id string) []map[string]any {
	a.t.Helper()
	code, out := a.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
	if code != http.StatusOK {
		a.t.Fatalf("events of %s: %d %v", id, code, out)
	}
	var evs []map[string]any
	for _, e := range out["events"].([]any) {
		evs = append(evs, e.(map[string]any))
	}
	return evs
}

// waitEvent waits until the job has recorded an event that match accepts.
func (a api) waitEvent(id, what string, match func(map[string]any) bool, within time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if slices.ContainsFunc(a.events(id), match) {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("job %s: no %s within %s: %v", id, what, within, a.events(id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// endEvents returns the job's events that record a final status.
func (a api) endEvents(id string) []map[string]any {
	a.t.Helper()
	var out []map[string]any
	for _, e := range a.events(id) {
		if s := e["status"]; e["type"] == "job.status" && (s == "succeeded" || s == "failed" || s == "cancelled") {
			out = append(out, e)
		}
	}
	return out
}

// finishedSignals counts the finished signals the job's workflow received:
// the agent reports the relay delivered.
func finishedSignals(t *testing.T, s *devstack.Stack, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := s.Client.GetWorkflowHistory(ctx, "job-"+id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of job %s: %v", id, err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalFinished {
			n++
		}
	}
	return n
}

// exitCodeOf is the job's exit code in an API answer (-999 when absent).
func exitCodeOf(j map[string]any) int {
	if c, ok := j["exit_code"].(float64); ok {
		return int(c)
	}
	return -999
}

// TestRunPodJobRunsOnce: a RunPod job exiting 0 and one exiting 3 (the
// second on a spot pod, created through GraphQL), submitted through the
// API. The emulator restarts a pod's container whenever its command ends,
// as RunPod does, so a job whose argv were the pod's command would run
// again and again and never report. gpuflow's runner runs the command
// once, reports the exit code through the agent endpoint and idles: the
// jobs end succeeded and failed with exit code 3, the emulator counts one
// run of each command (the count outlives the pod), and no pod is left.
//
//	go test -count=1 -run TestRunPodJobRunsOnce -v ./internal/e2e/
func TestRunPodJobRunsOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	rp := s.Emulators["runpod"].Emulator.(*runpodemu.Emulator)

	cases := []struct {
		code   int
		spot   bool
		status string
	}{{0, false, "succeeded"}, {3, true, "failed"}}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": "RTX4090", "gpu_count": 1,
			"provider": "runpod", "spot": tc.spot,
			"env": map[string]string{emulate.EnvRunSeconds: "0.5", emulate.EnvExitCode: strconv.Itoa(tc.code)}})
	}
	for i, tc := range cases {
		id := ids[i]
		j := c.waitStatus(id, tc.status, 120*time.Second)
		pod, _ := j["instance_id"].(string)
		if j["provider"] != "runpod" || pod == "" || exitCodeOf(j) != tc.code {
			t.Fatalf("job %s: %v, want exit code %d on a runpod pod", id, j, tc.code)
		}
		if tc.code != 0 && !strings.Contains(fmt.Sprint(j["error"]), "code 3") {
			t.Errorf("job %s: error %q, want the exit code in it", id, j["error"])
		}
		// The final status is recorded only once the pod is confirmed gone.
		if live := rp.Live(); slices.Contains(live, pod) {
			t.Errorf("job %s ended %s while its pod %s lives (%v)", id, tc.status, pod, live)
		}
		if n := rp.CommandRuns(pod); n != 1 {
			t.Errorf("job %s: the emulator ran its command %d times in pod %s, want once", id, n, pod)
		}
		logs := c.logs(id)
		if n := strings.Count(logs, "emulated job "+id+" started"); n != 1 || !strings.Contains(logs, fmt.Sprintf("exiting with %d", tc.code)) {
			t.Errorf("job %s: %d starts in its output %q, want one and the exit", id, n, logs)
		}
		if ends := c.endEvents(id); len(ends) != 1 || ends[0]["status"] != tc.status {
			t.Errorf("job %s: final events %v, want one %s", id, ends, tc.status)
		}
	}
}

// TestAgentCutOffTwoMinutes: a Tencent job exiting 0 and an Alibaba job
// exiting 4, whose machines' agents lose the API for two minutes just
// before the commands end: a TCP proxy stands between the agent URL the
// machines are given and the API, and refuses every connection meanwhile.
// A real VM stays RUNNING after its command ends (the emulators' too), so
// no watcher can end these jobs within the agent's report grace (10 min by
// default): only the agent's report can, and the agent retries it with
// backoff until the API acknowledges it. After the
// cut the jobs end with the reported codes, the report having been
// received after the cut and delivered once, and the machines are gone.
//
//	go test -count=1 -run TestAgentCutOffTwoMinutes -v ./internal/e2e/
func TestAgentCutOffTwoMinutes(t *testing.T) {
	t.Parallel()
	const cut = 2 * time.Minute
	cfg := testConfig(t)
	proxy := testutil.NewTCPProxy(t, cfg.HTTPAddr)
	cfg.AgentURL = "http://" + proxy.Addr()
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())

	cases := []struct {
		provider, gpu string
		code          int
		status        string
	}{{"tencent", "T4", 0, "succeeded"}, {"alibaba", "A10", 4, "failed"}}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		// The command runs 30 s: the cut begins well before it ends and
		// lasts well after.
		ids[i] = c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": tc.gpu, "gpu_count": 1,
			"provider": tc.provider, "env": map[string]string{emulate.EnvRunSeconds: "30", emulate.EnvExitCode: strconv.Itoa(tc.code)}})
	}
	// The agents have been heard: each job's first progress report came
	// through the proxy.
	for _, id := range ids {
		c.waitEvent(id, "progress from the machine's agent", func(e map[string]any) bool { return e["type"] == "job.progress" }, 120*time.Second)
	}
	proxy.Cut()
	cutAt := time.Now()
	time.Sleep(cut) // the outage itself, not an assertion
	for i, id := range ids {
		if j := c.job(id); j["status"] != "running" {
			t.Fatalf("%s job %s during the cut: %v, want running", cases[i].provider, id, j)
		}
		var n int
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM agent_reports WHERE job_id = $1 AND kind = 'finished'`, id).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s job %s: %d finished reports during the cut (err %v)", cases[i].provider, id, n, err)
		}
	}
	refused := proxy.Refused()
	restoredAt := time.Now()
	proxy.Restore()
	t.Logf("the proxy refused %d connections of the agents in %s", refused, time.Since(cutAt).Round(time.Second))
	// Retried, with backoff (1 s doubling to 30 s): a few tries per report
	// in two minutes, not a storm.
	if refused < 2 || refused > 200 {
		t.Errorf("the agents tried %d times during the cut; want retries with backoff", refused)
	}

	for i, tc := range cases {
		id := ids[i]
		j := c.waitStatus(id, tc.status, 180*time.Second)
		if exitCodeOf(j) != tc.code {
			t.Errorf("%s job %s: %v, want exit code %d", tc.provider, id, j, tc.code)
		}
		machine, _ := j["instance_id"].(string)
		if live := s.Emulators[tc.provider].Live(); machine == "" || slices.Contains(live, machine) {
			t.Errorf("%s job %s ended while its machine %q lives (%v)", tc.provider, id, machine, live)
		}
		var received time.Time
		var delivered bool
		var note *string
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT received_at, delivered_at IS NOT NULL, note FROM agent_reports
			WHERE job_id = $1 AND kind = 'finished'`, id).Scan(&received, &delivered, &note); err != nil {
			t.Fatalf("%s job %s: the finished report: %v", tc.provider, id, err)
		}
		if !received.After(restoredAt) || !delivered || note != nil {
			t.Errorf("%s job %s: finished report received %s (cut restored %s), delivered %v, note %v",
				tc.provider, id, received, restoredAt, delivered, note)
		}
		if n := finishedSignals(t, s, id); n != 1 {
			t.Errorf("%s job %s: %d finished signals reached the workflow, want 1", tc.provider, id, n)
		}
		if ends := c.endEvents(id); len(ends) != 1 || ends[0]["status"] != tc.status {
			t.Errorf("%s job %s: final events %v, want one %s", tc.provider, id, ends, tc.status)
		}
		if logs := c.logs(id); !strings.Contains(logs, fmt.Sprintf("exiting with %d", tc.code)) {
			t.Errorf("%s job %s: output %q, want the end shipped after the cut", tc.provider, id, logs)
		}
	}
}

// TestUnreportedEndStopsTheMachine: jobs on Tencent, Alibaba and RunPod
// (an on-demand pod and a spot pod) whose agents never reach the API again
// once their commands end: a TCP proxy between the machines' agent URL and
// the API refuses every connection from just before. No cloud API carries
// an exit code, so only the machine can say the job is over: past the
// report grace (5 s here) each agent stops its machine, as the real agent
// does (the VMs power off and read STOPPED and Stopped, the on-demand pod
// is stopped and reads EXITED, the spot pod is removed, since a stopped
// spot pod reads as reclaimed). The watchers see it on their next sweep:
// every job ends failed, once, with no exit code and an error that says
// the machine stopped, no command ran twice, and no machine is left.
//
//	go test -count=1 -run TestUnreportedEndStopsTheMachine -v ./internal/e2e/
func TestUnreportedEndStopsTheMachine(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.AgentReportGrace = 5 * time.Second
	cfg.WatchInterval = 5 * time.Second
	proxy := testutil.NewTCPProxy(t, cfg.HTTPAddr)
	cfg.AgentURL = "http://" + proxy.Addr()
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	rp := s.Emulators["runpod"].Emulator.(*runpodemu.Emulator)

	cases := []struct {
		provider, gpu string
		spot          bool
		reason        string
	}{
		{"tencent", "T4", false, "stopped itself"},
		{"alibaba", "A10", false, "the instance stopped"},
		{"runpod", "RTX4090", false, "the pod stopped"},
		{"runpod", "RTX4090", true, "disappeared"},
	}
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": tc.gpu, "gpu_count": 1,
			"provider": tc.provider, "spot": tc.spot, "env": map[string]string{emulate.EnvRunSeconds: "20", emulate.EnvExitCode: "0"}})
	}
	for _, id := range ids {
		c.waitEvent(id, "progress from the machine's agent", func(e map[string]any) bool { return e["type"] == "job.progress" }, 120*time.Second)
	}
	proxy.Cut()
	for i, tc := range cases {
		id := ids[i]
		j := c.waitStatus(id, "failed", 180*time.Second)
		if exitCodeOf(j) != -999 {
			t.Errorf("%s job %s: exit code %d, but none was ever reported", tc.provider, id, exitCodeOf(j))
		}
		if e := fmt.Sprint(j["error"]); !strings.Contains(e, tc.reason) {
			t.Errorf("%s job %s (spot %v): error %q, want it to say %q", tc.provider, id, tc.spot, e, tc.reason)
		}
		machine, _ := j["instance_id"].(string)
		if live := s.Emulators[tc.provider].Live(); machine == "" || slices.Contains(live, machine) {
			t.Errorf("%s job %s ended while its machine %q lives (%v)", tc.provider, id, machine, live)
		}
		if tc.provider == "runpod" {
			if n := rp.CommandRuns(machine); n != 1 {
				t.Errorf("runpod job %s: the command ran %d times, want once", id, n)
			}
		}
		if ends := c.endEvents(id); len(ends) != 1 {
			t.Errorf("%s job %s: final events %v, want one", tc.provider, id, ends)
		}
	}
	if n := proxy.Refused(); n == 0 {
		t.Errorf("no agent tried to reach the API during the cut")
	}
}

// TestThrottledCloudJobsEnd: each cloud's describe and list calls limited
// to one every four seconds per account, with bursts of one (the
// emulators answer past it with the cloud's own throttling error: Tencent
// RequestLimitExceeded, Alibaba Throttling.User, RunPod 429). The
// watchers sweep every eight seconds, so they leave half of that budget;
// the activities (teardown's confirmation that a machine is gone,
// provisioning's lookups) and the sweeps compete for the rest: three jobs
// a cloud ending together need more than it gives. Every job still
// reaches its right end — the codes their agents report, and, for spot
// jobs whose machines the cloud takes back while they run (nothing but a
// sweep can tell), failed as preempted — every machine is torn down, and
// each emulator did refuse calls. (Teardowns throttled together used to
// retry in step on the activity policy's backoff, up to 30 s apart, and
// took minutes here; they now retry after the provider's jittered hint.)
//
//	go test -count=1 -run TestThrottledCloudJobsEnd -v ./internal/e2e/
func TestThrottledCloudJobsEnd(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.WatchInterval = 8 * time.Second
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true})
	assertNoLiveMachines(t, s)
	c := newAPI(t, s.APIURL())
	low := emulate.Rate{PerSecond: 0.25, Burst: 1}
	limited := map[string][]string{
		"tencent": {"DescribeInstances", "DescribeInstancesStatus", "DescribeZoneInstanceConfigInfos"},
		"alibaba": {"DescribeInstances", "DescribeInstanceStatus"},
		"runpod":  {runpodemu.ClassRead},
	}
	for cloud, classes := range limited {
		for _, class := range classes {
			s.Emulators[cloud].RateLimiter().SetRate(class, low)
		}
	}

	type job struct {
		id, provider string
		code         int
		status       string
	}
	var jobs []job
	for _, p := range []struct{ name, gpu string }{{"tencent", "T4"}, {"alibaba", "A10"}, {"runpod", "RTX4090"}} {
		for _, code := range []int{0, 5, 9} {
			id := c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": p.gpu, "gpu_count": 1,
				"provider": p.name, "env": map[string]string{emulate.EnvRunSeconds: "1", emulate.EnvExitCode: strconv.Itoa(code)}})
			status := "succeeded"
			if code != 0 {
				status = "failed"
			}
			jobs = append(jobs, job{id, p.name, code, status})
		}
	}
	// Spot jobs whose machines the cloud takes back while they run: no
	// agent reports that, so only a watcher's (throttled) sweep can end
	// them.
	preempted := map[string]string{}
	for _, p := range []struct{ name, gpu string }{{"tencent", "T4"}, {"runpod", "RTX4090"}} {
		id := c.submit(map[string]any{"command": []string{"python", "train.py"}, "gpu_type": p.gpu, "gpu_count": 1,
			"provider": p.name, "spot": true, "max_restarts": 0, "env": map[string]string{emulate.EnvRunSeconds: "600"}})
		preempted[id] = p.name
	}
	for id, cloud := range preempted {
		j := c.waitStatus(id, "running", 300*time.Second)
		if err := s.Emulators[cloud].Preempt(j["instance_id"].(string)); err != nil {
			t.Fatalf("preempt the %s machine of job %s: %v", cloud, id, err)
		}
	}
	for id, cloud := range preempted {
		j := c.waitStatus(id, "failed", 300*time.Second)
		t.Logf("%s job %s failed at %s", cloud, id, time.Now().Format(time.TimeOnly))
		if !strings.Contains(fmt.Sprint(j["error"]), "preempted") || j["exit_code"] != nil {
			t.Errorf("%s job %s: %v, want failed as preempted", cloud, id, j)
		}
		machine, _ := j["instance_id"].(string)
		if live := s.Emulators[cloud].Live(); machine == "" || slices.Contains(live, machine) {
			t.Errorf("%s job %s ended while its machine %q lives (%v)", cloud, id, machine, live)
		}
	}
	for _, jb := range jobs {
		j := c.waitStatus(jb.id, jb.status, 300*time.Second)
		t.Logf("%s job %s %s at %s", jb.provider, jb.id, jb.status, time.Now().Format(time.TimeOnly))
		if j["provider"] != jb.provider || exitCodeOf(j) != jb.code {
			t.Errorf("%s job %s: %v, want exit code %d", jb.provider, jb.id, j, jb.code)
		}
		machine, _ := j["instance_id"].(string)
		if live := s.Emulators[jb.provider].Live(); machine == "" || slices.Contains(live, machine) {
			t.Errorf("%s job %s ended while its machine %q lives (%v)", jb.provider, jb.id, machine, live)
		}
	}
	for cloud, classes := range limited {
		var throttled, allowed int64
		for _, class := range classes {
			n := s.Emulators[cloud].RateLimiter().Counts(class)
			throttled += n.Throttled
			allowed += n.Allowed
		}
		t.Logf("%s: %d describe/list calls answered, %d refused as throttled", cloud, allowed, throttled)
		if throttled == 0 {
			t.Errorf("%s refused no call: the test did not throttle it", cloud)
		}
	}
}
