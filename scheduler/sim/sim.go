// Package sim replays a workload trace against emulated clouds in
// simulated time, to compare scheduling policies. It is an in-memory
// discrete-event simulation: no servers, no clock, no sleeping; the same
// world, trace and policy always give the same result.
//
// The clouds (World) have limited GPU pools shared with other tenants
// whose load wanders, advertise stock that is coarse and stale, fail
// requests for lack of capacity (some at once, some after accepting them),
// take their time to start machines, fail some launches, go down, and
// reclaim spot machines. A policy sees none of that directly: only the
// advertised offers, the outcomes of its own attempts and health checks —
// what gpuflow's scheduler sees in production.
//
// Policies that rank every fitting offer as gpuflow's scheduler does
// (Ranking: the cost, performance, availability and balanced strategies)
// wait the way gpuflow's jobs now do, in a queue with admission passes.
// The sim mirrors, in a few lines of its own, admission.Planner.Plan
// (package admission), the Dispatcher's passes (activities/queue.go,
// worker/queue.go) and the job workflow's admit/provision loop
// (workflows/job.go):
//
//   - Jobs wait in one queue, in submission order (the trace has no
//     priorities: all are equal). An admission pass takes them in that
//     order and admits each on its best-ranked candidate that has room:
//     the advertised stock (Offer.Available, in Offer.Units) less the units
//     of the jobs admitted earlier in the pass and of those whose request
//     the cloud has not answered yet (the workflow leaves the queue when
//     Provision returns, with a machine or an error: at once when the
//     cloud takes the request, at the error when it refuses it); an offer
//     that does not say its stock (-1) always has room. A job with
//     candidates but no room waits and keeps the room left on its
//     candidates: the jobs after it may only use offers it cannot.
//   - An offer on which an attempt failed (no capacity, or a launch that
//     failed or hung) is blocked for that job for two minutes
//     (admission.DefaultBlockTTL); the job goes back into the queue at its
//     submission-time place. A job whose candidates are all blocked waits
//     until the blocks expire.
//   - A pass runs when a job enters the queue (submitted, after a failed
//     attempt, after a preemption), when capacity is freed (a job leaves
//     the queue, a machine ends), and 15 s after the last pass while jobs
//     wait (worker.DefaultQueueRecheck) — triggers at one instant make one
//     pass, and a pass takes no simulated time.
//   - Ranking is the policy's, with its statistics as of the pass; jobs
//     alike (same spec, same blocked offers) are ranked once per pass,
//     which gives what ranking each would.
//
// Per-user limits (none by default) are not modelled. A job that no offer
// fits with nothing blocked (say, every fitting provider is unhealthy)
// keeps waiting in the queue here; admission fails it as unschedulable.
// A launch that fails or hangs blocks its offer and the job tries again,
// as the production workflow does for a machine that fails before it ran
// the job (at most two more launches there; without a bound here).
// Provisioning errors other than no capacity are retried in place in
// production (the activity's retry policy); the sim has none.
//
// The baselines (Cheapest: what SkyPilot and dstack do) model other
// systems and keep the per-job retry loop gpuflow's workflow had before the
// queue: choose an offer, try it; on a failure block that offer for the
// job and choose again at once; when nothing is left, wait (1 s, doubling
// to 30 s, the blocked offers forgotten) and look again; when nothing fits
// with nothing blocked, wait 30 s and look again.
//
// A preempted spot job starts over from scratch. Machines are billed from
// the request to the end (failed launches are free).
//
// Random draws are common to all policies: the other tenants' load is a
// function of the world's seed and the time, a launch's duration and
// failure of the job, the offer and the attempt's rank on that offer, a
// preemption of the job and its run — so policies differ by their choices
// alone.
package sim

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Limits of a run.
const (
	backgroundStep = 10 * time.Minute
	healthEvery    = time.Minute
	queueBackoff   = 30 * time.Second // the baselines' longest wait between looks
	blockTTL       = 2 * time.Minute  // admission.DefaultBlockTTL
	queueRecheck   = 15 * time.Second // worker.DefaultQueueRecheck
	horizon        = 60 * 24 * time.Hour
)

// Result is what a policy achieved on a trace.
type Result struct {
	Policy string
	Jobs   int
	// Done counts finished jobs (the rest were still waiting at the horizon).
	Done int
	// Cost is the billed total in USD.
	Cost float64
	// Waits are the times from submit to the first running machine, sorted.
	Waits []time.Duration
	// Makespan is the time from the trace's start to the last job's end.
	Makespan time.Duration
	// NoCapacity and Failed count failed attempts; Preemptions spot
	// reclaims.
	NoCapacity, Failed, Preemptions int
	// Decisions counts Choose calls, or for Ranking policies rankings
	// (jobs alike ranked once per pass count once).
	Decisions int
	// Passes counts admission passes (Ranking policies only).
	Passes int
	// PerJob is each job's story, by trace order.
	PerJob []JobRecord
	// PerOffer counts attempts per offer key.
	PerOffer map[string]OfferRecord
}

// OfferRecord counts the attempts on one offer.
type OfferRecord struct {
	Attempts, Started, NoCapacity, Failed int
}

// JobRecord is one job's story.
type JobRecord struct {
	Wait     time.Duration // submit to first running machine (-1: never)
	Attempts int           // before the first running machine
	Provider string        // of the first running machine
	Cost     float64
	// FailedFor and QueuedFor split the wait before the first running
	// machine: time in failed attempts, time waiting to look again (for
	// Ranking policies: time in the queue).
	FailedFor, QueuedFor time.Duration
}

// FailedAttempts is every attempt that did not start a machine.
func (r Result) FailedAttempts() int { return r.NoCapacity + r.Failed }

// WaitPercentile returns the p-th percentile (0..100) of the waits,
// nearest rank.
func (r Result) WaitPercentile(p float64) time.Duration {
	if len(r.Waits) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(r.Waits)))) - 1
	return r.Waits[min(max(k, 0), len(r.Waits)-1)]
}

type evKind uint8

const (
	evArrive evKind = iota
	evAttemptEnd
	evRunEnd
	evRefresh
	evBackground
	evHealth
	evPass    // an admission pass triggered now
	evRecheck // the queue's recheck; n: the pass it follows
)

type event struct {
	at   time.Duration
	seq  uint64
	kind evKind
	n    int // job index, or cloud index
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type pool struct {
	Offer
	cloud  int
	key    string
	ours   int     // GPUs held by the simulated jobs
	bg     float64 // fraction held by other tenants
	bgRand *rand.Rand
}

// advert is the pool's identity as its offers show it.
func (p *pool) advert() gpuflow.Offer {
	return gpuflow.Offer{Provider: p.Cloud, GPUType: p.GPU, GPUCount: p.MaxGPUs, Region: p.Region}
}

func (p *pool) free() int {
	return max(0, p.GPUs-p.ours-int(math.Round(p.bg*float64(p.GPUs))))
}

type jobState struct {
	Job
	blocked  map[string]string
	since    map[string]time.Duration // when each offer was blocked (Ranking policies)
	sig      string                   // the blocked offers' keys, sorted; "" when stale
	queuedAt time.Duration            // when it last entered the queue
	units    int                      // of the stock its attempt holds
	backoff  time.Duration
	tries    map[int]int // attempts per pool, for common random numbers
	runs     int
	started  bool
	done     bool
	pool     int           // of the current attempt or run
	reqAt    time.Duration // when the current machine was requested
	runAt    time.Duration // when it started running
	outcome  Outcome       // of the current attempt
	reserved bool
}

type sim struct {
	world  World
	jobs   []jobState
	pools  []pool
	byKey  map[string]int
	policy Policy
	q      events
	seq    uint64
	now    time.Duration

	adverts [][]gpuflow.Offer // per cloud, as last refreshed
	view    []gpuflow.Offer
	version uint64
	req     Request

	res Result

	// The queue, for Ranking policies.
	ranking  Ranking
	waiting  []int  // job indices in admission order
	held     []int  // per pool: units held by admitted jobs until the cloud answers
	room     []int  // per pool, during a pass
	known    []bool // per pool, during a pass: the stock is advertised
	viewPool []int  // per offer of view: its pool
	pending  bool   // a pass is due now
	passes   int    // passes so far (a recheck after a later pass is void)
	memo     map[rankKey][]int
	keys     []string
	arena    []int
}

// Run replays jobs in world with policy.
func Run(world World, jobs []Job, policy Policy) Result {
	s := &sim{world: world, policy: policy, byKey: map[string]int{}, adverts: make([][]gpuflow.Offer, len(world.Clouds))}
	s.res = Result{Policy: policy.Name(), Jobs: len(jobs)}
	s.ranking, _ = policy.(Ranking)
	for i, o := range world.Offers {
		ci := slices.IndexFunc(world.Clouds, func(c Cloud) bool { return c.Name == o.Cloud })
		if ci < 0 {
			panic(fmt.Sprintf("sim: offer of unknown cloud %q", o.Cloud))
		}
		c := &world.Clouds[ci]
		p := pool{Offer: o, cloud: ci, bgRand: rand.New(rand.NewPCG(world.Seed, uint64(i)))}
		p.bg = c.BackgroundMean
		p.key = gpuflow.Offer{Provider: o.Cloud, GPUType: o.GPU, Region: o.Region}.Key()
		s.byKey[p.key] = i
		s.pools = append(s.pools, p)
	}
	s.held, s.room, s.known = make([]int, len(s.pools)), make([]int, len(s.pools)), make([]bool, len(s.pools))
	s.memo = map[rankKey][]int{}
	s.res.PerJob = make([]JobRecord, len(jobs))
	s.res.PerOffer = map[string]OfferRecord{}
	for i, j := range jobs {
		s.res.PerJob[i].Wait = -1
		s.jobs = append(s.jobs, jobState{Job: j, blocked: map[string]string{}, since: map[string]time.Duration{},
			backoff: time.Second, tries: map[int]int{}})
		s.push(j.Submit, evArrive, i)
	}
	for ci := range world.Clouds {
		s.refresh(ci)
		s.push(world.Clouds[ci].Refresh, evRefresh, ci)
	}
	s.health()
	s.push(backgroundStep, evBackground, 0)
	s.push(healthEvery, evHealth, 0)
	for s.q.Len() > 0 && s.res.Done < len(s.jobs) {
		e := heap.Pop(&s.q).(event)
		if e.at > horizon {
			break
		}
		s.now = e.at
		switch e.kind {
		case evArrive:
			if s.ranking != nil {
				s.enqueue(e.n)
			} else {
				s.schedule(e.n)
			}
		case evAttemptEnd:
			s.attemptEnd(e.n)
		case evRunEnd:
			s.runEnd(e.n)
		case evRefresh:
			s.refresh(e.n)
			s.push(s.now+world.Clouds[e.n].Refresh, evRefresh, e.n)
		case evBackground:
			s.background()
			s.push(s.now+backgroundStep, evBackground, 0)
		case evHealth:
			s.health()
			s.push(s.now+healthEvery, evHealth, 0)
		case evPass:
			s.pass()
		case evRecheck:
			if e.n == s.passes {
				s.pass()
			}
		}
	}
	slices.Sort(s.res.Waits)
	return s.res
}

func (s *sim) push(at time.Duration, k evKind, n int) {
	s.seq++
	heap.Push(&s.q, event{at: at, seq: s.seq, kind: k, n: n})
}

func (s *sim) at(d time.Duration) time.Time { return s.world.Start.Add(d) }

// rng returns a generator for one draw keyed by the given numbers, the same
// for every policy.
func (s *sim) rng(keys ...uint64) *rand.Rand {
	a, b := s.world.Seed, uint64(0x9e3779b97f4a7c15)
	for _, k := range keys {
		a = splitmix(a ^ k)
		b = splitmix(b + a)
	}
	return rand.New(rand.NewPCG(a, b))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// background moves the other tenants' load one step.
func (s *sim) background() {
	for i := range s.pools {
		p := &s.pools[i]
		c := &s.world.Clouds[p.cloud]
		p.bg += 0.2*(c.BackgroundMean-p.bg) + c.BackgroundVol*p.bgRand.NormFloat64()
		p.bg = min(max(p.bg, 0.05), 1)
	}
}

// refresh re-reads cloud ci's advertised offers. While the cloud is down
// its listing fails and the previous one stays.
func (s *sim) refresh(ci int) {
	c := &s.world.Clouds[ci]
	if c.down(s.now) && s.adverts[ci] != nil {
		return
	}
	var ads []gpuflow.Offer
	for i := range s.pools {
		p := &s.pools[i]
		if p.cloud != ci {
			continue
		}
		// A pool's jobs take (and pay for) the GPUs they ask, up to
		// MaxGPUs (see finish): its offers are divisible.
		ads = append(ads, gpuflow.Offer{
			Provider: p.Cloud, GPUType: p.GPU, GPUCount: p.MaxGPUs, MemoryGB: float64(64 * p.MaxGPUs),
			GPUMemoryGB: p.GPUMemoryGB, VCPUs: 16 * p.MaxGPUs, PricePerHour: p.Price, SpotPricePerHour: p.Spot,
			Region: p.Region, Available: advertise(c.Stock, p.free()), Divisible: true,
		})
	}
	s.adverts[ci] = ads
	view := make([]gpuflow.Offer, 0, len(s.view)+len(ads))
	for _, a := range s.adverts {
		view = append(view, a...)
	}
	s.view = view
	s.viewPool = s.viewPool[:0]
	for _, o := range view {
		s.viewPool = append(s.viewPool, s.byKey[o.Key()])
	}
	s.version++
}

// advertise is the stock a cloud shows for free GPUs.
func advertise(r StockReport, free int) int {
	switch r {
	case StockBuckets:
		switch {
		case free == 0:
			return 0
		case free < 4:
			return 1
		case free < 16:
			return 4
		}
		return 16
	case StockSoldOut:
		if free == 0 {
			return 0
		}
	}
	return -1
}

func (s *sim) health() {
	for ci := range s.world.Clouds {
		c := &s.world.Clouds[ci]
		s.policy.Health(c.Name, !c.down(s.now), s.at(s.now))
	}
}

// schedule asks a baseline policy for an offer for job n and tries it, or
// waits.
func (s *sim) schedule(n int) {
	j := &s.jobs[n]
	s.req = Request{Spec: j.Spec(), Offers: s.view, Version: s.version, Blocked: j.blocked, Now: s.at(s.now)}
	s.res.Decisions++
	o, ok := s.policy.Choose(&s.req)
	pi, known := s.byKey[o.Key()]
	if !ok || !known {
		wait := queueBackoff
		if len(j.blocked) > 0 {
			clear(j.blocked)
			wait = j.backoff
			j.backoff = min(2*j.backoff, queueBackoff)
		}
		if !j.started {
			s.res.PerJob[n].QueuedFor += wait
		}
		s.push(s.now+wait, evArrive, n)
		return
	}
	s.try(n, pi)
}

// try requests a machine for job n on pool pi.
func (s *sim) try(n, pi int) {
	j := &s.jobs[n]
	p := &s.pools[pi]
	c := &s.world.Clouds[p.cloud]
	try := j.tries[pi]
	j.tries[pi]++
	r := s.rng(uint64(j.ID), uint64(pi), uint64(try))
	j.pool, j.reqAt, j.reserved = pi, s.now, false
	if !j.started {
		s.res.PerJob[n].Attempts++
	}
	var took time.Duration
	switch {
	case c.down(s.now):
		j.outcome, took = Failed, c.OutageError
	case p.free() < j.GPUCount || p.MaxGPUs < j.GPUCount:
		j.outcome = NoCapacity
		took = c.CapacityError + time.Duration(r.Float64()*float64(c.CapacityJitter))
	default:
		p.ours += j.GPUCount
		j.reserved = true
		took = time.Duration(float64(c.StartMedian) * math.Exp(c.StartSigma*r.NormFloat64())).Round(time.Second)
		j.outcome = Started
		failRate := c.FailRate
		if p.FailRate > 0 {
			failRate = p.FailRate
		}
		if r.Float64() < failRate {
			j.outcome = Failed
			if c.StuckFor > 0 {
				took = c.StuckFor
			}
		}
	}
	if j.reserved && s.ranking != nil {
		s.release(n) // the machine exists: the job leaves the queue
	}
	s.push(s.now+took, evAttemptEnd, n)
}

// attemptEnd handles the end of job n's attempt.
func (s *sim) attemptEnd(n int) {
	j := &s.jobs[n]
	p := &s.pools[j.pool]
	s.policy.Observe(p.advert(), j.outcome, s.now-j.reqAt, s.at(s.now))
	rec := s.res.PerOffer[p.key]
	rec.Attempts++
	switch j.outcome {
	case Started:
		rec.Started++
	case NoCapacity:
		rec.NoCapacity++
	default:
		rec.Failed++
	}
	s.res.PerOffer[p.key] = rec
	if s.ranking != nil { // refused: the job leaves the queue
		s.release(n)
	}
	if j.outcome != Started {
		if !j.started {
			s.res.PerJob[n].FailedFor += s.now - j.reqAt
		}
		if j.reserved {
			p.ours -= j.GPUCount
		}
		if j.outcome == NoCapacity {
			s.res.NoCapacity++
			j.blocked[p.key] = "no capacity"
		} else {
			s.res.Failed++
			j.blocked[p.key] = "provision failed"
		}
		if s.ranking != nil {
			j.since[p.key], j.sig = s.now, ""
			s.enqueue(n)
			return
		}
		s.schedule(n)
		return
	}
	if !j.started {
		j.started = true
		s.res.Waits = append(s.res.Waits, s.now-j.Submit)
		s.res.PerJob[n].Wait, s.res.PerJob[n].Provider = s.now-j.Submit, p.Cloud
	}
	j.runAt = s.now
	run := time.Duration(float64(j.Duration) / p.Speed)
	end, outcome := s.now+run, SpotFinished
	if j.Spot {
		c := &s.world.Clouds[p.cloud]
		r := s.rng(uint64(j.ID), 1<<32+uint64(j.runs))
		if pre := time.Duration(r.ExpFloat64() / c.PreemptPerHour * float64(time.Hour)); pre < run {
			end, outcome = s.now+pre, Preempted
		}
	}
	j.runs++
	j.outcome = outcome
	s.push(end, evRunEnd, n)
}

// runEnd handles job n's machine ending: the job finished or, spot, was
// preempted and starts over.
func (s *sim) runEnd(n int) {
	j := &s.jobs[n]
	p := &s.pools[j.pool]
	p.ours -= j.GPUCount
	price := p.Price
	if j.Spot {
		price = p.Spot
		s.policy.Observe(p.advert(), j.outcome, s.now-j.runAt, s.at(s.now))
	}
	cost := price * float64(j.GPUCount) * (s.now - j.reqAt).Hours()
	s.res.Cost += cost
	s.res.PerJob[n].Cost += cost
	if s.ranking != nil {
		s.wake() // capacity freed
	}
	if j.outcome == Preempted {
		s.res.Preemptions++
		if s.ranking != nil { // back in the queue; blocks expire on their own
			s.enqueue(n)
			return
		}
		clear(j.blocked)
		s.schedule(n)
		return
	}
	j.done = true
	s.res.Done++
	s.res.Makespan = max(s.res.Makespan, s.now)
}

// Ranking is a policy that ranks every fitting offer, as gpuflow's
// scheduler does. Run queues its jobs and admits them in passes, the way
// gpuflow does (see the package doc); Choose is not called.
type Ranking interface {
	Policy
	// Rank appends to dst the positions in req.Offers of the offers that
	// fit req's job and are not blocked for it, best first.
	Rank(req *Request, dst []int) []int
}

// rankKey is what ranking reads of a job: its spec (admission's rankKey)
// and the offers blocked for it.
type rankKey struct {
	specKey
	blocked string
}

// specKey is what ranking reads of a job's spec.
type specKey struct {
	gpuType         string
	gpuCount, vcpus int
	memoryGB        float64
	estimate        time.Duration
	spot            bool
}

// enqueue puts job n in the queue at its place (submission order) and
// triggers a pass.
func (s *sim) enqueue(n int) {
	j := &s.jobs[n]
	j.queuedAt = s.now
	at, _ := slices.BinarySearchFunc(s.waiting, n, func(a, b int) int {
		ja, jb := &s.jobs[a], &s.jobs[b]
		return cmp.Or(cmp.Compare(ja.Submit, jb.Submit), cmp.Compare(ja.ID, jb.ID), cmp.Compare(a, b))
	})
	s.waiting = slices.Insert(s.waiting, at, n)
	s.wake()
}

// release frees the room job n held since its admission, if any, and
// triggers a pass: the job workflow leaves the queue when the provider has
// answered its request, with a machine or an error (LeaveQueue).
func (s *sim) release(n int) {
	if j := &s.jobs[n]; j.units > 0 {
		s.held[j.pool] -= j.units
		j.units = 0
		s.wake()
	}
}

// wake triggers an admission pass now; triggers at one instant make one.
func (s *sim) wake() {
	if !s.pending {
		s.pending = true
		s.push(s.now, evPass, 0)
	}
}

// pass is an admission pass (admission.Planner.Plan without per-user
// limits): it admits the waiting jobs that have room, in order, and starts
// their attempts.
func (s *sim) pass() {
	s.pending = false
	s.passes++
	s.res.Passes++
	for pi := range s.pools {
		s.known[pi] = false
	}
	for vi := range s.view {
		if a := s.view[vi].Available; a >= 0 {
			pi := s.viewPool[vi]
			s.room[pi], s.known[pi] = a-s.held[pi], true
		}
	}
	clear(s.memo)
	s.arena = s.arena[:0]
	kept := s.waiting[:0]
	for _, n := range s.waiting {
		j := &s.jobs[n]
		for k, at := range j.since {
			if s.now-at >= blockTTL {
				delete(j.since, k)
				delete(j.blocked, k)
				j.sig = ""
			}
		}
		if j.sig == "" && len(j.blocked) > 0 {
			s.keys = s.keys[:0]
			for k := range j.blocked {
				s.keys = append(s.keys, k)
			}
			slices.Sort(s.keys)
			j.sig = strings.Join(s.keys, "\n")
		}
		// Jobs alike rank alike: each kind of job (and set of blocked
		// offers) is ranked once per pass.
		key := rankKey{specKey{j.GPUType, j.GPUCount, j.VCPUs, j.MemoryGB, j.Estimate, j.Spot}, j.sig}
		cands, hit := s.memo[key]
		if !hit {
			s.req = Request{Spec: j.Spec(), Offers: s.view, Version: s.version, Blocked: j.blocked, Now: s.at(s.now)}
			s.res.Decisions++
			from := len(s.arena)
			s.arena = s.ranking.Rank(&s.req, s.arena)
			cands = s.arena[from:len(s.arena):len(s.arena)]
			s.memo[key] = cands
		}
		chosen := -1
		for _, vi := range cands {
			if pi := s.viewPool[vi]; !s.known[pi] || s.room[pi] >= s.units(vi, j) {
				chosen = vi
				break
			}
		}
		if chosen < 0 { // nothing fits, all blocked, or no room: wait, keeping the room left
			for _, vi := range cands {
				if pi := s.viewPool[vi]; s.known[pi] {
					s.room[pi] = 0
				}
			}
			kept = append(kept, n)
			continue
		}
		pi := s.viewPool[chosen]
		j.units = s.units(chosen, j)
		s.room[pi] -= j.units
		s.held[pi] += j.units
		if !j.started {
			s.res.PerJob[n].QueuedFor += s.now - j.queuedAt
		}
		s.try(n, pi)
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
	if len(s.waiting) > 0 {
		s.push(s.now+queueRecheck, evRecheck, s.passes)
	}
}

// units is how much of view offer vi's stock job j takes.
func (s *sim) units(vi int, j *jobState) int {
	return s.view[vi].Units(gpuflow.JobSpec{GPUCount: j.GPUCount})
}
