package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/devstack"
)

func startedAt(t *testing.T, j map[string]any) time.Time {
	t.Helper()
	s, _ := j["started_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("started_at %q: %v", s, err)
	}
	return at
}

// TestQueueOrderAndCancel: with one CPU slot busy, queued jobs wait in
// "queued" with their place and reason, a cancelled one leaves at once,
// and when the slot frees the higher priority job starts first, then the
// others in order — woken by the freed slot, not by polling.
func TestQueueOrderAndCancel(t *testing.T) {
	cfg := testConfig(t)
	cfg.LocalCPUSlots = 1
	cfg.QueueRecheck = time.Hour // only freed capacity may wake the queue
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true})
	c := newAPI(t, s.APIURL())
	job := func(name string, prio int, cmd ...string) string {
		return c.submit(map[string]any{"name": name, "command": cmd, "gpu_count": 0, "priority": prio, "provider": "local"})
	}

	blocker := job("blocker", 5, "sleep", "300")
	c.waitStatus(blocker, "running", 30*time.Second)
	low := job("low", 1, "echo", "low")
	high := job("high", 9, "echo", "high")
	doomed := job("doomed", 5, "echo", "doomed")
	for _, want := range []struct {
		id  string
		pos float64
	}{{high, 1}, {doomed, 2}, {low, 3}} {
		j := c.waitStatus(want.id, "queued", 30*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for j["queue"] == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			j = c.job(want.id)
		}
		q, _ := j["queue"].(map[string]any)
		if q == nil || q["position"] != want.pos || !strings.HasPrefix(q["reason"].(string), "waiting for capacity") {
			t.Fatalf("job %s (%s): queue %v, want position %v", j["name"], want.id, j["queue"], want.pos)
		}
	}

	start := time.Now()
	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+doomed+"/cancel", map[string]any{"reason": "not needed"}); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", code, out)
	}
	j := c.waitStatus(doomed, "cancelled", 10*time.Second)
	t.Logf("a queued job left the queue in %s", time.Since(start).Round(time.Millisecond))
	if j["instance_id"] != nil || len(j["attempts"].([]any)) != 0 {
		t.Fatalf("a cancelled queued job was provisioned: %v", j)
	}
	// The workflow writes the final status first and leaves the queue
	// right after (so the pass that leaving wakes counts the room as
	// free): the entry goes a moment after "cancelled" shows.
	deadline := time.Now().Add(10 * time.Second)
	pos, _, err := s.DB.QueuePosition(context.Background(), doomed)
	for (err != nil || pos != 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		pos, _, err = s.DB.QueuePosition(context.Background(), doomed)
	}
	if err != nil || pos != 0 {
		t.Fatalf("cancelled job still queued: %d %v", pos, err)
	}
	if q := c.job(low)["queue"].(map[string]any); q["position"] != 2.0 {
		t.Fatalf("low moved to %v", q)
	}

	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+blocker+"/cancel", nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel blocker: %d %v", code, out)
	}
	c.waitStatus(blocker, "cancelled", 30*time.Second)
	h := c.waitStatus(high, "succeeded", 30*time.Second)
	l := c.waitStatus(low, "succeeded", 30*time.Second)
	if !startedAt(t, h).Before(startedAt(t, l)) {
		t.Fatalf("high started %v, low %v: want high first", h["started_at"], l["started_at"])
	}
}

// TestOwnerLimitQueues: with a limit of one running job per user, a
// user's second job waits with the limit as its reason while another
// user's job runs, and starts when the first one ends.
func TestOwnerLimitQueues(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxRunning = 1
	cfg.QueueRecheck = time.Hour
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true})
	alice, bob := newAPI(t, s.APIURL()), newAPI(t, s.APIURL())
	spec := func(cmd ...string) map[string]any {
		return map[string]any{"command": cmd, "gpu_count": 0, "provider": "local"}
	}
	first := alice.submit(spec("sleep", "300"))
	alice.waitStatus(first, "running", 30*time.Second)
	second := alice.submit(spec("echo", "second"))
	other := bob.submit(spec("echo", "bob"))
	bob.waitStatus(other, "succeeded", 30*time.Second)
	j := alice.waitStatus(second, "queued", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for j["queue"] == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		j = alice.job(second)
	}
	if q, _ := j["queue"].(map[string]any); q == nil || q["reason"] != "owner limit: 1 of 1 jobs running" {
		t.Fatalf("second job: %v", j["queue"])
	}
	if code, out := alice.do(http.MethodPost, "/api/gpu/tasks/"+first+"/cancel", nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", code, out)
	}
	alice.waitStatus(second, "succeeded", 30*time.Second)
}

// TestMetricsIncludeTemporalAndProvisioning: the process's /metrics has
// the Temporal SDK's own metrics and the provisioning outcomes per
// provider, recorded by the workflow, with no job or user id in a label.
func TestMetricsIncludeTemporalAndProvisioning(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true})
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"true"}, "gpu_count": 0})
	c.waitStatus(id, "succeeded", 30*time.Second)

	want := []string{
		`gpuflow_provisioning_outcomes_total{`,
		`gpuflow_provisioning_duration_seconds_count{`,
		`temporal_workflow_completed_total{`,
		`temporal_activity_execution_latency_seconds_bucket{`,
		`temporal_request_total{`,
		`gpuflow_http_requests_total{`,
		`gpuflow_admissions_total{provider="local",strategy="balanced"} 1`,
		`gpuflow_queue_waiting_jobs 0`,
		`gpuflow_admission_pass_duration_seconds_count`,
	}
	var body string
	deadline := time.Now().Add(15 * time.Second) // the SDK's metrics are reported each second
	for {
		resp, err := http.Get(s.APIURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		for _, name := range []string{"gpuflow_provisioning_outcomes_total{", "gpuflow_provisioning_duration_seconds_count{"} {
			l := grepLines(body, name)
			if !strings.Contains(l, `outcome="started"`) || !strings.Contains(l, `provider="local"`) || !strings.HasSuffix(l, "} 1") {
				missing = name + ` ... outcome="started",provider="local"... } 1`
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, grepLines(body, "gpuflow_prov", "temporal_workflow_completed"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, me := c.do(http.MethodGet, "/users/me", nil)
	if uid, _ := me["id"].(string); uid == "" || strings.Contains(body, id) || strings.Contains(body, uid) {
		t.Fatal("/metrics holds a job or user id")
	}
	// The API reads recorded outcomes at most once a second.
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, m := c.do(http.MethodGet, "/api/gpu/scheduling/metrics", nil)
		prov, _ := m["provisioning"].(map[string]any)
		local, _ := prov["local"].(map[string]any)
		if code == http.StatusOK && local != nil && local["started"].(float64) >= 0.99 && local["success_rate"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduling metrics: %d %v", code, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func grepLines(body string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestQueueSurvivesWorkerKill: jobs wait in the queue behind a running job;
// the worker (the dispatcher too) is killed with SIGKILL and replaced; the
// running job finishes and the queued ones start after it, in priority
// order, each once — the queue lives in PostgreSQL and in the workflows,
// not in the worker.
func TestQueueSurvivesWorkerKill(t *testing.T) {
	cfg := testConfig(t)
	cfg.LocalCPUSlots = 1
	cfg.QueueRecheck = time.Hour
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoWorker: true, NoEmulators: true})
	c := newAPI(t, s.APIURL())
	w1 := startChild(t, "worker", cfg)

	blocker := c.submit(map[string]any{"command": []string{"sleep", "300"}, "gpu_count": 0, "provider": "local"})
	c.waitStatus(blocker, "running", 30*time.Second)
	var queued []string
	for _, prio := range []int{2, 8, 5} {
		queued = append(queued, c.submit(map[string]any{"command": []string{"true"}, "gpu_count": 0, "provider": "local", "priority": prio}))
	}
	for _, id := range queued {
		waitInQueue(t, c, id)
	}
	w1.kill()
	startChild(t, "worker", cfg)

	// The new worker frees the slot: the queued jobs start after it.
	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+blocker+"/cancel", nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", code, out)
	}
	c.waitStatus(blocker, "cancelled", 60*time.Second)
	var starts []time.Time
	for _, id := range queued {
		j := c.waitStatus(id, "succeeded", 60*time.Second)
		if n := len(j["attempts"].([]any)); n != 1 {
			t.Fatalf("job %s made %d attempts", id, n)
		}
		starts = append(starts, startedAt(t, j))
	}
	// Priorities 2, 8, 5: the second started first, then the third, then the first.
	if !starts[1].Before(starts[2]) || !starts[2].Before(starts[0]) {
		for i, id := range queued {
			evs, _ := s.DB.Events(context.Background(), id)
			for _, e := range evs {
				t.Logf("job %d (%s): %s %s %s", i, id[:8], e.At.Format("15:04:05.000"), e.Status, e.Data)
			}
		}
		t.Fatalf("start order %v", starts)
	}
}

// waitInQueue waits until the job's workflow has put it in the queue (the
// API shows its place): "queued" alone is also the status of a job whose
// workflow has not run yet.
func waitInQueue(t testing.TB, c api, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := c.job(id)
		if j["queue"] != nil {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not in the queue after 30 s: %v", id, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
