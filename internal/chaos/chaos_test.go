package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// options size a run.
type options struct {
	full           bool
	seed           uint64
	jobs           int           // jobs submitted (probes come on top)
	kills          int           // SIGKILLs of a process
	pgRestarts     int           // PostgreSQL restarts (both databases: one server)
	temporalCuts   int           // Temporal unreachable for temporalCut
	pgCuts         int           // PostgreSQL unreachable for pgCut
	temporalCut    time.Duration //
	pgCut          time.Duration //
	cancelShare    float64       // share of jobs cancelled while they run
	maxRun         int           // longest job, in seconds
	settle         time.Duration // how long jobs may take to end once the faults stop
	submitInterval time.Duration // mean pause between submissions
}

func loadOptions(t *testing.T) options {
	o := options{
		jobs: 36, kills: 6, pgRestarts: 1, temporalCuts: 1, pgCuts: 1,
		temporalCut: 10 * time.Second, pgCut: 15 * time.Second,
		cancelShare: 0.15, maxRun: 20, settle: 4 * time.Minute, submitInterval: 1500 * time.Millisecond,
	}
	if os.Getenv("GPUFLOW_CHAOS") == "full" {
		o.full = true
		o.jobs, o.kills, o.pgRestarts, o.temporalCuts, o.pgCuts = 500, 50, 2, 4, 4
		o.temporalCut, o.pgCut = 60*time.Second, 120*time.Second
		o.maxRun, o.settle, o.submitInterval = 60, 10*time.Minute, 2500*time.Millisecond
	}
	o.seed = uint64(time.Now().UnixNano())
	for name, p := range map[string]*int{
		"GPUFLOW_CHAOS_JOBS": &o.jobs, "GPUFLOW_CHAOS_KILLS": &o.kills, "GPUFLOW_CHAOS_PG_RESTARTS": &o.pgRestarts,
		"GPUFLOW_CHAOS_TEMPORAL_CUTS": &o.temporalCuts, "GPUFLOW_CHAOS_PG_CUTS": &o.pgCuts, "GPUFLOW_CHAOS_MAX_RUN": &o.maxRun,
	} {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a whole number", name, s)
			}
			*p = n
		}
	}
	for name, p := range map[string]*time.Duration{
		"GPUFLOW_CHAOS_TEMPORAL_CUT": &o.temporalCut, "GPUFLOW_CHAOS_PG_CUT": &o.pgCut,
		"GPUFLOW_CHAOS_SETTLE": &o.settle, "GPUFLOW_CHAOS_SUBMIT_INTERVAL": &o.submitInterval,
	} {
		if s := os.Getenv(name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				t.Fatalf("%s=%q: %v", name, s, err)
			}
			*p = d
		}
	}
	if s := os.Getenv("GPUFLOW_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GPUFLOW_CHAOS_SEED=%q: %v", s, err)
		}
		o.seed = n
	}
	return o
}

// planned is one job the suite submits, and the end its machine earns.
type planned struct {
	n        int
	kind     string // local, runpod, tencent, alibaba
	spec     map[string]any
	key      string // Idempotency-Key
	want     string // the status it must end in
	cancel   bool   // cancelled while it runs
	probe    bool   // submitted to time a recovery
	id       string // the task id the API answered with ("" until accepted)
	rejected string // a clear refusal (4xx), when that was the answer
}

var gpuOf = map[string]string{"runpod": "RTX4090", "tencent": "T4", "alibaba": "A10"}

// plan makes job n: its kind, how long it runs, its exit code, whether it
// is cancelled.
func plan(rng *rand.Rand, n int, o options) *planned {
	kinds := []string{"local", "runpod", "tencent", "alibaba"}
	p := &planned{n: n, kind: kinds[rng.IntN(len(kinds))], key: fmt.Sprintf("chaos-%d-%d", o.seed, n)}
	run := 1 + rng.IntN(o.maxRun)
	code := 0
	if rng.Float64() < 0.25 {
		code = 3 + rng.IntN(5)
	}
	if rng.Float64() < o.cancelShare {
		// Long enough that only the cancel can end it.
		p.cancel, run, code = true, 3600, 0
	}
	p.want = "succeeded"
	if code != 0 {
		p.want = "failed"
	}
	if p.cancel {
		p.want = "cancelled"
	}
	p.spec = jobSpec(p.kind, run, code)
	return p
}

func jobSpec(kind string, run, code int) map[string]any {
	if kind == "local" {
		return map[string]any{"name": "chaos", "provider": "local", "gpu_count": 0,
			"command": []string{"sh", "-c", fmt.Sprintf("sleep %d; exit %d", run, code)}}
	}
	return map[string]any{"name": "chaos", "provider": kind, "gpu_type": gpuOf[kind], "gpu_count": 1,
		"command": []string{"python", "train.py"},
		"env":     map[string]string{emulate.EnvRunSeconds: strconv.Itoa(run), emulate.EnvExitCode: strconv.Itoa(code)}}
}

// run is the state of one chaos run.
type run struct {
	t   *testing.T
	o   options
	cl  cluster
	c   *client
	rng *rand.Rand

	mu       sync.Mutex
	jobs     []*planned
	faults   []fault
	submitTr map[string]int // transient answers seen by submissions, by status
}

// fault is one injected fault and how long the system took to recover.
type fault struct {
	kind     string // kill:<component>, pg-restart, cut:temporal, cut:postgres
	at       time.Time
	recovery time.Duration // from the end of the fault to a probe job's success
	err      string
}

func TestChaos(t *testing.T) {
	if os.Getenv("GPUFLOW_CHAOS") == "off" {
		t.Skip("GPUFLOW_CHAOS=off")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	o := loadOptions(t)
	t.Logf("CHAOS seed %d (GPUFLOW_CHAOS_SEED=%d replays it): %d jobs, %d kills, %d PostgreSQL restarts, %d Temporal cuts of %v, %d PostgreSQL cuts of %v",
		o.seed, o.seed, o.jobs, o.kills, o.pgRestarts, o.temporalCuts, o.temporalCut, o.pgCuts, o.pgCut)
	cl := startCluster(t)
	r := &run{t: t, o: o, cl: cl, rng: rand.New(rand.NewPCG(o.seed, 1)), submitTr: map[string]int{}}
	ctx := t.Context()
	r.c = newClient(cl.APIs(), fmt.Sprintf("chaos-%d@example.com", o.seed), o.seed)
	if err := r.c.register(ctx); err != nil {
		t.Fatal(err)
	}
	setFaults(t, cl)

	fctx, stopFeed := context.WithCancel(ctx)
	feed := newFollower(r.c)
	feedDone := make(chan struct{})
	go func() { defer close(feedDone); feed.run(fctx) }()

	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.submitAll(ctx) }()
	go func() { defer wg.Done(); r.injectAll(ctx) }()
	wg.Wait()
	t.Logf("CHAOS submissions and faults done after %v; waiting up to %v for every job to end", time.Since(start).Round(time.Second), o.settle)
	clearFaults(t, cl)

	ended := r.waitEnded(ctx, o.settle)
	// One reconciler sweep after the last job ended, then no machine may be left.
	time.Sleep(cl.ReconcileSweep())
	time.Sleep(2 * time.Second) // the feed's last events
	stopFeed()
	<-feedDone
	r.check(ctx, feed, ended, time.Since(start))
}

// submitAll submits every planned job, spaced at random, and cancels the
// ones planned for it once they run.
func (r *run) submitAll(ctx context.Context) {
	var wg sync.WaitGroup
	for n := range r.o.jobs {
		r.mu.Lock()
		p := plan(r.rng, n, r.o)
		pause := time.Duration(r.rng.Float64() * 2 * float64(r.o.submitInterval))
		r.jobs = append(r.jobs, p)
		r.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); r.submit(ctx, p) }()
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
	wg.Wait()
}

// submit sends one job until the API accepts or clearly refuses it, with
// one Idempotency-Key however many times it is sent; then cancels it if
// planned.
func (r *run) submit(ctx context.Context, p *planned) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	a, seen, err := r.c.do(sctx, http.MethodPost, "/api/gpu/jobs/submit", p.spec, http.Header{"Idempotency-Key": {p.key}})
	r.mu.Lock()
	for k, v := range seen {
		r.submitTr[k] += v
	}
	r.mu.Unlock()
	if err != nil {
		r.mu.Lock()
		p.rejected = "never answered: " + err.Error()
		r.mu.Unlock()
		return
	}
	id, _ := a.body["task_id"].(string)
	if id == "" {
		id, _ = a.body["id"].(string)
	}
	r.mu.Lock()
	if a.code == http.StatusAccepted || a.code == http.StatusCreated || a.code == http.StatusOK {
		p.id = id
	} else {
		p.rejected = fmt.Sprintf("%d %s", a.code, strings.TrimSpace(string(a.raw)))
	}
	r.mu.Unlock()
	if p.id == "" || !p.cancel {
		return
	}
	// Cancel once it runs (or after a while in any state: a cancel while
	// provisioning must end it too).
	deadline := time.Now().Add(time.Duration(5+r.rngIntN(40)) * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		j, ok, err := r.c.job(sctx, p.id)
		if err == nil && ok && j["status"] == "running" {
			break
		}
		time.Sleep(time.Second)
	}
	for ctx.Err() == nil {
		a, _, err := r.c.do(sctx, http.MethodPost, "/api/gpu/tasks/"+p.id+"/cancel", map[string]any{"reason": "chaos"}, nil)
		if err != nil || a.code == http.StatusAccepted || a.code == http.StatusOK {
			return
		}
		if a.code == http.StatusConflict { // it ended first: it cannot have, it runs an hour
			r.mu.Lock()
			p.rejected = "cancel refused: " + string(a.raw)
			r.mu.Unlock()
			return
		}
		time.Sleep(time.Second)
	}
}

func (r *run) rngIntN(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.IntN(n)
}

// injectAll injects the faults in a random order, one at a time, each
// followed by a probe job that times the recovery.
func (r *run) injectAll(ctx context.Context) {
	var kinds []string
	comps := r.cl.Components()
	for i := range r.o.kills {
		kinds = append(kinds, "kill:"+comps[i%len(comps)])
	}
	for range r.o.pgRestarts {
		kinds = append(kinds, "pg-restart")
	}
	for range r.o.temporalCuts {
		kinds = append(kinds, "cut:temporal")
	}
	for range r.o.pgCuts {
		kinds = append(kinds, "cut:postgres")
	}
	r.mu.Lock()
	r.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	// Spread them over the submissions: the pauses between faults fill
	// what the faults themselves (and their probes) leave of that span.
	span := time.Duration(r.o.jobs) * r.o.submitInterval
	r.mu.Unlock()
	busy := time.Duration(r.o.kills)*8*time.Second + time.Duration(r.o.pgRestarts)*20*time.Second +
		time.Duration(r.o.temporalCuts)*(r.o.temporalCut+10*time.Second) + time.Duration(r.o.pgCuts)*(r.o.pgCut+10*time.Second)
	gap := max((span-busy)/time.Duration(len(kinds)+1), 2*time.Second)
	for _, k := range kinds {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(float64(gap) * (0.5 + r.rngFloat()))):
		}
		f := r.inject(ctx, k)
		r.t.Logf("CHAOS fault %s at %s: recovered in %v %s", f.kind, f.at.Format(time.TimeOnly), f.recovery.Round(100*time.Millisecond), f.err)
		r.mu.Lock()
		r.faults = append(r.faults, f)
		r.mu.Unlock()
	}
}

func (r *run) rngFloat() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.Float64()
}

// inject injects one fault, ends it, and measures the recovery: the time
// from the fault's end until a probe job submitted then has succeeded.
func (r *run) inject(ctx context.Context, kind string) fault {
	f := fault{kind: kind, at: time.Now()}
	var err error
	probeKind := "local"
	switch {
	case strings.HasPrefix(kind, "kill:"):
		comp := strings.TrimPrefix(kind, "kill:")
		if err = r.cl.Kill(comp); err == nil {
			// Some restarts come at once, some after a pause: the process
			// manager's backoff.
			time.Sleep(time.Duration(r.rngIntN(3000)) * time.Millisecond)
			err = r.cl.Restart(comp)
		}
		if comp == "emulators" {
			probeKind = []string{"runpod", "tencent", "alibaba"}[r.rngIntN(3)]
		}
	case kind == "pg-restart":
		err = r.cl.RestartPostgres(ctx)
	case kind == "cut:temporal":
		r.cl.CutTemporal()
		time.Sleep(r.o.temporalCut)
		r.cl.RestoreTemporal()
	case kind == "cut:postgres":
		r.cl.CutPostgres()
		time.Sleep(r.o.pgCut)
		r.cl.RestorePostgres()
	}
	if err != nil {
		f.err = err.Error()
		r.t.Errorf("CHAOS fault %s: %v", kind, err)
		return f
	}
	ended := time.Now()
	p := &planned{n: -1, kind: probeKind, probe: true, want: "succeeded",
		key: fmt.Sprintf("chaos-%d-probe-%d", r.o.seed, len(r.faults)), spec: jobSpec(probeKind, 0, 0)}
	r.mu.Lock()
	r.jobs = append(r.jobs, p)
	r.mu.Unlock()
	r.submit(ctx, p)
	if p.id == "" {
		f.err = "probe not accepted: " + p.rejected
		return f
	}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; {
		j, ok, err := r.c.job(ctx, p.id)
		if err == nil && ok && j["status"] == "succeeded" {
			f.recovery = time.Since(ended)
			return f
		}
		if err == nil && ok && isTerminal(j["status"]) {
			f.err = fmt.Sprintf("probe ended %v", j["status"])
			return f
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.err = "probe did not succeed within 5 min"
	return f
}

func isTerminal(s any) bool {
	switch s {
	case "succeeded", "failed", "cancelled":
		return true
	}
	return false
}

// waitEnded waits until every accepted job has ended, and returns their
// final answers.
func (r *run) waitEnded(ctx context.Context, within time.Duration) map[string]map[string]any {
	ended := map[string]map[string]any{}
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		jobs := slices.Clone(r.jobs)
		r.mu.Unlock()
		open := 0
		for _, p := range jobs {
			if p.id == "" || ended[p.id] != nil {
				continue
			}
			j, ok, err := r.c.job(ctx, p.id)
			if err == nil && ok && isTerminal(j["status"]) {
				ended[p.id] = j
				continue
			}
			open++
		}
		if open == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return ended
		}
		time.Sleep(2 * time.Second)
	}
}

// check asserts the invariants and prints the figures.
func (r *run) check(ctx context.Context, feed *follower, ended map[string]map[string]any, took time.Duration) {
	t := r.t
	r.mu.Lock()
	jobs := slices.Clone(r.jobs)
	faults := slices.Clone(r.faults)
	r.mu.Unlock()

	var accepted, refused, lost, wrong, open, probes int
	byID := map[string]*planned{}
	for _, p := range jobs {
		if p.probe {
			probes++
		}
		if p.id == "" {
			refused++
			t.Errorf("CHAOS job %d (%s) was not accepted: %s", p.n, p.kind, p.rejected)
			continue
		}
		accepted++
		if byID[p.id] != nil {
			t.Errorf("CHAOS jobs %d and %d got one task id %s", byID[p.id].n, p.n, p.id)
		}
		byID[p.id] = p
		j, ok, err := r.c.job(ctx, p.id)
		switch {
		case err != nil:
			t.Errorf("CHAOS job %s: %v", p.id, err)
			continue
		case !ok:
			lost++
			t.Errorf("CHAOS LOST: job %s (%d, %s) was accepted and does not exist", p.id, p.n, p.kind)
			continue
		}
		if ended[p.id] == nil {
			open++
			t.Errorf("CHAOS job %s (%d, %s, want %s) has not ended: %v (error %v)", p.id, p.n, p.kind, p.want, j["status"], j["error"])
			continue
		}
		if j["status"] != p.want {
			wrong++
			t.Errorf("CHAOS WRONG END: job %s (%d, %s) ended %v, its machine earned %s (exit code %v, error %v)",
				p.id, p.n, p.kind, j["status"], p.want, j["exit_code"], j["error"])
		}
	}

	// Duplicated: a job the API holds that no submission was answered with.
	ids, err := r.c.listIDs(ctx)
	if err != nil {
		t.Fatalf("list jobs: %v", err)
	}
	duplicated := 0
	for _, id := range ids {
		if byID[id] == nil {
			duplicated++
			t.Errorf("CHAOS DUPLICATED: job %s exists and no submission was answered with it", id)
		}
	}
	if len(ids) != accepted {
		t.Errorf("CHAOS the API lists %d jobs, %d were accepted", len(ids), accepted)
	}

	// Machines: none created twice for one attempt; none left.
	twice, leaked := r.cl.Machines(t)
	for _, s := range twice {
		t.Errorf("CHAOS DUPLICATED machine: %s", s)
	}
	for _, s := range leaked {
		t.Errorf("CHAOS LEAKED machine: %s", s)
	}

	// The feed: every recorded event of every job once and in order.
	feedMissing, feedExtra := 0, 0
	for id := range byID {
		want, err := r.c.events(ctx, id)
		if err != nil {
			t.Errorf("events of %s: %v", id, err)
			continue
		}
		got := feed.received(id)
		if !slices.Equal(got, want) {
			for _, s := range want {
				if !slices.Contains(got, s) {
					feedMissing++
				}
			}
			for _, s := range got {
				if !slices.Contains(want, s) {
					feedExtra++
				}
			}
			if len(got) == len(want) {
				feedExtra++ // same events, another order
			}
			t.Errorf("CHAOS feed for job %s: received %v, recorded %v", id, got, want)
		}
	}
	feed.mu.Lock()
	dups, backwards, reconnects, total := feed.dups, feed.backwards, feed.reconnect, len(feed.seqs)
	feed.mu.Unlock()
	if dups != 0 || backwards != 0 {
		t.Errorf("CHAOS feed: %d events twice, %d out of order", dups, backwards)
	}

	kills, outages := 0, 0
	rec := map[string][]time.Duration{}
	for _, f := range faults {
		if strings.HasPrefix(f.kind, "kill:") {
			kills++
		} else {
			outages++
		}
		if f.err == "" {
			rec[f.kind] = append(rec[f.kind], f.recovery)
		}
	}
	r.mu.Lock()
	tr := fmt.Sprint(r.submitTr)
	r.mu.Unlock()
	t.Logf("CHAOS result (seed %d, %v): jobs %d accepted (%d of them probes), %d not accepted; kills %d, outages %d (PostgreSQL restarts and cuts, Temporal cuts)",
		r.o.seed, took.Round(time.Second), accepted, probes, refused, kills, outages)
	t.Logf("CHAOS result: lost %d, duplicated %d (jobs) + %d (machines), leaked %d, wrong end %d, not ended %d; feed: %d events over %d reconnections, %d missing, %d extra or out of order",
		lost, duplicated, len(twice), len(leaked), wrong, open, total, reconnects, feedMissing, feedExtra+dups+backwards)
	t.Logf("CHAOS submissions saw transient answers (retried with the same Idempotency-Key): %s", tr)
	r.mu.Lock()
	internal := r.submitTr["500"]
	r.mu.Unlock()
	if internal > 0 {
		// Not an invariant of the suite (the retry made each one a job
		// that runs), but a defect to find: keep the logs.
		t.Logf("CHAOS WARNING: %d submissions were answered 500 (internal) and retried; a dependency down should answer 503. Logs kept: %s",
			internal, r.cl.KeepLogs(t))
	}
	kinds := make([]string, 0, len(rec))
	for k := range rec {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ds := rec[k]
		slices.Sort(ds)
		t.Logf("CHAOS recovery after %-18s n=%-3d median %-8v max %v", k, len(ds), ds[len(ds)/2].Round(100*time.Millisecond), ds[len(ds)-1].Round(100*time.Millisecond))
	}
}
