package workflows

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
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
	// outcomes are provisioning outcomes not yet recorded (outcomeWriter).
	outcomes       []gpuflow.ProvisionOutcome
	writingOutcome bool

	cancelWork  workflow.CancelFunc
	cancelReq   *CancelSignal
	finished    *FinishedSignal
	timedOut    bool
	tearingDown bool // the current machine is being torn down: its reports are dropped
	// ending: the work is over and the final teardown runs; a cancel
	// changes nothing any more. (A teardown before the job is tried
	// again is not the end: a cancel then ends the job cancelled.)
	ending bool

	machine   *gpuflow.Machine
	preempted bool // the last watch ended with the spot machine taken back
	provider  string
	blocked   map[string]gpuflow.Block
	offer     gpuflow.Offer // the current attempt's
	runningAt time.Time     // when the current machine was seen running
	ran       bool          // the current machine was seen running
	// launchFailed: the current machine failed or vanished before it ran
	// the job; launchRetries counts the launches tried again elsewhere.
	launchFailed  bool
	launchRetries int
	// noCapacityTries counts the attempts refused for lack of capacity
	// since the job's last machine.
	noCapacityTries int
	// unwatched: the current machine's watch is not recorded yet (the
	// store was down as it was provisioned); the safety check comes soon.
	unwatched bool

	// seen are the machine states the watcher (or a safety check)
	// reported and the watch has not handled yet, in order.
	seen []gpuflow.Machine
	// lastReport is the id of the last agent report applied (progress).
	lastReport int64
	// deadline is when max_duration_minutes is reached (zero: none).
	deadline time.Time
	// continueAsNew: the watch stopped to carry on in a new run.
	continueAsNew bool
	// agentRan: the machine's agent reported progress.
	agentRan bool
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
	if d := w.in.Spec.MaxDuration(); d > 0 {
		w.deadline = w.in.CreatedAt.Add(d)
		if w.in.CreatedAt.IsZero() {
			w.deadline = workflow.GetInfo(ctx).WorkflowStartTime.Add(d)
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (JobSnapshot, error) { return w.snap, nil }); err != nil {
		return err
	}
	if r := w.in.Resume; r != nil {
		w.resume(ctx, r)
		w.startHandlers()
		return nil
	}
	info := workflow.GetInfo(ctx)
	job := gpuflow.Job{
		ID: w.in.JobID, OwnerID: w.in.OwnerID, Status: gpuflow.StatusQueued, Spec: w.in.Spec,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		CreatedAt: w.in.CreatedAt, UpdatedAt: w.in.CreatedAt,
	}
	// Retried until the store takes it: the API has answered for the job.
	if err := w.write(w.dctx, "creating the job's row", a.CreateJob, &activities.CreateJobInput{Job: job}); err != nil {
		return err
	}
	w.startHandlers()
	return nil
}

func (w *jobWorkflow) startHandlers() {
	workflow.Go(w.dctx, w.recorder)
	workflow.Go(w.dctx, w.outcomeWriter)
	workflow.Go(w.dctx, w.onCancelSignal)
	workflow.Go(w.dctx, w.onProgressSignal)
	workflow.Go(w.dctx, w.onFinishedSignal)
	workflow.Go(w.dctx, w.onMachineSignal)
}

// run is the runbook.
func (w *jobWorkflow) run(ctx workflow.Context) (*RunJobResult, error) {
	workCtx, cancelWork := workflow.WithCancel(ctx)
	w.cancelWork = cancelWork
	stopTimer := w.startDeadline(workCtx)

	exitCode, failure := w.work(workCtx)
	stopTimer()
	if w.continueAsNew {
		_ = workflow.Await(w.dctx, w.written)
		if w.cancelReq == nil && ctx.Err() == nil {
			return nil, w.carryOn(ctx)
		}
		// Cancelled while the writes finished: the job ends in this run.
	}
	w.ending = true

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
	watching := w.machine != nil // a run continued from an earlier one, during its watch
	for ctx.Err() == nil {
		if !watching {
			sel, failure := w.admit(ctx)
			if sel == nil {
				return nil, failure
			}
			m, err := w.provision(ctx, sel)
			w.leaveQueue(ctx) // the machine exists (or the attempt failed): release the room held for it
			if err != nil {
				if isType(err, activities.ErrTypeNoCapacity) {
					if failure := w.noCapacity(sel.Offer, err); failure != "" {
						return nil, failure
					}
					continue
				}
				return nil, "provisioning: " + errMessage(err)
			}
			w.noCapacityTries = 0
			if b := w.blocked[sel.Offer.Key()]; b.Reason == blockNoCapacity {
				delete(w.blocked, sel.Offer.Key())
			}
			w.machine = m
			if ctx.Err() != nil { // cancelled while provisioning: teardown follows
				return nil, ""
			}
		}
		watching = false
		exitCode, failure = w.watch(ctx)
		if w.continueAsNew {
			return nil, ""
		}
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
	return ok && workflow.Now(w.dctx).Before(b.Expiry(admission.DefaultBlockTTL))
}

// blockNoCapacity is the reason of an offer blocked after "no capacity".
const blockNoCapacity = "no capacity"

// noCapacity handles an attempt refused for lack of capacity (an offer
// that does not say its stock, or a stale count): the offer is blocked for
// the job, for the admission's block TTL doubled with each refusal in a row
// up to maxNoCapacityBackoff, and the job waits in the queue for another
// offer or the block's end. After maxNoCapacityAttempts refusals since its
// last machine the job fails: it returns the failure then, "" otherwise.
func (w *jobWorkflow) noCapacity(o gpuflow.Offer, err error) string {
	w.noCapacityTries++
	now := workflow.Now(w.dctx)
	n := 1
	if prev, ok := w.blocked[o.Key()]; ok && prev.Reason == blockNoCapacity {
		n = max(prev.Count, 1) + 1
	}
	wait := admission.DefaultBlockTTL
	for i := 1; i < n && wait < maxNoCapacityBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, maxNoCapacityBackoff)
	w.blocked[o.Key()] = gpuflow.Block{Reason: blockNoCapacity, At: now, Until: now.Add(wait), Count: n}
	if w.noCapacityTries >= maxNoCapacityAttempts {
		return fmt.Sprintf("provisioning: no capacity after %d attempts; the last: %s", w.noCapacityTries, errMessage(err))
	}
	return ""
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
// It is retried until it succeeds (or ctx is cancelled: the job's end
// leaves the queue again, in the never-cancelled context): an entry left
// behind would hold room and the owner's share. (Passes also drop the
// entries of ended jobs.)
func (w *jobWorkflow) leaveQueue(ctx workflow.Context) {
	if err := w.write(ctx, "leaving the queue", a.LeaveQueue, &activities.LeaveQueueInput{JobID: w.in.JobID}); err != nil && ctx.Err() == nil {
		w.logger.Error("leaving the queue failed for good", "err", err)
	}
}

// write runs one write to the job store (fn, a store activity, with in):
// as a local activity first, and when that does not succeed in
// recordTimeout (the store is down), as a regular activity that the
// server retries without a limit on attempts or time until the store
// answers. It returns an error only for a write the store refuses for good
// (activities.ErrTypeInvalidRecord), or when ctx is cancelled.
func (w *jobWorkflow) write(ctx workflow.Context, what string, fn, in any) error {
	err := workflow.ExecuteLocalActivity(withRecordOptions(ctx), fn, in).Get(ctx, nil)
	if err == nil || isType(err, activities.ErrTypeInvalidRecord) || ctx.Err() != nil {
		return err
	}
	w.logger.Warn(what+" failed; trying again until the job store answers", "err", err)
	for {
		err = workflow.ExecuteActivity(withStoreOptions(ctx), fn, in).Get(ctx, nil)
		if err == nil || isType(err, activities.ErrTypeInvalidRecord) || ctx.Err() != nil {
			return err
		}
		// The server retries without a limit; were a limit imposed
		// anyway (the test suite caps attempts at 10), schedule it anew.
		w.logger.Warn(what+" still failing; trying again", "err", err)
	}
}

// outcome records a provisioning outcome for the scheduler's statistics
// and the metrics. The write is queued (outcomeWriter), so a store that is
// down never holds up the job, its teardown above all.
func (w *jobWorkflow) outcome(o gpuflow.Offer, oc scheduler.Outcome, d time.Duration) {
	mh := workflow.GetMetricsHandler(w.dctx).WithTags(map[string]string{"provider": o.Provider, "outcome": oc.String()})
	mh.Counter("gpuflow_provisioning_outcomes_total").Inc(1)
	if oc != scheduler.Preempted && oc != scheduler.SpotFinished {
		mh.Timer("gpuflow_provisioning_duration_seconds").Record(d)
	}
	// The key makes the write idempotent: one outcome of each kind per attempt.
	key := fmt.Sprintf("%s/a%d/%s", w.in.JobID, len(w.snap.Attempts), oc)
	w.outcomes = append(w.outcomes, gpuflow.ProvisionOutcome{Provider: o.Provider, OfferKey: o.Key(), Outcome: oc.String(), Duration: d,
		At: workflow.Now(w.dctx), Key: key})
}

// outcomeWriter records queued provisioning outcomes, one at a time.
func (w *jobWorkflow) outcomeWriter(ctx workflow.Context) {
	for {
		_ = workflow.Await(ctx, func() bool { return len(w.outcomes) > 0 })
		w.writingOutcome = true
		if err := w.write(ctx, "recording a provisioning outcome", a.RecordOutcome, &activities.RecordOutcomeInput{Outcome: w.outcomes[0]}); err != nil {
			w.logger.Error("a provisioning outcome the store refuses is dropped", "err", err)
		}
		w.outcomes = w.outcomes[1:]
		w.writingOutcome = false
	}
}

// written reports whether every queued state change and outcome is in the
// store.
func (w *jobWorkflow) written() bool {
	return len(w.queue) == 0 && !w.writing && len(w.outcomes) == 0 && !w.writingOutcome
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
		// Agent tokens and the cloud's own safety timer cover the job's
		// whole allowed life.
		MaxDuration: cmp.Or(w.in.Spec.MaxDuration(), gpuflow.MaxJobLife),
	}
	var res activities.ProvisionResult
	w.seen = nil // reports from here on are on this attempt's machine (or dropped by the watch)
	host, err := w.pickHost(sel)
	if err == nil {
		err = workflow.ExecuteActivity(withProvisionOptions(w.dctx, machineQueue(o.Provider, host), host), a.Provision,
			&activities.ProvisionInput{Provider: o.Provider, Request: req, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID}).Get(w.dctx, &res)
		if isScheduleToStart(err) {
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("host %s did not take the job within %s", host, hostPickup), activities.ErrTypeNoCapacity, err)
		}
	}
	m := res.Machine
	if m.Host == "" {
		m.Host = host
	}
	w.offer, w.ran, w.launchFailed, w.runningAt, w.agentRan = o, false, false, time.Time{}, false
	if err != nil {
		outcome, oc := "provision failed: "+errMessage(err), scheduler.Failed
		if isType(err, activities.ErrTypeNoCapacity) {
			outcome, oc = "no capacity", scheduler.NoCapacity
		}
		w.endAttempt(outcome)
		w.outcome(o, oc, workflow.Now(ctx).Sub(attempt.StartedAt))
		return nil, err
	}
	w.unwatched = res.Unwatched
	w.snap.Attempts[n-1].MachineID = m.ID
	w.snap.MachineID = m.ID
	w.emit(gpuflow.JobUpdate{Type: gpuflow.EventStatus, MachineID: &m.ID, Attempts: w.attempts(),
		Data: jsonData(map[string]any{"machine": m})})
	return &m, nil
}

// pickHost chooses the host for a machine of a provider that runs machines
// on the worker's own host (mode local): whichever of its hosts takes
// PickHost on the provider's shared queue. The machine's activities then
// go to that host's own queue (HostTaskQueue), retries included, so they
// never reach a host without the job. "" for clouds.
func (w *jobWorkflow) pickHost(sel *activities.SelectResult) (string, error) {
	if sel.Mode != gpuflow.ModeLocal {
		return "", nil
	}
	var res activities.PickHostResult
	err := workflow.ExecuteActivity(withPickHostOptions(w.dctx, sel.Offer.Provider), a.PickHost,
		&activities.PickHostInput{Provider: sel.Offer.Provider}).Get(w.dctx, &res)
	return res.Host, err
}

// machineQueue is the task queue of the activities on a machine of
// provider on host ("" for clouds).
func machineQueue(provider, host string) string {
	if host == "" {
		return ProviderTaskQueue(provider)
	}
	return HostTaskQueue(provider, host)
}

// machineTaskQueue is the task queue of the current machine's activities.
func (w *jobWorkflow) machineTaskQueue() string { return machineQueue(w.provider, w.machine.Host) }

// watch waits until the job on the machine ends, without polling: the
// provider's watcher signals when the machine runs, exits, fails or
// vanishes, and the machine's agent reports progress and the exit code
// (which may come before the machine was even seen running). A long
// safety timer runs CheckMachine, so a dead watcher never strands the
// job. A long watch stops to continue as new (continueAsNew) before the
// history grows large.
func (w *jobWorkflow) watch(ctx workflow.Context) (exitCode *int, failure string) {
	tctx, cancelTimers := workflow.WithCancel(ctx)
	defer cancelTimers()
	check := workflow.NewTimer(tctx, w.checkAfter())
	var grace workflow.Future // waiting for the exit code of a machine that stopped
	var exited *gpuflow.Machine
	for {
		if w.finished != nil {
			w.running()
			w.spotFinished(ctx)
			return &w.finished.ExitCode, ""
		}
		for len(w.seen) > 0 {
			m := w.seen[0]
			w.seen = w.seen[1:]
			if m.ID != w.machine.ID {
				continue
			}
			switch m.State {
			case gpuflow.MachineRunning:
				w.running()
			case gpuflow.MachineExited:
				w.running()
				if m.ExitCode != nil {
					w.spotFinished(ctx)
					return m.ExitCode, ""
				}
				// Stopped without saying how: the agent's report may
				// still be on its way.
				if exited == nil {
					exited = &m
					grace = workflow.NewTimer(tctx, exitReportGrace)
				}
			case gpuflow.MachineFailed, gpuflow.MachineGone:
				return nil, w.machineEnded(ctx, m)
			}
		}
		if w.agentRan {
			w.agentRan = false
			w.running()
		}
		if exited != nil && grace.IsReady() {
			return nil, "the job ended without reporting an exit code"
		}
		if ctx.Err() != nil {
			return nil, ""
		}
		if w.historyLong(ctx) {
			w.continueAsNew = true
			return nil, ""
		}
		if check.IsReady() {
			w.check(ctx)
			check = workflow.NewTimer(tctx, w.checkAfter())
			continue
		}
		_ = workflow.Await(ctx, func() bool {
			return w.finished != nil || len(w.seen) > 0 || (w.agentRan && !w.ran) || check.IsReady() || (grace != nil && grace.IsReady()) || w.historyLong(ctx)
		})
	}
}

// machineEnded handles a machine that failed or vanished under the job:
// a spot machine taken back (restart), one that died before it ran the
// job (launch again elsewhere), or one that died with it (the job fails).
func (w *jobWorkflow) machineEnded(ctx workflow.Context, m gpuflow.Machine) string {
	w.preempted = m.Preempted()
	switch {
	case w.preempted && w.ran:
		w.outcome(w.offer, scheduler.Preempted, workflow.Now(ctx).Sub(w.runningAt))
	case !w.ran:
		w.outcome(w.offer, scheduler.Failed, workflow.Now(ctx).Sub(w.attemptStart()))
	}
	// A preemption is governed by max_restarts alone, before the job ran or after.
	w.launchFailed = !w.ran && !w.preempted
	if m.State == gpuflow.MachineGone {
		return "the machine disappeared"
	}
	return "the machine failed: " + m.Reason
}

// spotFinished records that a spot machine lasted until its job ended.
func (w *jobWorkflow) spotFinished(ctx workflow.Context) {
	if w.in.Spec.Spot && w.ran {
		w.outcome(w.offer, scheduler.SpotFinished, workflow.Now(ctx).Sub(w.runningAt))
	}
}

// check is the safety check on the watch's long timer.
func (w *jobWorkflow) check(ctx workflow.Context) {
	in := &activities.CheckMachineInput{Provider: w.provider, JobID: w.in.JobID,
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, MachineID: w.machine.ID}
	var res activities.CheckMachineResult
	if err := workflow.ExecuteActivity(withCheckOptions(ctx, w.machineTaskQueue()), a.CheckMachine, in).Get(ctx, &res); err != nil {
		w.logger.Warn("safety check of the machine failed; trying again on the next timer", "err", err)
		return
	}
	w.unwatched = false // the check records a missing watch
	if res.Machine != nil && res.Machine.ID == w.machine.ID {
		w.seen = append(w.seen, *res.Machine)
	}
}

// checkAfter is the wait before the next safety check: safetyCheck, or
// unwatchedCheck while the machine's watch is not recorded.
func (w *jobWorkflow) checkAfter() time.Duration {
	if w.unwatched {
		return unwatchedCheck
	}
	return safetyCheck
}

// historyLong reports whether the run's history is long enough to carry
// on in a new run: Temporal suggests it, or it passed continueAsNewAt.
func (w *jobWorkflow) historyLong(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= continueAsNewAt
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
	in := activities.TerminateInput{Provider: w.provider, JobID: w.in.JobID, MachineID: w.machine.ID}
	var res activities.TerminateResult
	for {
		err := workflow.ExecuteActivity(withTerminateOptions(w.dctx, w.machineTaskQueue()), a.TerminateMachine, &in).Get(w.dctx, &res)
		if err == nil {
			break
		}
		// Only a non-retryable error ends the retry policy; keep going anyway:
		// a machine is never left behind.
		w.logger.Error("teardown failed; trying again", "machine_id", w.machine.ID, "err", err)
		_ = workflow.Sleep(w.dctx, teardownRetryWait)
	}
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
	_ = workflow.Await(w.dctx, w.written)
	// Last, with the final status written: the pass this wakes counts the
	// room and the owner's share this job held as free.
	w.leaveQueue(w.dctx)
	// A queue signal from a pass that read the entry before it went means
	// nothing now: drop it, rather than end with it unhandled. (No
	// command: old histories replay the same.)
	ch := workflow.GetSignalChannel(w.dctx, SignalQueue)
	for ch.ReceiveAsync(nil) {
	}
}

// startDeadline cancels the work when max_duration_minutes is reached.
func (w *jobWorkflow) startDeadline(ctx workflow.Context) (stop func()) {
	if w.deadline.IsZero() {
		return func() {}
	}
	d := w.deadline.Sub(workflow.Now(ctx))
	tctx, cancel := workflow.WithCancel(ctx)
	workflow.Go(tctx, func(c workflow.Context) {
		if err := workflow.Sleep(c, max(d, time.Millisecond)); err == nil {
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
		if w.cancelReq != nil || w.ending || w.snap.Status.Terminal() {
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
		if s.ReportID != 0 {
			if s.ReportID <= w.lastReport {
				continue // delivered again, or overtaken by a newer report
			}
			w.lastReport = s.ReportID
		}
		w.snap.Progress = &ProgressSignal{Percent: s.Percent, Message: s.Message}
		w.emitProgress(gpuflow.JobUpdate{Type: gpuflow.EventProgress, Data: jsonData(w.snap.Progress)})
		if w.machine != nil && !w.tearingDown {
			w.agentRan = true // the agent runs: so does the job (the watch records it)
		}
	}
}

// onMachineSignal takes the watcher's reports on the current machine.
func (w *jobWorkflow) onMachineSignal(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, SignalMachine)
	for {
		var s MachineSignal
		ch.Receive(ctx, &s)
		if w.tearingDown || (w.machine != nil && s.Machine.ID != w.machine.ID) {
			continue // an earlier attempt's machine, or one being torn down
		}
		// Without a machine yet, keep it: the watcher may see the new
		// machine end before Provision's answer reaches the workflow; the
		// watch drops reports on other machines.
		w.seen = append(w.seen, s.Machine)
	}
}

// emitProgress queues a progress update, replacing one still waiting to be
// written: progress is coalesced, the latest wins.
func (w *jobWorkflow) emitProgress(u gpuflow.JobUpdate) {
	if n := len(w.queue); n > 0 && w.queue[n-1].Type == gpuflow.EventProgress && !(n == 1 && w.writing) {
		w.queue[n-1].Data = u.Data
		w.queue[n-1].At = workflow.Now(w.dctx)
		return
	}
	w.emit(u)
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
	}
}

// recorder writes queued state changes one at a time, in order, so that
// per-job sequence numbers reach the store in sequence. A store that is
// down holds the queue until it answers again (write), however long that
// takes; only a change the store refuses for good is dropped.
func (w *jobWorkflow) recorder(ctx workflow.Context) {
	for {
		_ = workflow.Await(ctx, func() bool { return len(w.queue) > 0 })
		w.writing = true
		u := w.queue[0]
		err := w.write(ctx, "recording a state change", a.RecordUpdate, &activities.RecordUpdateInput{Update: u})
		if last, ok := activities.SeqTakenLast(err); ok && last >= u.Seq {
			// A lost workflow task wrote changes this run never made
			// (see gpuflow.JobUpdate): number this one and the rest on
			// from the store's last, and write it again. (Histories from
			// before this answer existed never hold it: they replay.)
			w.logger.Warn("the job store holds changes of a lost workflow task; numbering on from its last", "seq", u.Seq, "store_last_seq", last)
			w.renumber(last + 1 - u.Seq)
			w.writing = false
			continue
		}
		if err != nil {
			w.logger.Error("a state change the store refuses is dropped", "seq", u.Seq, "err", err)
		}
		w.queue = w.queue[1:]
		w.writing = false
	}
}

// renumber moves the queued state changes, and the ones to come, by shift.
func (w *jobWorkflow) renumber(shift int) {
	for i := range w.queue {
		w.queue[i].Seq += shift
	}
	w.seq += shift
}

// resume takes over the state of the run this one continues, in the watch
// of its machine.
func (w *jobWorkflow) resume(ctx workflow.Context, r *JobResume) {
	w.seq, w.snap, w.machine, w.provider, w.offer = r.Seq, r.Snapshot, r.Machine, r.Provider, r.Offer
	w.ran, w.runningAt, w.launchRetries, w.lastReport, w.seen = r.Ran, r.RunningAt, r.LaunchRetries, r.LastReport, r.Seen
	w.finished, w.unwatched = r.Finished, r.Unwatched
	if r.Blocked != nil {
		w.blocked = r.Blocked
	}
	if w.snap.Attempts == nil {
		w.snap.Attempts = []gpuflow.Attempt{}
	}
	// The new run's search attributes start as the API set them: bring
	// them up to date.
	gpu := w.in.Spec.GPUType
	if w.in.Spec.GPUCount == 0 {
		gpu = gpuflow.CPUOnly
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, saOwner.ValueSet(w.in.OwnerID), saGPUType.ValueSet(gpu),
		saProvider.ValueSet(w.provider), saStatus.ValueSet(string(w.snap.Status)))
}

// carryOn continues the job in a new run once every state change is
// written, carrying the watch's state; signals that arrived meanwhile were
// taken by their handlers (and Temporal refuses to continue while new ones
// wait, so none is lost).
func (w *jobWorkflow) carryOn(ctx workflow.Context) error {
	_ = workflow.Await(w.dctx, w.written)
	in := *w.in
	in.Resume = &JobResume{
		Seq: w.seq, Snapshot: w.snap, Machine: w.machine, Provider: w.provider, Offer: w.offer,
		Blocked: w.blocked, Ran: w.ran, RunningAt: w.runningAt, LaunchRetries: w.launchRetries,
		LastReport: w.lastReport, Seen: w.seen, Finished: w.finished, Unwatched: w.unwatched,
	}
	w.logger.Info("continuing as new", "history_length", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	return workflow.NewContinueAsNewError(ctx, JobWorkflowName, &in)
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

// isScheduleToStart reports whether err is an activity that no worker
// took in time.
func isScheduleToStart(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
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
