package watcher

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/workflows"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// batchProvider is a provider whose machines the test sets; it counts the
// calls the watcher makes.
type batchProvider struct {
	gpuflow.Provider
	mu       sync.Mutex
	machines map[string]gpuflow.Machine
	out      map[string][]byte
	batches  int
	describe int
	notify   func(string)
}

func (p *batchProvider) Info() gpuflow.ProviderInfo { return gpuflow.ProviderInfo{Name: "fake"} }

func (p *batchProvider) DescribeMany(_ context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches++
	out := map[string]gpuflow.Machine{}
	for _, id := range ids {
		m, ok := p.machines[id]
		if !ok {
			m = gpuflow.Machine{ID: id, State: gpuflow.MachineGone}
		}
		out[id] = m
	}
	return out, nil
}

func (p *batchProvider) Describe(context.Context, string) (*gpuflow.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.describe++
	return nil, fmt.Errorf("the watcher must describe in batches")
}

func (p *batchProvider) ReadLogs(_ context.Context, id string, off int64, limit int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.out[id]
	if off >= int64(len(b)) {
		return nil, nil
	}
	return b[off:min(int64(len(b)), off+int64(limit))], nil
}

func (p *batchProvider) OnChange(fn func(string)) { p.notify = fn }

func (p *batchProvider) set(id string, st gpuflow.MachineState, code ...int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := gpuflow.Machine{ID: id, State: st}
	if len(code) > 0 {
		m.ExitCode = &code[0]
	}
	p.machines[id] = m
}

type sent struct {
	workflowID string
	sig        workflows.MachineSignal
}

// signals records the watcher's signals; workflows in gone are not found.
type signals struct {
	mu   sync.Mutex
	sent []sent
	gone map[string]bool
}

func (s *signals) SignalWorkflow(_ context.Context, id, _, name string, arg any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != workflows.SignalMachine {
		return fmt.Errorf("unexpected signal %q", name)
	}
	if s.gone[id] {
		return serviceerror.NewNotFound("workflow execution already completed")
	}
	s.sent = append(s.sent, sent{id, arg.(workflows.MachineSignal)})
	return nil
}

func (s *signals) take() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func setup(t *testing.T) (*postgres.DB, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db, err := postgres.Open(ctx, pgtest.NewDB(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db, ctx
}

// watchJob creates a job and watches its machine, created at created.
func watchJob(t *testing.T, ctx context.Context, db *postgres.DB, machineID string) string {
	t.Helper()
	id := newID()
	j := &gpuflow.Job{ID: id, Status: gpuflow.StatusRunning, WorkflowID: "job-" + id,
		Spec: gpuflow.JobSpec{Command: []string{"true"}, Strategy: gpuflow.StrategyCost}}
	if err := db.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := db.AddWatch(ctx, gpuflow.Watch{JobID: id, WorkflowID: j.WorkflowID, Provider: "fake", MachineID: machineID}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSweepSignalsChangesOnly(t *testing.T) {
	db, ctx := setup(t)
	p := &batchProvider{machines: map[string]gpuflow.Machine{}, out: map[string][]byte{}}
	sigs := &signals{gone: map[string]bool{}}
	w := &Watcher{Provider: p, Store: db, Logs: db, Signals: sigs}

	const n = 150
	jobs := map[string]string{} // machine → job
	for i := range n {
		m := fmt.Sprintf("m%03d", i)
		p.set(m, gpuflow.MachineStarting)
		jobs[m] = watchJob(t, ctx, db, m)
	}
	// Nothing is news while machines boot: one batch, no signal, one
	// sweep recorded.
	st := w.Sweep(ctx, nil)
	if st.Err != nil || st.Machines != n || st.Signals != 0 || p.batches != 1 || p.describe != 0 {
		t.Fatalf("first sweep %+v, batches %d, describes %d", st, p.batches, p.describe)
	}
	if last, err := db.LastSweep(ctx, "fake", ""); err != nil || last.IsZero() {
		t.Fatalf("last sweep %v %v", last, err)
	}
	// Every machine runs: one signal each, once.
	for m := range jobs {
		p.set(m, gpuflow.MachineRunning)
	}
	if st := w.Sweep(ctx, nil); st.Signals != n {
		t.Fatalf("second sweep %+v", st)
	}
	if got := sigs.take(); len(got) != n || got[0].sig.Machine.State != gpuflow.MachineRunning {
		t.Fatalf("%d signals", len(got))
	}
	if st := w.Sweep(ctx, nil); st.Signals != 0 {
		t.Fatalf("a sweep with no change signalled %d", st.Signals)
	}
	// One exits with its code and output; its workflow hears of it once.
	p.set("m007", gpuflow.MachineExited, 3)
	p.out["m007"] = []byte("done\n")
	w.Sweep(ctx, nil)
	w.Sweep(ctx, nil)
	got := sigs.take()
	if len(got) != 1 || got[0].workflowID != "job-"+jobs["m007"] || got[0].sig.Machine.State != gpuflow.MachineExited || *got[0].sig.Machine.ExitCode != 3 {
		t.Fatalf("signals after the exit %+v", got)
	}
	if logs, err := db.Logs(ctx, jobs["m007"], 0, 0); err != nil || string(logs) != "done\n" {
		t.Fatalf("shipped output %q %v", logs, err)
	}
	if wt, _ := db.GetWatch(ctx, jobs["m007"]); wt == nil || wt.LogOffset != 5 || wt.State != gpuflow.MachineExited {
		t.Fatalf("watch row %+v", wt)
	}
	// A workflow that is gone: its machine is no longer watched.
	p.set("m008", gpuflow.MachineFailed)
	sigs.gone["job-"+jobs["m008"]] = true
	w.Sweep(ctx, nil)
	if wt, _ := db.GetWatch(ctx, jobs["m008"]); wt != nil {
		t.Fatalf("the watch of an ended workflow stayed: %+v", wt)
	}
	if p.batches != 6 {
		t.Fatalf("%d provider calls for 6 sweeps", p.batches)
	}
}

func TestYoungMachineMissingIsNotGone(t *testing.T) {
	db, ctx := setup(t)
	p := &batchProvider{machines: map[string]gpuflow.Machine{}}
	sigs := &signals{}
	now := time.Now()
	w := &Watcher{Provider: p, Store: db, Signals: sigs, Now: func() time.Time { return now }}
	watchJob(t, ctx, db, "fresh") // not listed yet
	if st := w.Sweep(ctx, nil); st.Signals != 0 {
		t.Fatalf("a machine just created and not yet listed was reported gone")
	}
	now = now.Add(newMachineGrace + time.Second)
	if st := w.Sweep(ctx, nil); st.Signals != 1 {
		t.Fatalf("a machine missing past the grace was not reported gone: %+v", st)
	}
}

func TestRunLooksAtOnceWhenToldAndOneLeads(t *testing.T) {
	db, ctx := setup(t)
	p := &batchProvider{machines: map[string]gpuflow.Machine{}}
	sigs := &signals{}
	lock := func(ctx context.Context) (Lock, error) {
		l, err := db.WatchLock(ctx, "fake", "")
		if l == nil || err != nil {
			return nil, err
		}
		return l, nil
	}
	p.set("m1", gpuflow.MachineRunning)
	job := watchJob(t, ctx, db, "m1")
	swept := make(chan SweepStats, 100)
	w1 := &Watcher{Provider: p, Store: db, Signals: sigs, Lock: lock, Interval: time.Hour, OnSweep: func(s SweepStats) { swept <- s }}
	w2 := &Watcher{Provider: &batchProvider{machines: map[string]gpuflow.Machine{}}, Store: db, Signals: sigs, Lock: lock, Interval: 50 * time.Millisecond,
		OnSweep: func(SweepStats) { t.Error("a second watcher swept while the first held the lock") }}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w1.Run(rctx) })
	first := <-swept // the full sweep at start
	if !first.Full || first.Signals != 1 {
		t.Fatalf("first sweep %+v", first)
	}
	wg.Go(func() { w2.Run(rctx) })
	// The provider tells of an end: the watcher looks at that machine at
	// once, long before its hour-long interval.
	p.set("m1", gpuflow.MachineExited, 0)
	p.notify("m1")
	select {
	case st := <-swept:
		if st.Full || st.Machines != 1 || st.Signals != 1 {
			t.Fatalf("kicked sweep %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a kick did not start a sweep")
	}
	time.Sleep(200 * time.Millisecond) // w2 tries the lock a few times
	cancel()
	wg.Wait()
	got := sigs.take()
	if len(got) != 2 || got[1].workflowID != "job-"+job || got[1].sig.Machine.State != gpuflow.MachineExited {
		t.Fatalf("signals %+v", got)
	}
}

// A job that ends before its Provision recorded the watch: the kick is
// kept and the machine looked at again once it is watched.
func TestKickBeforeTheWatchIsKept(t *testing.T) {
	db, ctx := setup(t)
	p := &batchProvider{machines: map[string]gpuflow.Machine{}}
	sigs := &signals{}
	swept := make(chan SweepStats, 100)
	w := &Watcher{Provider: p, Store: db, Signals: sigs, Interval: time.Hour, OnSweep: func(s SweepStats) { swept <- s }}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(rctx)
	<-swept // the full sweep at start
	p.set("early", gpuflow.MachineExited, 0)
	p.notify("early") // not watched yet
	<-swept
	watchJob(t, ctx, db, "early")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-swept:
			if got := sigs.take(); len(got) == 1 && got[0].sig.Machine.State == gpuflow.MachineExited {
				return
			}
		case <-deadline:
			t.Fatal("the early kick was lost: the machine waits for the hour-long interval")
		}
	}
}
