package e2e

import (
	"cmp"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/devstack"
)

// TestBenchQueueHandoff measures how fast a queued job starts when capacity
// frees: one CPU slot, BENCH_QUEUE_JOBS `sleep 0.2` jobs submitted at once
// with mixed priorities; the dispatcher's recheck is an hour, so only freed
// capacity (NOTIFY) wakes the queue. The handoff is the time from one job's
// finish to the next one's start, as the store records them; it also
// checks that jobs started by priority, then submission.
func TestBenchQueueHandoff(t *testing.T) {
	benchOnly(t)
	n := envInt("BENCH_QUEUE_JOBS", 60)
	cfg := testConfig(t)
	cfg.LocalCPUSlots = 1
	cfg.QueueRecheck = time.Hour
	s := startStack(t, cfg, devstack.Options{NoUI: true, NoEmulators: true})
	c := newAPI(t, s.APIURL())

	blocker := c.submit(map[string]any{"command": []string{"sleep", "300"}, "gpu_count": 0, "provider": "local", "priority": 10})
	c.waitStatus(blocker, "running", 30*time.Second)
	type job struct {
		id            string
		prio, order   int
		start, finish time.Time
	}
	jobs := make([]job, n)
	for i := range jobs {
		jobs[i] = job{prio: (i * 7) % 11, order: i}
		jobs[i].id = c.submit(map[string]any{"command": []string{"sleep", "0.2"}, "gpu_count": 0, "provider": "local", "priority": jobs[i].prio})
	}
	for i := range jobs {
		waitInQueue(t, c, jobs[i].id)
	}
	if code, out := c.do(http.MethodPost, "/api/gpu/tasks/"+blocker+"/cancel", nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel the blocker: %d %v", code, out)
	}
	for i := range jobs {
		j := c.waitStatus(jobs[i].id, "succeeded", time.Duration(n)*5*time.Second)
		jobs[i].start = startedAt(t, j)
		jobs[i].finish, _ = time.Parse(time.RFC3339Nano, j["finished_at"].(string))
	}
	slices.SortFunc(jobs, func(a, b job) int { return a.start.Compare(b.start) })
	inOrder := slices.IsSortedFunc(jobs, func(a, b job) int {
		if c := cmp.Compare(b.prio, a.prio); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
	var gaps []time.Duration
	for i := 1; i < len(jobs); i++ {
		gaps = append(gaps, jobs[i].start.Sub(jobs[i-1].finish))
	}
	slices.Sort(gaps)
	p := func(q float64) time.Duration {
		return gaps[min(len(gaps)-1, int(q*float64(len(gaps))))].Round(time.Millisecond)
	}
	t.Logf("BENCH queue handoff (1 slot, %d queued jobs): finish→next start p50 %v  p90 %v  p99 %v  max %v; started by priority then submission: %v",
		n, p(0.5), p(0.9), p(0.99), gaps[len(gaps)-1].Round(time.Millisecond), inOrder)
	if !inOrder {
		t.Errorf("jobs did not start by priority, then submission")
	}
}
