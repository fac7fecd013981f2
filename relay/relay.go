// Package relay delivers the agent reports the API has recorded (progress,
// exit codes from jobs' machines) to the jobs' workflows as their progress
// and finished signals, and the API's withdrawals of submissions it could
// not confirm as their cancel signal. It is a long-running service of
// every API process.
//
// Delivery is exactly once in effect: a relay claims due reports for a
// lease (so several replicas never send the same one at once), signals,
// then marks them delivered. A relay that dies between the signal and the
// mark lets its lease run out and another sends the report again with the
// same ReportID, which the workflow ignores. When Temporal is unreachable
// the reports stay recorded and are retried with backoff; a report whose
// workflow is unknown or closed is dropped with a note.
//
// Its cost grows with reports, not with jobs or time: it wakes on the
// store's notification of a report due now, sleeps until the next report
// falls due (a retry, a rate-limited progress) and otherwise only looks
// again on a slow recheck. Progress is sent at most once per job per
// ProgressInterval (the store coalesces what arrives meanwhile into one
// report); a finished report goes at once.
package relay

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/workflows"
)

// WithdrawRequestedBy is the RequestedBy of the cancel signal a withdraw
// report is delivered as.
const WithdrawRequestedBy = "api"

// WithdrawWindow is how long a withdraw whose workflow Temporal does not
// know is retried before it is dropped: longer than any start request the
// API gave up on can take to land (the SDK's and the server's RPC
// timeouts are seconds).
const WithdrawWindow = 2 * time.Minute

// Signaler is the part of the Temporal client the relay signals with.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// Defaults of Options.
const (
	DefaultProgressInterval = 5 * time.Second
	DefaultRecheck          = 30 * time.Second
	DefaultLease            = time.Minute
	DefaultSignalTimeout    = 10 * time.Second
	DefaultMinBackoff       = 500 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultBatch            = 256
	DefaultParallel         = 16
	DefaultRetention        = time.Hour
)

// Options tune a Relay; zero fields get the defaults above.
type Options struct {
	// ProgressInterval is the least time between two progress signals
	// of one job.
	ProgressInterval time.Duration
	// Recheck is how often Run looks at the store when nothing woke it
	// (a notification lost while the listener reconnected), and prunes.
	Recheck time.Duration
	// Lease is how long claimed reports are this relay's: if it has not
	// completed them by then (it died), another relay sends them again.
	// It must exceed SignalTimeout.
	Lease time.Duration
	// SignalTimeout bounds one signal.
	SignalTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed delivery
	// is tried again, doubling with each failure of the report.
	MinBackoff, MaxBackoff time.Duration
	// Batch is how many reports of each kind one claim takes.
	Batch int
	// Parallel is how many signals are in flight at once.
	Parallel int
	// Retention is how long delivered reports are kept (a finished
	// report's row is what makes a second one be ignored) before Run
	// prunes them.
	Retention time.Duration
	// Listen, when set, calls its func whenever a report is due now (the
	// store's NOTIFY) and on each (re)subscription, until ctx is done.
	Listen func(ctx context.Context, fn func()) error
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Relay delivers recorded agent reports to the jobs' workflows.
type Relay struct {
	store gpuflow.ReportOutbox
	sig   Signaler
	opt   Options
	log   *slog.Logger
	now   func() time.Time

	delivered, dropped, retried atomic.Int64
}

// New returns a relay delivering from store through sig.
func New(store gpuflow.ReportOutbox, sig Signaler, opt Options) *Relay {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opt.ProgressInterval, DefaultProgressInterval)
	def(&opt.Recheck, DefaultRecheck)
	def(&opt.SignalTimeout, DefaultSignalTimeout)
	def(&opt.Lease, max(DefaultLease, 2*opt.SignalTimeout))
	def(&opt.MinBackoff, DefaultMinBackoff)
	def(&opt.MaxBackoff, DefaultMaxBackoff)
	opt.MaxBackoff = max(opt.MaxBackoff, opt.MinBackoff)
	def(&opt.Retention, DefaultRetention)
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	if opt.Parallel <= 0 {
		opt.Parallel = DefaultParallel
	}
	r := &Relay{store: store, sig: sig, opt: opt, log: opt.Logger, now: opt.Now}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Stats counts what this relay has done since it started.
type Stats struct {
	Delivered, Dropped, Retried int64
}

// Stats returns the relay's counts.
func (r *Relay) Stats() Stats {
	return Stats{Delivered: r.delivered.Load(), Dropped: r.dropped.Load(), Retried: r.retried.Load()}
}

// idleWait is the shortest wait between two passes when reports are due
// but another relay holds them this instant.
const idleWait = 50 * time.Millisecond

// Run delivers reports until ctx is done, then returns nil: a pass at
// start, on each wake-up from Listen, when the next report falls due, and
// every Recheck; it prunes delivered reports every Recheck. When the store
// is down it tries again with backoff.
func (r *Relay) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	if r.opt.Listen != nil {
		go func() {
			err := r.opt.Listen(ctx, func() {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				r.log.Error("report listener stopped; the relay falls back to its recheck", "err", err)
			}
		}()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastPrune time.Time
	storeFailures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-timer.C:
		}
		next, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		now := r.now()
		wait := r.opt.Recheck
		switch {
		case err != nil:
			storeFailures++
			wait = r.backoff(storeFailures)
			r.log.Warn("agent report relay: the store failed; trying again", "err", err, "in", wait)
		case !next.IsZero():
			storeFailures = 0
			wait = min(wait, max(next.Sub(now), idleWait))
		default:
			storeFailures = 0
		}
		if err == nil && now.Sub(lastPrune) >= r.opt.Recheck {
			lastPrune = now
			r.prune(ctx, now)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// prune deletes reports delivered more than Retention ago, a bounded
// number per statement.
func (r *Relay) prune(ctx context.Context, now time.Time) {
	const limit = 1000
	for range 100 {
		n, err := r.store.PruneReports(ctx, now.Add(-r.opt.Retention), limit)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("agent report relay: pruning delivered reports failed", "err", err)
			}
			return
		}
		if n < limit {
			return
		}
	}
}

// Pass delivers every report due now (claiming batches until a claim
// comes back short) and returns when the next undelivered one falls due,
// zero when none is left.
func (r *Relay) Pass(ctx context.Context) (next time.Time, err error) {
	for ctx.Err() == nil {
		token := newToken()
		batch, err := r.store.ClaimReports(ctx, gpuflow.ReportClaim{Token: token, Now: r.now(), Lease: r.opt.Lease, Limit: r.opt.Batch})
		if err != nil {
			return time.Time{}, err
		}
		if len(batch) == 0 {
			break
		}
		outcomes, unreachable := r.deliver(ctx, batch)
		// Record what was done even when ctx ends meanwhile: a delivered
		// report left claimed would be sent again after the lease.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = r.store.CompleteReports(cctx, token, r.now(), r.opt.ProgressInterval, outcomes)
		cancel()
		if err != nil {
			return time.Time{}, err
		}
		if unreachable || !r.full(batch) {
			break
		}
	}
	at, ok, err := r.store.NextReportDue(ctx)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return at, nil
}

// full reports whether a claim took as many reports of some kind as it
// could: more may be due.
func (r *Relay) full(batch []gpuflow.AgentReport) bool {
	n := map[gpuflow.ReportKind]int{}
	for _, rep := range batch {
		n[rep.Kind]++
	}
	return n[gpuflow.ReportFinished] >= r.opt.Batch || n[gpuflow.ReportProgress] >= r.opt.Batch ||
		n[gpuflow.ReportWithdraw] >= r.opt.Batch
}

// deliver signals each report of batch, Parallel at a time. Once one
// signal finds Temporal unreachable, the reports not yet sent are put back
// unsent, due again with the first failed one, instead of each waiting
// for its own timeout.
func (r *Relay) deliver(ctx context.Context, batch []gpuflow.AgentReport) ([]gpuflow.ReportOutcome, bool) {
	outcomes := make([]gpuflow.ReportOutcome, len(batch))
	var unreachable atomic.Bool
	var (
		mu       sync.Mutex
		downErr  string
		downWait time.Duration
	)
	sem := make(chan struct{}, r.opt.Parallel)
	var wg sync.WaitGroup
	for i, rep := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if unreachable.Load() || ctx.Err() != nil {
				outcomes[i] = gpuflow.ReportOutcome{Report: rep}
				return
			}
			o, down := r.deliverOne(ctx, rep)
			outcomes[i] = o
			if down {
				mu.Lock()
				if !unreachable.Load() {
					downErr, downWait = o.Error, o.RetryAt.Sub(r.now())
				}
				unreachable.Store(true)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if unreachable.Load() {
		now := r.now()
		for i := range outcomes {
			if o := &outcomes[i]; !o.Done && o.RetryAt.IsZero() {
				o.RetryAt = now.Add(downWait)
				o.Error = "not sent: " + downErr
			}
		}
		r.log.Warn("agent report relay: temporal unreachable; reports kept for a retry",
			"reports", len(batch), "err", downErr, "retry_in", downWait)
	}
	for _, o := range outcomes {
		switch {
		case o.Done && o.Note != "":
			r.dropped.Add(1)
		case o.Done:
			r.delivered.Add(1)
		default:
			r.retried.Add(1)
		}
	}
	return outcomes, unreachable.Load()
}

// deliverOne signals one report's workflow. down reports that the failure
// looks like Temporal being unreachable (rather than this one workflow).
func (r *Relay) deliverOne(ctx context.Context, rep gpuflow.AgentReport) (o gpuflow.ReportOutcome, down bool) {
	o.Report = rep
	var name string
	var payload any
	switch rep.Kind {
	case gpuflow.ReportFinished:
		name, payload = workflows.SignalFinished, workflows.FinishedSignal{ExitCode: rep.ExitCode, ReportID: rep.ID}
	case gpuflow.ReportProgress:
		name, payload = workflows.SignalProgress, workflows.ProgressSignal{Percent: rep.Percent, Message: rep.Message, ReportID: rep.ID}
	case gpuflow.ReportWithdraw:
		// The workflow takes the first cancel and ignores later ones, so a
		// redelivery is harmless; NotFound (it never started) drops it.
		name, payload = workflows.SignalCancel, workflows.CancelSignal{Reason: rep.Message, RequestedBy: WithdrawRequestedBy}
	default:
		o.Done, o.Note = true, "unknown report kind "+string(rep.Kind)
		return o, false
	}
	sctx, cancel := context.WithTimeout(ctx, r.opt.SignalTimeout)
	err := r.sig.SignalWorkflow(sctx, workflows.JobWorkflowID(rep.JobID), "", name, payload)
	cancel()
	var (
		notFound *serviceerror.NotFound
		invalid  *serviceerror.InvalidArgument
	)
	switch {
	case err == nil:
		o.Done = true
	case errors.As(err, &notFound) && rep.Kind == gpuflow.ReportWithdraw && r.now().Before(rep.ReceivedAt.Add(WithdrawWindow)):
		// A start the API could not confirm may still land (it was in
		// flight when the API gave up): keep trying for a while.
		o.Error = err.Error()
		o.RetryAt = r.now().Add(r.backoff(rep.Attempts + 1))
	case errors.As(err, &notFound):
		// Unknown, or closed: nobody is waiting for it any more.
		o.Done, o.Note = true, gpuflow.NoteWorkflowNotFound+": "+err.Error()
		r.log.Info("agent report dropped: the job's workflow is not running", "job_id", rep.JobID, "kind", rep.Kind, "report_id", rep.ID)
	case errors.As(err, &invalid):
		o.Done, o.Note = true, "rejected by temporal: "+err.Error()
		r.log.Warn("agent report dropped: temporal rejected its signal", "job_id", rep.JobID, "kind", rep.Kind, "report_id", rep.ID, "err", err)
	default:
		o.Error = err.Error()
		o.RetryAt = r.now().Add(r.backoff(rep.Attempts + 1))
		down = unreachableErr(err)
		if !down {
			r.log.Warn("agent report delivery failed; retrying", "job_id", rep.JobID, "kind", rep.Kind, "report_id", rep.ID,
				"attempts", rep.Attempts+1, "err", err)
		}
	}
	return o, down
}

// unreachableErr reports whether err says Temporal itself is away (not
// one workflow's trouble).
func unreachableErr(err error) bool {
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		canceled    *serviceerror.Canceled
	)
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// backoff is the wait before try n+1 (n >= 1 failures): MinBackoff
// doubling to MaxBackoff, less up to a fifth at random so that replicas
// spread out.
func (r *Relay) backoff(n int) time.Duration {
	d := r.opt.MinBackoff
	for i := 1; i < n && d < r.opt.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.opt.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1)) // #nosec G404 -- jitter of a retry wait, not a secret
}

func newToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
