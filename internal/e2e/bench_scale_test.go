package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// TestBenchScale runs many cloud jobs at once on the dev stack (the Temporal
// server on a SQLite file in WAL mode, as `make run`; the emulated RunPod,
// Tencent and Alibaba clouds) and measures, in one run:
//
//   - the time to submit GPUFLOW_SCALE_JOBS jobs through the API
//     (concurrency GPUFLOW_SCALE_CONCURRENCY) and until all of them run;
//   - over GPUFLOW_SCALE_STEADY while they merely run (after a window as
//     long with no job, GPUFLOW_SCALE_IDLE): the CPU of each process
//     (gpuflow's, the Temporal server's, the emulators'; bench_procs_test.go)
//     and of every PostgreSQL process, bytes written to disk by each (per
//     running job per minute), the Temporal database files' growth,
//     PostgreSQL's WAL, the cloud API calls each emulator answered, and the
//     processes' memory;
//   - from a machine's exit to its job's `succeeded`, p50 and p99, for
//     batches of GPUFLOW_SCALE_EXIT_JOBS jobs that run
//     GPUFLOW_SCALE_EXIT_RUN seconds while the first batch keeps running;
//   - the time to cancel every job until no emulator holds a machine.
//
// A machine's exit is the moment its emulated job reports its exit code to
// the agent endpoint: the agent URL handed to machines points at a proxy
// in this test, which records each report and forwards it to the API. A
// second batch follows, whose reports the proxy answers 503 instead (the
// machine cannot reach the API), so the job's end must be found some other
// way: past the agents' report grace (GPUFLOW_SCALE_REPORT_GRACE, 30 s
// here) they stop their machines, the watchers see it and the jobs end
// failed; its figures are given from the exit and from the end of the
// grace, when the machine stops (GPUFLOW_SCALE_AGENT_FINISHED=forward or
// drop runs only one of the two); jobs that do not end within
// GPUFLOW_SCALE_EXIT_WAIT are counted, not waited for.
//
// Status is followed through PostgreSQL's NOTIFY feed (no polling of the
// API), with a count from the jobs table every few seconds while waiting.
// It measures; it asserts no target. Every figure is on a line starting
// with "BENCH ".
func TestBenchScale(t *testing.T) {
	benchOnly(t)
	n := envInt("GPUFLOW_SCALE_JOBS", 300)
	steady := envDuration(t, "GPUFLOW_SCALE_STEADY", time.Minute)
	conc := envInt("GPUFLOW_SCALE_CONCURRENCY", 32)
	exitN := envInt("GPUFLOW_SCALE_EXIT_JOBS", 50)
	exitRun := envInt("GPUFLOW_SCALE_EXIT_RUN", 20)
	exitWait := envDuration(t, "GPUFLOW_SCALE_EXIT_WAIT", 5*time.Minute)
	rampWait := envDuration(t, "GPUFLOW_SCALE_RAMP_WAIT", max(10*time.Minute, time.Duration(n)*300*time.Millisecond))
	// The exit batches: one whose agents' finished reports reach the API,
	// then one whose reports the proxy answers 503 (the machine cannot
	// reach the API), unless GPUFLOW_SCALE_AGENT_FINISHED names one
	// ("forward" or "drop").
	exitModes := []bool{false, true} // dropped?
	switch m := os.Getenv("GPUFLOW_SCALE_AGENT_FINISHED"); m {
	case "":
	case "forward":
		exitModes = []bool{false}
	case "drop":
		exitModes = []bool{true}
	default:
		t.Fatalf("GPUFLOW_SCALE_AGENT_FINISHED=%q: want forward or drop", m)
	}
	split := os.Getenv("GPUFLOW_SCALE_PROCESSES") != "one"

	cfg := testConfig(t)
	opts := devstack.Options{NoUI: true}
	var side *sideProcs
	if split { // stopped after the stack: registered first
		side = startSideProcs(t, &cfg)
		opts.ExternalTemporal = true
	}
	agent := startAgentProxy(t, "http://"+cfg.HTTPAddr)
	cfg.AgentURL = agent.url
	cfg.AgentReportGrace = envDuration(t, "GPUFLOW_SCALE_REPORT_GRACE", 30*time.Second)
	t.Logf("BENCH scale: agent report grace %v, watch interval %v", cfg.AgentReportGrace, cfg.WatchInterval)
	if v := envInt("GPUFLOW_WORKFLOW_CACHE", 0); v > 0 {
		cfg.WorkflowCache = v
	}
	t.Logf("BENCH scale: workflow cache %d", cfg.WorkflowCache)
	t.Logf("BENCH scale: jobs %d, steady %v, concurrency %d, exit batch %d × %ds, agent finished reports %s; load at start %s",
		n, steady, conc, exitN, exitRun, exitModeNames(exitModes), loadavg())
	logs := newLogCounter(os.Stderr, 5)
	s, err := devstack.Start(context.Background(), cfg, opts, slog.New(logs))
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Stop)
	t.Cleanup(func() {
		t.Logf("BENCH scale logs over the whole run (warnings and errors, by message): %s", logs.summary())
	})
	c := newAPI(t, s.APIURL())
	st := &scaleStack{Stack: s, procs: side.benchProcs(), temporalPID: side.temporalPID(), clouds: newBenchClouds(s, side)}
	// Run before the stack stops: every job ends and no machine is left.
	t.Cleanup(func() { cancelAll(t, st, c, n+len(exitModes)*exitN, conc) })
	conn, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })

	tr := newTracker()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	listening := make(chan struct{})
	l := s.DB.NewListener()
	var once sync.Once
	l.OnListen = func(context.Context) { once.Do(func() { close(listening) }) }
	go func() { _ = l.Run(ctx, tr.event) }()
	<-listening

	httpc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	clouds := []struct{ provider, gpu string }{{"runpod", "RTX4090"}, {"tencent", "T4"}, {"alibaba", "A10"}}
	spec := func(i int, run int) map[string]any {
		cl := clouds[i%len(clouds)]
		return map[string]any{"name": fmt.Sprintf("scale-%d", i), "command": []string{"train"}, "gpu_type": cl.gpu, "gpu_count": 1,
			"provider": cl.provider, "env": map[string]string{emulate.EnvRunSeconds: strconv.Itoa(run)}}
	}

	base := measure(t, conn, st, cfg.DataDir)
	t.Logf("BENCH scale idle: RSS before any job: %s; this process's Go heap in use %.0f MiB, %d goroutines",
		base.rssLine(st.procs), float64(base.heap.HeapInuse)/(1<<20), base.goroutines)
	// The stack's own cost with no job (the Temporal server's housekeeping,
	// the reconcilers' sweeps, the watchers): the steady figures are also
	// given over this, per job.
	idleWindow := envDuration(t, "GPUFLOW_SCALE_IDLE", time.Minute)
	time.Sleep(idleWindow)
	idle := measure(t, conn, st, cfg.DataDir)
	idleRate := rates(base, idle)
	t.Logf("BENCH scale idle: over %v with no job: all but PostgreSQL CPU %.1f %% of one core, wrote %.1f KiB/min (%s); PostgreSQL CPU %.1f %%, wrote %.1f KiB/min (WAL %.1f KiB/min)",
		idleWindow, idleRate.selfCPU, idleRate.selfWriteKiBMin, idleRate.procLine(st.procs), idleRate.pgCPU, idleRate.pgWriteKiBMin, idleRate.walKiBMin)

	// GPUFLOW_SCALE_PPROF=dir keeps profiles of this process (gpuflow; in
	// the "one" mode also the Temporal server and the emulators): CPU from
	// the first submit until all run and over the steady window, and the
	// heap once all run; and of each child process, CPU over the steady
	// window (temporal.steady.cpu.pprof, emulators.steady.cpu.pprof).
	profDir := os.Getenv("GPUFLOW_SCALE_PPROF")
	stopRamp := startCPUProfile(t, profDir, "ramp.cpu.pprof")
	stopCPU := func() { stopRamp(); stopRamp = func() {} }
	t.Cleanup(func() { stopCPU() })

	// Submit. The jobs run far longer than the test: they end by cancel.
	const longRun = 24 * 3600
	start := time.Now()
	ids, failed := submitMany(t, httpc, c, n, conc, func(i int) map[string]any { return spec(i, longRun) })
	submitTook := time.Since(start)
	t.Logf("BENCH scale submit: %d jobs in %v (%.1f/s at concurrency %d), %d refused; load %s",
		len(ids), submitTook.Round(time.Millisecond), float64(len(ids))/submitTook.Seconds(), conc, failed, loadavg())
	if len(ids) == 0 {
		t.Fatal("no job was accepted")
	}

	// Until all run.
	reached := tr.waitAll(t, conn, ids, gpuflow.StatusRunning, start, rampWait)
	allRunning := time.Since(start)
	if last, ok := tr.last(ids, gpuflow.StatusRunning); ok && reached == len(ids) {
		allRunning = last.Sub(start) // when the last one was seen, not when a scan noticed
	}
	if reached < len(ids) {
		t.Logf("BENCH scale running: only %d of %d jobs running after %v (gave up); statuses %v; load %s",
			reached, len(ids), allRunning.Round(time.Second), dbStatuses(t, conn), loadavg())
		t.Fatalf("not all jobs reached running")
	}
	stopCPU()
	if profDir != "" {
		runtime.GC()
		f, err := os.Create(filepath.Join(profDir, "running.heap.pprof"))
		if err != nil {
			t.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(f)
		f.Close()
		g, err := os.Create(filepath.Join(profDir, "running.goroutine.pprof"))
		if err != nil {
			t.Fatal(err)
		}
		_ = pprof.Lookup("goroutine").WriteTo(g, 0)
		g.Close()
	}
	t.Logf("BENCH scale running: all %d jobs running %v after the first submit (%.1f s after the last accepted); load %s",
		len(ids), allRunning.Round(time.Millisecond), (allRunning - submitTook).Seconds(), loadavg())

	// Steady state: nothing happens but the jobs running. First let the
	// last jobs' start-up writes settle (the Temporal server's queued tasks
	// and SQLite's checkpoint of the ramp): until a 5 s slice writes no
	// more than twice the idle rate, for at most GPUFLOW_SCALE_SETTLE.
	settle(t, st.temporalPID, envDuration(t, "GPUFLOW_SCALE_SETTLE", 2*time.Minute), idleRate.procs[temporalName(st)].writeKiBMin)
	runningBefore := tr.count(ids, gpuflow.StatusRunning)
	m0 := measure(t, conn, st, cfg.DataDir)
	stopSteadyCPU := startCPUProfile(t, profDir, "steady.cpu.pprof")
	childProfiles := side.profileCPU(t, profDir, "steady.cpu.pprof", steady)
	steadyWrites(t, st.temporalPID, steady, m0.procs[temporalName(st)].write, m0.at)
	stopSteadyCPU()
	childProfiles()
	m1 := measure(t, conn, st, cfg.DataDir)
	runningAfter := tr.count(ids, gpuflow.StatusRunning)
	report(t, conn, st, base, idle, idleRate, m0, m1, (runningBefore+runningAfter)/2)
	t.Logf("BENCH scale steady logs (warnings and errors, by message): %s", logs.since(m0.logs))

	// Exit latency: batches that exit on their own while the first batch
	// still runs, one after the other.
	for _, drop := range exitModes {
		agent.drop.Store(drop)
		agent.mu.Lock()
		clear(agent.answers)
		agent.mu.Unlock()
		start = time.Now()
		exitIDs, exitFailed := submitMany(t, httpc, c, exitN, conc, func(i int) map[string]any { return spec(i, exitRun) })
		t.Logf("BENCH scale exit batch (agent finished reports %s): %d jobs of %ds submitted in %v (%d refused) with %d running",
			exitModeNames([]bool{drop}), len(exitIDs), exitRun, time.Since(start).Round(time.Millisecond), exitFailed, tr.count(ids, gpuflow.StatusRunning))
		end := gpuflow.StatusSucceeded
		if drop {
			end = gpuflow.StatusFailed // its exit code unknown
		}
		done := tr.waitAll(t, conn, exitIDs, end, start, time.Duration(exitRun)*time.Second+exitWait)
		exitLatency(t, conn, tr, agent, exitIDs, done, drop, end, cfg.AgentReportGrace)
	}
	t.Logf("BENCH scale end: load %s", loadavg())
}

// steadyWrites waits d, logging every 15 s what the process pid (the one
// writing Temporal's SQLite file) wrote to disk in that slice (so a
// one-time flush, such as a SQLite checkpoint of the ramp's writes, shows
// apart from the steady rate); it had written w0 at at0.
func steadyWrites(t *testing.T, pid int, d time.Duration, w0 int64, at0 time.Time) {
	const slice = 15 * time.Second
	end := time.Now().Add(d)
	prev, prevAt := w0, at0
	var slices []string
	for time.Until(end) > 0 {
		time.Sleep(min(slice, time.Until(end)))
		w, err := procWriteBytes(pid)
		if err != nil {
			return
		}
		now := time.Now()
		slices = append(slices, fmt.Sprintf("%.0f KiB/s", float64(w-prev)/1024/now.Sub(prevAt).Seconds()))
		prev, prevAt = w, now
	}
	t.Logf("BENCH scale steady disk: Temporal server's process writes by %v slice: %s", slice, strings.Join(slices, ", "))
}

// startCPUProfile writes a CPU profile of this process to dir/name until
// the returned func is called; nothing when dir is "".
func startCPUProfile(t *testing.T, dir, name string) func() {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// envDuration reads a duration (or a number of seconds) from the environment.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	t.Fatalf("%s=%q is not a duration", name, v)
	return 0
}

// submitMany submits n jobs at concurrency conc and returns the ids of
// those accepted, in order of acceptance, and how many were refused.
func submitMany(t *testing.T, httpc *http.Client, c api, n, conc int, spec func(i int) map[string]any) ([]string, int) {
	var (
		next    atomic.Int64
		refused atomic.Int64
		mu      sync.Mutex
		ids     []string
		wg      sync.WaitGroup
		shown   atomic.Int64
	)
	for range min(conc, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, err := submitOne(httpc, c, spec(i))
				if err != nil {
					refused.Add(1)
					if shown.Add(1) <= 5 {
						t.Logf("submit %d: %v", i, err)
					}
					continue
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ids, int(refused.Load())
}

func submitOne(httpc *http.Client, c api, spec map[string]any) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/gpu/jobs/submit", bytesReader([]byte(fmtJSON(spec))))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		TaskID string `json:"task_id"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &out); err != nil || out.TaskID == "" {
		return "", fmt.Errorf("answer %.300s: %v", b, err)
	}
	return out.TaskID, nil
}

// tracker follows every job's status from the NOTIFY feed.
type tracker struct {
	mu     sync.Mutex
	status map[string]gpuflow.JobStatus
	at     map[string]map[gpuflow.JobStatus]time.Time // first time each status was seen
	wake   chan struct{}
}

func newTracker() *tracker {
	return &tracker{status: map[string]gpuflow.JobStatus{}, at: map[string]map[gpuflow.JobStatus]time.Time{},
		wake: make(chan struct{}, 1)}
}

func (tr *tracker) event(e gpuflow.Event) {
	if e.Status == "" {
		return
	}
	now := time.Now()
	tr.mu.Lock()
	tr.status[e.JobID] = e.Status
	m := tr.at[e.JobID]
	if m == nil {
		m = map[gpuflow.JobStatus]time.Time{}
		tr.at[e.JobID] = m
	}
	if _, ok := m[e.Status]; !ok {
		m[e.Status] = now
	}
	tr.mu.Unlock()
	select {
	case tr.wake <- struct{}{}:
	default:
	}
}

func (tr *tracker) count(ids []string, s gpuflow.JobStatus) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	k := 0
	for _, id := range ids {
		if tr.status[id] == s {
			k++
		}
	}
	return k
}

// seen is when the job's status was first s, if it was.
func (tr *tracker) seen(id string, s gpuflow.JobStatus) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at, ok := tr.at[id][s]
	return at, ok
}

// last is when the last of ids was first seen in status s; false when one
// was not.
func (tr *tracker) last(ids []string, s gpuflow.JobStatus) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var last time.Time
	for _, id := range ids {
		at, ok := tr.at[id][s]
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// waitAll waits until every job has reached status (or ended otherwise),
// at most within, and returns how many reached it. It logs progress every
// 15s, with a count from the jobs table.
func (tr *tracker) waitAll(t *testing.T, conn *pgx.Conn, ids []string, status gpuflow.JobStatus, start time.Time, within time.Duration) int {
	deadline := start.Add(within)
	nextLog := time.Now().Add(15 * time.Second)
	for {
		reached, ended := 0, 0
		tr.mu.Lock()
		for _, id := range ids {
			if _, ok := tr.at[id][status]; ok {
				reached++
			} else if st := tr.status[id]; st.Terminal() {
				ended++
			}
		}
		tr.mu.Unlock()
		if reached+ended == len(ids) || time.Now().After(deadline) {
			if ended > 0 {
				t.Logf("BENCH scale: %d jobs ended without reaching %s: %v", ended, status, dbStatuses(t, conn))
			}
			if reached < len(ids) {
				var late []string
				tr.mu.Lock()
				for _, id := range ids {
					if _, ok := tr.at[id][status]; !ok && len(late) < 10 {
						late = append(late, id+" ("+string(tr.status[id])+")")
					}
				}
				tr.mu.Unlock()
				t.Logf("BENCH scale: %d jobs not %s after %v, among them %s", len(ids)-reached, status,
					time.Since(start).Round(time.Second), strings.Join(late, ", "))
			}
			return reached
		}
		if time.Now().After(nextLog) {
			t.Logf("  %v: %d/%d %s; jobs table %v; load %s", time.Since(start).Round(time.Second), reached, len(ids), status, dbStatuses(t, conn), loadavg())
			nextLog = time.Now().Add(15 * time.Second)
		}
		// A scan reads every id. Scanning at each wake (one per event) cost
		// the process it measures a fifth of a core at 10,000 jobs (40 % of
		// the ramp's CPU profile, session 13): at most 4 scans a second.
		// The times reported come from the events (tr.at), not from scans.
		scanned := time.Now()
		select {
		case <-tr.wake:
		case <-time.After(time.Second):
		}
		time.Sleep(time.Until(scanned.Add(250 * time.Millisecond)))
	}
}

func dbStatuses(t *testing.T, conn *pgx.Conn) map[string]int {
	rows, err := conn.Query(context.Background(), `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		t.Logf("count statuses: %v", err)
		return nil
	}
	out := map[string]int{}
	for rows.Next() {
		var s string
		var k int
		if err := rows.Scan(&s, &k); err == nil {
			out[s] = k
		}
	}
	rows.Close()
	return out
}

// agentProxy stands between the emulated machines and the agent endpoint:
// it records when each job's exit code is reported.
type agentProxy struct {
	url      string
	mu       sync.Mutex
	finished map[string]time.Time // first report of each job's exit
	answers  map[int]int          // status codes the API gave those reports
	drop     atomic.Bool          // answer finished reports 503 instead
}

func exitModeNames(drops []bool) string {
	var names []string
	for _, d := range drops {
		names = append(names, map[bool]string{false: "forwarded", true: "dropped (503)"}[d])
	}
	return strings.Join(names, ", then ")
}

func startAgentProxy(t *testing.T, api string) *agentProxy {
	target, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &agentProxy{finished: map[string]time.Time{}, answers: map[int]int{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/agent/v1/jobs/")
		id, what, _ := strings.Cut(rest, "/")
		if !ok || what != "finished" {
			rp.ServeHTTP(w, r)
			return
		}
		now := time.Now()
		p.mu.Lock()
		if _, seen := p.finished[id]; !seen {
			p.finished[id] = now
		}
		p.mu.Unlock()
		if p.drop.Load() {
			p.answered(http.StatusServiceUnavailable)
			http.Error(w, "dropped by the benchmark", http.StatusServiceUnavailable)
			return
		}
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		p.answered(rec.status)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.url = "http://" + ln.Addr().String()
	return p
}

func (p *agentProxy) answered(code int) {
	p.mu.Lock()
	p.answers[code]++
	p.mu.Unlock()
}

func (p *agentProxy) exitAt(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.finished[id]
	return at, ok
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// exitLatency reports, for the jobs that reported their exit, the time
// from that report to the job's end status: as the NOTIFY feed delivered
// it and as job_events recorded it. For dropped reports it also gives the
// time from the end of the agent's report grace, when it stops its
// machine.
func exitLatency(t *testing.T, conn *pgx.Conn, tr *tracker, agent *agentProxy, ids []string, done int, dropped bool,
	end gpuflow.JobStatus, grace time.Duration) {
	recorded := map[string]time.Time{}
	rows, err := conn.Query(context.Background(),
		`SELECT job_id::text, min(created_at) FROM job_events WHERE status = $2 AND job_id = ANY($1::uuid[]) GROUP BY job_id`, ids, string(end))
	if err != nil {
		t.Fatalf("job_events: %v", err)
	}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			t.Fatal(err)
		}
		recorded[id] = at
	}
	rows.Close()
	var feed, db []time.Duration
	noExit := 0
	for _, id := range ids {
		exit, ok := agent.exitAt(id)
		if !ok {
			noExit++
			continue
		}
		if at, ok := tr.seen(id, end); ok {
			feed = append(feed, at.Sub(exit))
		}
		if at, ok := recorded[id]; ok {
			db = append(db, at.Sub(exit))
		}
	}
	agent.mu.Lock()
	answers := maps.Clone(agent.answers)
	agent.mu.Unlock()
	how := "reported by the agent"
	if dropped {
		how = "agent's report dropped"
	}
	t.Logf("BENCH scale exit→%s (%s): %d of %d %s, %d never reported an exit; API answers to exit reports %v",
		end, how, done, len(ids), end, noExit, answers)
	t.Logf("BENCH scale exit→%s, NOTIFY feed: %s", end, quantiles(feed))
	t.Logf("BENCH scale exit→%s, job_events.created_at: %s", end, quantiles(db))
	if dropped {
		for i := range feed {
			feed[i] -= grace
		}
		t.Logf("BENCH scale machine stop (exit + report grace %v)→%s, NOTIFY feed: %s", grace, end, quantiles(feed))
	}
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	p := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v  (n=%d)", p(0.5), p(0.9), p(0.99), d[len(d)-1].Round(time.Millisecond), len(d))
}

// scaleStack is the stack under measure: the dev stack in this process,
// the processes measured (this one alone, or also the Temporal server's
// and the emulators'), and the emulators.
type scaleStack struct {
	*devstack.Stack
	procs       []benchProc
	temporalPID int // the process writing Temporal's SQLite file
	clouds      benchClouds
}

// temporalName is the name of the process holding the Temporal server.
func temporalName(st *scaleStack) string {
	for _, p := range st.procs {
		if p.pid == st.temporalPID {
			return p.name
		}
	}
	return ""
}

// snapshot is what the steady-state figures are differences of.
type snapshot struct {
	at         time.Time
	selfCPU    float64 // seconds, every measured process (all but PostgreSQL)
	selfWrite  int64
	procs      map[string]procSample // by benchProc.name
	pg         map[int]procSample
	walBytes   int64
	tdbSize    map[string]int64 // temporal.db, -wal, -shm
	calls      map[string]map[string]int64
	heap       runtime.MemStats // this process's
	goroutines int
	logs       map[string]int
}

type procSample struct {
	cpu      float64 // seconds
	write    int64
	rss, hwm int64  // KiB
	role     string // PostgreSQL's processes: pgRole
}

// measure takes a snapshot. It first has PostgreSQL write every dirty
// page (CHECKPOINT), so that what its processes wrote between two
// snapshots is what the changes between them cost, the data pages as well
// as the WAL, and not what a checkpoint inside the window flushed of
// changes made before it (the ramp's).
func measure(t *testing.T, conn *pgx.Conn, st *scaleStack, dataDir string) snapshot {
	if _, err := conn.Exec(context.Background(), `CHECKPOINT`); err != nil {
		t.Logf("CHECKPOINT: %v", err)
	}
	sn := snapshot{at: time.Now(), procs: map[string]procSample{}, pg: map[int]procSample{}, tdbSize: map[string]int64{}}
	for _, p := range st.procs {
		var ps procSample
		ps.cpu, _ = procCPU(p.pid)
		ps.write, _ = procWriteBytes(p.pid)
		ps.rss, ps.hwm = procRSS(p.pid)
		sn.procs[p.name] = ps
		sn.selfCPU += ps.cpu
		sn.selfWrite += ps.write
	}
	for _, pid := range pgPIDs(t, conn) {
		cpu, err1 := procCPU(pid)
		w, err2 := procWriteBytes(pid)
		if err1 == nil && err2 == nil {
			sn.pg[pid] = procSample{cpu: cpu, write: w, role: pgRole(pid)}
		}
	}
	if err := conn.QueryRow(context.Background(), `SELECT wal_bytes::bigint FROM pg_stat_wal`).Scan(&sn.walBytes); err != nil {
		t.Logf("pg_stat_wal: %v", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(filepath.Join(dataDir, "temporal.db"+suffix)); err == nil {
			sn.tdbSize["temporal.db"+suffix] = fi.Size()
		}
	}
	sn.calls = st.clouds.calls(t)
	runtime.ReadMemStats(&sn.heap)
	sn.goroutines = runtime.NumGoroutine()
	if lc, ok := st.Logger.Handler().(*logCounter); ok {
		sn.logs = lc.counts()
	}
	return sn
}

// rssLine is every measured process's RSS (and peak), and their sum.
func (sn snapshot) rssLine(procs []benchProc) string {
	var parts []string
	var sum int64
	for _, p := range procs {
		ps := sn.procs[p.name]
		sum += ps.rss
		parts = append(parts, fmt.Sprintf("%s %.0f MiB (peak %.0f)", p.name, float64(ps.rss)/1024, float64(ps.hwm)/1024))
	}
	if len(procs) > 1 {
		parts = append(parts, fmt.Sprintf("together %.0f MiB", float64(sum)/1024))
	}
	return strings.Join(parts, ", ")
}

// rate is a window's CPU (% of one core) and writes (KiB a minute): of
// all measured processes (self), each of them, and PostgreSQL's.
type rate struct {
	selfCPU, selfWriteKiBMin, pgCPU, pgWriteKiBMin, walKiBMin float64
	procs                                                     map[string]procRate
}

type procRate struct{ cpu, writeKiBMin float64 }

func rates(m0, m1 snapshot) rate {
	secs := m1.at.Sub(m0.at).Seconds()
	r := rate{selfCPU: 100 * (m1.selfCPU - m0.selfCPU) / secs, selfWriteKiBMin: float64(m1.selfWrite-m0.selfWrite) / 1024 / secs * 60,
		walKiBMin: float64(m1.walBytes-m0.walBytes) / 1024 / secs * 60, procs: map[string]procRate{}}
	for name, a := range m1.procs {
		b := m0.procs[name]
		r.procs[name] = procRate{cpu: 100 * (a.cpu - b.cpu) / secs, writeKiBMin: float64(a.write-b.write) / 1024 / secs * 60}
	}
	for pid, a := range m1.pg {
		b := m0.pg[pid] // a process started during the window counts from zero
		r.pgCPU += 100 * (a.cpu - b.cpu) / secs
		r.pgWriteKiBMin += float64(a.write-b.write) / 1024 / secs * 60
	}
	return r
}

// procLine is each measured process's CPU and writes, when there are
// several.
func (r rate) procLine(procs []benchProc) string {
	var parts []string
	for _, p := range procs {
		pr := r.procs[p.name]
		parts = append(parts, fmt.Sprintf("%s %.1f %%, %.1f KiB/min", p.name, pr.cpu, pr.writeKiBMin))
	}
	return strings.Join(parts, "; ")
}

// settle waits until a 5 s slice of the writes of pid (the process
// writing Temporal's SQLite file) is at most twice idleKiBMin (and at
// least 60 KiB a minute), for at most d.
func settle(t *testing.T, pid int, d time.Duration, idleKiBMin float64) {
	start := time.Now()
	limit := max(2*idleKiBMin, 60)
	prev, _ := procWriteBytes(pid)
	for time.Since(start) < d {
		time.Sleep(5 * time.Second)
		w, err := procWriteBytes(pid)
		if err != nil {
			return
		}
		kibMin := float64(w-prev) / 1024 / 5 * 60
		prev = w
		if kibMin <= limit {
			t.Logf("BENCH scale settle: writes down to %.0f KiB/min after %v", kibMin, time.Since(start).Round(time.Second))
			return
		}
	}
	t.Logf("BENCH scale settle: writes still above %.0f KiB/min after %v; measuring anyway", limit, d)
}

func report(t *testing.T, conn *pgx.Conn, st *scaleStack, idle0, idle snapshot, idleRate rate, m0, m1 snapshot, running int) {
	secs := m1.at.Sub(m0.at).Seconds()
	mins := secs / 60
	perJobMin := func(b int64) string {
		if running == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f KiB", float64(b)/1024/float64(running)/mins)
	}
	r := rates(m0, m1)
	t.Logf("BENCH scale steady: %d jobs running over %.0f s; load %s", running, secs, loadavg())
	for _, p := range st.procs {
		t.Logf("BENCH scale steady CPU: %s %.1f %% of one core", p.name, r.procs[p.name].cpu)
	}
	if len(st.procs) > 1 {
		t.Logf("BENCH scale steady CPU: all but PostgreSQL together %.1f %% of one core", r.selfCPU)
	}
	var pgWrite int64
	for pid, a := range m1.pg {
		pgWrite += a.write - m0.pg[pid].write // a process started during the window counts from zero
	}
	gone := 0
	for pid := range m0.pg {
		if _, ok := m1.pg[pid]; !ok {
			gone++
		}
	}
	t.Logf("BENCH scale steady CPU: PostgreSQL (%d processes, %d exited during the window) %.1f %% of one core",
		len(m1.pg), gone, r.pgCPU)
	for _, p := range st.procs {
		w := m1.procs[p.name].write - m0.procs[p.name].write
		t.Logf("BENCH scale steady disk: %s wrote %.1f MiB (%.0f KiB/s), %s per running job per minute",
			p.name, float64(w)/(1<<20), float64(w)/1024/secs, perJobMin(w))
	}
	var growth []string
	for _, f := range []string{"temporal.db", "temporal.db-wal", "temporal.db-shm"} {
		growth = append(growth, fmt.Sprintf("%s %+.1f MiB (now %.1f MiB)", f, float64(m1.tdbSize[f]-m0.tdbSize[f])/(1<<20), float64(m1.tdbSize[f])/(1<<20)))
	}
	t.Logf("BENCH scale steady disk: Temporal files %s", strings.Join(growth, ", "))
	wal := m1.walBytes - m0.walBytes
	t.Logf("BENCH scale steady disk: PostgreSQL processes wrote %.1f MiB, %s per running job per minute; WAL %.1f MiB, %s per running job per minute",
		float64(pgWrite)/(1<<20), perJobMin(pgWrite), float64(wal)/(1<<20), perJobMin(wal))
	t.Logf("BENCH scale steady disk: PostgreSQL writes by process: %s (idle window: %s)", pgWritesByRole(m0, m1), pgWritesByRole(idle0, idle))
	t.Logf("BENCH scale steady disk: PostgreSQL autovacuum inside the window (its workers' writes count under the postmaster, which reaps them): %s", autovacuumSince(t, conn, m0.at))
	for _, name := range slices.Sorted(maps.Keys(m1.calls)) {
		var total int64
		var ops []string
		for _, op := range slices.Sorted(maps.Keys(m1.calls[name])) {
			d := m1.calls[name][op] - m0.calls[name][op]
			if d > 0 {
				total += d
				ops = append(ops, fmt.Sprintf("%s %.0f", op, float64(d)/mins))
			}
		}
		t.Logf("BENCH scale steady calls: %s %.0f per minute (%s)", name, float64(total)/mins, strings.Join(ops, ", "))
	}
	h := m1.heap
	self := st.procs[0].name
	t.Logf("BENCH scale steady memory: RSS %s", m1.rssLine(st.procs))
	t.Logf("BENCH scale steady memory: %s: Go heap in use %.0f MiB, Go sys %.0f MiB, %d goroutines; over idle: %.1f KiB RSS, %.1f KiB heap, %.1f goroutines per running job",
		self, float64(h.HeapInuse)/(1<<20), float64(h.Sys)/(1<<20), m1.goroutines,
		float64(m1.procs[self].rss-idle.procs[self].rss)/float64(max(running, 1)), float64(h.HeapInuse-idle.heap.HeapInuse)/1024/float64(max(running, 1)),
		float64(m1.goroutines-idle.goroutines)/float64(max(running, 1)))
	if running > 0 {
		n := float64(running)
		var parts []string
		for _, p := range st.procs {
			parts = append(parts, fmt.Sprintf("%s CPU %+.4f %% of one core, writes %+.2f KiB/min", p.name,
				(r.procs[p.name].cpu-idleRate.procs[p.name].cpu)/n, (r.procs[p.name].writeKiBMin-idleRate.procs[p.name].writeKiBMin)/n))
		}
		t.Logf("BENCH scale steady over idle, per running job: %s; PostgreSQL writes %+.2f KiB/min, WAL %+.2f KiB/min",
			strings.Join(parts, "; "), (r.pgWriteKiBMin-idleRate.pgWriteKiBMin)/n, (r.walKiBMin-idleRate.walKiBMin)/n)
	}
}

// cancelAll cancels every job not ended yet and waits until they have ended
// and no emulator holds a machine.
func cancelAll(t *testing.T, st *scaleStack, c api, expect, conc int) {
	start := time.Now()
	s := st.Stack
	ids := openJobs(t, s)
	httpc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	var wg sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Int64
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				req, _ := http.NewRequest(http.MethodPost, c.base+"/api/gpu/tasks/"+ids[i]+"/cancel", nil)
				req.Header.Set("Authorization", "Bearer "+c.token)
				resp, err := httpc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				drain(resp)
				// 409: it ended meanwhile.
				if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusConflict {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	cancelled := time.Since(start)
	deadline := time.Now().Add(max(5*time.Minute, time.Duration(expect)*100*time.Millisecond))
	for time.Now().Before(deadline) {
		live := 0
		for _, n := range st.clouds.live(t) {
			if n < 0 { // not known: counts as held
				n = 1
			}
			live += n
		}
		if live == 0 && len(openJobs(t, s)) == 0 {
			t.Logf("BENCH scale teardown: %d jobs cancelled through the API in %v (%d refused), all ended and every machine gone after %v; load %s",
				len(ids), cancelled.Round(time.Millisecond), failed.Load(), time.Since(start).Round(time.Millisecond), loadavg())
			return
		}
		time.Sleep(time.Second)
	}
	t.Logf("BENCH scale teardown: %d jobs cancelled through the API in %v (%d refused); after %v, %d jobs not ended, machines left %v; load %s",
		len(ids), cancelled.Round(time.Millisecond), failed.Load(), time.Since(start).Round(time.Second), len(openJobs(t, s)), st.clouds.live(t), loadavg())
	t.Errorf("teardown did not finish: jobs or machines left")
}

func openJobs(t *testing.T, s *devstack.Stack) []string {
	conn, err := pgx.Connect(context.Background(), s.Config.DatabaseURL)
	if err != nil {
		t.Logf("open jobs: %v", err)
		return nil
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(),
		`SELECT id::text FROM jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')`)
	if err != nil {
		t.Logf("open jobs: %v", err)
		return nil
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// pgPIDs are the PostgreSQL server's processes: the postmaster (from
// postmaster.pid in its data directory) and its children.
func pgPIDs(t *testing.T, conn *pgx.Conn) []int {
	var dir string
	if err := conn.QueryRow(context.Background(), `SHOW data_directory`).Scan(&dir); err != nil {
		t.Logf("data_directory: %v", err)
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		t.Logf("postmaster.pid: %v", err)
		return nil
	}
	master, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Logf("postmaster.pid: %v", err)
		return nil
	}
	pids := []int{master}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		fields, err := statFields(f)
		if err != nil || len(fields) < 2 {
			continue
		}
		if fields[1] == strconv.Itoa(master) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// statFields are the fields of /proc/<pid>/stat after the command name:
// state, ppid, … (fields[11] and [12] are utime and stime).
func statFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: no command", path)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU is the process's user and system CPU time so far, in seconds.
func procCPU(pid int) (float64, error) {
	f, err := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat of %d", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat of %d: %v %v", pid, err1, err2)
	}
	return float64(u+s) / clockTicks, nil
}

// procWriteBytes is the process's write_bytes: what it caused to be sent
// to storage (counted when pages are dirtied).
// autovacuumSince names the tables autovacuum vacuumed or analyzed since
// at.
func autovacuumSince(t *testing.T, conn *pgx.Conn, at time.Time) string {
	rows, err := conn.Query(context.Background(), `SELECT relname,
		coalesce(last_autovacuum > $1, false), coalesce(last_autoanalyze > $1, false)
		FROM pg_stat_user_tables WHERE last_autovacuum > $1 OR last_autoanalyze > $1 ORDER BY relname`, at)
	if err != nil {
		t.Logf("pg_stat_user_tables: %v", err)
		return "?"
	}
	var parts []string
	for rows.Next() {
		var name string
		var vacuumed, analyzed bool
		if err := rows.Scan(&name, &vacuumed, &analyzed); err != nil {
			t.Logf("pg_stat_user_tables: %v", err)
			return "?"
		}
		var what []string
		if vacuumed {
			what = append(what, "vacuumed")
		}
		if analyzed {
			what = append(what, "analyzed")
		}
		parts = append(parts, name+" "+strings.Join(what, " and "))
	}
	if rows.Err() != nil || len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// pgRole is what a PostgreSQL process is, from its command line:
// "checkpointer", "walwriter", "autovacuum worker"…, "postmaster", or
// "backend" for a client's connection.
func pgRole(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "?"
	}
	title, _, _ := strings.Cut(string(b), "\x00")
	rest, ok := strings.CutPrefix(title, "postgres: ")
	if !ok {
		return "postmaster"
	}
	for _, role := range []string{"checkpointer", "background writer", "walwriter", "autovacuum launcher", "autovacuum worker",
		"logical replication launcher", "stats collector", "archiver", "io worker", "walsummarizer"} {
		if strings.HasPrefix(rest, role) {
			return role
		}
	}
	return "backend"
}

// pgWritesByRole is what PostgreSQL's processes wrote between m0 and m1,
// in KiB, summed by pgRole, largest first.
func pgWritesByRole(m0, m1 snapshot) string {
	by := map[string]int64{}
	for pid, a := range m1.pg {
		by[a.role] += a.write - m0.pg[pid].write // a process started during the window counts from zero
	}
	roles := slices.SortedFunc(maps.Keys(by), func(a, b string) int { return cmp.Compare(by[b], by[a]) })
	var parts []string
	for _, r := range roles {
		parts = append(parts, fmt.Sprintf("%s %.0f KiB", r, float64(by[r])/1024))
	}
	return strings.Join(parts, ", ")
}

func procWriteBytes(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/io", pid), "write_bytes:")
}

// procRSS is the process's VmRSS and VmHWM in KiB.
func procRSS(pid int) (rss, hwm int64) {
	rss, _ = procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	hwm, _ = procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:")
	return rss, hwm
}

func procField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// loadavg is the machine's load (1, 5 and 15 minutes) and CPU count.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return fmt.Sprintf("%s %s %s on %d CPUs", f[0], f[1], f[2], runtime.NumCPU())
}

// logCounter is the stack's log handler: it counts warnings and errors by
// message (with the error, cut short) and passes only the first few of
// each kind on, so that a run of thousands of jobs does not drown its
// figures in repeated lines.
type logCounter struct {
	out   slog.Handler
	keep  int
	mu    *sync.Mutex
	n     map[string]int
	attrs []slog.Attr
}

func newLogCounter(w io.Writer, keep int) *logCounter {
	return &logCounter{out: slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}), keep: keep,
		mu: &sync.Mutex{}, n: map[string]int{}}
}

func (h *logCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logCounter) Handle(ctx context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	found := false
	find := func(a slog.Attr) bool {
		if a.Key == "err" || a.Key == "error" || a.Key == "Error" {
			v := a.Value.String()
			if len(v) > 80 {
				v = v[:80] + "…"
			}
			key += ": " + v
			found = true
		}
		return !found
	}
	for _, a := range h.attrs {
		if !find(a) {
			break
		}
	}
	if !found {
		r.Attrs(find)
	}
	h.mu.Lock()
	h.n[key]++
	k := h.n[key]
	h.mu.Unlock()
	if k > h.keep {
		return nil
	}
	return h.out.Handle(ctx, r)
}

func (h *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.out = h.out.WithAttrs(as)
	c.attrs = append(slices.Clip(h.attrs), as...)
	return &c
}

func (h *logCounter) WithGroup(name string) slog.Handler {
	c := *h
	c.out = h.out.WithGroup(name)
	return &c
}

func (h *logCounter) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.n)
}

func (h *logCounter) summary() string { return h.since(nil) }

// since lists the counts grown since before, most frequent first.
func (h *logCounter) since(before map[string]int) string {
	now := h.counts()
	type kv struct {
		k string
		n int
	}
	var d []kv
	for k, n := range now {
		if n > before[k] {
			d = append(d, kv{k, n - before[k]})
		}
	}
	if len(d) == 0 {
		return "none"
	}
	slices.SortFunc(d, func(a, b kv) int { return b.n - a.n })
	var parts []string
	for i, e := range d {
		if i == 12 {
			parts = append(parts, fmt.Sprintf("… %d kinds more", len(d)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %q", e.n, e.k))
	}
	return strings.Join(parts, "; ")
}
