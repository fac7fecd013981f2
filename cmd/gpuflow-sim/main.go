// Command gpuflow-sim replays a workload trace against three emulated
// clouds (package scheduler/sim) with each scheduling strategy and with a
// cheapest-first baseline, and prints a markdown table of cost, time to
// start, completion, failed attempts and preemptions. The strategies' jobs
// wait in an admission queue as gpuflow's do; the baselines, which stand
// for other systems, retry each job on its own.
//
//	go run ./cmd/gpuflow-sim                      # the trace in scheduler/sim/testdata
//	go run ./cmd/gpuflow-sim -generate            # rewrite that trace from its seed
//	go run ./cmd/gpuflow-sim -seed 3 -jobs 2000   # a fresh trace, not written
//	go run ./cmd/gpuflow-sim -seeds 20            # balanced, cost and availability vs the baseline on 20×2 fresh traces and worlds
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
	"github.com/gpuflow/gpuflow/scheduler/sim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gpuflow-sim:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("gpuflow-sim", flag.ContinueOnError)
	tracePath := fs.String("trace", "scheduler/sim/testdata/trace.csv", "workload trace (CSV)")
	generate := fs.Bool("generate", false, "write the trace generated from -seed/-jobs/-hours to -trace and exit")
	seed := fs.Uint64("seed", 0, "generate a trace with this seed instead of reading -trace (0: read)")
	jobs := fs.Int("jobs", sim.DefaultTrace.Jobs, "jobs in a generated trace")
	hours := fs.Int("hours", int(sim.DefaultTrace.Span.Hours()), "hours over which a generated trace's jobs arrive")
	worldSeed := fs.Uint64("world-seed", sim.DefaultWorld().Seed, "seed of the other tenants' load")
	halfLife := fs.Duration("half-life", scheduler.DefaultHalfLife, "half-life of the scheduler's provider statistics")
	offerHalfLife := fs.Duration("offer-half-life", scheduler.DefaultOfferHalfLife, "half-life of the scheduler's offer statistics")
	reliabilityHalfLife := fs.Duration("reliability-half-life", scheduler.DefaultReliabilityHalfLife, "half-life of the statistics' reliability record (launch failures and times, preemptions)")
	busier := fs.Float64("busier", 0, "add this to every cloud's mean load by other tenants (a fraction of each pool)")
	costFloor := fs.Float64("cost-floor", scheduler.DefaultCostFloor, "scheduler.Config.CostFloor (USD)")
	balanced := fs.String("balanced", "", "balanced weights cost,performance,availability (default: scheduler.DefaultBalanced)")
	seeds := fs.Int("seeds", 0, "instead of one table, compare on this many generated traces (seeds first..first+n-1), each in two worlds")
	firstSeed := fs.Uint64("first-seed", 1, "first trace seed of -seeds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := sim.TraceConfig{Seed: *seed, Jobs: *jobs, Span: time.Duration(*hours) * time.Hour}
	if *generate {
		if cfg.Seed == 0 {
			cfg.Seed = sim.DefaultTrace.Seed
		}
		return writeTrace(*tracePath, sim.Generate(cfg))
	}
	sc := scheduler.Config{CostFloor: *costFloor}
	if *balanced != "" {
		w, err := parseWeights(*balanced)
		if err != nil {
			return err
		}
		sc.Balanced = w
	}
	world := sim.DefaultWorld()
	world.Seed = *worldSeed
	for i := range world.Clouds {
		world.Clouds[i].BackgroundMean = min(world.Clouds[i].BackgroundMean+*busier, 0.98)
	}
	hl := HalfLives{Provider: *halfLife, Offer: *offerHalfLife, Reliability: *reliabilityHalfLife}
	if *seeds > 0 {
		cfg.Seed = *firstSeed
		return Robustness(out, world, *seeds, cfg, sc, hl)
	}
	var trace []sim.Job
	if *seed != 0 {
		trace = sim.Generate(cfg)
	} else {
		f, err := os.Open(*tracePath)
		if err != nil {
			return fmt.Errorf("open trace: %w", err)
		}
		defer f.Close()
		if trace, err = sim.ReadCSV(f); err != nil {
			return err
		}
	}
	results := Compare(world, trace, sc, hl)
	fmt.Fprintf(out, "%d jobs, %d GPU-hours of work; world seed %d; statistics half-life %v per provider, %v per offer, %v for reliability\n\n",
		len(trace), gpuHours(trace), world.Seed, *halfLife, *offerHalfLife, *reliabilityHalfLife)
	if err := sim.Markdown(out, results, results[0].Policy); err != nil {
		return err
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, Goals(results))
	return nil
}

func writeTrace(path string, jobs []sim.Job) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create trace: %w", err)
	}
	if err := sim.WriteCSV(f, jobs); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func parseWeights(s string) (scheduler.Weights, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return scheduler.Weights{}, fmt.Errorf("-balanced %q: want cost,performance,availability", s)
	}
	var v [3]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f < 0 {
			return scheduler.Weights{}, fmt.Errorf("-balanced %q: weights must be numbers ≥ 0", s)
		}
		v[i] = f
	}
	return scheduler.Weights{Cost: v[0], Performance: v[1], Availability: v[2]}, nil
}

func gpuHours(jobs []sim.Job) int {
	var h float64
	for _, j := range jobs {
		h += float64(j.GPUCount) * j.Duration.Hours()
	}
	return int(h)
}

// HalfLives are the half-lives of the statistics the ranked policies keep:
// per provider and per offer (scheduler.Stats.HalfLife), and of both
// records' reliability part (scheduler.Stats.ReliabilityHalfLife).
type HalfLives struct {
	Provider, Offer, Reliability time.Duration
}

// DefaultHalfLives are the scheduler's defaults.
var DefaultHalfLives = HalfLives{Provider: scheduler.DefaultHalfLife, Offer: scheduler.DefaultOfferHalfLife, Reliability: scheduler.DefaultReliabilityHalfLife}

// Compare runs the baseline (first), the dstack-like baseline and the four
// strategies on trace.
func Compare(world sim.World, trace []sim.Job, cfg scheduler.Config, hl HalfLives) []sim.Result {
	policies := []sim.Policy{&sim.Cheapest{}, &sim.Cheapest{SkipSoldOut: true}}
	for _, s := range gpuflow.Strategies {
		policies = append(policies, NewRanked(s, cfg, hl))
	}
	results := make([]sim.Result, len(policies))
	for i, p := range policies {
		results[i] = sim.Run(world, trace, p)
	}
	return results
}

// Goals checks the targets against the first (baseline) result:
// balanced starts jobs at least 30 % sooner at p95 for at most 10 % more
// cost, and cost is never dearer.
func Goals(results []sim.Result) string {
	base := results[0]
	var b strings.Builder
	for _, r := range results {
		switch r.Policy {
		case gpuflow.StrategyBalanced:
			p95, bp95 := r.WaitPercentile(95), base.WaitPercentile(95)
			fmt.Fprintf(&b, "balanced: p95 start %.0f %% sooner than the baseline (goal ≥ 30 %%), cost %+.1f %% (goal ≤ +10 %%)\n",
				100*(1-p95.Seconds()/bp95.Seconds()), 100*(r.Cost/base.Cost-1))
		case gpuflow.StrategyCost:
			fmt.Fprintf(&b, "cost: cost %+.1f %% vs the baseline (goal ≤ 0)\n", 100*(r.Cost/base.Cost-1))
		}
	}
	return strings.TrimSpace(b.String())
}

// Robustness runs the baseline, cost, balanced and availability on traces
// generated with seeds cfg.Seed..cfg.Seed+n-1 (sized like cfg), each in
// world and in world with the next seed, and prints a markdown table of
// the differences to the baseline. The availability strategy, the fastest,
// shows how much sooner any choice of offers could start jobs: where it
// gains little, the trace's p95 is jobs queueing for capacity that no
// cloud has (sweeps of big jobs), not provisioning luck.
func Robustness(out io.Writer, world sim.World, n int, cfg sim.TraceConfig, sc scheduler.Config, hl HalfLives) error {
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	type row struct {
		seed, world         uint64
		base, bal, cost, av sim.Result
	}
	rows := make([]row, 2*n)
	var wg sync.WaitGroup
	for i := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &rows[i]
			r.seed, r.world = cfg.Seed+uint64(i/2), world.Seed+uint64(i%2)
			tc := cfg
			tc.Seed = r.seed
			trace := sim.Generate(tc)
			w := world
			w.Seed = r.world
			r.base = sim.Run(w, trace, &sim.Cheapest{})
			r.bal = sim.Run(w, trace, NewRanked(gpuflow.StrategyBalanced, sc, hl))
			r.cost = sim.Run(w, trace, NewRanked(gpuflow.StrategyCost, sc, hl))
			r.av = sim.Run(w, trace, NewRanked(gpuflow.StrategyAvailability, sc, hl))
		}()
	}
	wg.Wait()
	fmt.Fprintln(out, "| trace seed | world seed | baseline p95 (min) | balanced p95 | balanced cost | cost strategy cost | availability p95 (cost) | balanced p90 |")
	fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	pct := func(a, b float64) float64 { return 100 * (a/b - 1) }
	met, reachable, metReachable, cheaper := 0, 0, 0, 0
	var gains []float64
	for _, r := range rows {
		bp95 := r.base.WaitPercentile(95).Seconds()
		gain := -pct(r.bal.WaitPercentile(95).Seconds(), bp95)
		extra := pct(r.bal.Cost, r.base.Cost)
		ok := gain >= 30 && extra <= 10
		reach := -pct(r.av.WaitPercentile(95).Seconds(), bp95) >= 30
		gains = append(gains, gain)
		if ok {
			met++
		}
		if reach {
			reachable++
			if ok {
				metReachable++
			}
		}
		if r.cost.Cost <= r.base.Cost {
			cheaper++
		}
		if _, err := fmt.Fprintf(out, "| %d | %d | %.1f | %+.1f %% | %+.1f %% | %+.1f %% | %+.1f %% (%+.1f %%) | %+.1f %% |\n", r.seed, r.world, bp95/60,
			-gain, extra, pct(r.cost.Cost, r.base.Cost),
			pct(r.av.WaitPercentile(95).Seconds(), bp95), pct(r.av.Cost, r.base.Cost),
			pct(r.bal.WaitPercentile(90).Seconds(), r.base.WaitPercentile(90).Seconds())); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	slices.Sort(gains)
	_, err := fmt.Fprintf(out, "\nbalanced met both goals (p95 ≥ 30 %% sooner, cost ≤ +10 %%) in %d of %d runs (median %.0f %% sooner); "+
		"availability, the fastest, started jobs ≥ 30 %% sooner in %d of them, and balanced met the goals in %d of those; "+
		"cost was no dearer than the baseline in %d of %d\n",
		met, len(rows), (gains[(len(gains)-1)/2]+gains[len(gains)/2])/2, reachable, metReachable, cheaper, len(rows))
	return err
}

// Ranked is a sim.Ranking policy that ranks with the scheduler: it indexes
// the advertised offers once per listing, keeps statistics from its own
// attempts and health checks as gpuflow does — every outcome (started, no
// capacity, failed, preempted, spot run finished) with its duration, per
// provider and per offer, health per provider — and ranks every fitting
// offer for the simulation's admission passes, which wait the way
// gpuflow's queue does.
type Ranked struct {
	strategy string
	ranker   scheduler.Ranker
	tracker  *scheduler.Tracker // per provider
	offers   *scheduler.Tracker // per offer
	index    scheduler.Index
	version  uint64
	indexed  bool
	snap     map[string]scheduler.Snapshot
	osnap    map[string]scheduler.Snapshot
	snapAt   time.Time // when snap and osnap were taken
	fresh    bool      // and nothing was observed since
	d        scheduler.Decision
}

// NewRanked returns a policy for strategy whose statistics decay with hl.
func NewRanked(strategy string, cfg scheduler.Config, hl HalfLives) *Ranked {
	return &Ranked{strategy: strategy, ranker: scheduler.Ranker{Config: cfg},
		tracker: scheduler.NewTracker(hl.Provider, hl.Reliability), offers: scheduler.NewTracker(hl.Offer, hl.Reliability)}
}

// Name is the strategy.
func (p *Ranked) Name() string { return p.strategy }

// rank ranks the offers for the job into p.d. The statistics are read
// once per instant (an admission pass reads them once), again when
// something was observed since.
func (p *Ranked) rank(req *sim.Request) {
	if !p.indexed || req.Version != p.version {
		p.index.Reset(req.Offers)
		p.version, p.indexed = req.Version, true
	}
	spec := req.Spec
	spec.Strategy = p.strategy
	if !p.fresh || !p.snapAt.Equal(req.Now) {
		p.snap = p.tracker.Snapshot(req.Now, p.snap)
		p.osnap = p.offers.Snapshot(req.Now, p.osnap)
		p.snapAt, p.fresh = req.Now, true
	}
	p.ranker.Rank(scheduler.Input{Spec: spec, Offers: &p.index, Blocked: req.Blocked, Stats: p.snap, OfferStats: p.osnap}, &p.d)
}

// Choose ranks the offers for the job and returns the best.
func (p *Ranked) Choose(req *sim.Request) (gpuflow.Offer, bool) {
	p.rank(req)
	if len(p.d.Candidates) == 0 {
		return gpuflow.Offer{}, false
	}
	return p.d.Candidates[0].Offer, true
}

// Rank ranks the offers for the job and appends the candidates'
// positions, best first.
func (p *Ranked) Rank(req *sim.Request, dst []int) []int {
	p.rank(req)
	for _, c := range p.d.Candidates {
		dst = append(dst, c.Index)
	}
	return dst
}

// Observe feeds the statistics.
func (p *Ranked) Observe(offer gpuflow.Offer, o sim.Outcome, took time.Duration, at time.Time) {
	p.tracker.Observe(offer.Provider, outcomes[o], took, at)
	p.offers.Observe(offer.Key(), outcomes[o], took, at)
	p.fresh = false
}

// Health feeds the health checks.
func (p *Ranked) Health(provider string, healthy bool, at time.Time) {
	p.tracker.SetHealth(provider, healthy, at)
	p.fresh = false
}

var _ sim.Ranking = (*Ranked)(nil)

var outcomes = map[sim.Outcome]scheduler.Outcome{
	sim.Started: scheduler.Started, sim.NoCapacity: scheduler.NoCapacity, sim.Failed: scheduler.Failed,
	sim.Preempted: scheduler.Preempted, sim.SpotFinished: scheduler.SpotFinished,
}
