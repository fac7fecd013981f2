package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/workflows"
)

// memQueue is an in-memory QueueStore: one pass at a time, like the
// store's advisory lock.
type memQueue struct {
	mu       sync.Mutex
	entries  map[string]*gpuflow.QueueEntry
	usage    map[string]gpuflow.Usage
	passes   int
	dequeued []string
}

func newMemQueue() *memQueue { return &memQueue{entries: map[string]*gpuflow.QueueEntry{}} }

func (q *memQueue) Enqueue(_ context.Context, e gpuflow.QueueEntry) (*gpuflow.QueueEntry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.entries[e.JobID]; ok {
		if !old.Admitted {
			old.Blocked = e.Blocked
		}
		c := *old
		return &c, nil
	}
	e.JobStatus = gpuflow.StatusQueued
	q.entries[e.JobID] = &e
	c := e
	return &c, nil
}

func (q *memQueue) Dequeue(_ context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.entries, id)
	q.dequeued = append(q.dequeued, id)
	return nil
}

func (q *memQueue) QueuePass(_ context.Context, fn func(gpuflow.QueueState) ([]gpuflow.Admission, map[string]string, error)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.passes++
	st := gpuflow.QueueState{Usage: q.usage}
	for _, e := range q.entries {
		st.Entries = append(st.Entries, *e)
	}
	adm, reasons, err := fn(st)
	if err != nil {
		return err
	}
	for _, a := range adm {
		e := q.entries[a.JobID]
		e.Admitted, e.Decision, e.OfferKey, e.Units, e.PricePerHour = true, a.Decision, a.OfferKey, a.Units, a.PricePerHour
		e.AdmittedAt = time.Now()
	}
	for id, r := range reasons {
		q.entries[id].Reason = r
	}
	return nil
}

func (q *memQueue) QueuePosition(context.Context, string) (int, string, error) { return 0, "", nil }

type sentSignal struct {
	workflowID string
	sig        workflows.QueueSignal
}

type fakeSignals struct {
	mu   sync.Mutex
	sent []sentSignal
	gone map[string]bool
}

func (f *fakeSignals) SignalWorkflow(_ context.Context, wfID, _, name string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != workflows.SignalQueue {
		return errors.New("unexpected signal " + name)
	}
	if f.gone[wfID] {
		return serviceerror.NewNotFound("workflow not found")
	}
	f.sent = append(f.sent, sentSignal{wfID, arg.(workflows.QueueSignal)})
	return nil
}

// slotProvider offers CPU slots; failing makes its offers unavailable.
// The dispatcher only lists offers.
type slotProvider struct {
	gpuflow.Provider
	slots   int
	failing bool
}

func (p *slotProvider) Info() gpuflow.ProviderInfo { return gpuflow.ProviderInfo{Name: "fake"} }

func (p *slotProvider) Offers(context.Context) ([]gpuflow.Offer, error) {
	if p.failing {
		return nil, errors.New("connection refused")
	}
	return []gpuflow.Offer{{Provider: "fake", GPUType: gpuflow.CPUOnly, Region: "r", Available: p.slots}}, nil
}

func waitingEntry(id string, prio int, at time.Duration) gpuflow.QueueEntry {
	return gpuflow.QueueEntry{JobID: id, OwnerID: "u", WorkflowID: "job-" + id, Priority: prio,
		SubmittedAt: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Add(at),
		Spec:        gpuflow.JobSpec{Command: []string{"true"}, Strategy: gpuflow.StrategyBalanced}}
}

func TestDispatcher(t *testing.T) {
	ctx := context.Background()
	q, sigs := newMemQueue(), &fakeSignals{gone: map[string]bool{"job-gone": true}}
	p := &slotProvider{slots: 1}
	d := &Dispatcher{Queue: q, Providers: gpuflow.Providers{p}, Signals: sigs}

	// First job: admitted by its own Admit.
	res, err := d.Admit(ctx, waitingEntry("a", 5, 0))
	if err != nil || res.Admitted == nil || res.Admitted.Offer.Provider != "fake" {
		t.Fatalf("admit a: %+v %v", res, err)
	}
	// A retried Admit finds the same decision.
	again, err := d.Admit(ctx, waitingEntry("a", 5, 0))
	if err != nil || again.Admitted == nil || again.Admitted.Offer != res.Admitted.Offer {
		t.Fatalf("retried admit: %+v %v", again, err)
	}
	// The slot is held by a: the next ones wait, with the reason.
	for _, e := range []gpuflow.QueueEntry{waitingEntry("low", 1, time.Second), waitingEntry("high", 9, 2*time.Second), waitingEntry("gone", 9, 3*time.Second)} {
		res, err := d.Admit(ctx, e)
		if err != nil || res.Admitted != nil || res.Reason == "" {
			t.Fatalf("admit %s: %+v %v", e.JobID, res, err)
		}
	}
	// a is provisioned and leaves the queue; the provider shows the slot
	// taken, so nothing moves.
	if err := d.Leave(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	p.slots = 0
	sigs.sent = nil
	if r, err := d.Pass(ctx, ""); err != nil || r.Waiting != 3 || len(sigs.sent) != 0 {
		t.Fatalf("pass with no room: %+v %v, signals %+v", r, err, sigs.sent)
	}
	// The slot frees: the higher priority job is admitted and signalled; a
	// workflow that is gone leaves the queue.
	p.slots = 1
	if _, err := d.Pass(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if len(sigs.sent) != 1 || sigs.sent[0].workflowID != "job-high" || sigs.sent[0].sig.Admitted == nil {
		t.Fatalf("signals %+v", sigs.sent)
	}
	// The admitted entry's decision is stored for retries.
	var sel activities.SelectResult
	if err := json.Unmarshal(q.entries["high"].Decision, &sel); err != nil || sel.Offer.Provider != "fake" {
		t.Fatalf("stored decision %s: %v", q.entries["high"].Decision, err)
	}
	// high is provisioned; "gone" is admitted next, but its workflow ended.
	if err := d.Leave(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pass(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := q.entries["gone"]; ok {
		t.Fatalf("an entry whose workflow is gone stayed; dequeued %v", q.dequeued)
	}

	// A provider that cannot list its offers is recorded unhealthy.
	p.failing = true
	if _, err := d.Pass(ctx, ""); err != nil {
		t.Fatal(err)
	}
	provs, _ := d.Feed().Snapshot(time.Now())
	if !provs["fake"].Unhealthy {
		t.Fatalf("stats %+v", provs)
	}
}

// Concurrent Admits share passes: far fewer passes than callers.
func TestDispatcherSharesPasses(t *testing.T) {
	ctx := context.Background()
	q := newMemQueue()
	d := &Dispatcher{Queue: q, Providers: gpuflow.Providers{&slotProvider{slots: 1000}}}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := d.Admit(ctx, waitingEntry(string(rune('A'+i%26))+string(rune('a'+i/26)), 5, time.Duration(i)))
			if err == nil && res.Admitted == nil {
				err = errors.New("not admitted: " + res.Reason)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q.passes >= n {
		t.Fatalf("%d passes for %d admits", q.passes, n)
	}
	t.Logf("%d admits took %d passes", n, q.passes)
}

// A job only a provider of another worker serves (local, on its host)
// waits through this worker's passes instead of failing.
func TestDispatcherWaitsForProvidersElsewhere(t *testing.T) {
	ctx := context.Background()
	q := newMemQueue()
	e := waitingEntry("local-job", 5, 0)
	e.Spec.Provider = "local"
	d := &Dispatcher{Queue: q, Providers: gpuflow.Providers{&slotProvider{slots: 4}}, Signals: &fakeSignals{}}
	res, err := d.Admit(ctx, e)
	if err != nil || res.Failure == "" {
		t.Fatalf("without Elsewhere: %+v %v, want the job failed (no provider anywhere)", res, err)
	}
	q = newMemQueue()
	d = &Dispatcher{Queue: q, Providers: gpuflow.Providers{&slotProvider{slots: 4}}, Signals: &fakeSignals{},
		Elsewhere: map[string]string{"local": "on another worker"}}
	res, err = d.Admit(ctx, e)
	if err != nil || res.Failure != "" || res.Admitted != nil || res.Reason != "provider unavailable: local" {
		t.Fatalf("with Elsewhere: %+v %v, want waiting for local", res, err)
	}
}
