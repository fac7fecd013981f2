package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/admission"
	"github.com/gpuflow/gpuflow/scheduler"
)

// Search attribute keys of the job workflow.
var (
	saOwner    = temporal.NewSearchAttributeKeyKeyword(SearchAttrOwner)
	saProvider = temporal.NewSearchAttributeKeyKeyword(SearchAttrProvider)
	saGPUType  = temporal.NewSearchAttributeKeyKeyword(SearchAttrGPUType)
	saStatus   = temporal.NewSearchAttributeKeyKeyword(SearchAttrStatus)
)

// StartSearchAttributes are the search attributes a job workflow starts with.
func StartSearchAttributes(in *RunJobInput, provider string) temporal.SearchAttributes {
	gpu := in.Spec.GPUType
	if in.Spec.GPUCount == 0 {
		gpu = gpuflow.CPUOnly
	}
	return temporal.NewSearchAttributes(
		saOwner.ValueSet(in.OwnerID),
		saProvider.ValueSet(provider),
		saGPUType.ValueSet(gpu),
		saStatus.ValueSet(string(gpuflow.StatusQueued)),
	)
}

// RunJob is the job workflow: choose an offer, provision a machine, wait
// until it runs the job, wait until the job ends, and always tear the
// machine down — on success, failure, the cancel signal, a Temporal
// cancellation and when max_duration_minutes is reached. The job is marked
// finished only once the provider has confirmed the machine is gone.
func RunJob(ctx workflow.Context, in *RunJobInput) (*RunJobResult, error) {
	w := newJobWorkflow(ctx, in)
	if err := w.setup(ctx); err != nil {
		return nil, err
	}
	return w.run(ctx)
}

// jobWorkflow is the state of one job's workflow. Everything here is
// rebuilt by replay; nothing is shared between workflows.
type jobWorkflow struct {
	in     *RunJobInput
	logger log.Logger
	// dctx is never cancelled: recording and teardown use it.
	dctx workflow.Context

	snap    JobSnapshot
	seq     int
	queue   []gpuflow.JobUpdate // state changes not yet recorded, in order
	writing bool

	cancelWork  workflow.CancelFunc
	cancelWatch workflow.CancelFunc
	cancelReq   *CancelSignal
	finished    *FinishedSignal
	timedOut    bool
	tearingDown bool

	machine   *gpuflow.Machine
	preempted bool // the last watch ended with the spot machine taken back
	provider  string
	logOffset int64
	blocked   map[string]gpuflow.Block
	offer     gpuflow.Offer // the current attempt's
	runningAt time.Time     // when the current machine was seen running
	ran       bool          // the current machine was seen running
	// launchFailed: the current machine failed or vanished before it ran
	// the job; launchRetries counts the launches tried again elsewhere.
	launchFailed  bool
	launchRetries int
}

func newJobWorkflow(ctx workflow.Context, in *RunJobInput) *jobWorkflow {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	return &jobWorkflow{
		in:      in,
		logger:  log.With(workflow.GetLogger(ctx), "job_id", in.JobID),
		dctx:    dctx,
		snap:    JobSnapshot{JobID: in.JobID, Status: gpuflow.StatusQueued, Attempts: []gpuflow.Attempt{}},
		blocked: map[string]gpuflow.Block{},
	}
}

// setup validates the input, creates the job's row if the API has not, and
// installs the query and signal handlers and the recorder.
func (w *jobWorkflow) setup(ctx workflow.Context) error {
	if w.in == nil || w.in.JobID == "" {
		return temporal.NewNonRetryableApplicationError("job id is required", "InvalidInput", nil)
	}
	w.snap.UpdatedAt = workflow.Now(ctx)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (JobSnapshot, error) { return w.snap, nil }); err != nil {
		return err
	}
	info := workflow.GetInfo(ctx)
	job := gpuflow.Job{
		ID: w.in.JobID, OwnerID: w.in.OwnerID, Status: gpuflow.StatusQueued, Spec: w.in.Spec,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		CreatedAt: w.in.CreatedAt, UpdatedAt: w.in.CreatedAt,
	}
	if err := workflow.ExecuteLocalActivity(withRecordOptions(w.dctx), a.CreateJob, &activities.CreateJobInput{Job: job}).Get(w.dctx, nil); err != nil {
		return err
	}
	workflow.Go(w.dctx, w.recorder)
	workflow.Go(w.dctx, w.onCancelSignal)
	workflow.Go(w.dctx, w.onProgressSignal)
	workflow.Go(w.dctx, w.onFinishedSignal)
	return nil
}

// run is the runbook.
func (w *jobWorkflow) run(ctx workflow.Context) (*RunJobResult, error) {
	workCtx, cancelWork := workflow.WithCancel(ctx)
	w.cancelWork = cancelWork
	stopTimer := w.startDeadline(workCtx)

	exitCode, failure := w.work(workCtx)
	stopTimer()

	temporalCancel := ctx.Err() != nil
	if temporalCancel && w.cancelReq == nil {
		w.cancelReq = &CancelSignal{Reason: "workflow cancelled through Temporal", RequestedBy: "temporal"}
		w.emitStatus(gpuflow.StatusCancelling, nil)
	}
	w.teardown()

	res := &RunJobResult{ExitCode: exitCode}
	switch {
	case w.cancelReq != nil:
		res.Status = gpuflow.StatusCancelled
		res.Error = "cancelled: " + w.cancelReq.Reason
	case w.timedOut:
		res.Status = gpuflow.StatusFailed
		res.Error = fmt.Sprintf("max_duration_minutes (%d) reached", *w.in.Spec.MaxDurationMinutes)
	case failure != "":
		res.Status = gpuflow.StatusFailed
		res.Error = failure
	case exitCode != nil && *exitCode == 0:
		res.Status = gpuflow.StatusSucceeded
	default:
		res.Status = gpuflow.StatusFailed
		res.Error = fmt.Sprintf("job exited with code %d", deref(exitCode))
	}
	w.finish(res)
	if temporalCancel {
		return nil, temporal.NewCanceledError(res.Error)
	}
	return res, nil
}

// work waits for admission, provisions and watches until the job ends, the
// work context is cancelled, or it fails. It returns the exit code, or a
// failure message.
func (w *jobWorkflow) work(ctx workflow.Context) (exitCode *int, failure string) {
	for ctx.Err() == nil {
		sel, failure := w.admit(ctx)
		if sel == nil {
			return nil, failure
		}
		m, err := w.provision(ctx, sel)
		w.leaveQueue() // the machine exists (or the attempt failed): release the room held for it
		if err != nil {
			if isType(err, activities.ErrTypeNoCapacity) {
				w.blocked[sel.Offer.Key()] = gpuflow.Block{Reason: "no capacity", At: workflow.Now(ctx)}
				continue
			}
			return nil, "provisioning: " + errMessage(err)
		}
		w.machine = m
		if ctx.Err() != nil { // cancelled while provisioning: teardown follows
			return nil, ""
		}
		exitCode, failure = w.watch(ctx)
		if w.preempted && w.snap.Restarts < w.in.Spec.MaxRestarts && ctx.Err() == nil {
			w.restartAfterPreemption()
			continue
		}
		if w.launchFailed && w.launchRetries < maxLaunchRetries && ctx.Err() == nil {
			w.retryLaunchElsewhere(failure)
			continue
		}
		return exitCode, failure
	}
	return nil, ""
}

// admit puts the job in the queue and waits, in "queued", until a
// dispatcher admits it (priority first, then in submission order, within
// the owner's limits), without polling: the dispatcher signals. It returns
// nil when the wait was cancelled or no offer fits (with the failure).
//
// Signals left from an earlier stay in the queue are dropped first. One
// sent by a pass that read the entry just before it was removed can still
// arrive late; it names an offer that was free a moment ago, and at worst
// costs an attempt that fails for lack of capacity.
func (w *jobWorkflow) admit(ctx workflow.Context) (*activities.SelectResult, string) {
	ch := workflow.GetSignalChannel(ctx, SignalQueue)
	for ch.ReceiveAsync(nil) {
	}
	w.emitStatus(gpuflow.StatusScheduling, nil)
	info := workflow.GetInfo(ctx)
	entry := gpuflow.QueueEntry{
		JobID: w.in.JobID, OwnerID: w.in.OwnerID, WorkflowID: info.WorkflowExecution.ID,
		Priority: w.in.Spec.Priority, SubmittedAt: w.in.CreatedAt, Spec: w.in.Spec, Blocked: w.blocked,
	}
	if entry.SubmittedAt.IsZero() {
		entry.SubmittedAt = info.WorkflowStartTime
	}
	for {
		var res activities.AdmitResult
		err := workflow.ExecuteActivity(withSelectOptions(ctx), a.Admit, &activities.AdmitInput{Entry: entry}).Get(ctx, &res)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ""
		case err != nil:
			return nil, "scheduling: " + errMessage(err)
		case res.Admitted != nil:
			return res.Admitted, ""
		}
		w.waitReason(res.Reason)
		sel, failure, again := w.awaitAdmission(ctx, ch)
		if !again {
			return sel, failure
		}
	}
}

// awaitAdmission waits in the queue for the dispatcher's signal. After
// admitRecheck without one it reports again, and the caller asks for
// admission anew (idempotent: the entry keeps its place): a signal lost
// with a crashed dispatcher never strands the job.
func (w *jobWorkflow) awaitAdmission(ctx workflow.Context, ch workflow.ReceiveChannel) (sel *activities.SelectResult, failure string, again bool) {
	tctx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	timer := workflow.NewTimer(tctx, admitRecheck)
	for {
		var sig QueueSignal
		cancelled, recheck := false, false
		s := workflow.NewSelector(ctx)
		s.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &sig) })
		s.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
		s.AddFuture(timer, func(workflow.Future) { recheck = true })
		s.Select(ctx)
		switch {
		case cancelled:
			return nil, "", false
		case recheck:
			return nil, "", true
		case sig.Admitted != nil && w.blockedNow(sig.Admitted.Offer):
			// A late answer to an earlier stay in the queue, naming the
			// offer that has just failed: not this stay's admission.
			w.logger.Warn("ignoring an admission for a blocked offer", "offer", sig.Admitted.Offer.Key())
		case sig.Admitted != nil:
			w.snap.QueueReason = ""
			w.emitStatus(gpuflow.StatusScheduling, nil)
			return sig.Admitted, "", false
		case sig.Failure != "":
			return nil, "scheduling: " + sig.Failure + reasonsText(sig.Reasons), false
		default:
			w.waitReason(sig.Reason)
		}
	}
}

// blockedNow reports whether o failed for this job recently enough to be
// blocked still.
func (w *jobWorkflow) blockedNow(o gpuflow.Offer) bool {
	b, ok := w.blocked[o.Key()]
	return ok && workflow.Now(w.dctx).Sub(b.At) < admission.DefaultBlockTTL
}

// waitReason records that the job waits in the queue, and why.
func (w *jobWorkflow) waitReason(reason string) {
	if reason == "" || reason == w.snap.QueueReason && w.snap.Status == gpuflow.StatusQueued {
		return
	}
	w.snap.QueueReason = reason
	w.emit(gpuflow.JobUpdate{Type: gpuflow.EventStatus, Status: gpuflow.StatusQueued, Data: jsonData(map[string]any{"reason": reason})})
	w.setStatus(gpuflow.StatusQueued)
}

// leaveQueue removes the job's queue entry, waking the dispatchers: room
// it held (or its share of the owner's limits) may be free now.
//
// It is retried until it succeeds: an entry left behind would hold room
// and the owner's share. (Passes also drop the entries of ended jobs.)
func (w *jobWorkflow) leaveQueue() {
	for {
		err := workflow.ExecuteLocalActivity(withRecordOptions(w.dctx), a.LeaveQueue, w.in.JobID).Get(w.dctx, nil)
		if err == nil {
			return
		}
		w.logger.Error("leaving the queue failed; trying again", "err", err)
		_ = workflow.Sleep(w.dctx, recordTimeout)
	}
}

// outcome records a provisioning outcome for the scheduler's statistics
// and the metrics.
func (w *jobWorkflow) outcome(o gpuflow.Offer, oc scheduler.Outcome, d time.Duration) {
	mh := workflow.GetMetricsHandler(w.dctx).WithTags(map[string]string{"provider": o.Provider, "outcome": oc.String()})
	mh.Counter("gpuflow_provisioning_outcomes_total").Inc(1)
	if oc != scheduler.Preempted && oc != scheduler.SpotFinished {
		mh.Timer("gpuflow_provisioning_duration_seconds").Record(d)
	}
	rec := &gpuflow.ProvisionOutcome{Provider: o.Provider, OfferKey: o.Key(), Outcome: oc.String(), Duration: d, At: workflow.Now(w.dctx)}
	if err := workflow.ExecuteLocalActivity(withRecordOptions(w.dctx), a.RecordOutcome, rec).Get(w.dctx, nil); err != nil {
		w.logger.Warn("recording a provisioning outcome failed", "err", err)
	}
}

// reasonsText formats reasons by provider for a failure message.
func reasonsText(reasons map[string][]string) string {
	if len(reasons) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(reasons)) {
		fmt.Fprintf(&b, "; %s: %s", p, strings.Join(reasons[p], ", "))
	}
	return b.String()
}

// restartAfterPreemption tears the preempted machine down (it is gone or
// going) and counts the restart; the caller provisions again, elsewhere
// when the offer is no longer available.
func (w *jobWorkflow) restartAfterPreemption() {
	w.snap.Restarts++
	w.endAttempt("preempted")
	w.teardown()
	w.machine, w.preempted, w.tearingDown = nil, false, false
	w.emit(gpuflow.JobUpdate{Type: gpuflow.EventStatus, Attempts: w.attempts(),
		Data: jsonData(map[string]any{"restart": w.snap.Restarts, "max_restarts": w.in.Spec.MaxRestarts, "reason": "spot machine preempted"})})
}

// retryLaunchElsewhere tears down a machine that failed before it ran the
// job (a launch that hung or died while booting), blocks its offer for the
// job and lets the caller admit the job again, on another offer when there
// is one: the job has not run, so nothing is lost by starting it elsewhere.
func (w *jobWorkflow) retryLaunchElsewhere(failure string) {
	w.launchRetries++
	w.endAttempt("launch failed: " + failure)
	w.teardown()
	w.machine, w.tearingDown, w.launchFailed = nil, false, false
	w.blocked[w.offer.Key()] = gpuflow.Block{Reason: "launch failed", At: workflow.Now(w.dctx)}
	w.emit(gpuflow.JobUpdate{Type: gpuflow.EventStatus, Attempts: w.attempts(),
		Data: jsonData(map[string]any{"retry": w.launchRetries, "max_retries": maxLaunchRetries, "reason": "launch failed: " + failure})})
}

// provision creates the machine for the chosen offer. It runs in the
// disconnected context: a cancel that arrives meanwhile waits for the
// answer, so a machine being created is always known and torn down.
func (w *jobWorkflow) provision(ctx workflow.Context, sel *activities.SelectResult) (*gpuflow.Machine, error) {
	o := sel.Offer
	w.provider = o.Provider
	attempt := gpuflow.Attempt{Provider: o.Provider, GPUType: o.GPUType, Region: o.Region, StartedAt: workflow.Now(ctx)}
	w.snap.Attempts = append(w.snap.Attempts, attempt)
	w.snap.Provider = o.Provider
	n := len(w.snap.Attempts)
	_ = workflow.UpsertTypedSearchAttributes(w.dctx, saProvider.ValueSet(o.Provider))
	_ = workflow.UpsertMemo(w.dctx, map[string]any{"provider_mode": sel.Mode})
	w.emit(gpuflow.JobUpdate{
		Type: gpuflow.EventStatus, Status: gpuflow.StatusProvisioning, Provider: &o.Provider, Price: ptr(jobPrice(sel)),
		Attempts: w.attempts(), Data: jsonData(map[string]any{"offer": o, "score": sel.Score, "breakdown": sel.Breakdown, "mode": sel.Mode, "alternatives": sel.Alternatives}),
	})

	req := gpuflow.ProvisionRequest{
		JobID:          w.in.JobID,
		IdempotencyKey: fmt.Sprintf("%s-a%d", w.in.JobID, n),
		Offer:          o,
		Spec:           w.in.Spec,
		Tags:           map[string]string{gpuflow.TagManaged: "true", gpuflow.TagJob: w.in.JobID},
	}
	var m gpuflow.Machine
	err := workflow.ExecuteActivity(withProvisionOptions(w.dctx, o.Provider), a.Provision,
		&activities.ProvisionInput{Provider: o.Provider, Request: req}).Get(w.dctx, &m)
	w.offer, w.ran, w.launchFailed, w.runningAt = o, false, false, time.Time{}
	if err != nil {
		outcome, oc := "provision failed: "+errMessage(err), scheduler.Failed
		if isType(err, activities.ErrTypeNoCapacity) {
			outcome, oc = "no capacity", scheduler.NoCapacity
		}
		w.endAttempt(outcome)
		w.outcome(o, oc, workflow.Now(ctx).Sub(attempt.StartedAt))
		return nil, err
	}
	w.snap.Attempts[n-1].MachineID = m.ID
	w.snap.MachineID = m.ID
	w.emit(gpuflow.JobUpdate{Type: gpuflow.EventStatus, MachineID: &m.ID, Attempts: w.attempts(),
		Data: jsonData(map[string]any{"machine": m})})
	return &m, nil
}

// watch waits until the machine runs the job, then until the job ends or
// the machine's agent reports the exit code through the finished signal
// (which may come before the machine was even seen running).
func (w *jobWorkflow) watch(ctx workflow.Context) (exitCode *int, failure string) {
	in := activities.WatchInput{Provider: w.provider, JobID: w.in.JobID, MachineID: w.machine.ID, Until: activities.UntilRunning}
	var res activities.WatchResult
	for _, until := range []string{activities.UntilRunning, activities.UntilExit} {
		if w.finished != nil {
			break
		}
		if until == activities.UntilExit && res.Machine.State != gpuflow.MachineRunning {
			break
		}
		watchCtx, cancelWatch := workflow.WithCancel(ctx)
		w.cancelWatch = cancelWatch
		in.Until, in.LogOffset = until, w.logOffset
		err := workflow.ExecuteActivity(withWatchOptions(watchCtx, w.provider), a.WatchMachine, &in).Get(watchCtx, &res)
		w.cancelWatch = nil
		switch {
		case w.finished != nil: // the machine's agent reported first
		case err != nil && ctx.Err() != nil:
			return nil, ""
		case err != nil:
			return nil, "watching the job: " + errMessage(err)
		default:
			w.logOffset = res.LogOffset
		}
		if until == activities.UntilRunning && (w.finished != nil || res.Machine.State == gpuflow.MachineRunning || res.Machine.State == gpuflow.MachineExited) {
			w.running()
		} else if until == activities.UntilRunning && err == nil {
			w.outcome(w.offer, scheduler.Failed, workflow.Now(ctx).Sub(w.attemptStart()))
		}
	}
	if w.finished != nil {
		return &w.finished.ExitCode, ""
	}
	w.preempted = res.Machine.Preempted()
	switch {
	case w.preempted && w.ran:
		w.outcome(w.offer, scheduler.Preempted, workflow.Now(ctx).Sub(w.runningAt))
	case w.in.Spec.Spot && w.ran:
		w.outcome(w.offer, scheduler.SpotFinished, workflow.Now(ctx).Sub(w.runningAt))
	}
	// A preemption is governed by max_restarts alone, before the job ran or after.
	w.launchFailed = !w.ran && !w.preempted && (res.Machine.State == gpuflow.MachineFailed || res.Machine.State == gpuflow.MachineGone)
	switch res.Machine.State {
	case gpuflow.MachineExited:
		if res.Machine.ExitCode == nil {
			return nil, "the job ended without an exit code"
		}
		return res.Machine.ExitCode, ""
	case gpuflow.MachineGone:
		return nil, "the machine disappeared"
	default:
		return nil, "the machine failed: " + res.Machine.Reason
	}
}

// jobPrice is what the job costs per hour on the chosen offer: its GPUs
// at the offer's price (the spot price for spot jobs), as the scheduler
// computed it; the offer's own price when the decision lacks it.
func jobPrice(sel *activities.SelectResult) float64 {
	if sel.PricePerHour > 0 {
		return sel.PricePerHour
	}
	return sel.Offer.PricePerHour
}

// running marks the job running and records the time its machine took.
func (w *jobWorkflow) running() {
	if w.ran {
		return
	}
	w.ran = true
	w.runningAt = workflow.Now(w.dctx)
	w.outcome(w.offer, scheduler.Started, w.runningAt.Sub(w.attemptStart()))
	w.emitStatus(gpuflow.StatusRunning, nil)
}

// attemptStart is when the current attempt began.
func (w *jobWorkflow) attemptStart() time.Time {
	if n := len(w.snap.Attempts); n > 0 {
		return w.snap.Attempts[n-1].StartedAt
	}
	return workflow.Now(w.dctx)
}

// teardown terminates the machine, if there is one, retrying until the
// provider confirms it is gone. It runs in the disconnected context, so
// cancellation cannot stop it.
func (w *jobWorkflow) teardown() {
	if w.machine == nil {
		return
	}
	w.tearingDown = true
	in := activities.TerminateInput{Provider: w.provider, JobID: w.in.JobID, MachineID: w.machine.ID, LogOffset: w.logOffset}
	var res activities.TerminateResult
	for {
		err := workflow.ExecuteActivity(withTerminateOptions(w.dctx, w.provider), a.TerminateMachine, &in).Get(w.dctx, &res)
		if err == nil {
			break
		}
		// Only a non-retryable error ends the retry policy; keep going anyway:
		// a machine is never left behind.
		w.logger.Error("teardown failed; trying again", "machine_id", w.machine.ID, "err", err)
		_ = workflow.Sleep(w.dctx, teardownRetryWait)
	}
	w.logOffset = res.LogOffset
}

// finish records the outcome and waits until every state change is written.
func (w *jobWorkflow) finish(res *RunJobResult) {
	outcome := string(res.Status)
	if res.Error != "" {
		outcome += ": " + res.Error
	}
	w.endAttempt(outcome)
	w.snap.ExitCode, w.snap.Error = res.ExitCode, res.Error
	u := gpuflow.JobUpdate{Type: gpuflow.EventStatus, Status: res.Status, ExitCode: res.ExitCode, Attempts: w.attempts()}
	if res.Error != "" {
		u.Error = &res.Error
	}
	w.emit(u)
	w.setStatus(res.Status)
	_ = workflow.Await(w.dctx, func() bool { return len(w.queue) == 0 && !w.writing })
	// Last, with the final status written: the pass this wakes counts the
	// room and the owner's share this job held as free.
	w.leaveQueue()
}

// startDeadline cancels the work when max_duration_minutes is reached.
func (w *jobWorkflow) startDeadline(ctx workflow.Context) (stop func()) {
	d := w.in.Spec.MaxDuration()
	if d <= 0 {
		return func() {}
	}
	tctx, cancel := workflow.WithCancel(ctx)
	workflow.Go(tctx, func(c workflow.Context) {
		if err := workflow.Sleep(c, d); err == nil {
			w.timedOut = true
			w.cancelWork()
		}
	})
	return cancel
}

func (w *jobWorkflow) onCancelSignal(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, SignalCancel)
	for {
		var s CancelSignal
		ch.Receive(ctx, &s)
		if w.cancelReq != nil || w.tearingDown || w.snap.Status.Terminal() {
			continue
		}
		if s.Reason == "" {
			s.Reason = "cancel requested"
		}
		w.cancelReq = &s
		w.snap.Cancel = &s
		w.emitStatus(gpuflow.StatusCancelling, map[string]any{"reason": s.Reason, "requested_by": s.RequestedBy})
		w.cancelWork()
	}
}

func (w *jobWorkflow) onProgressSignal(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, SignalProgress)
	for {
		var s ProgressSignal
		ch.Receive(ctx, &s)
		if s.Percent < 0 || s.Percent > 100 {
			w.logger.Warn("progress signal out of range ignored", "percent", s.Percent)
			continue
		}
		w.snap.Progress = &s
		w.emit(gpuflow.JobUpdate{Type: gpuflow.EventProgress, Data: jsonData(s)})
	}
}

func (w *jobWorkflow) onFinishedSignal(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, SignalFinished)
	for {
		var s FinishedSignal
		ch.Receive(ctx, &s)
		if w.finished != nil || w.tearingDown {
			continue
		}
		w.finished = &s
		if w.cancelWatch != nil {
			w.cancelWatch()
		}
	}
}

// recorder writes queued state changes one at a time, in order, so that
// per-job sequence numbers reach the store in sequence.
func (w *jobWorkflow) recorder(ctx workflow.Context) {
	lctx := withRecordOptions(ctx)
	for {
		_ = workflow.Await(ctx, func() bool { return len(w.queue) > 0 })
		w.writing = true
		u := w.queue[0]
		if err := workflow.ExecuteLocalActivity(lctx, a.RecordUpdate, &u).Get(lctx, nil); err != nil {
			w.logger.Error("recording a state change failed", "seq", u.Seq, "err", err)
		}
		w.queue = w.queue[1:]
		w.writing = false
	}
}

// emit queues a state change for the recorder.
func (w *jobWorkflow) emit(u gpuflow.JobUpdate) {
	w.seq++
	u.JobID, u.Seq, u.At = w.in.JobID, w.seq, workflow.Now(w.dctx)
	w.snap.UpdatedAt = u.At
	w.queue = append(w.queue, u)
}

// emitStatus moves the job to status s (unless it is there already).
func (w *jobWorkflow) emitStatus(s gpuflow.JobStatus, data map[string]any) {
	if w.snap.Status == s || w.snap.Status.Terminal() {
		return
	}
	u := gpuflow.JobUpdate{Type: gpuflow.EventStatus, Status: s, Started: s == gpuflow.StatusRunning}
	if data != nil {
		u.Data = jsonData(data)
	}
	w.emit(u)
	w.setStatus(s)
}

func (w *jobWorkflow) setStatus(s gpuflow.JobStatus) {
	w.snap.Status = s
	if err := workflow.UpsertTypedSearchAttributes(w.dctx, saStatus.ValueSet(string(s))); err != nil {
		w.logger.Warn("upsert status search attribute", "err", err)
	}
}

func (w *jobWorkflow) endAttempt(outcome string) {
	n := len(w.snap.Attempts)
	if n == 0 || w.snap.Attempts[n-1].EndedAt != nil {
		return
	}
	now := workflow.Now(w.dctx)
	w.snap.Attempts[n-1].EndedAt = &now
	w.snap.Attempts[n-1].Outcome = outcome
}

func (w *jobWorkflow) attempts() []gpuflow.Attempt {
	return append([]gpuflow.Attempt(nil), w.snap.Attempts...)
}

func isType(err error, typ string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == typ
}

// errMessage is the innermost application error's message, without the SDK's
// wrapping ("activity error (type: ..., scheduledEventID: ...)").
func errMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Error()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return te.Error()
	}
	return err.Error()
}

func jsonData(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func deref(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}
