package scheduler

import (
	"math"
	"sync"
	"time"
)

// DefaultHalfLife is how long it takes an observation to weigh half as much
// as a new one when Stats.HalfLife is zero. An hour keeps a morning's
// capacity errors from haunting the afternoon, yet remembers a bad provider
// for the next few dozen jobs.
const DefaultHalfLife = time.Hour

// DefaultOfferHalfLife is the half-life suggested for per-offer records
// (Input.OfferStats): an offer's stock comes and goes within minutes.
const DefaultOfferHalfLife = 15 * time.Minute

// DefaultReliabilityHalfLife is the half-life of the reliability record
// (Stats.ReliabilityHalfLife) when Stats.ReliabilityHalfLife is zero. Six
// hours: a pool that hangs one launch in four is seen after a dozen
// launches, which a pool used a few times an hour gives in a few hours,
// and still remembered when it is next used. (The simulation in
// scheduler/sim liked 2 h less and 24 h about as well.)
const DefaultReliabilityHalfLife = 6 * time.Hour

// Outcome is what a provisioning attempt, or a spot machine's run, came to.
type Outcome uint8

// Outcomes, as reported to Stats.Observe.
const (
	// Started: the machine runs; the duration is the time from the
	// provisioning request until then.
	Started Outcome = iota + 1
	// NoCapacity: the provider had no capacity; the duration is the time
	// the attempt took to fail (late for providers that accept the request
	// and fail the launch).
	NoCapacity
	// Failed: any other provisioning failure; duration as for NoCapacity.
	Failed
	// Preempted: the provider reclaimed a spot machine after it ran for
	// the duration.
	Preempted
	// SpotFinished: a spot machine ran for the duration and was released
	// by gpuflow (the job ended). With Preempted it gives the provider's
	// preemption rate per spot hour.
	SpotFinished
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Started:
		return "started"
	case NoCapacity:
		return "no_capacity"
	case Failed:
		return "failed"
	case Preempted:
		return "preempted"
	case SpotFinished:
		return "spot_finished"
	}
	return "unknown"
}

// Stats is one provider's (or one offer's) record: provisioning outcomes,
// times and spot preemptions, each observation's weight halving every half-life. It is a
// plain value: no clock (every call passes the time) and no locking (see
// Tracker for a shared one).
//
// The record has two memories. Whether attempts find capacity decays with
// HalfLife: stock comes and goes. How the provider behaves once it has the
// capacity — how often a launch fails anyway (a pod that hangs while
// starting), how long starting and failing take, how often spot machines
// are reclaimed — decays with ReliabilityHalfLife: a flaky datacenter stays
// flaky, and such events are rare, so a short memory would forget them
// between two of them.
type Stats struct {
	// HalfLife of an observation's weight; DefaultHalfLife when zero.
	HalfLife time.Duration
	// ReliabilityHalfLife is the half-life of the reliability record:
	// launches (attempts that found capacity, started or failed), their
	// times, the times of failures, preemptions and spot hours.
	// DefaultReliabilityHalfLife when zero, and never shorter than
	// HalfLife.
	ReliabilityHalfLife time.Duration

	at         time.Time // the time the sums below are decayed to
	started    float64
	noCapacity float64
	failed     float64
	noCapSecs  float64 // sum of the capacity errors' durations
	// The reliability record, decayed with the reliability half-life.
	lStarted    float64
	lFailed     float64
	startSecs   float64 // sum of the started attempts' durations
	startSq     float64 // sum of their squares
	failSecs    float64 // sum of the other failures' durations
	preemptions float64
	spotHours   float64

	health   bool // last health report
	healthAt time.Time
	healthOK bool // a health report exists
}

// Snapshot is a provider's decayed record at one time, as Rank reads it.
// Counts are decayed weights: an observation one half-life old counts 0.5.
type Snapshot struct {
	// Started, NoCapacity and Failed count attempts by outcome, decayed
	// with Stats.HalfLife: the share that found capacity.
	Started    float64 `json:"started"`
	NoCapacity float64 `json:"no_capacity"`
	Failed     float64 `json:"failed"`
	// Launches counts the attempts that found capacity (Started or
	// Failed) and LaunchFailures those that failed, both decayed with
	// Stats.ReliabilityHalfLife: the chance that a launch fails.
	Launches       float64 `json:"launches"`
	LaunchFailures float64 `json:"launch_failures"`
	// MeanStart is the weighted mean time to a running machine, and
	// StartStdDev its standard deviation (0: none yet), over the
	// reliability record.
	MeanStart   time.Duration `json:"mean_start"`
	StartStdDev time.Duration `json:"start_stddev"`
	// MeanNoCapacity is the weighted mean time a capacity error took (over
	// the capacity record), and MeanFail the time any other failure took
	// (over the reliability record); 0: none yet.
	MeanNoCapacity time.Duration `json:"mean_no_capacity"`
	MeanFail       time.Duration `json:"mean_fail"`
	// Preemptions and SpotHours give the spot preemption rate, over the
	// reliability record.
	Preemptions float64 `json:"preemptions"`
	SpotHours   float64 `json:"spot_hours"`
	// Unhealthy is true when the last health check failed and no attempt
	// has started a machine since.
	Unhealthy bool `json:"unhealthy"`
}

// Attempts is the decayed number of provisioning attempts.
func (s Snapshot) Attempts() float64 { return s.Started + s.NoCapacity + s.Failed }

func (s *Stats) halfLife() time.Duration {
	if s.HalfLife > 0 {
		return s.HalfLife
	}
	return DefaultHalfLife
}

func (s *Stats) reliabilityHalfLife() time.Duration {
	l := s.ReliabilityHalfLife
	if l <= 0 {
		l = DefaultReliabilityHalfLife
	}
	return max(l, s.halfLife())
}

// decay returns the weight, at time to, of an observation made at from.
func decay(from, to time.Time, halfLife time.Duration) float64 {
	dt := to.Sub(from)
	if dt <= 0 {
		return 1
	}
	return math.Exp2(-float64(dt) / float64(halfLife))
}

// advance decays the sums to at when at is later than the last update and
// returns the weights of an observation made at at, in the capacity and
// in the reliability record (below 1 when at is earlier: observations may
// arrive out of order).
func (s *Stats) advance(at time.Time) (w, wl float64) {
	if s.at.IsZero() {
		s.at = at
		return 1, 1
	}
	if !at.After(s.at) {
		return decay(at, s.at, s.halfLife()), decay(at, s.at, s.reliabilityHalfLife())
	}
	f, fl := decay(s.at, at, s.halfLife()), decay(s.at, at, s.reliabilityHalfLife())
	s.started *= f
	s.noCapacity *= f
	s.failed *= f
	s.noCapSecs *= f
	s.lStarted *= fl
	s.lFailed *= fl
	s.startSecs *= fl
	s.startSq *= fl
	s.failSecs *= fl
	s.preemptions *= fl
	s.spotHours *= fl
	s.at = at
	return 1, 1
}

// Observe records an outcome that took d and ended at at.
func (s *Stats) Observe(o Outcome, d time.Duration, at time.Time) {
	d = max(d, 0)
	w, wl := s.advance(at)
	switch o {
	case Started:
		s.started += w
		s.lStarted += wl
		s.startSecs += wl * d.Seconds()
		s.startSq += wl * d.Seconds() * d.Seconds()
		if !s.healthAt.After(at) {
			s.health, s.healthAt, s.healthOK = true, at, true
		}
	case NoCapacity:
		s.noCapacity += w
		s.noCapSecs += w * d.Seconds()
	case Failed:
		s.failed += w
		s.lFailed += wl
		s.failSecs += wl * d.Seconds()
	case Preempted:
		s.preemptions += wl
		s.spotHours += wl * d.Hours()
	case SpotFinished:
		s.spotHours += wl * d.Hours()
	}
}

// SetHealth records a health check's result at at. Reports older than the
// last one are ignored.
func (s *Stats) SetHealth(healthy bool, at time.Time) {
	if s.healthOK && at.Before(s.healthAt) {
		return
	}
	s.health, s.healthAt, s.healthOK = healthy, at, true
}

// Snapshot returns the record decayed to at (a time before the last
// observation counts as that time).
func (s *Stats) Snapshot(at time.Time) Snapshot {
	f, fl := 1.0, 1.0
	if !s.at.IsZero() {
		f, fl = decay(s.at, at, s.halfLife()), decay(s.at, at, s.reliabilityHalfLife())
	}
	snap := Snapshot{
		Started:        s.started * f,
		NoCapacity:     s.noCapacity * f,
		Failed:         s.failed * f,
		Launches:       (s.lStarted + s.lFailed) * fl,
		LaunchFailures: s.lFailed * fl,
		Preemptions:    s.preemptions * fl,
		SpotHours:      s.spotHours * fl,
		Unhealthy:      s.healthOK && !s.health,
	}
	if s.lStarted > 0 {
		mean := s.startSecs / s.lStarted
		snap.MeanStart = seconds(mean)
		snap.StartStdDev = seconds(math.Sqrt(max(s.startSq/s.lStarted-mean*mean, 0)))
	}
	if s.noCapacity > 0 {
		snap.MeanNoCapacity = seconds(s.noCapSecs / s.noCapacity)
	}
	if s.lFailed > 0 {
		snap.MeanFail = seconds(s.failSecs / s.lFailed)
	}
	return snap
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// Tracker keeps Stats by key: provider names for Input.Stats, offer keys
// (gpuflow.Offer.Key) for Input.OfferStats. It is safe for concurrent use.
type Tracker struct {
	halfLife, reliabilityHalfLife time.Duration
	mu                            sync.Mutex
	stats                         map[string]*Stats
}

// NewTracker returns an empty tracker whose stats decay with halfLife
// (DefaultHalfLife when zero) and, when given, reliabilityHalfLife
// (Stats.ReliabilityHalfLife; DefaultReliabilityHalfLife when omitted or
// zero).
func NewTracker(halfLife time.Duration, reliabilityHalfLife ...time.Duration) *Tracker {
	t := &Tracker{halfLife: halfLife, stats: map[string]*Stats{}}
	if len(reliabilityHalfLife) > 0 {
		t.reliabilityHalfLife = reliabilityHalfLife[0]
	}
	return t
}

func (t *Tracker) get(key string) *Stats {
	s := t.stats[key]
	if s == nil {
		s = &Stats{HalfLife: t.halfLife, ReliabilityHalfLife: t.reliabilityHalfLife}
		t.stats[key] = s
	}
	return s
}

// Observe records an outcome under key.
func (t *Tracker) Observe(key string, o Outcome, d time.Duration, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(key).Observe(o, d, at)
}

// SetHealth records a health check under key.
func (t *Tracker) SetHealth(key string, healthy bool, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(key).SetHealth(healthy, at)
}

// Snapshot returns every key's record at at, into dst (cleared first; a
// new map when nil), and returns it.
func (t *Tracker) Snapshot(at time.Time, dst map[string]Snapshot) map[string]Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	if dst == nil {
		dst = make(map[string]Snapshot, len(t.stats))
	}
	clear(dst)
	for key, s := range t.stats {
		dst[key] = s.Snapshot(at)
	}
	return dst
}
