package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/devstack"
)

// The benchmarks are tests gated by GPUFLOW_BENCH=1 (make bench): they take
// minutes and measure, they do not assert targets. Each prints a table row
// for docs/BENCHMARKS.md.

func benchOnly(t *testing.T) {
	if os.Getenv("GPUFLOW_BENCH") == "" {
		t.Skip("set GPUFLOW_BENCH=1 (make bench) to run benchmarks")
	}
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v <= 0 {
		return def
	}
	return v
}

// TestBenchJobLatency measures submit-to-succeeded latency of `true` on
// the local provider, one job at a time, on a stack like `make run` (the
// Temporal server on a SQLite file in WAL mode). The moment a job succeeds
// is taken from the PostgreSQL NOTIFY feed, not by polling.
func TestBenchJobLatency(t *testing.T) {
	benchOnly(t)
	n := envInt("BENCH_JOBS", 200)
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{NoUI: true})
	c := newAPI(t, s.APIURL())

	var mu sync.Mutex
	done := map[string]chan time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan struct{})
	l := s.DB.NewListener()
	l.OnListen = func(context.Context) {
		select {
		case <-listening:
		default:
			close(listening)
		}
	}
	go func() {
		_ = l.Run(ctx, func(e gpuflow.Event) {
			if e.Status != gpuflow.StatusSucceeded && e.Status != gpuflow.StatusFailed {
				return
			}
			mu.Lock()
			ch := done[e.JobID]
			mu.Unlock()
			if ch != nil {
				ch <- time.Now()
			}
		})
	}()
	<-listening

	// Warm up: the first job pays for connections and caches.
	c.waitStatus(c.submit(map[string]any{"command": []string{"true"}, "gpu_count": 0}), "succeeded", 30*time.Second)

	// Two phases in one run: jobs one right after another, and jobs each
	// after a pause (BENCH_PAUSE) in which the previous job's after-work
	// (the Temporal server's visibility and close tasks on its one SQLite
	// connection, the watcher's unwatch, log shipping) has finished.
	pause := envDuration(t, "BENCH_PAUSE", 500*time.Millisecond)
	run := func(wait time.Duration) []time.Duration {
		lat := make([]time.Duration, 0, n)
		for range n {
			time.Sleep(wait)
			start := time.Now()
			ch := make(chan time.Time, 1)
			code, out := c.do(http.MethodPost, "/api/gpu/jobs/submit", map[string]any{"command": []string{"true"}, "gpu_count": 0})
			if code != http.StatusAccepted {
				t.Fatalf("submit: %d %v", code, out)
			}
			id := out["task_id"].(string)
			mu.Lock()
			done[id] = ch
			mu.Unlock()
			// The event may have fired before the map entry existed.
			select {
			case end := <-ch:
				lat = append(lat, end.Sub(start))
			case <-time.After(30 * time.Second):
				if j := c.job(id); j["status"] == "succeeded" {
					t.Fatalf("job %s succeeded but its event was missed", id)
				}
				t.Fatalf("job %s did not finish in 30s: %v", id, c.job(id))
			}
		}
		slices.Sort(lat)
		return lat
	}
	report := func(what string, lat []time.Duration) {
		p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
		t.Logf("BENCH job latency (true, local, %d jobs, %s): p50 %v  p90 %v  p99 %v  max %v  (load %s)", n, what,
			p(0.50).Round(time.Millisecond), p(0.90).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), loadavg())
	}
	report("back to back", run(0))
	report(fmt.Sprintf("each after %v idle", pause), run(pause))
}

// noop is the workflow of the bare-SDK baseline.
func noop(workflow.Context) error { return nil }

// TestBenchSubmitRate compares submissions per second through the API at
// concurrency 20 with bare SDK starts of a no-op workflow on the same
// server in the same run. No worker runs during either phase, so both
// measure the start path alone (the API's adds validation, planning, the
// PostgreSQL insert and HTTP).
func TestBenchSubmitRate(t *testing.T) {
	benchOnly(t)
	n := envInt("BENCH_SUBMITS", 400)
	const conc = 20
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{NoUI: true, NoWorker: true})
	c := newAPI(t, s.APIURL())
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}

	run := func(name string, one func(i int) error) float64 {
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1))
					if i > n {
						return
					}
					if err := one(i); err != nil {
						failed.Add(1)
						t.Errorf("%s %d: %v", name, i, err)
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(n) / time.Since(start).Seconds()
		t.Logf("BENCH %s: %d starts at concurrency %d in %v: %.1f/s (%d failed)", name, n, conc, time.Since(start).Round(time.Millisecond), rate, failed.Load())
		return rate
	}
	body := []byte(`{"command":["true"],"gpu_count":0}`)
	apiStart := func(int) error {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/api/gpu/jobs/submit", bytesReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		drain(resp)
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	sdkStart := func(i int) error {
		_, err := s.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
			ID: fmt.Sprintf("bench-noop-%d-%d", time.Now().UnixNano(), i), TaskQueue: "bench-noop",
		}, noop)
		return err
	}

	// Warm both paths, then alternate so drift affects both alike.
	for i := range 20 {
		_ = apiStart(i)
		_ = sdkStart(i)
	}
	sdk1 := run("sdk", sdkStart)
	api1 := run("api", apiStart)
	sdk2 := run("sdk", sdkStart)
	api2 := run("api", apiStart)
	sdkRate, apiRate := (sdk1+sdk2)/2, (api1+api2)/2
	t.Logf("BENCH submit rate: api %.1f/s, bare sdk %.1f/s, ratio %.2f", apiRate, sdkRate, apiRate/sdkRate)
}
