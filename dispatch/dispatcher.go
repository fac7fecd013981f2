// Package dispatch runs the durable queue: admission passes that decide
// which waiting jobs start now and on which offer, and signal their
// workflows. It is a long-running service of every worker; the Admit
// activity calls into it.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/admission"
	"github.com/gpuflow/gpuflow/workflows"
)

// Signaler is the part of the Temporal client a dispatcher signals with.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// resignalAfter is how long an admitted job may stay "queued" before its
// admission is signalled again (the first signal may have been lost with a
// crashed dispatcher).
const resignalAfter = 30 * time.Second

// Dispatcher runs admission passes over the durable queue: it ranks every
// waiting job, admits those with room in order (see package admission),
// records why the others wait and signals their workflows. A pass runs
// when a job enters the queue (inside its Admit activity, which returns
// its own admission at once), when capacity is freed (the store's
// notifications) and on a slow tick while jobs wait (cloud stock changes
// without telling anyone). Passes take turns across processes through the
// store's lock; they are idempotent.
type Dispatcher struct {
	Queue     gpuflow.QueueStore
	Outcomes  gpuflow.OutcomeStore // nil: statistics are the priors
	Providers gpuflow.Providers
	Signals   Signaler // nil: the workflows are not signalled (tests)
	Config    admission.Config
	// Stats is fed from Outcomes before each pass; a new Feed when nil.
	Stats  *admission.Feed
	Logger *slog.Logger
	Now    func() time.Time
	// Observe, when set, is told what each pass did (for metrics).
	Observe func(PassStats)
	// Elsewhere names providers this worker lacks but other workers serve,
	// with why (e.g. "local": the job's host runs its own worker). A job
	// that only they could serve is not failed by this worker's pass, as
	// one no provider anywhere serves would be: it waits, "provider
	// unavailable", for a pass of a worker that has them.
	Elsewhere map[string]string

	mu      sync.Mutex // held by the running pass
	planner admission.Planner
	bmu     sync.Mutex // guards next
	next    *passCall  // the pass that starts next, which callers join
}

// passCall is one pass shared by the callers that asked for it while an
// earlier pass ran.
type passCall struct {
	done    chan struct{}
	selves  map[string]bool
	res     map[string]PassResult
	waiting int
	err     error
}

// passTimeout bounds one pass (offers from every provider, the ranking,
// the store's transaction).
const passTimeout = time.Minute

// PassStats is what one pass did.
type PassStats struct {
	Duration time.Duration
	Waiting  int // jobs left waiting
	// Admitted are the admissions by strategy and provider.
	Admitted []Admitted
}

// Admitted is one admission, for metrics: no job or user id.
type Admitted struct{ Strategy, Provider string }

// PassResult is what one pass decided for one job.
type PassResult struct {
	Admitted *activities.SelectResult
	Failure  string
	Reasons  map[string][]string
	Reason   string
	Waiting  int // jobs left waiting, in all
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now().UTC()
}

func (d *Dispatcher) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// Feed returns the statistics the dispatcher ranks with.
func (d *Dispatcher) Feed() *admission.Feed {
	d.bmu.Lock()
	defer d.bmu.Unlock()
	if d.Stats == nil {
		d.Stats = admission.NewFeed()
	}
	return d.Stats
}

// RefreshStats reads the provisioning outcomes recorded since the last
// refresh (or in the last admission.StatsWindow) into the feed.
func RefreshStats(ctx context.Context, store gpuflow.OutcomeStore, feed *admission.Feed, now time.Time) error {
	if store == nil {
		return nil
	}
	const page = 5000
	for {
		outs, err := store.Outcomes(ctx, feed.LastID(), now.Add(-admission.StatsWindow), page)
		if err != nil {
			return err
		}
		feed.Apply(outs)
		if len(outs) < page {
			return nil
		}
	}
}

// Pass waits for an admission pass that starts after the call and returns
// what it decided for self (a job id; "" for none). Callers that arrive
// while a pass runs share the next one: under a burst of submissions a
// pass serves many jobs, not one each.
func (d *Dispatcher) Pass(ctx context.Context, self string) (PassResult, error) {
	d.bmu.Lock()
	c, lead := d.next, false
	if c == nil {
		c, lead = &passCall{done: make(chan struct{}), selves: map[string]bool{}}, true
		d.next = c
	}
	if self != "" {
		c.selves[self] = true
	}
	d.bmu.Unlock()
	if lead {
		d.lead(ctx, c)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return PassResult{}, ctx.Err()
	}
	r := c.res[self]
	r.Waiting = c.waiting
	return r, c.err
}

// lead runs the pass c for every caller that joined it. A panic in the pass
// becomes its error; the lock is always released and the callers told.
func (d *Dispatcher) lead(ctx context.Context, c *passCall) {
	d.mu.Lock() // the running pass ends first
	defer close(c.done)
	defer d.mu.Unlock()
	d.bmu.Lock()
	d.next = nil // later callers wait for the pass after this one
	d.bmu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			c.res, c.err = nil, fmt.Errorf("admission pass panicked: %v", r)
		}
	}()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), passTimeout)
	defer cancel()
	c.res, c.waiting, c.err = d.pass(pctx, c.selves)
}

// offersTimeout bounds listing every provider's offers in a pass (the
// queue's lock is held meanwhile); a provider slower than that counts as
// unavailable for the pass.
const offersTimeout = 15 * time.Second

// pass runs one admission pass; it returns the results for selves and how
// many jobs are left waiting (admitted jobs whose workflow has not taken
// its admission yet count too: the next pass signals them again).
func (d *Dispatcher) pass(ctx context.Context, selves map[string]bool) (map[string]PassResult, int, error) {
	feed := d.Feed()
	now := d.now()
	started := time.Now()
	var stats PassStats
	if err := RefreshStats(ctx, d.Outcomes, feed, now); err != nil {
		d.logger().WarnContext(ctx, "reading provisioning outcomes failed; ranking with older statistics", "err", err)
	}
	var (
		mine    map[string]PassResult
		waiting int
		signals []queued
	)
	err := d.Queue.QueuePass(ctx, func(st gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error) {
		mine, waiting, signals = map[string]PassResult{}, 0, nil
		inQueue := 0
		for _, e := range st.Entries {
			if !e.Admitted {
				inQueue++
				continue
			}
			var sel activities.SelectResult
			if err := json.Unmarshal(e.Decision, &sel); err != nil {
				return nil, nil, fmt.Errorf("job %s: admission decision: %w", e.JobID, err)
			}
			switch {
			case selves[e.JobID]: // admitted by a pass that began after it entered
				mine[e.JobID] = PassResult{Admitted: &sel}
			case e.JobStatus == gpuflow.StatusQueued:
				waiting++ // until its workflow takes the admission
				if now.Sub(e.AdmittedAt) > resignalAfter {
					signals = append(signals, queued{e.WorkflowID, e.JobID, workflows.QueueSignal{Admitted: &sel}})
				}
			}
		}
		if inQueue == 0 {
			return nil, nil, nil
		}
		octx, cancel := context.WithTimeout(ctx, offersTimeout)
		offers, refused := d.Providers.AllOffers(octx)
		cancel()
		for name, why := range d.Elsewhere {
			if d.Providers.Get(name) == nil {
				if refused == nil {
					refused = map[string]string{}
				}
				refused[name] = gpuflow.OffersUnavailable + why
			}
		}
		for _, name := range d.Providers.Names() { // a provider that cannot list its offers is unhealthy
			why, failed := refused[name]
			feed.SetHealth(name, !failed || !strings.HasPrefix(why, gpuflow.OffersUnavailable), now)
		}
		provStats, offerStats := feed.Snapshot(now)
		d.planner.Config = d.Config
		res := d.planner.Plan(admission.Input{
			Now: now, Entries: st.Entries, Usage: st.Usage, Offers: offers, Refused: refused,
			Check: d.Providers.CheckSpec, Stats: provStats, OfferStats: offerStats,
		})
		var admissions []gpuflow.Admission
		reasons := map[string]string{}
		for _, e := range st.Entries {
			if e.Admitted {
				continue
			}
			var sig workflows.QueueSignal
			if ch, ok := res.Admitted[e.JobID]; ok {
				sel := d.selectResult(ch)
				dec, err := json.Marshal(sel)
				if err != nil {
					return nil, nil, err
				}
				admissions = append(admissions, gpuflow.Admission{JobID: e.JobID, Decision: dec,
					OfferKey: ch.StockKey, Units: ch.Units, PricePerHour: ch.Best.PricePerHour})
				stats.Admitted = append(stats.Admitted, Admitted{Strategy: ch.Strategy, Provider: ch.Best.Offer.Provider})
				sig.Admitted = sel
			} else if why, ok := res.Unschedulable[e.JobID]; ok {
				sig.Failure, sig.Reasons = "no provider can serve the job", why
				reasons[e.JobID] = sig.Failure
			} else {
				sig.Reason = res.Waiting[e.JobID]
				reasons[e.JobID] = sig.Reason
				waiting++
				if admission.ReasonKind(sig.Reason) == admission.ReasonKind(e.Reason) && !selves[e.JobID] {
					// Only a new kind of reason is signalled (its details change
					// all the time and would fill the workflow's history); the
					// API reads the current one from the queue.
					continue
				}
			}
			if selves[e.JobID] {
				mine[e.JobID] = PassResult{Admitted: sig.Admitted, Failure: sig.Failure, Reasons: sig.Reasons, Reason: sig.Reason}
				continue
			}
			signals = append(signals, queued{e.WorkflowID, e.JobID, sig})
		}
		return admissions, reasons, nil
	})
	if err != nil {
		return nil, 0, err
	}
	if d.Observe != nil {
		stats.Duration, stats.Waiting = time.Since(started), waiting
		d.Observe(stats)
	}
	d.signal(ctx, signals)
	return mine, waiting, nil
}

type queued struct {
	workflowID, jobID string
	sig               workflows.QueueSignal
}

// signal tells the workflows what the pass decided. A workflow that no
// longer runs leaves the queue.
func (d *Dispatcher) signal(ctx context.Context, signals []queued) {
	if d.Signals == nil {
		return
	}
	for _, s := range signals {
		err := d.Signals.SignalWorkflow(ctx, s.workflowID, "", workflows.SignalQueue, s.sig)
		var nf *serviceerror.NotFound
		switch {
		case err == nil:
		case errors.As(err, &nf):
			if err := d.Queue.Dequeue(ctx, s.jobID); err != nil {
				d.logger().WarnContext(ctx, "removing a finished job from the queue failed", "job_id", s.jobID, "err", err)
			}
		default:
			d.logger().WarnContext(ctx, "signalling a queued job failed; the next pass tries again", "job_id", s.jobID, "err", err)
		}
	}
}

func (d *Dispatcher) selectResult(ch admission.Choice) *activities.SelectResult {
	res := &activities.SelectResult{Offer: ch.Best.Offer, Score: ch.Best.Score, Breakdown: ch.Best.Breakdown,
		Strategy: ch.Strategy, PricePerHour: ch.Best.PricePerHour, EstimatedCost: ch.Best.EstimatedCost,
		StartSeconds: ch.Best.StartSeconds, Alternatives: ch.Alternatives}
	if p := d.Providers.Get(ch.Best.Offer.Provider); p != nil {
		res.Mode = p.Info().Mode
	}
	return res
}

// Admit enqueues the job (or updates its blocked offers) and runs an
// admission pass at once. The answer says whether the job was admitted,
// why it waits, or (Failure, Reasons) that no offer fits it at all; such a
// job has left the queue.
func (d *Dispatcher) Admit(ctx context.Context, entry gpuflow.QueueEntry) (*activities.AdmitResult, error) {
	e, err := d.Queue.Enqueue(ctx, entry)
	if err != nil {
		return nil, fmt.Errorf("enqueue job %s: %w", entry.JobID, err)
	}
	if e.Admitted { // a retry of an activity whose pass had admitted the job
		var sel activities.SelectResult
		if err := json.Unmarshal(e.Decision, &sel); err != nil {
			return nil, fmt.Errorf("job %s: admission decision: %w", e.JobID, err)
		}
		return &activities.AdmitResult{Admitted: &sel}, nil
	}
	res, err := d.Pass(ctx, entry.JobID)
	if err != nil {
		return nil, fmt.Errorf("admission pass: %w", err)
	}
	if res.Failure != "" {
		_ = d.Queue.Dequeue(ctx, entry.JobID)
		return &activities.AdmitResult{Failure: res.Failure, Reasons: res.Reasons}, nil
	}
	if res.Admitted == nil && res.Reason == "" {
		// The pass did not see the job (it left the queue meanwhile):
		// Temporal retries the activity, which enqueues it again.
		return nil, fmt.Errorf("job %s was not in the queue during its admission pass", entry.JobID)
	}
	return &activities.AdmitResult{Admitted: res.Admitted, Reason: res.Reason}, nil
}

// Leave removes the job from the queue (its machine exists, or it ended)
// and wakes the dispatchers: it may have freed room.
func (d *Dispatcher) Leave(ctx context.Context, jobID string) error {
	return d.Queue.Dequeue(ctx, jobID)
}

// RecordOutcome stores one provisioning outcome for the statistics.
func (d *Dispatcher) RecordOutcome(ctx context.Context, o gpuflow.ProvisionOutcome) error {
	if d.Outcomes == nil {
		return nil
	}
	return d.Outcomes.RecordOutcome(ctx, o)
}
