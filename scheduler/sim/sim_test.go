package sim

import (
	"bytes"
	"cmp"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

var update = flag.Bool("update", false, "rewrite testdata/trace.csv from DefaultTrace")

// TestTraceKept checks that testdata/trace.csv is DefaultTrace's output
// and that it has what the comparison needs: over a thousand jobs of every
// family and size, spot and not, arriving over three days.
func TestTraceKept(t *testing.T) {
	t.Parallel()
	jobs := Generate(DefaultTrace)
	var buf bytes.Buffer
	if err := WriteCSV(&buf, jobs); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/trace.csv", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := os.ReadFile("testdata/trace.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, buf.Bytes()) {
		t.Fatal("testdata/trace.csv is not Generate(DefaultTrace): run go test -run TestTraceKept -update ./scheduler/sim/")
	}
	if len(jobs) < 1000 {
		t.Fatalf("%d jobs, want at least 1000", len(jobs))
	}
	types, counts, spot := map[string]int{}, map[int]int{}, 0
	for i, j := range jobs {
		types[j.GPUType]++
		counts[j.GPUCount]++
		if j.Spot {
			spot++
		}
		if i > 0 && j.Submit < jobs[i-1].Submit {
			t.Fatalf("job %d submitted before job %d", j.ID, jobs[i-1].ID)
		}
		if j.ID != i+1 || j.Duration < 5*time.Minute || j.Duration > 24*time.Hour {
			t.Fatalf("bad job %+v", j)
		}
	}
	if len(types) != len(families) || len(counts) != 4 || spot == 0 || spot == len(jobs) {
		t.Fatalf("mix: types %v counts %v spot %d", types, counts, spot)
	}
	if last := jobs[len(jobs)-1].Submit; last < 48*time.Hour {
		t.Fatalf("last job at %v: want arrivals over the whole span", last)
	}
}

func TestCSVRoundTrip(t *testing.T) {
	t.Parallel()
	jobs := Generate(TraceConfig{Seed: 3, Jobs: 50, Span: time.Hour})
	var buf bytes.Buffer
	if err := WriteCSV(&buf, jobs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(jobs, back) {
		t.Fatal("round trip changed the jobs")
	}
	if _, err := ReadCSV(strings.NewReader("a,b\n1,2\n")); err == nil {
		t.Fatal("want an error for a wrong header")
	}
	if !reflect.DeepEqual(Generate(TraceConfig{Seed: 3, Jobs: 50, Span: time.Hour}), jobs) {
		t.Fatal("the same seed gave another trace")
	}
}

// lab is a one-cloud world without randomness: machines start in exactly
// a minute and never fail, nobody else uses the pool.
func lab(gpus int) World {
	return World{
		Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Seed: 1,
		Clouds: []Cloud{{Name: "c", Stock: StockBuckets, Refresh: time.Minute, CapacityError: 2 * time.Second,
			StartMedian: time.Minute, OutageError: 30 * time.Second}},
		Offers: []Offer{{Cloud: "c", GPU: "L4", Region: "r", GPUs: gpus, MaxGPUs: 4, GPUMemoryGB: 24, Price: 1, Spot: 0.5, Speed: 1}},
	}
}

// recorder is a policy that takes the first fitting offer and records
// what it was told.
type recorder struct {
	Cheapest
	outcomes map[Outcome]int
	health   map[bool]int
	mutated  bool
}

func (r *recorder) Choose(req *Request) (gpuflow.Offer, bool) {
	before := append([]gpuflow.Offer(nil), req.Offers...)
	o, ok := r.Cheapest.Choose(req)
	r.mutated = r.mutated || !reflect.DeepEqual(before, req.Offers)
	return o, ok
}

func (r *recorder) Observe(_ gpuflow.Offer, o Outcome, _ time.Duration, _ time.Time) {
	if r.outcomes == nil {
		r.outcomes = map[Outcome]int{}
	}
	r.outcomes[o]++
}

func (r *recorder) Health(_ string, ok bool, _ time.Time) {
	if r.health == nil {
		r.health = map[bool]int{}
	}
	r.health[ok]++
}

// TestQueueing: ten 2-GPU one-hour jobs at once on a 4-GPU pool run two
// at a time; the others wait for capacity, failing and backing off.
func TestQueueing(t *testing.T) {
	t.Parallel()
	w := lab(4)
	w.Clouds[0].BackgroundMean = 0
	var jobs []Job
	for i := range 10 {
		jobs = append(jobs, Job{ID: i + 1, GPUType: "L4", GPUCount: 2, Duration: time.Hour, MemoryGB: 8, VCPUs: 2})
	}
	p := &recorder{}
	res := Run(w, jobs, p)
	if res.Done != 10 || len(res.Waits) != 10 {
		t.Fatalf("done %d, waits %d", res.Done, len(res.Waits))
	}
	// Two start after a minute; each later pair after another hour and a
	// minute, give or take the 30 s between looks.
	if res.Waits[0] != time.Minute || res.Waits[1] != time.Minute {
		t.Fatalf("first waits %v", res.Waits[:2])
	}
	if w := res.Waits[9]; w < 4*time.Hour+4*time.Minute || w > 4*time.Hour+7*time.Minute {
		t.Fatalf("last wait %v, want about 4h5m", w)
	}
	if res.NoCapacity == 0 || p.outcomes[NoCapacity] != res.NoCapacity || p.outcomes[Started] != 10 {
		t.Fatalf("no capacity %d, outcomes %v", res.NoCapacity, p.outcomes)
	}
	// Billed from the request: 10 jobs × 2 GPUs × (1 h + 1 min) × $1.
	if want := 20 * (61.0 / 60); res.Cost < want-1e-9 || res.Cost > want+1e-9 {
		t.Fatalf("cost %v, want %v", res.Cost, want)
	}
	if p.mutated {
		t.Fatal("the policy changed the offers it was shown")
	}
	if got := res.Makespan; got < 5*time.Hour || got > 5*time.Hour+10*time.Minute {
		t.Fatalf("makespan %v", got)
	}
}

// TestPreemptionAndOutage: spot jobs are preempted and start over; during
// an outage attempts fail and health checks say so.
func TestPreemptionAndOutage(t *testing.T) {
	t.Parallel()
	w := lab(64)
	w.Clouds[0].BackgroundMean = 0
	w.Clouds[0].PreemptPerHour = 1
	w.Clouds[0].Outages = []Window{{From: 0, To: 10 * time.Minute}}
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs, Job{ID: i + 1, Submit: time.Duration(i) * time.Minute, GPUType: "L4", GPUCount: 1, Duration: 2 * time.Hour, Spot: true})
	}
	p := &recorder{}
	res := Run(w, jobs, p)
	if res.Done != 20 || res.Preemptions == 0 || p.outcomes[Preempted] != res.Preemptions || p.outcomes[SpotFinished] != 20 {
		t.Fatalf("done %d preemptions %d outcomes %v", res.Done, res.Preemptions, p.outcomes)
	}
	if res.Failed == 0 || p.health[false] == 0 || p.health[true] == 0 {
		t.Fatalf("failed %d health %v", res.Failed, p.health)
	}
	// Spot at $0.5/h: at least the 40 GPU-hours of work, plus lost runs.
	if res.Cost <= 20 {
		t.Fatalf("cost %v, want over $20", res.Cost)
	}
	again := Run(w, jobs, &recorder{})
	if again.Cost != res.Cost || again.Preemptions != res.Preemptions || !reflect.DeepEqual(again.Waits, res.Waits) {
		t.Fatal("two runs differ")
	}
}

func TestCheapest(t *testing.T) {
	t.Parallel()
	offers := []gpuflow.Offer{
		{Provider: "a", GPUType: "NVIDIA L4", GPUCount: 4, PricePerHour: 0.5, SpotPricePerHour: 0.3, Region: "x", Available: 0},
		{Provider: "b", GPUType: "L4", GPUCount: 4, PricePerHour: 0.6, SpotPricePerHour: 0.2, Region: "y", Available: -1},
		{Provider: "c", GPUType: "L4", GPUCount: 1, PricePerHour: 0.1, Region: "z", Available: 5},
		{Provider: "d", GPUType: "T4", GPUCount: 4, PricePerHour: 0.05, Region: "z", Available: 5},
	}
	choose := func(c *Cheapest, spec gpuflow.JobSpec, blocked map[string]string) string {
		o, ok := c.Choose(&Request{Spec: spec, Offers: offers, Version: 1, Blocked: blocked})
		if !ok {
			return ""
		}
		return o.Provider
	}
	spec := gpuflow.JobSpec{GPUType: "L4", GPUCount: 2}
	if got := choose(&Cheapest{}, spec, nil); got != "a" {
		t.Fatalf("on-demand: %s, want a", got)
	}
	if got := choose(&Cheapest{}, spec, map[string]string{"a/NVIDIA L4/x": "no capacity"}); got != "b" {
		t.Fatalf("a blocked: %s, want b", got)
	}
	if got := choose(&Cheapest{SkipSoldOut: true}, spec, nil); got != "b" {
		t.Fatalf("skip sold out: %s, want b", got)
	}
	spec.Spot = true
	if got := choose(&Cheapest{}, spec, nil); got != "b" {
		t.Fatalf("spot: %s, want b", got)
	}
	if got := choose(&Cheapest{}, gpuflow.JobSpec{GPUType: "H100", GPUCount: 1}, nil); got != "" {
		t.Fatalf("no H100: %s", got)
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	results := []Result{
		{Policy: "base", Jobs: 2, Done: 2, Cost: 10, Waits: []time.Duration{time.Minute, 3 * time.Minute}, Makespan: time.Hour},
		{Policy: "x", Jobs: 2, Done: 2, Cost: 11, Waits: []time.Duration{time.Minute, 2 * time.Minute}, Makespan: time.Hour, NoCapacity: 3, Failed: 1},
	}
	var buf bytes.Buffer
	if err := Markdown(&buf, results, "base"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"| policy |", "| base | 10 (+0.0 %) |", "| x | 11 (+10.0 %) | 1.0 (+0.0 %) | 2.0 (-33.3 %) |", "| 4 | 0 | 2/2 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if p := results[1].WaitPercentile(50); p != time.Minute {
		t.Errorf("p50 %v", p)
	}
}

// queued is a Ranking policy for the lab: the fitting offers that are not
// blocked, cheapest first.
type queued struct {
	recorder
}

func (q *queued) Rank(req *Request, dst []int) []int {
	from := len(dst)
	for i, o := range req.Offers {
		if gpuflow.NormalizeGPUType(o.GPUType) != gpuflow.NormalizeGPUType(req.Spec.GPUType) || o.GPUCount < req.Spec.GPUCount {
			continue
		}
		if _, blocked := req.Blocked[o.Key()]; !blocked {
			dst = append(dst, i)
		}
	}
	slices.SortStableFunc(dst[from:], func(a, b int) int { return cmp.Compare(req.Offers[a].PricePerHour, req.Offers[b].PricePerHour) })
	return dst
}

func (q *queued) Choose(*Request) (gpuflow.Offer, bool) { panic("Choose called on a Ranking policy") }

// TestAdmissionQueue: ten 2-GPU one-hour jobs at once on a 4-GPU pool that
// advertises its stock. Passes admit as many as the stock shows, less the
// requests the cloud has not answered; the two that get GPUs run, the
// others fail for capacity, are blocked for two minutes and then wait for
// the stock to show room. Pairs start in submission order as machines end.
func TestAdmissionQueue(t *testing.T) {
	t.Parallel()
	w := lab(4)
	w.Clouds[0].BackgroundMean = 0
	var jobs []Job
	for i := range 10 {
		jobs = append(jobs, Job{ID: i + 1, GPUType: "L4", GPUCount: 2, Duration: time.Hour, MemoryGB: 8, VCPUs: 2})
	}
	p := &queued{}
	res := Run(w, jobs, p)
	if res.Done != 10 || res.Passes == 0 || p.outcomes[Started] != 10 {
		t.Fatalf("done %d, passes %d, outcomes %v", res.Done, res.Passes, p.outcomes)
	}
	// The stock shows "4" (free GPUs below 16), four machines' worth, until
	// the next listing. At 0 s jobs 1–4 are admitted; 1 and 2 get GPUs, so
	// 5–6 follow at once, 7–10 when 3–6 are refused: 8 capacity errors.
	// Once the pool is full it shows 0 and the others wait. Each time a
	// pair ends the pool shows "4" again: the next two start and the rest
	// are refused once more (6, 4, 2).
	if res.NoCapacity != 8+6+4+2 {
		t.Errorf("no capacity %d, want 20", res.NoCapacity)
	}
	for i, r := range res.PerJob {
		want := time.Minute + time.Duration(i/2)*(time.Hour+time.Minute)
		if r.Wait != want {
			t.Errorf("job %d waited %v, want %v", i+1, r.Wait, want)
		}
	}
	if p.mutated {
		t.Fatal("the policy changed the offers it was shown")
	}
	again := Run(w, jobs, &queued{})
	if !reflect.DeepEqual(again.PerJob, res.PerJob) || again.Passes != res.Passes || again.Decisions != res.Decisions {
		t.Fatal("two runs differ")
	}
}

// TestAdmissionBlocks: a job that finds no capacity on an offer that
// shows no stock tries it again only when the block has expired (two
// minutes), at the next pass (the 15 s recheck).
func TestAdmissionBlocks(t *testing.T) {
	t.Parallel()
	w := lab(4)
	w.Clouds[0].BackgroundMean = 0
	w.Clouds[0].Stock = StockNone
	jobs := []Job{
		{ID: 1, GPUType: "L4", GPUCount: 4, Duration: time.Hour},
		{ID: 2, Submit: 10 * time.Second, GPUType: "L4", GPUCount: 4, Duration: time.Hour},
	}
	res := Run(w, jobs, &queued{})
	if res.Done != 2 {
		t.Fatalf("done %d", res.Done)
	}
	// Job 2 fails at 10 s (+2 s), then each time its block expires: the
	// pass at a failure starts the 15 s rechecks, the eighth falls when the
	// block has lasted 2 min. So an attempt every 2 min 2 s until job 1's
	// machine ends at 1 h 1 min.
	j := res.PerJob[1]
	if j.Attempts < 29 || j.Attempts > 32 {
		t.Errorf("job 2 made %d attempts, want 29–32 (one per expired block)", j.Attempts)
	}
	if j.QueuedFor < time.Duration(j.Attempts-1)*2*time.Minute {
		t.Errorf("job 2 queued %v in all over %d attempts: want at least 2 min between them", j.QueuedFor, j.Attempts)
	}
	// Job 1's machine ends at 1 h 1 min; job 2 gets it at a pass within
	// 2 min 15 s of that (its last block) and starts a minute later.
	if j.Wait < time.Hour+time.Minute || j.Wait > time.Hour+time.Minute+2*time.Minute+15*time.Second+time.Minute {
		t.Errorf("job 2 waited %v", j.Wait)
	}
}
