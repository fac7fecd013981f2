// Package admission decides which queued jobs start now, and on which
// offer. Like the scheduler it does no I/O and reads no clock: an admission
// pass reads the queue, the owners' usage, the offers and the statistics,
// calls Plan, and writes the result.
//
// # Order
//
// Waiting jobs are taken higher priority first, then in submission order
// (then by job id). Each is ranked by the scheduler over every offer
// (statistics included); it is admitted on the best candidate with room
// left, and that room is taken from the jobs after it.
//
// Room: an offer has Available units (machines; GPUs for pooled offers,
// gpuflow.Offer.PerGPU) less what jobs admitted but not yet provisioned
// hold and what this pass has admitted. An offer that does not say its
// stock (-1) always has room: a failed attempt blocks it for the job.
//
// A job that has candidates but no room on any of them waits, and keeps
// the room left on its candidates for itself: a later (or lower priority)
// job may start only on offers the waiting job cannot use, so small jobs
// never starve a big one that waits for a whole machine.
//
// # Limits
//
// A job whose owner already runs Limits.MaxRunning jobs, or whose best
// candidate with room would bring the owner's spend per hour over
// Limits.MaxSpendPerHour, waits with that reason; the owner's later jobs
// wait behind it, so an owner's jobs still start in order.
//
// # Blocks
//
// An offer that failed for a job (no capacity after all, a failed launch)
// is blocked for that job for Config.BlockTTL, or until the block's Until
// (the job backs off an offer that keeps failing); a job whose only
// candidates are blocked waits until the blocks expire. A job that no
// offer fits at all, with nothing blocked, is unschedulable.
package admission

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
)

// DefaultBlockTTL is how long a failed offer stays blocked for a job.
const DefaultBlockTTL = 2 * time.Minute

// maxAlternatives is how many runners-up a choice records.
const maxAlternatives = 5

// Config tunes admission.
type Config struct {
	Scheduler scheduler.Config
	Limits    gpuflow.Limits
	// BlockTTL: DefaultBlockTTL when zero.
	BlockTTL time.Duration
}

// Input is everything one pass depends on.
type Input struct {
	Now     time.Time
	Entries []gpuflow.QueueEntry
	// Usage is by owner id, admitted jobs included.
	Usage  map[string]gpuflow.Usage
	Offers []gpuflow.Offer
	// Refused are providers that offered nothing this pass, with the reason.
	Refused map[string]string
	// Check returns the providers that cannot serve a spec, with the
	// reason (gpuflow.Providers.CheckSpec); nil: none.
	Check        func(gpuflow.JobSpec) map[string]string
	Stats        map[string]scheduler.Snapshot
	OfferStats   map[string]scheduler.Snapshot
	Unconfigured []string
}

// Choice is an admitted job's offer and the decision behind it.
type Choice struct {
	Best         scheduler.Candidate   `json:"best"`
	Strategy     string                `json:"strategy"`
	Alternatives []scheduler.Candidate `json:"alternatives,omitempty"`
	// StockKey and Units are the room the job holds until provisioned.
	StockKey string `json:"stock_key"`
	Units    int    `json:"units"`
}

// Result is a pass's outcome, by job id.
type Result struct {
	Admitted map[string]Choice
	// Waiting maps each job left waiting to why.
	Waiting map[string]string
	// Unschedulable maps jobs no offer fits to the reasons by provider.
	Unschedulable map[string]map[string][]string
}

// StockKey identifies the stock an offer draws on: offers of one GPU type
// and region at a provider come in sizes, each with its own stock.
func StockKey(o gpuflow.Offer) string {
	return fmt.Sprintf("%s/%d", o.Key(), o.GPUCount)
}

// ReasonKind is the kind of a waiting reason (its words before the first
// colon: "waiting for capacity", "owner limit", ...), which changes far less
// often than its details.
func ReasonKind(reason string) string {
	kind, _, _ := strings.Cut(reason, ":")
	return kind
}

// unavailable names, sorted, the providers spec allows that could not list
// their offers this pass ("" when none).
func unavailable(spec *gpuflow.JobSpec, refused map[string]string) string {
	var down []string
	for p, why := range refused {
		if spec.AllowsProvider(p) && (strings.HasPrefix(why, gpuflow.OffersUnavailable) || why == gpuflow.NoOffers) {
			down = append(down, p)
		}
	}
	slices.Sort(down)
	return strings.Join(down, ", ")
}

// ranked is one kind of job's fitting offers, best first, or the reasons
// nothing fits.
type ranked struct {
	cands   []scheduler.Candidate
	reasons map[string][]string
}

// specKey is what ranking and the providers' checks read of a spec.
type specKey struct {
	gpuType, strategy, provider, providers, image, command, env string
	gpuCount, vcpus, diskGB, estimated                          int
	memoryGB, maxPrice                                          float64
	spot, hasMaxPrice                                           bool
}

func rankKey(s *gpuflow.JobSpec) specKey {
	k := specKey{gpuType: s.GPUType, strategy: s.Strategy, provider: s.Provider, providers: strings.Join(s.Providers, ","),
		image: s.Image, gpuCount: s.GPUCount, vcpus: s.VCPUs, diskGB: s.DiskGB, estimated: s.EstimatedDuration,
		memoryGB: s.MemoryGB, spot: s.Spot}
	// Providers' checks may read the whole command and the environment
	// (the local provider resolves the command with the job's PATH).
	k.command = strings.Join(s.Command, "\x00")
	if len(s.Env) > 0 {
		env := make([]string, 0, len(s.Env))
		for name, v := range s.Env {
			env = append(env, name+"="+v)
		}
		slices.Sort(env)
		k.env = strings.Join(env, "\x00")
	}
	if s.MaxPricePerHour != nil {
		k.maxPrice, k.hasMaxPrice = *s.MaxPricePerHour, true
	}
	return k
}

// rank ranks the offers for spec; the candidates are a copy the next
// ranking does not overwrite.
func (p *Planner) rank(spec *gpuflow.JobSpec, blocked map[string]string, in *Input) ranked {
	p.ranker.Rank(scheduler.Input{Spec: *spec, Offers: &p.index, Blocked: blocked,
		Stats: in.Stats, OfferStats: in.OfferStats, Unconfigured: in.Unconfigured}, &p.d)
	cands := slices.Clone(p.d.Candidates)
	if in.Check != nil {
		if refused := in.Check(*spec); len(refused) > 0 {
			cands = slices.DeleteFunc(cands, func(c scheduler.Candidate) bool {
				_, bad := refused[c.Offer.Provider]
				return bad
			})
			if len(cands) == 0 {
				p.d.AddRefused(refused)
			}
		}
	}
	if len(cands) > 0 {
		return ranked{cands: cands}
	}
	p.d.AddRefused(in.Refused)
	return ranked{reasons: p.d.ReasonsByProvider()}
}

// Planner runs passes, reusing its memory. Not safe for concurrent use.
type Planner struct {
	Config Config

	ranker scheduler.Ranker
	index  scheduler.Index
	d      scheduler.Decision
}

// Order sorts entries into admission order: priority, submission, id.
func Order(entries []gpuflow.QueueEntry) {
	slices.SortStableFunc(entries, func(a, b gpuflow.QueueEntry) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		if c := a.SubmittedAt.Compare(b.SubmittedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.JobID, b.JobID)
	})
}

// Plan decides, for every waiting entry, whether it starts now.
func (p *Planner) Plan(in Input) Result {
	res := Result{Admitted: map[string]Choice{}, Waiting: map[string]string{}, Unschedulable: map[string]map[string][]string{}}
	p.ranker.Config = p.Config.Scheduler
	p.index.Reset(in.Offers)
	defer p.index.Reset(nil)
	ttl := cmp.Or(p.Config.BlockTTL, DefaultBlockTTL)
	lim := p.Config.Limits

	room := map[string]int{}               // stock key → units left; absent: unknown (unlimited)
	keys := make([]string, len(in.Offers)) // by offer index (Candidate.Index)
	for i, o := range in.Offers {
		keys[i] = StockKey(o)
		if o.Available >= 0 {
			room[keys[i]] = o.Available
		}
	}
	usage := map[string]gpuflow.Usage{}
	for k, u := range in.Usage {
		usage[k] = u
	}
	entries := slices.Clone(in.Entries)
	Order(entries)
	for _, e := range entries { // admitted, not yet provisioned: their room is held
		if e.Admitted && e.OfferKey != "" {
			if n, ok := room[e.OfferKey]; ok {
				room[e.OfferKey] = n - max(e.Units, 1)
			}
		}
	}
	held := map[string]string{} // owner → the job their later jobs wait behind
	memo := map[specKey]ranked{}
	for _, e := range entries {
		if e.Admitted {
			continue
		}
		if first, ok := held[e.OwnerID]; ok {
			res.Waiting[e.JobID] = "waiting behind the owner's earlier job: " + first
			continue
		}
		blocked := map[string]string{}
		var until time.Time // when the first block ends
		for k, b := range e.Blocked {
			if end := b.Expiry(ttl); in.Now.Before(end) {
				blocked[k] = b.Reason
				if until.IsZero() || end.Before(until) {
					until = end
				}
			}
		}
		// Jobs alike rank alike: a pass over many waiting jobs ranks each
		// kind of job once (jobs with blocked offers each on their own).
		key, memoOK := rankKey(&e.Spec), len(blocked) == 0
		r, hit := memo[key]
		if !hit || !memoOK {
			r = p.rank(&e.Spec, blocked, &in)
			if memoOK {
				memo[key] = r
			}
		}
		cands := r.cands
		if len(cands) == 0 {
			if len(blocked) > 0 {
				// The time, not a countdown: the reason stays the same
				// from pass to pass (a new reason is a new event).
				res.Waiting[e.JobID] = "offers blocked: every fitting offer failed for this job lately; trying again after " +
					until.UTC().Format(time.RFC3339)
				continue
			}
			if down := unavailable(&e.Spec, in.Refused); down != "" {
				// A provider that could not list its offers may be back soon.
				res.Waiting[e.JobID] = "provider unavailable: " + down
				continue
			}
			res.Unschedulable[e.JobID] = r.reasons
			continue
		}
		u := usage[e.OwnerID]
		if lim.MaxRunning > 0 && u.Running >= lim.MaxRunning {
			res.Waiting[e.JobID] = fmt.Sprintf("owner limit: %d of %d jobs running", u.Running, lim.MaxRunning)
			held[e.OwnerID] = e.JobID
			continue
		}
		chosen, overSpend := -1, -1
		for i, c := range cands {
			n, known := room[keys[c.Index]]
			if known && n < c.Offer.Units(e.Spec) {
				continue
			}
			if lim.MaxSpendPerHour > 0 && u.SpendPerHour+c.PricePerHour > lim.MaxSpendPerHour+1e-9 {
				if overSpend < 0 {
					overSpend = i
				}
				continue
			}
			chosen = i
			break
		}
		if chosen < 0 {
			if overSpend >= 0 {
				res.Waiting[e.JobID] = fmt.Sprintf("owner spend limit: $%.2f/h running, $%.2f/h more would pass $%.2f/h",
					u.SpendPerHour, cands[overSpend].PricePerHour, lim.MaxSpendPerHour)
				held[e.OwnerID] = e.JobID
				continue
			}
			best := cands[0].Offer
			res.Waiting[e.JobID] = fmt.Sprintf("waiting for capacity: every fitting offer is full (%d; best: %s %s in %s)",
				len(cands), best.Provider, best.GPUType, best.Region)
			for _, c := range cands { // keep what is left for this job
				k := keys[c.Index]
				if _, known := room[k]; known {
					room[k] = 0
				}
			}
			continue
		}
		c := cands[chosen]
		c.Breakdown = c.Criteria.Map()
		k := keys[c.Index]
		units := c.Offer.Units(e.Spec)
		if n, known := room[k]; known {
			room[k] = n - units
		}
		u.Running++
		u.SpendPerHour += c.PricePerHour
		usage[e.OwnerID] = u
		alts := make([]scheduler.Candidate, 0, maxAlternatives)
		for i, a := range cands {
			if i != chosen && len(alts) < maxAlternatives {
				alts = append(alts, a)
			}
		}
		res.Admitted[e.JobID] = Choice{Best: c, Strategy: e.Spec.Strategy, Alternatives: alts, StockKey: k, Units: units}
	}
	return res
}
