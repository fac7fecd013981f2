// Package watcher follows the machines of one provider (on one host, for
// the local provider) for every running job at once: it describes them in
// batches each interval (gpuflow.BatchDescriber), ships new output of
// providers whose output it reads (the local one), and signals the job
// workflows whose machines changed (running, exited, failed, gone,
// preempted). A job's workflow waits on these signals and the agent's
// reports; nothing polls per job, so a running job costs nothing while it
// merely runs: a sweep costs one store read, about machines/100 provider
// calls and one store write, and signals only for what changed.
//
// One watcher per provider and host runs across every process, under a
// PostgreSQL session lock; when its process dies another takes over. A
// workflow's own long safety timer covers a dead watcher or a lost signal.
package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/workflows"
)

// Signaler is the part of the Temporal client the watcher signals with.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// Lock is a held lock that makes one watcher per provider and host run.
type Lock interface {
	Alive(ctx context.Context) error
	Release()
}

// Defaults.
const (
	// DefaultInterval is how often a cloud's machines are looked at when
	// nothing told the watcher of a change.
	DefaultInterval = 30 * time.Second
	// LocalInterval is the local provider's: a look is one scan of its job
	// directories, and it learns of its own jobs' ends at once anyway.
	LocalInterval = 2 * time.Second
	// newMachineGrace is how long a machine may be missing from its
	// provider's answers before it counts as gone: clouds list a machine
	// they have just created only after a moment.
	newMachineGrace = 2 * time.Minute
	// signalConcurrency bounds the signals sent at once.
	signalConcurrency = 16
	// describeConcurrency bounds one-by-one describes for providers
	// without BatchDescriber.
	describeConcurrency = 8
)

// Watcher watches one provider's machines on one host.
type Watcher struct {
	Provider gpuflow.Provider
	// Host is the worker host for the local provider; "" for clouds.
	Host    string
	Store   gpuflow.WatchStore
	Logs    gpuflow.LogAppender // nil: output is not shipped
	Signals Signaler
	// Lock takes the watcher's lock; it returns nil when another process
	// holds it. Nil: no lock (one process).
	Lock     func(ctx context.Context) (Lock, error)
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
	// OnSweep, when set, is told what each sweep did (metrics, tests).
	OnSweep func(SweepStats)

	mu     sync.Mutex
	kicked map[string]bool // machines a provider said changed
	wake   chan struct{}
	// early are kicked machines not watched yet (a job that ended before
	// its Provision recorded the watch), looked at again shortly.
	early map[string]time.Time
}

// earlyFor is how long a kick for a machine not yet watched is kept.
const earlyFor = 30 * time.Second

// SweepStats is what one sweep did.
type SweepStats struct {
	Provider string
	Machines int // machines looked at
	Signals  int // workflows signalled
	Full     bool
	Duration time.Duration
	Err      error

	unwatched map[string]bool // kicked machines not found among the watches
}

// earlyRetry is how soon a kicked machine that was not watched yet is
// looked at again.
const earlyRetry = 50 * time.Millisecond

// keepEarly puts back the kicked machines that were not watched yet (for
// earlyFor at most) and reports whether any are waiting.
func (w *Watcher) keepEarly(only, unwatched map[string]bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for id := range only {
		if !unwatched[id] {
			delete(w.early, id)
			continue
		}
		first, ok := w.early[id]
		if !ok {
			w.early[id] = now
			first = now
		}
		if now.Sub(first) < earlyFor {
			w.kicked[id] = true
		} else {
			delete(w.early, id)
		}
	}
	return len(w.early) > 0
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now().UTC()
}

func (w *Watcher) logger() *slog.Logger {
	return cmp.Or(w.Logger, slog.Default()).With("provider", w.name(), "host", w.Host)
}

func (w *Watcher) name() string { return w.Provider.Info().Name }

func (w *Watcher) interval() time.Duration { return cmp.Or(w.Interval, DefaultInterval) }

func (w *Watcher) init() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
		w.kicked = map[string]bool{}
		w.early = map[string]time.Time{}
	}
}

// Kick asks for a look at one machine now (a provider told of a change).
func (w *Watcher) Kick(machineID string) {
	w.init()
	w.mu.Lock()
	w.kicked[machineID] = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run watches until ctx is done: it takes the lock (trying again each
// interval while another process holds it), then sweeps every interval and
// whenever the provider tells of a change.
func (w *Watcher) Run(ctx context.Context) {
	w.init()
	if cn, ok := w.Provider.(gpuflow.ChangeNotifier); ok {
		cn.OnChange(w.Kick)
	}
	log := w.logger()
	for ctx.Err() == nil {
		lock, err := w.takeLock(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("watcher lock", "err", err)
		}
		if lock == nil {
			sleep(ctx, w.interval())
			continue
		}
		log.Info("watching machines", "interval", w.interval())
		w.lead(ctx, lock)
		lock.Release()
	}
}

func (w *Watcher) takeLock(ctx context.Context) (Lock, error) {
	if w.Lock == nil {
		return noLock{}, nil
	}
	return w.Lock(ctx)
}

type noLock struct{}

func (noLock) Alive(context.Context) error { return nil }
func (noLock) Release()                    {}

// lead sweeps while the lock holds.
func (w *Watcher) lead(ctx context.Context, lock Lock) {
	log := w.logger()
	timer := time.NewTimer(0) // a full sweep at once: state may have changed while nobody watched
	defer timer.Stop()
	for {
		full := false
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			full = true
		case <-w.wake:
		}
		if err := lock.Alive(ctx); err != nil {
			if ctx.Err() == nil {
				log.Warn("watcher lock lost; taking it again", "err", err)
			}
			return
		}
		var only map[string]bool
		if !full {
			w.mu.Lock()
			only, w.kicked = w.kicked, map[string]bool{}
			w.mu.Unlock()
		}
		st := w.Sweep(ctx, only)
		if st.Err != nil && ctx.Err() == nil {
			log.Warn("sweep failed; trying again next interval", "err", st.Err)
		}
		if w.keepEarly(only, st.unwatched) {
			time.AfterFunc(earlyRetry, func() {
				select {
				case w.wake <- struct{}{}:
				default:
				}
			})
		}
		if full {
			timer.Reset(w.interval())
		}
	}
}

// Sweep looks at the watched machines (only those in only, when it is not
// nil) and signals the workflows of those that changed. A full sweep is
// recorded in the store.
func (w *Watcher) Sweep(ctx context.Context, only map[string]bool) SweepStats {
	start := w.now()
	st := SweepStats{Provider: w.name(), Full: only == nil}
	defer func() {
		st.Duration = w.now().Sub(start)
		if w.OnSweep != nil {
			w.OnSweep(st)
		}
	}()
	all, err := w.Store.Watches(ctx, w.name(), w.Host)
	if err != nil {
		st.Err = err
		return st
	}
	watches := all
	if only != nil {
		watches = watches[:0:0]
		st.unwatched = maps.Clone(only)
		for _, wt := range all {
			if only[wt.MachineID] || only[wt.JobID] {
				watches = append(watches, wt)
				delete(st.unwatched, wt.MachineID)
				delete(st.unwatched, wt.JobID)
			}
		}
	}
	st.Machines = len(watches)
	if len(watches) > 0 {
		ids := make([]string, len(watches))
		for i, wt := range watches {
			ids[i] = wt.MachineID
		}
		states, err := w.describe(ctx, ids)
		if err != nil {
			st.Err = err
			return st
		}
		st.Signals = w.tell(ctx, watches, states, start)
	}
	if only == nil {
		if err := w.Store.RecordSweep(ctx, w.name(), w.Host, start); err != nil {
			st.Err = err
		}
	}
	return st
}

// describe asks the provider for every machine in ids: in batches when it
// can, otherwise one by one with bounded concurrency.
func (w *Watcher) describe(ctx context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	if bd, ok := w.Provider.(gpuflow.BatchDescriber); ok {
		return bd.DescribeMany(ctx, ids)
	}
	out := make(map[string]gpuflow.Machine, len(ids))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, describeConcurrency)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m, err := w.Provider.Describe(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && gpuflow.ProviderErrorKindOf(err) == gpuflow.KindNotFound:
				out[id] = gpuflow.Machine{ID: id, Provider: w.name(), State: gpuflow.MachineGone}
			case err != nil:
				errs = append(errs, fmt.Errorf("describe %s: %w", id, err))
			default:
				out[id] = *m
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 && len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// tell ships output and signals the workflows whose machines changed; it
// returns how many it signalled.
func (w *Watcher) tell(ctx context.Context, watches []gpuflow.Watch, states map[string]gpuflow.Machine, now time.Time) int {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent int
		sem  = make(chan struct{}, signalConcurrency)
	)
	for _, wt := range watches {
		m, ok := states[wt.MachineID]
		if !ok {
			continue // not known this time (a partial answer)
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if w.one(ctx, wt, m, now) {
				mu.Lock()
				sent++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sent
}

// one handles one machine: new output, then a signal when its state is
// news to the workflow.
func (w *Watcher) one(ctx context.Context, wt gpuflow.Watch, m gpuflow.Machine, now time.Time) (signalled bool) {
	log := w.logger().With("job_id", wt.JobID, "machine_id", wt.MachineID)
	offset := w.shipLogs(ctx, wt, m)
	news := m.State != wt.State && Reportable(m.State)
	if m.State == gpuflow.MachineGone && now.Sub(wt.CreatedAt) < newMachineGrace && wt.State == "" {
		news = false // not listed yet, most likely
	}
	if news {
		err := w.Signals.SignalWorkflow(ctx, wt.WorkflowID, "", workflows.SignalMachine, workflows.MachineSignal{Machine: m, SeenAt: now})
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			// The workflow has ended: nobody waits on this machine. (The
			// reconciler removes a machine that no live workflow owns.)
			log.Info("workflow gone; no longer watching its machine")
			if err := w.Store.RemoveWatch(ctx, wt.JobID, wt.MachineID); err != nil {
				log.Warn("unwatch", "err", err)
			}
			return false
		case err != nil:
			log.Warn("signal workflow; trying again next sweep", "state", m.State, "err", err)
			return false
		}
		signalled = true
	}
	if news || offset != wt.LogOffset {
		state := wt.State
		if news {
			state = m.State
		}
		if err := w.Store.MarkWatch(ctx, wt.JobID, wt.MachineID, state, offset); err != nil {
			log.Warn("record watch", "err", err)
		}
	}
	return signalled
}

// Reportable reports whether a machine state is worth a signal: the job
// runs, or ended one way or another.
func Reportable(s gpuflow.MachineState) bool {
	switch s {
	case gpuflow.MachineRunning, gpuflow.MachineExited, gpuflow.MachineFailed, gpuflow.MachineGone:
		return true
	}
	return false
}

// shipLogs copies the machine's new output to the store, for providers
// whose output the watcher reads, and returns the new offset.
func (w *Watcher) shipLogs(ctx context.Context, wt gpuflow.Watch, m gpuflow.Machine) int64 {
	offset := wt.LogOffset
	src, ok := w.Provider.(gpuflow.LogSource)
	if !ok || w.Logs == nil || (m.State != gpuflow.MachineRunning && m.State != gpuflow.MachineExited && m.State != gpuflow.MachineFailed) {
		return offset
	}
	n, err := gpuflow.CopyLogs(ctx, src, w.Logs, wt.JobID, wt.MachineID, offset)
	if err != nil {
		w.logger().Warn("ship output", "job_id", wt.JobID, "err", err)
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
