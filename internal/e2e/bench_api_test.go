package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/devstack"
)

// loadAvg is the machine's load average (/proc/loadavg), for the log: the
// benchmarks share the cores with whatever else runs.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// percentiles formats p50/p90/p99/max of lat, which it sorts.
func percentiles(lat []time.Duration, qs ...float64) string {
	if len(lat) == 0 {
		return "no samples"
	}
	slices.Sort(lat)
	var b strings.Builder
	for _, q := range qs {
		v := lat[min(len(lat)-1, int(q*float64(len(lat))))]
		fmt.Fprintf(&b, "p%g %v  ", q*100, roundDur(v))
	}
	fmt.Fprintf(&b, "max %v", roundDur(lat[len(lat)-1]))
	return b.String()
}

func roundDur(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// TestBenchGetTask measures GET /api/gpu/tasks/{id} with a valid token
// under a closed-loop Go load generator on loopback (keep-alive, N
// goroutines each with one request in flight): requests per second and
// latency percentiles. Each request verifies the token, loads the user and
// reads the job from PostgreSQL. The load generator runs in the same
// process and shares the cores with the API, Temporal and PostgreSQL; when
// wrk is on PATH it is also measured with wrk as a separate process.
func TestBenchGetTask(t *testing.T) {
	benchOnly(t)
	dur := time.Duration(envInt("BENCH_SECONDS", 10)) * time.Second
	const warm = 2 * time.Second
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{NoUI: true, NoWorker: true})
	c := newAPI(t, s.APIURL())
	// Without a worker the job's workflow waits for one; the row is there.
	id := c.submit(map[string]any{"command": []string{"true"}, "gpu_count": 0})
	url := c.base + "/api/gpu/tasks/" + id
	t.Logf("load average before: %s", loadAvg())

	for _, conc := range []int{32, 64} {
		httpc := &http.Client{Transport: &http.Transport{
			MaxIdleConns: conc, MaxIdleConnsPerHost: conc, IdleConnTimeout: time.Minute,
		}}
		// run sends requests from conc goroutines for d; it returns the
		// latencies of the successful ones and the number of failures.
		run := func(d time.Duration) ([]time.Duration, int64) {
			var failed atomic.Int64
			var mu sync.Mutex
			var all []time.Duration
			var wg sync.WaitGroup
			end := time.Now().Add(d)
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lat := make([]time.Duration, 0, 1<<14)
					for time.Now().Before(end) {
						req, _ := http.NewRequest(http.MethodGet, url, nil)
						req.Header.Set("Authorization", "Bearer "+c.token)
						start := time.Now()
						resp, err := httpc.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						drain(resp)
						if resp.StatusCode != http.StatusOK {
							failed.Add(1)
							continue
						}
						lat = append(lat, time.Since(start))
					}
					mu.Lock()
					all = append(all, lat...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			return all, failed.Load()
		}
		run(warm)
		start := time.Now()
		lat, failed := run(dur)
		elapsed := time.Since(start)
		if failed > 0 {
			t.Errorf("concurrency %d: %d requests failed", conc, failed)
		}
		t.Logf("BENCH get task (Go client in-process, keep-alive, concurrency %d, %v): %.0f req/s  %s  (%d ok, %d failed, load %s)",
			conc, dur, float64(len(lat))/elapsed.Seconds(), percentiles(lat, 0.50, 0.90, 0.99), len(lat), failed, loadAvg())
		httpc.CloseIdleConnections()
	}

	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Logf("wrk not on PATH; skipping the out-of-process measurement")
		return
	}
	for _, conc := range []int{32, 64} {
		wrkRun := func(d time.Duration) string {
			cmd := exec.Command(wrk, "-t2", fmt.Sprintf("-c%d", conc), fmt.Sprintf("-d%ds", int(d.Seconds())),
				"--latency", "-H", "Authorization: Bearer "+c.token, url)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("wrk: %v\n%s", err, out.String())
			}
			return out.String()
		}
		wrkRun(warm)
		out := wrkRun(dur)
		t.Logf("BENCH get task (wrk -t2 -c%d -d%v, separate process): %s  (load %s)", conc, dur, summarizeWrk(out), loadAvg())
		t.Logf("wrk output:\n%s", out)
	}
}

// summarizeWrk picks requests/s, the latency percentiles, the max and the
// non-2xx count out of wrk --latency output.
func summarizeWrk(out string) string {
	var rps, maxLat, non2xx string
	pct := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "Requests/sec:":
			rps = f[1]
		case len(f) >= 5 && f[0] == "Latency" && maxLat == "":
			maxLat = f[3] // Avg Stdev Max +/-Stdev
		case len(f) == 2 && strings.HasSuffix(f[0], "%") && len(f[0]) <= 4:
			pct[f[0]] = f[1]
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx"):
			non2xx = strings.TrimSpace(line)
		}
	}
	s := fmt.Sprintf("%s req/s  p50 %s  p90 %s  p99 %s  max %s", rps, pct["50%"], pct["90%"], pct["99%"], maxLat)
	if non2xx != "" {
		s += "  " + non2xx
	}
	return s
}

// raiseNoFile raises the soft open-file limit to at least want (up to the
// hard limit).
func raiseNoFile(t *testing.T, want uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur >= want {
		return
	}
	rl.Cur = min(max(want, rl.Cur), rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	if rl.Cur < want {
		t.Logf("open-file limit is %d (hard limit), below the %d wanted", rl.Cur, want)
	}
}

// TestBenchWebSocketFanout connects many WebSocket clients of one user to
// /api/gpu/ws, then writes one update of that user's job at a time through
// the store (ApplyUpdate: NOTIFY → the API's listener → every client) and
// measures the time from the ApplyUpdate call to each client's receipt.
// The clients run in this process and share the cores with the server.
func TestBenchWebSocketFanout(t *testing.T) {
	benchOnly(t)
	n := envInt("BENCH_WS_CLIENTS", 1000)
	events := envInt("BENCH_WS_EVENTS", 20)
	const warmEvents = 2
	raiseNoFile(t, uint64(2*n+1024))
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{NoUI: true, NoWorker: true})
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"true"}, "gpu_count": 0})
	t.Logf("load average before: %s", loadAvg())

	total := warmEvents + events
	// arrived[k][i] is when client i received event k; each client writes
	// only its own column.
	arrived := make([][]time.Time, total)
	for k := range arrived {
		arrived[k] = make([]time.Time, n)
	}
	counts := make([]atomic.Int64, total)
	allIn := make([]chan struct{}, total)
	for k := range allIn {
		allIn[k] = make(chan struct{})
	}
	const baseSeq = 1000 // above any seq the submission wrote

	wsURL := "ws" + strings.TrimPrefix(c.base, "http") + "/api/gpu/ws?token=" + c.token
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var dialFailed atomic.Int64
	var wg sync.WaitGroup
	connStart := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				conn, resp, err := dialer.Dial(wsURL, nil)
				if err != nil {
					if dialFailed.Add(1) <= 3 {
						t.Errorf("dial client %d: %v", i, err)
					}
					continue
				}
				if resp != nil && resp.Body != nil {
					resp.Body.Close()
				}
				conns[i] = conn
			}
		}()
	}
	wg.Wait()
	connectTime := time.Since(connStart)
	if dialFailed.Load() > 0 {
		t.Fatalf("%d of %d clients failed to connect", dialFailed.Load(), n)
	}
	t.Cleanup(func() {
		for _, conn := range conns {
			_ = conn.Close()
		}
	})

	var readers sync.WaitGroup
	for i, conn := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					return
				}
				now := time.Now()
				var m struct {
					TaskID string `json:"task_id"`
					JobSeq int    `json:"job_seq"`
				}
				if json.Unmarshal(data, &m) != nil || m.TaskID != id {
					continue
				}
				k := m.JobSeq - baseSeq
				if k < 0 || k >= total {
					continue
				}
				arrived[k][i] = now
				if counts[k].Add(1) == int64(n) {
					close(allIn[k])
				}
			}
		}()
	}
	// Every connection is registered with the hub once the stats count it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out := c.do(http.MethodGet, "/api/gpu/websocket/stats", nil)
		if code == http.StatusOK && int(out["connections"].(float64)) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("websocket stats after 30s: %d %v, want %d connections", code, out, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("BENCH websocket connect: %d clients in %v (%.0f/s, 32 dialing at a time)",
		n, connectTime.Round(time.Millisecond), float64(n)/connectTime.Seconds())

	ctx := context.Background()
	sentAt := make([]time.Time, total)
	var apply []time.Duration
	missing := 0
	for k := range total {
		sentAt[k] = time.Now()
		ev, err := s.DB.ApplyUpdate(ctx, gpuflow.JobUpdate{
			JobID: id, Seq: baseSeq + k, Type: gpuflow.EventProgress,
			Data: json.RawMessage(fmt.Sprintf(`{"bench":%d}`, k)),
		})
		if err != nil || ev == nil {
			t.Fatalf("apply update %d: %v (event %v)", k, err, ev)
		}
		if k >= warmEvents {
			apply = append(apply, time.Since(sentAt[k]))
		}
		select {
		case <-allIn[k]:
		case <-time.After(10 * time.Second):
			got := int(counts[k].Load())
			missing += n - got
			t.Errorf("event %d reached %d of %d clients in 10s", k, got, n)
		}
		// Let the feed settle so each event is measured alone.
		time.Sleep(50 * time.Millisecond)
	}
	// Closing the connections ends the readers; their writes happen
	// before Wait returns.
	for _, conn := range conns {
		_ = conn.Close()
	}
	readers.Wait()
	var lat, full []time.Duration
	for k := warmEvents; k < total; k++ {
		var last time.Duration
		for _, at := range arrived[k] {
			if !at.IsZero() {
				d := at.Sub(sentAt[k])
				lat = append(lat, d)
				last = max(last, d)
			}
		}
		full = append(full, last)
	}
	t.Logf("BENCH websocket fan-out (%d clients, %d events, from ApplyUpdate call to receipt): %s over %d deliveries (%d missing); ApplyUpdate itself %s; last client per event %s  (load %s)",
		n, events, percentiles(lat, 0.50, 0.90, 0.99), len(lat), missing,
		percentiles(apply, 0.50), percentiles(full, 0.50), loadAvg())
}
