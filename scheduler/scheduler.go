// Package scheduler ranks provider offers for a job. It does no I/O and
// reads no clock: the caller passes the offers, the job, the providers'
// (and offers') observed statistics and the time, and gets a decision back
// — the fitting offers ranked best first, each with its score in [0, 1]
// and the score per criterion, and every rejected offer with the reason.
//
// # Criteria
//
// Each criterion scores a candidate in [0, 1], relative to the other
// candidates of the same decision:
//
//   - cost: the job's expected cost C on the offer: the price per GPU-hour
//     (the spot price for spot jobs) × the job's GPUs × the expected run
//     time — the job's estimated_duration (Config.DefaultDuration when it
//     has none) and, for spot jobs, the expected time with restarts from
//     scratch under the provider's observed preemption rate λ,
//     (e^{λT} − 1)/λ. A candidate costing E more than the cheapest scores
//     1/(1 + E/max(Cmin, Config.CostFloor)): the price ratio for jobs
//     dearer than the floor (one twice as dear scores 0.5), while for
//     smaller jobs the extra dollars are weighed against the floor (a few
//     cents more weigh little). The cheapest scores 1.
//   - performance: the offer's throughput per GPU relative to an H100 SXM
//     (GPUModels: the geometric mean of dense 16-bit tensor TFLOPS and
//     memory bandwidth, from vendor datasheets) × the job's GPUs, divided by
//     the best candidate's. GPU types of one family differ (an H100 PCIe
//     is slower than an H100 SXM). When no candidate's GPU is in the table
//     (CPU-only jobs), every candidate scores 1.
//   - availability: τ/(τ + S), τ = Config.StartScale (a candidate expected
//     to start in τ scores 0.5), S the pessimistic time to a running
//     machine when trying the offer until it works: the mean wait plus two
//     standard deviations of it, the wait being the failed attempts (each
//     costing its time and Config.RetryPenalty, their number geometric)
//     and then the launch that starts. A rare long failure, such as a pod
//     that hangs until a boot timeout, adds little to the mean and much to
//     the deviation; such failures are what make jobs start late.
//     Capacity is the offer's own: the chance that an attempt finds a
//     machine is the advertised stock's — 0.1 when the offer says 0 (stock
//     lists are often stale), 0.7 when it does not say, 1 − 0.5/(n+1) for
//     n — refined by the offer's recent attempts (Input.OfferStats). How a
//     launch goes once there is capacity — the chance it fails anyway, the
//     times to start and to fail — is the provider's record (Input.Stats)
//     refined by the offer's. Observations are blended with a prior worth
//     two attempts (launches start in 3 ± 1 min, 6 % fail after 2 min,
//     capacity errors take 30 s).
//
// Statistics (Stats, Tracker) decay exponentially, with two memories.
// Whether attempts find capacity halves its weight every half-life
// (DefaultHalfLife, 1 h, per provider; DefaultOfferHalfLife, 15 min, per
// offer): a pool sold out this morning is tried again in the afternoon.
// How launches go and how often spot machines are reclaimed halves every
// DefaultReliabilityHalfLife (6 h): a datacenter that hangs one launch in
// four is remembered between its rare failures.
//
// # Strategies
//
// The score is the weighted mean of the criteria: cost, performance and
// availability each weigh 1 alone in the strategy of that name; balanced
// uses Config.Balanced (DefaultBalanced unless set). Equal scores are
// ordered by the DefaultBalanced score, then by provider, region, GPU type,
// GPU count, prices, memory, vCPUs and stock, then by input position: the
// same input always gives the same answer.
//
// # Rejections
//
// An offer is rejected, with a ReasonCode and the numbers behind it, when
// its provider is not allowed by the job or not configured, it has no GPU
// or another GPU type or too few GPUs, too little memory or too few vCPUs,
// no spot price for a spot job (or only one for an on-demand job), a price
// over max_price_per_hour, an unhealthy provider, or it is blocked for the
// job after a failure. Rejection.Reason formats the words on demand.
package scheduler

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Breakdown is a candidate's score on each criterion, each in [0, 1].
type Breakdown struct {
	Cost         float64 `json:"cost"`
	Performance  float64 `json:"performance"`
	Availability float64 `json:"availability"`
}

// Map returns the breakdown keyed by criterion name.
func (b Breakdown) Map() map[string]float64 {
	return map[string]float64{"cost": b.Cost, "performance": b.Performance, "availability": b.Availability}
}

// Weights weigh the criteria in a strategy. Only their ratios matter.
type Weights struct {
	Cost         float64 `json:"cost"`
	Performance  float64 `json:"performance"`
	Availability float64 `json:"availability"`
}

// DefaultBalanced are the balanced strategy's weights: cost, then how soon
// the job starts, then speed. With DefaultCostFloor they spend where a
// dollar buys the most time: small jobs, whose premiums are cents, go where
// they start soonest, while big jobs, which make most of the bill, stay on
// the cheapest offer unless it is clearly less available (an offer 28 %
// dearer loses 0.11 on cost, more than the availability gap between two
// healthy providers). The p95 time to start counts jobs and the bill counts
// dollars: in the simulation's workload, nine jobs in ten cost under $8 and
// make 38 % of the bill. Chosen with the simulation in scheduler/sim
// (docs/BENCHMARKS.md): the cost weight from 0.45–0.55 and the floor from
// $5–20 against cheapest-first on generated traces and worlds (seeds
// 1–10), then checked on seeds 11–20 and the kept trace. With jobs waiting
// in the admission queue as in production, balanced starts jobs 36–50 %
// sooner at p95 for 6.5–9 % more on the kept trace (five worlds), and meets
// the goal (≥ 30 % sooner, ≤ 10 % more) in 17 of 40 generated
// runs; in most of the others even the availability strategy cannot, jobs
// queueing for capacity no cloud has. The earlier
// weights (0.4, 0.1, 0.5 with a $2 floor) weighed a premium as a ratio
// from $2 up, so most of the extra money went to big jobs.
var DefaultBalanced = Weights{Cost: 0.5, Performance: 0.1, Availability: 0.4}

func (w Weights) sum() float64 { return w.Cost + w.Performance + w.Availability }

func (w Weights) score(b Breakdown) float64 {
	s := w.sum()
	if s <= 0 {
		return 0
	}
	return clamp01((w.Cost*b.Cost + w.Performance*b.Performance + w.Availability*b.Availability) / s)
}

// Candidate is an offer that fits the job, with its score in [0, 1].
type Candidate struct {
	Offer gpuflow.Offer `json:"offer"`
	Score float64       `json:"score"`
	// Criteria is the score per criterion.
	Criteria Breakdown `json:"breakdown"`
	// Breakdown is Criteria as a map. Rank leaves it nil on the ranked
	// candidates (ranking allocates nothing per offer); Best fills it.
	Breakdown map[string]float64 `json:"-"`
	// PricePerHour is the job's price on this offer: the price per GPU-hour
	// (spot for spot jobs) × the GPUs it rents (gpuflow.Offer.GPUsRented:
	// the whole machine where the offer is one of a fixed size).
	PricePerHour float64 `json:"price_per_hour"`
	// EstimatedCost is the expected cost of the job's estimated run time,
	// spot restarts included.
	EstimatedCost float64 `json:"estimated_cost"`
	// Throughput is the job's GPUs' speed in H100 SXMs; 0 when unknown.
	Throughput float64 `json:"throughput"`
	// StartSeconds is the expected time to a running machine: the mean
	// of what gpuflow measured on this offer and provider (times to start,
	// the share of attempts that found capacity and launched), the priors
	// only where nothing was measured yet. The availability criterion
	// weighs a pessimistic figure instead (startSeconds).
	StartSeconds float64 `json:"start_estimate_s"`
	// StartMeasured is false while no machine of the offer's provider has
	// started yet: StartSeconds is then the priors' guess.
	StartMeasured bool `json:"start_measured"`
	// Index is the offer's position in the ranked offers.
	Index int `json:"-"`
}

// Decision is the ranked candidates (best first) and the rejected offers.
type Decision struct {
	Strategy string  `json:"strategy"`
	Weights  Weights `json:"weights"`
	// EstimatedHours is the run time the costs assume.
	EstimatedHours float64     `json:"estimated_hours"`
	Candidates     []Candidate `json:"candidates"`
	Rejected       []Rejection `json:"rejected,omitempty"`
}

// Best returns the best candidate, if any, with its Breakdown map filled.
func (d Decision) Best() (Candidate, bool) {
	if len(d.Candidates) == 0 {
		return Candidate{}, false
	}
	c := d.Candidates[0]
	c.Breakdown = c.Criteria.Map()
	return c, true
}

// ReasonsByProvider groups the rejection reasons per provider, for errors.
func (d Decision) ReasonsByProvider() map[string][]string {
	out := map[string][]string{}
	for _, r := range d.Rejected {
		reason := r.Reason()
		if !slices.Contains(out[r.Offer.Provider], reason) {
			out[r.Offer.Provider] = append(out[r.Offer.Provider], reason)
		}
	}
	return out
}

// AddRefused records providers that offered nothing for the job, with the
// reason (as returned by gpuflow.Providers.OffersFor).
func (d *Decision) AddRefused(refused map[string]string) {
	names := make([]string, 0, len(refused))
	for n := range refused {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		d.Rejected = append(d.Rejected, Rejection{Offer: gpuflow.Offer{Provider: n}, Code: ReasonRefused, Detail: refused[n]})
	}
}

// Config tunes the ranking. The zero value uses the documented defaults.
type Config struct {
	// Balanced weighs the criteria of the balanced strategy; DefaultBalanced
	// when all zero.
	Balanced Weights
	// DefaultDuration is the run time costs assume for jobs without an
	// estimated_duration; 1 h when zero.
	DefaultDuration time.Duration
	// RetryPenalty is the time a failed attempt costs beyond its own
	// duration (looking again, trying elsewhere); 1 min when zero.
	RetryPenalty time.Duration
	// StartScale is the expected time to start that scores 0.5 on
	// availability; 5 min when zero.
	StartScale time.Duration
	// CostFloor (USD) is the smallest bill the cost criterion thinks of in
	// relative terms: a candidate costing E more than the cheapest, whose
	// expected cost is C, scores 1/(1 + E/max(C, CostFloor)). For jobs
	// dearer than CostFloor that is C/(C+E), the price ratio; for cheaper
	// jobs the extra dollars are weighed against CostFloor, so a few cents
	// more weigh little. DefaultCostFloor when zero.
	CostFloor float64
}

// DefaultCostFloor is Config.CostFloor's default, in USD: about what the
// dearest twentieth of the simulated workload's jobs cost (see
// DefaultBalanced).
const DefaultCostFloor = 20.0

// Priors blended with a provider's observations, each worth priorWeight
// attempts or launches (or priorSpotHours of spot time); an offer's
// observations are blended the same way with its provider's figures, and
// with its advertised stock for capacity.
const (
	priorWeight      = 2.0
	priorLaunchFail  = 0.06 // chance a launch that found capacity fails
	priorStart       = 3 * time.Minute
	priorStartSD     = time.Minute
	priorNoCapTime   = 30 * time.Second
	priorFailTime    = 2 * time.Minute
	priorSpotHours   = 10.0
	priorPreemptRate = 0.05 // per spot hour
	minPrice         = 0.01 // $/h: cheaper counts as this, so free offers do not zero the rest
)

// Weights returns the weights of strategy ("" and unknown strategies are
// balanced).
func (c Config) Weights(strategy string) Weights {
	switch strategy {
	case gpuflow.StrategyCost:
		return Weights{Cost: 1}
	case gpuflow.StrategyPerformance:
		return Weights{Performance: 1}
	case gpuflow.StrategyAvailability:
		return Weights{Availability: 1}
	}
	if c.Balanced.sum() > 0 {
		return c.Balanced
	}
	return DefaultBalanced
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Index is a set of offers prepared for ranking: GPU names resolved and
// providers numbered once, so that many decisions over the same offers
// (one per job) repeat none of it. It keeps the offers slice: do not change
// it while the index is in use. An Index is read-only once prepared and may
// be shared between goroutines.
type Index struct {
	offers    []gpuflow.Offer
	info      []offerInfo
	providers []string
}

type offerInfo struct {
	family     string  // normalized GPU type
	throughput float64 // per GPU, in H100 SXMs; 0 unknown
	provider   int     // index in Index.providers
}

// Prepare indexes offers.
func Prepare(offers []gpuflow.Offer) *Index {
	x := &Index{}
	x.Reset(offers)
	return x
}

// Reset re-indexes x for offers, reusing its memory.
func (x *Index) Reset(offers []gpuflow.Offer) {
	x.offers = offers
	x.info = slices.Grow(x.info[:0], len(offers))[:len(offers)]
	x.providers = x.providers[:0]
	for i := range offers {
		o := &offers[i]
		g := lookupGPU(o.GPUType)
		inf := offerInfo{family: g.family, provider: -1}
		if m := g.model; m != nil {
			if g.model80 != nil && o.GPUMemoryGB >= 80 {
				m = g.model80
			}
			inf.throughput = m.Throughput()
		}
		for p, name := range x.providers {
			if name == o.Provider {
				inf.provider = p
				break
			}
		}
		if inf.provider < 0 {
			inf.provider = len(x.providers)
			x.providers = append(x.providers, o.Provider)
		}
		x.info[i] = inf
	}
}

// Offers returns the indexed offers.
func (x *Index) Offers() []gpuflow.Offer {
	if x == nil {
		return nil
	}
	return x.offers
}

// Input is everything one decision depends on.
type Input struct {
	Spec   gpuflow.JobSpec
	Offers *Index
	// Blocked maps offer keys (gpuflow.Offer.Key) to why they are excluded
	// for this job.
	Blocked map[string]string
	// Stats are the providers' records at the decision's time (see
	// Tracker.Snapshot); providers without one get the priors. A
	// provider's record gives how its launches go (the chance one fails
	// though there was capacity, the times to start and to fail) and its
	// spot preemption rate; whether there is capacity is each offer's.
	Stats map[string]Snapshot
	// OfferStats are records per offer, keyed by gpuflow.Offer.Key (a
	// Tracker fed per offer, with a shorter half-life: stock comes and goes
	// faster than a provider's habits). An offer's record gives its chance
	// of finding capacity (the advertised stock acting as its prior, worth
	// two attempts) and refines its provider's launch figures (which act as
	// its prior, worth two launches): a pool that is sold out, or whose
	// launches keep hanging, is avoided while its provider's other offers
	// are not.
	OfferStats map[string]Snapshot
	// Unconfigured lists providers without credentials.
	Unconfigured []string
}

// Ranker ranks offers, reusing its scratch memory between decisions. The
// zero value is ready to use; a Ranker is not safe for concurrent use.
type Ranker struct {
	Config Config

	cands []cand
	rejs  []rej
	provs []provState
	key   []byte
}

// cand is a fitting offer during ranking.
type cand struct {
	i     int
	price float64 // per hour, for the job
	cost  float64 // expected, for the estimated run time
	thr   float64
	start float64 // seconds to start, pessimistic (the availability criterion)
	eta   float64 // expected seconds to start, from the measurements
	seen  bool    // eta rests on a measured start
	crit  Breakdown
	score float64
	tie   float64 // DefaultBalanced score
}

type rej struct {
	i          int
	code       ReasonCode
	have, want float64
	detail     string
}

// provState is what a decision needs about one provider.
type provState struct {
	allowed, configured, unhealthy bool
	odds                           odds
	seen                           odds    // the measurements alone, the priors where there are none
	measured                       bool    // a machine has started: seen has a measured time to start
	preemptRate                    float64 // per spot hour, with the prior
}

// odds are the chances and times of an attempt's outcomes.
type odds struct {
	capacity        float64 // chance an attempt finds capacity
	fail            float64 // chance a launch that found capacity fails
	startS, startSD float64 // time to a running machine, seconds
	noCapS, failS   float64 // time to a failure, seconds
}

// blend returns o refined by the observations in s, o weighing
// priorWeight attempts (launches for the chance that a launch fails and
// the times).
func (o odds) blend(s *Snapshot) odds { return o.blendWeighing(s, priorWeight) }

// blendWeighing is blend with o weighing pw attempts; with pw 0 the
// observations replace o wherever there are any.
func (o odds) blendWeighing(s *Snapshot, pw float64) odds {
	mean := func(obs, weight, prior float64) float64 {
		if weight+pw <= 0 {
			return prior
		}
		return (obs*weight + prior*pw) / (weight + pw)
	}
	ratio := func(n, d, prior float64) float64 { // n of d, the prior worth pw
		if d+pw <= 0 {
			return prior
		}
		return (n + pw*prior) / (d + pw)
	}
	started := max(s.Launches-s.LaunchFailures, 0)
	m, sd := s.MeanStart.Seconds(), s.StartStdDev.Seconds()
	startS := mean(m, started, o.startS)
	sq := mean(sd*sd+m*m, started, o.startSD*o.startSD+o.startS*o.startS)
	return odds{
		capacity: ratio(s.Started+s.Failed, s.Attempts(), o.capacity),
		fail:     ratio(s.LaunchFailures, s.Launches, o.fail),
		startS:   startS,
		startSD:  math.Sqrt(max(sq-startS*startS, 0)),
		noCapS:   mean(s.MeanNoCapacity.Seconds(), s.NoCapacity, o.noCapS),
		failS:    mean(s.MeanFail.Seconds(), s.LaunchFailures, o.failS),
	}
}

var priorOdds = odds{
	capacity: stockChance(-1), fail: priorLaunchFail,
	startS: priorStart.Seconds(), startSD: priorStartSD.Seconds(),
	noCapS: priorNoCapTime.Seconds(), failS: priorFailTime.Seconds(),
}

// pessimism is how many standard deviations of the time to start the
// availability criterion adds to its mean.
const pessimism = 2.0

// startSeconds is the time to a running machine when trying the offer until
// it starts one, pessimistic by pessimism standard deviations: the mean
// plus that many standard deviations of the whole wait, the failed
// attempts' (each costing its time plus penalty, their number geometric)
// with the successful launch's. A rare but long failure, such as a pod
// that hangs until a boot timeout, adds little to the mean and much to the
// deviation: it is what puts a job in the slow tail.
func (o odds) startSeconds(penalty float64) float64 {
	started := max(o.capacity*(1-o.fail), 1e-9)
	failed := o.capacity * o.fail
	noCap := max(1-started-failed, 0)
	fc, ff := o.noCapS+penalty, o.failS+penalty
	m1 := noCap*fc + failed*ff       // E[failure time] × P(failure), per attempt
	m2 := noCap*fc*fc + failed*ff*ff // E[failure time²] × P(failure)
	// A geometric number of failures before the start: mean m1/started,
	// variance m2/started + (m1/started)².
	wait := m1 / started
	v := o.startSD*o.startSD + m2/started + wait*wait
	return o.startS + wait + pessimism*math.Sqrt(v)
}

// expectedStart is the mean time to a running machine when trying the
// offer until it starts one: the failed attempts' expected time and the
// successful launch's.
func (o odds) expectedStart(penalty float64) float64 {
	started := max(o.capacity*(1-o.fail), 1e-9)
	failed := o.capacity * o.fail
	noCap := max(1-started-failed, 0)
	return o.startS + (noCap*(o.noCapS+penalty)+failed*(o.failS+penalty))/started
}

// Rank is one decision with the default Config and no provider statistics
// (every provider gets the priors): offers whose Key is in blocked are
// rejected.
func Rank(spec gpuflow.JobSpec, offers []gpuflow.Offer, blocked map[string]string) Decision {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	s.index.Reset(offers)
	defer s.index.Reset(nil) // do not keep the caller's offers alive
	var d Decision
	s.ranker.Rank(Input{Spec: spec, Offers: &s.index, Blocked: blocked}, &d)
	return d
}

// scratch is the reusable memory of the package-level Rank.
type scratch struct {
	ranker Ranker
	index  Index
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Rank checks every offer of in against the job, ranks the ones that fit
// and writes the decision into d, reusing its slices (the candidates and
// rejections of a previous decision in d are overwritten).
func (r *Ranker) Rank(in Input, d *Decision) {
	spec := &in.Spec
	x := in.Offers
	if x == nil {
		x = &Index{}
	}
	cfg := r.Config
	w := cfg.Weights(spec.Strategy)
	hours := float64(spec.EstimatedDuration) / 60
	if hours <= 0 {
		hours = orDefault(cfg.DefaultDuration, time.Hour).Hours()
	}
	*d = Decision{Strategy: spec.Strategy, Weights: w, EstimatedHours: hours,
		Candidates: d.Candidates[:0], Rejected: d.Rejected[:0]}

	r.providers(in)
	family := ""
	if spec.GPUCount > 0 {
		family = lookupGPU(spec.GPUType).family
	}
	gpus := float64(max(spec.GPUCount, 1))
	penalty := orDefault(cfg.RetryPenalty, time.Minute).Seconds()
	tau := orDefault(cfg.StartScale, 5*time.Minute).Seconds()

	n := len(x.offers)
	if cap(r.cands) < n {
		r.cands = make([]cand, 0, n)
		r.rejs = make([]rej, 0, n)
	}
	r.cands, r.rejs = r.cands[:0], r.rejs[:0]
	minCost, maxThr := math.Inf(1), 0.0
	for i := range x.offers {
		o, inf := &x.offers[i], &x.info[i]
		p := &r.provs[inf.provider]
		if len(in.Blocked) > 0 || len(in.OfferStats) > 0 {
			r.key = append(append(append(append(append(r.key[:0], o.Provider...), '/'), o.GPUType...), '/'), o.Region...)
		}
		rj := r.check(spec, family, o, inf, p, in.Blocked)
		if rj.code != "" {
			rj.i = i
			r.rejs = append(r.rejs, rj)
			continue
		}
		// The job pays for the GPUs it rents (a whole machine where the
		// offer is one) and runs as fast as the GPUs it asked for.
		rented := float64(max(o.GPUsRented(spec.GPUCount), 1))
		c := cand{i: i, price: o.PricePerHour * rented, thr: inf.throughput * gpus}
		runHours := hours
		if spec.Spot {
			c.price = o.SpotPricePerHour * rented
			runHours = expectedHours(hours, p.preemptRate)
		}
		c.cost = max(c.price, minPrice) * runHours
		// Capacity is the offer's: the advertised stock, refined by the
		// offer's own recent attempts. The provider's record gives the
		// rest (how its launches go), refined by the offer's.
		od := p.odds
		od.capacity = stockChance(o.Available)
		seen := p.seen
		seen.capacity = od.capacity
		c.seen = p.measured
		if len(in.OfferStats) > 0 {
			if s, ok := in.OfferStats[string(r.key)]; ok {
				od = od.blend(&s)
				seen = seen.blendWeighing(&s, 0)
				c.seen = c.seen || s.Launches-s.LaunchFailures > 0
			}
		}
		c.start = od.startSeconds(penalty)
		c.eta = seen.expectedStart(penalty)
		c.crit.Availability = clamp01(tau / (tau + c.start))
		minCost, maxThr = min(minCost, c.cost), max(maxThr, c.thr)
		r.cands = append(r.cands, c)
	}
	ref := minCost
	if floor := cfg.CostFloor; floor > 0 {
		ref = max(ref, floor)
	} else {
		ref = max(ref, DefaultCostFloor)
	}
	for k := range r.cands {
		c := &r.cands[k]
		c.crit.Cost = clamp01(1 / (1 + (c.cost-minCost)/ref))
		c.crit.Performance = 1
		if maxThr > 0 {
			c.crit.Performance = clamp01(c.thr / maxThr)
		}
		c.score = w.score(c.crit)
		c.tie = DefaultBalanced.score(c.crit)
	}
	offers := x.offers
	slices.SortFunc(r.cands, func(a, b cand) int { return compare(&a, &b, offers) })

	d.Candidates = slices.Grow(d.Candidates, len(r.cands))
	for _, c := range r.cands {
		d.Candidates = append(d.Candidates, Candidate{
			Offer: offers[c.i], Score: c.score, Criteria: c.crit, PricePerHour: c.price,
			EstimatedCost: c.cost, Throughput: c.thr, StartSeconds: c.eta, StartMeasured: c.seen, Index: c.i,
		})
	}
	d.Rejected = slices.Grow(d.Rejected, len(r.rejs))
	for _, rj := range r.rejs {
		d.Rejected = append(d.Rejected, Rejection{Offer: offers[rj.i], Code: rj.code, Have: rj.have, Want: rj.want, Detail: rj.detail})
	}
}

// providers fills r.provs for the index's providers.
func (r *Ranker) providers(in Input) {
	var names []string
	if in.Offers != nil {
		names = in.Offers.providers
	}
	r.provs = slices.Grow(r.provs[:0], len(names))[:len(names)]
	for k, name := range names {
		s := in.Stats[name]
		r.provs[k] = provState{
			allowed:     in.Spec.AllowsProvider(name),
			configured:  !slices.Contains(in.Unconfigured, name),
			unhealthy:   s.Unhealthy,
			odds:        priorOdds.blend(&s),
			seen:        priorOdds.blendWeighing(&s, 0),
			measured:    s.Launches-s.LaunchFailures > 0,
			preemptRate: (s.Preemptions + priorPreemptRate*priorSpotHours) / (s.SpotHours + priorSpotHours),
		}
	}
}

// check returns why o cannot serve the job (a zero code when it can).
func (r *Ranker) check(spec *gpuflow.JobSpec, family string, o *gpuflow.Offer, inf *offerInfo, p *provState, blocked map[string]string) rej {
	switch {
	case !p.allowed:
		return rej{code: ReasonProviderNotAllowed}
	case !p.configured:
		return rej{code: ReasonNotConfigured}
	}
	if spec.GPUCount == 0 {
		if o.GPUCount != 0 {
			return rej{code: ReasonCPUOnlyJob}
		}
	} else {
		switch {
		case o.GPUCount == 0:
			return rej{code: ReasonNoGPU}
		case inf.family != family:
			return rej{code: ReasonGPUType, detail: spec.GPUType}
		case o.GPUCount < spec.GPUCount:
			return rej{code: ReasonGPUCount, have: float64(o.GPUCount), want: float64(spec.GPUCount)}
		}
	}
	if o.MemoryGB > 0 && spec.MemoryGB > o.MemoryGB {
		return rej{code: ReasonMemory, have: o.MemoryGB, want: spec.MemoryGB}
	}
	if o.VCPUs > 0 && spec.VCPUs > o.VCPUs {
		return rej{code: ReasonVCPUs, have: float64(o.VCPUs), want: float64(spec.VCPUs)}
	}
	price := o.PricePerHour
	if spec.Spot {
		if o.SpotPricePerHour <= 0 {
			return rej{code: ReasonNoSpot}
		}
		price = o.SpotPricePerHour
	} else if o.PricePerHour <= 0 && o.SpotPricePerHour > 0 {
		return rej{code: ReasonSpotOnly}
	}
	price *= float64(max(o.GPUsRented(spec.GPUCount), 1))
	if m := spec.MaxPricePerHour; m != nil && price > *m {
		return rej{code: ReasonMaxPrice, have: price, want: *m}
	}
	if p.unhealthy {
		return rej{code: ReasonUnhealthy}
	}
	if len(blocked) > 0 { // r.key is o's key
		if why, ok := blocked[string(r.key)]; ok {
			return rej{code: ReasonBlocked, detail: why}
		}
	}
	return rej{}
}

// stockChance is the chance that the offer has a machine, judging by the
// stock it advertises.
func stockChance(available int) float64 {
	switch {
	case available < 0:
		return 0.7
	case available == 0:
		return 0.1
	}
	return 1 - 0.5/float64(available+1)
}

// expectedHours is the expected time to finish hours of work restarted
// from scratch at each preemption, preemptions coming at rate per hour.
func expectedHours(hours, rate float64) float64 {
	x := rate * hours
	if x < 1e-9 {
		return hours
	}
	return math.Expm1(math.Min(x, 20)) / rate
}

func clamp01(f float64) float64 {
	if !(f > 0) { // NaN too
		return 0
	}
	return math.Min(f, 1)
}

// compare orders candidates best first, deterministically.
func compare(a, b *cand, offers []gpuflow.Offer) int {
	if c := cmp.Compare(b.score, a.score); c != 0 {
		return c
	}
	if c := cmp.Compare(b.tie, a.tie); c != 0 {
		return c
	}
	oa, ob := &offers[a.i], &offers[b.i]
	if c := strings.Compare(oa.Provider, ob.Provider); c != 0 {
		return c
	}
	if c := strings.Compare(oa.Region, ob.Region); c != 0 {
		return c
	}
	if c := strings.Compare(oa.GPUType, ob.GPUType); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.GPUCount, ob.GPUCount); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.PricePerHour, ob.PricePerHour); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.SpotPricePerHour, ob.SpotPricePerHour); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.MemoryGB, ob.MemoryGB); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.GPUMemoryGB, ob.GPUMemoryGB); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.VCPUs, ob.VCPUs); c != 0 {
		return c
	}
	if c := cmp.Compare(oa.Available, ob.Available); c != 0 {
		return c
	}
	return cmp.Compare(a.i, b.i)
}
