package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
	"github.com/gpuflow/gpuflow/workflows"
)

// Defaults of a submitted spec.
const (
	defaultGPUCount          = 1
	defaultPriority          = 5
	defaultEstimatedDuration = 60 // minutes
	maxCancelReasonLen       = 1000
)

// providerNamePattern is what a provider filter may be.
var providerNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// maxCursorLen bounds a listing's cursor (the store's are far shorter).
const maxCursorLen = 512

// saGPUType is the GPU type search attribute (workflows.StartSearchAttributes sets them all).
var saGPUType = temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttrGPUType)

// submitRequest is the body of "POST /api/gpu/jobs/submit". Pointers tell an
// absent field (which gets its default) from an explicit zero.
type submitRequest struct {
	Name               string            `json:"name"`
	Image              string            `json:"image"`
	Command            []string          `json:"command"`
	Env                map[string]string `json:"env"`
	GPUType            string            `json:"gpu_type"`
	GPUCount           *int              `json:"gpu_count"`
	MemoryGB           float64           `json:"memory_gb"`
	VCPUs              int               `json:"vcpus"`
	DiskGB             int               `json:"disk_gb"`
	Priority           *int              `json:"priority"`
	Strategy           string            `json:"strategy"`
	Provider           string            `json:"provider"`
	Providers          []string          `json:"providers"`
	Spot               bool              `json:"spot"`
	MaxPricePerHour    *float64          `json:"max_price_per_hour"`
	MaxDurationMinutes *int              `json:"max_duration_minutes"`
	EstimatedDuration  *int              `json:"estimated_duration"`
	MaxRestarts        int               `json:"max_restarts"`
}

// spec returns the job spec the request asks for, with defaults filled in.
func (r *submitRequest) spec() gpuflow.JobSpec {
	spec := gpuflow.JobSpec{
		Name: r.Name, Image: r.Image, Command: r.Command, Env: r.Env, GPUType: r.GPUType,
		GPUCount: defaultGPUCount, MemoryGB: r.MemoryGB, VCPUs: r.VCPUs, DiskGB: r.DiskGB,
		Priority: defaultPriority, Strategy: r.Strategy, Provider: r.Provider, Providers: r.Providers,
		Spot: r.Spot, MaxPricePerHour: r.MaxPricePerHour, MaxDurationMinutes: r.MaxDurationMinutes,
		EstimatedDuration: defaultEstimatedDuration, MaxRestarts: r.MaxRestarts,
	}
	if r.GPUCount != nil {
		spec.GPUCount = *r.GPUCount
	}
	if r.Priority != nil {
		spec.Priority = *r.Priority
	}
	if r.EstimatedDuration != nil {
		spec.EstimatedDuration = *r.EstimatedDuration
	}
	if spec.Strategy == "" {
		spec.Strategy = gpuflow.StrategyBalanced
	}
	return spec
}

// submitResponse is the 202 answer of a submission, as the seed's clients
// know it.
type submitResponse struct {
	TaskID         string         `json:"task_id"`
	WorkflowID     string         `json:"workflow_id"`
	RunID          string         `json:"run_id"`
	Provider       string         `json:"provider"`
	RoutingKey     string         `json:"routing_key"`
	Queue          string         `json:"queue"`
	Status         string         `json:"status"`
	Message        string         `json:"message"`
	CreatedAt      time.Time      `json:"created_at"`
	SchedulingInfo schedulingInfo `json:"scheduling_info"`
}

type schedulingInfo struct {
	Strategy          string  `json:"strategy"`
	ProviderScore     float64 `json:"provider_score"`
	EstimatedDuration int     `json:"estimated_duration"`
	GPUSpec           gpuSpec `json:"gpu_spec"`
	// The decision at submit, beside the contract's fields: the best
	// offer's score per criterion, price, estimates and the runners-up. The
	// job's queue admits it on the best offer with room when it starts.
	Breakdown *scheduler.Breakdown `json:"breakdown,omitempty"`
	Weights   *scheduler.Weights   `json:"weights,omitempty"`
	GPUType   string               `json:"offer_gpu_type,omitempty"`
	// GPUCount is the GPUs the job rents on the offer: more than asked
	// where the offer is a machine of a fixed size (its price counts them).
	GPUCount      int           `json:"offer_gpu_count,omitempty"`
	Region        string        `json:"region,omitempty"`
	PricePerHour  float64       `json:"price_per_hour"`
	EstimatedCost float64       `json:"estimated_cost"`
	StartEstimate float64       `json:"start_estimate_s"`
	StartMeasured bool          `json:"start_measured"`
	Alternatives  []alternative `json:"alternatives,omitempty"`
}

type gpuSpec struct {
	GPUType  string  `json:"gpu_type"`
	GPUCount int     `json:"gpu_count"`
	MemoryGB float64 `json:"memory_gb"`
	VCPUs    int     `json:"vcpus"`
	Priority int     `json:"priority"`
}

// handleSubmit handles "POST /api/gpu/jobs/submit": it validates the spec,
// plans it onto a provider, starts the job's workflow and records the job.
// 400/413/415 for bad input, 403 for a job on the worker's host from an
// account that may not run there, 422 when no provider can run the job, 503 when
// Temporal is unavailable: the workflow surely did not start, or was
// withdrawn (see resolveStart); nothing but a withdrawal is stored then; 429 with
// Retry-After past the user's submit rate. With an
// Idempotency-Key, a repeated submission answers with the first job (see
// idempotency.go).
func (s *Server) handleSubmit(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	caller := callerFrom(c)
	if err := s.takeUserRate(c, rateSubmit, s.rates.submit); err != nil {
		return err
	}
	key, err := idempotencyKey(req)
	if err != nil {
		return err
	}
	if err := requireJSON(req); err != nil {
		return err
	}
	body, err := readBody(req, c.Response(), maxSubmitBody)
	if err != nil {
		return err
	}
	var in submitRequest
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	spec := in.spec()
	if err := spec.Validate(s.cfg.Providers.Names()); err != nil {
		return err
	}
	if err := s.restrictLocal(userFrom(c), &spec); err != nil {
		return err
	}
	id := uuid.NewString()
	if key != "" {
		id = idempotentJobID(caller.UserID, key)
		if err := s.retractWithdraw(ctx, id); err != nil {
			return err
		}
		if job := s.earlierSubmission(ctx, id); job != nil {
			return s.replaySubmission(c, job, caller.UserID, spec, "")
		}
	}
	planStart := time.Now()
	decision, err := s.plan(ctx, spec)
	var best scheduler.Candidate
	if err == nil {
		best, _ = decision.Best()
	}
	s.metrics.observe(spec.Strategy, best.Offer.Provider, err == nil, time.Since(planStart))
	s.prom.observeDecision(spec.Strategy, best.Offer.Provider, err == nil, time.Since(planStart))
	if err != nil {
		return err
	}
	if s.cfg.Temporal == nil {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "temporal is not configured; the job was not submitted")
	}

	provider := best.Offer.Provider
	gpuType := jobGPUType(spec)
	wfID := workflows.JobWorkflowID(id)
	now := s.now().UTC()
	mode := ""
	if p := s.cfg.Providers.Get(provider); p != nil {
		mode = p.Info().Mode
	}
	input := workflows.RunJobInput{JobID: id, OwnerID: caller.UserID, Spec: spec, CreatedAt: now}
	opts := client.StartWorkflowOptions{
		ID:                                       wfID,
		TaskQueue:                                workflows.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    workflows.StartSearchAttributes(&input, provider),
		Memo:                                     map[string]any{"provider_mode": mode},
	}
	if key != "" {
		// A finished job's id must not start again either.
		opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	}
	var runID string
	run, err := s.cfg.Temporal.ExecuteWorkflow(ctx, opts, workflows.JobWorkflowName, input)
	if err == nil && run == nil {
		err = errors.New("temporal returned no run")
	}
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			if key != "" {
				// Another request with the key started it: answer with its job.
				job, werr := s.awaitSubmission(ctx, id)
				if werr != nil {
					return werr
				}
				return s.replaySubmission(c, job, caller.UserID, spec, started.RunId)
			}
			return &gpuflow.Error{Code: gpuflow.ECONFLICT, Message: "a job with this id already exists", Err: err}
		}
		// A timeout or a dropped connection may have started it all the same.
		if runID, err = s.resolveStart(ctx, id, wfID, err); err != nil {
			return err
		}
	} else {
		runID = run.GetRunID()
	}

	job := &gpuflow.Job{
		ID: id, OwnerID: caller.UserID, Status: gpuflow.StatusQueued, Spec: spec, Provider: provider,
		Attempts: []gpuflow.Attempt{}, WorkflowID: wfID, RunID: runID, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.createJob(ctx, job, key); err != nil {
		// The workflow is running and records the job itself (idempotently),
		// so the submission stands.
		s.log.ErrorContext(ctx, "record submitted job; the workflow will record it",
			"job_id", id, "workflow_id", wfID, "err", err)
	}
	s.log.InfoContext(ctx, "job submitted", "job_id", id, "owner_id", caller.UserID,
		"provider", provider, "gpu_type", gpuType, "gpu_count", spec.GPUCount, "run_id", runID,
		"idempotent", key != "")

	return c.JSON(http.StatusAccepted, submitAnswer(id, wfID, runID, provider, gpuflow.StatusQueued, spec,
		&decision, now, "Job intelligently scheduled to "+provider))
}

// Settling a failed workflow start (resolveStart).
const (
	// describeTimeout bounds the look-up of a workflow whose start failed.
	describeTimeout = 5 * time.Second
	// withdrawTimeout bounds recording the withdrawal of a submission.
	withdrawTimeout = 5 * time.Second
	// WithdrawReason is the reason of the cancel a withdrawn submission's
	// workflow gets, should it have started.
	WithdrawReason = "submission withdrawn: the API could not confirm it started"
)

// resolveStart settles a workflow start that failed with startErr (not
// AlreadyStarted): a timeout or a dropped connection may have started the
// workflow all the same, and answering "nothing was submitted" then would
// make a client retrying without an Idempotency-Key get two jobs. It
// looks the workflow up, with a fresh deadline:
//
//   - found: the start happened; it returns the run id and the submission
//     goes on as a success;
//   - not found: nothing started; 503 naming Temporal, nothing stored;
//   - the look-up fails too: it records a withdraw report for the job in
//     the store (the relay delivers it as the workflow's cancel signal,
//     retrying while Temporal is away, and drops it when the workflow is
//     unknown) and answers 503 saying the submission was withdrawn. A
//     workflow that did start takes its normal cancel path (the job ends
//     cancelled with WithdrawReason) rather than running the job to
//     completion. The API records no job row of its own then.
//
// The not-found case records a withdraw too: a start still in flight may
// land after the look-up, and the relay keeps trying its cancel for
// relay.WithdrawWindow. When the withdrawal cannot be recorded (the store
// is down too: a double fault) it answers 503 naming both and logs an
// error: a workflow that did start then runs its job though the client
// was told 503. A retry with the same Idempotency-Key takes the withdraw
// back first (retractWithdraw), so the job it answers 202 for runs.
func (s *Server) resolveStart(ctx context.Context, jobID, wfID string, startErr error) (string, error) {
	// The caller may have gone (the start timed out on its deadline): the
	// outcome must be settled all the same.
	bg := context.WithoutCancel(ctx)
	dctx, cancel := context.WithTimeout(bg, describeTimeout)
	desc, derr := s.cfg.Temporal.DescribeWorkflowExecution(dctx, wfID, "")
	cancel()
	if derr == nil {
		runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		s.log.WarnContext(ctx, "workflow start failed but the workflow exists: the submission stands",
			"job_id", jobID, "workflow_id", wfID, "run_id", runID, "start_err", startErr)
		return runID, nil
	}
	var werr error
	rec, ok := s.cfg.Jobs.(gpuflow.ReportRecorder)
	if !ok {
		werr = errors.New("the job store cannot record a withdrawal")
	} else {
		wctx, cancel := context.WithTimeout(bg, withdrawTimeout)
		_, _, werr = rec.RecordReport(wctx, gpuflow.AgentReport{JobID: jobID, Kind: gpuflow.ReportWithdraw,
			Message: WithdrawReason, ReceivedAt: s.now().UTC()})
		cancel()
	}
	var notFound *serviceerror.NotFound
	if errors.As(derr, &notFound) {
		// Nothing started yet; the withdraw (when recorded) cancels a start
		// still in flight that lands later.
		if werr != nil {
			s.log.WarnContext(ctx, "workflow start failed and the workflow does not exist; no withdrawal recorded for a late start",
				"job_id", jobID, "workflow_id", wfID, "start_err", startErr, "withdraw_err", werr)
		}
		return "", &gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
			Message: "the job could not be started (temporal is unavailable); nothing was submitted",
			Details: map[string]any{"unavailable": []string{"temporal"}},
			Err:     fmt.Errorf("start workflow %s: %w", wfID, startErr)}
	}
	if werr != nil {
		s.log.ErrorContext(ctx, "submission unconfirmed and not withdrawn: its workflow may have started and run the job "+
			"though the client was answered 503", "job_id", jobID, "workflow_id", wfID,
			"start_err", startErr, "describe_err", derr, "withdraw_err", werr)
		return "", &gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
			Message: "the job could not be confirmed as started (temporal is unavailable) nor withdrawn " +
				"(postgresql is unavailable); it may still run: check the job list before submitting again",
			Details: map[string]any{"unavailable": []string{"temporal", "postgresql"}, "task_id": jobID},
			Err:     fmt.Errorf("start workflow %s: %w", wfID, startErr)}
	}
	s.log.WarnContext(ctx, "workflow start unconfirmed: the submission is withdrawn",
		"job_id", jobID, "workflow_id", wfID, "start_err", startErr, "describe_err", derr)
	return "", &gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
		Message: "the job could not be confirmed as started (temporal is unavailable); the submission was " +
			"withdrawn and will not run",
		Details: map[string]any{"unavailable": []string{"temporal"}},
		Err:     fmt.Errorf("start workflow %s: %w", wfID, startErr)}
}

// retractWithdraw takes back the withdraw of an earlier try of this
// submission (same Idempotency-Key, so the same job id), so that the job
// this try answers 202 for is not cancelled by it: 503 while a relay is
// delivering it (try again), 409 once it has cancelled the job's workflow
// (that submission is over: use a new key).
func (s *Server) retractWithdraw(ctx context.Context, jobID string) error {
	r, ok := s.cfg.Jobs.(gpuflow.WithdrawRetractor)
	if !ok {
		return nil
	}
	state, err := r.RetractWithdraw(ctx, jobID, s.now().UTC())
	switch {
	case err != nil:
		return err
	case state == gpuflow.WithdrawRetracted:
		s.log.InfoContext(ctx, "submission retried: its earlier try's withdrawal is taken back", "job_id", jobID)
	case state == gpuflow.WithdrawDelivering:
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE,
			Message: "an earlier try of this submission is being withdrawn; try again in a few seconds",
			Details: map[string]any{"task_id": jobID, "retry_after_seconds": 2}}
	case state == gpuflow.WithdrawDelivered:
		return gpuflow.Errorf(gpuflow.ECONFLICT, "an earlier try of this submission was withdrawn and its job cancelled; "+
			"submit again with a new Idempotency-Key").WithDetails(map[string]any{"task_id": jobID})
	}
	return nil
}

// submitAnswer is the 202 answer of a submission.
func submitAnswer(id, wfID, runID, provider string, status gpuflow.JobStatus, spec gpuflow.JobSpec,
	d *scheduler.Decision, createdAt time.Time, message string) submitResponse {
	gpuType := jobGPUType(spec)
	res := submitResponse{
		TaskID: id, WorkflowID: wfID, RunID: runID, Provider: provider,
		RoutingKey: fmt.Sprintf("%s_%s_%d", provider, gpuType, spec.GPUCount),
		Queue:      workflows.ProviderTaskQueue(provider),
		Status:     string(status),
		Message:    message,
		CreatedAt:  createdAt,
		SchedulingInfo: schedulingInfo{
			Strategy: spec.Strategy, EstimatedDuration: spec.EstimatedDuration,
			GPUSpec: gpuSpec{GPUType: gpuType, GPUCount: spec.GPUCount, MemoryGB: spec.MemoryGB,
				VCPUs: spec.VCPUs, Priority: spec.Priority},
		},
	}
	if d != nil && len(d.Candidates) > 0 {
		best, info := d.Candidates[0], &res.SchedulingInfo
		info.ProviderScore, info.Breakdown, info.Weights = best.Score, &best.Criteria, &d.Weights
		info.GPUType, info.Region = best.Offer.GPUType, best.Offer.Region
		info.GPUCount = best.Offer.GPUsRented(spec.GPUCount)
		info.PricePerHour, info.EstimatedCost, info.StartEstimate = best.PricePerHour, best.EstimatedCost, best.StartSeconds
		info.StartMeasured = best.StartMeasured
		for _, alt := range d.Candidates[1:min(len(d.Candidates), 1+maxAlternatives)] {
			info.Alternatives = append(info.Alternatives, alternativeOf(alt, spec.GPUCount))
		}
	}
	return res
}

// jobGPUType is the spec's GPU type, gpuflow.CPUOnly for a CPU-only job.
func jobGPUType(spec gpuflow.JobSpec) string {
	if spec.GPUCount == 0 {
		return gpuflow.CPUOnly
	}
	return spec.GPUType
}

// rank ranks offers for spec with the providers' and offers' recorded
// statistics, as the dispatcher does.
func (s *Server) rank(ctx context.Context, spec gpuflow.JobSpec, offers []gpuflow.Offer) scheduler.Decision {
	in := scheduler.Input{Spec: spec, Offers: scheduler.Prepare(offers)}
	if s.cfg.Stats != nil {
		in.Stats, in.OfferStats = s.cfg.Stats(ctx)
	}
	var r scheduler.Ranker
	var d scheduler.Decision
	r.Rank(in, &d)
	return d
}

// plan collects the offers of every provider the spec allows and returns
// the decision with a best candidate, or EUNSCHEDULABLE with the reasons
// per provider.
func (s *Server) plan(ctx context.Context, spec gpuflow.JobSpec) (scheduler.Decision, error) {
	offers, reasons := s.collectOffers(ctx, spec)
	d := s.rank(ctx, spec, offers)
	if len(d.Candidates) > 0 {
		return d, nil
	}
	for p, rs := range d.ReasonsByProvider() {
		reasons[p] = append(reasons[p], rs...)
	}
	msg := "no provider can run this job"
	if len(reasons) == 0 {
		msg = "no provider can run this job: none is configured or allowed"
	}
	return d, gpuflow.Errorf(gpuflow.EUNSCHEDULABLE, "%s", msg).
		WithDetails(map[string]any{"reasons": reasons})
}

// collectOffers asks every provider the spec allows for its offers, within
// providerTimeout, and returns them with the reasons of those that gave none.
func (s *Server) collectOffers(ctx context.Context, spec gpuflow.JobSpec) ([]gpuflow.Offer, map[string][]string) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	offers, refused := s.cfg.Providers.OffersFor(ctx, spec)
	reasons := make(map[string][]string, len(refused))
	for name, reason := range refused {
		if name != "" && !spec.AllowsProvider(name) {
			continue // not a failure: the job asked for other providers
		}
		reasons[name] = append(reasons[name], reason)
		if strings.HasPrefix(reason, "offers unavailable") {
			s.log.WarnContext(ctx, "provider offers failed", "provider", name, "reason", reason)
		}
	}
	return offers, reasons
}

// safeOffers calls p.Offers, turning a panic into an error: it runs on its
// own goroutine, where a panic would take the whole server down.
func safeOffers(ctx context.Context, p gpuflow.Provider) (offers []gpuflow.Offer, err error) {
	defer func() {
		if r := recover(); r != nil {
			offers, err = nil, fmt.Errorf("provider %s panicked listing offers: %v", p.Info().Name, r)
		}
	}()
	return p.Offers(ctx)
}

// jobView is a job as the API shows it.
type jobView struct {
	ID            string            `json:"id"`
	TaskID        string            `json:"task_id"`
	Name          string            `json:"name"`
	OwnerID       string            `json:"owner_id"`
	Status        gpuflow.JobStatus `json:"status"`
	Provider      *string           `json:"provider"`
	InstanceID    *string           `json:"instance_id"`
	Spec          gpuflow.JobSpec   `json:"spec"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	StartedAt     *time.Time        `json:"started_at"`
	FinishedAt    *time.Time        `json:"finished_at"`
	ExitCode      *int              `json:"exit_code"`
	Error         *string           `json:"error"`
	Attempts      []gpuflow.Attempt `json:"attempts"`
	PricePerHour  float64           `json:"price_per_hour"`
	CostSoFar     float64           `json:"cost_so_far"`
	WorkflowID    string            `json:"workflow_id"`
	RunID         *string           `json:"run_id"`
	TemporalUIURL *string           `json:"temporal_ui_url"`
	// Queue is where a queued job waits and why (GET of one task only).
	Queue *queueView `json:"queue,omitempty"`
}

type queueView struct {
	Position int    `json:"position"`
	Reason   string `json:"reason"`
}

// view returns j as the API shows it.
func (s *Server) view(j *gpuflow.Job) jobView {
	v := jobView{
		ID: j.ID, TaskID: j.ID, Name: j.Spec.Name, OwnerID: j.OwnerID, Status: j.Status,
		Provider: nullable(j.Provider), InstanceID: nullable(j.MachineID), Spec: j.Spec,
		CreatedAt: j.CreatedAt.UTC(), UpdatedAt: j.UpdatedAt.UTC(),
		StartedAt: utc(j.StartedAt), FinishedAt: utc(j.FinishedAt), ExitCode: j.ExitCode,
		Error: nullable(j.Error), Attempts: j.Attempts, PricePerHour: j.PricePerHour,
		CostSoFar: j.CostSoFar(s.now()), WorkflowID: j.WorkflowID, RunID: nullable(j.RunID),
	}
	if v.Attempts == nil {
		v.Attempts = []gpuflow.Attempt{}
	}
	if s.cfg.TemporalUIURL != "" && j.WorkflowID != "" {
		u := strings.TrimRight(s.cfg.TemporalUIURL, "/") + "/namespaces/" + url.PathEscape(s.cfg.Namespace) +
			"/workflows/" + url.PathEscape(j.WorkflowID)
		v.TemporalUIURL = &u
	}
	return v
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// jobFor loads the job named by the :id parameter if the caller may see it.
// Unknown, malformed and other users' ids are all ENOTFOUND.
func (s *Server) jobFor(c echo.Context) (*gpuflow.Job, error) {
	id := c.Param("id")
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return nil, gpuflow.Errorf(gpuflow.ENOTFOUND, "task not found")
	}
	id = u.String()
	notFound := gpuflow.Errorf(gpuflow.ENOTFOUND, "task %s not found", id)
	job, err := s.cfg.Jobs.Job(c.Request().Context(), id)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if !canSee(callerFrom(c), job) {
		return nil, notFound
	}
	return job, nil
}

// handleGetTask handles "GET /api/gpu/tasks/{id}": the job. 404 when unknown.
func (s *Server) handleGetTask(c echo.Context) error {
	job, err := s.jobFor(c)
	if err != nil {
		return err
	}
	v := s.view(job)
	if q := s.cfg.Queue; q != nil && job.Status == gpuflow.StatusQueued {
		pos, reason, err := q.QueuePosition(c.Request().Context(), job.ID)
		if err != nil {
			return fmt.Errorf("queue position of %s: %w", job.ID, err)
		}
		if pos > 0 {
			v.Queue = &queueView{Position: pos, Reason: reason}
		}
	}
	return c.JSON(http.StatusOK, v)
}

// handleListTasks handles "GET /api/gpu/tasks": the caller's jobs, newest
// first, a page at a time. 400 for a bad status or limit.
func (s *Server) handleListTasks(c echo.Context) error {
	f := gpuflow.JobFilter{
		OwnerID:  ownerScope(callerFrom(c)),
		Status:   gpuflow.JobStatus(c.QueryParam("status")),
		Provider: c.QueryParam("provider"),
		Limit:    defaultListLimit,
		Cursor:   c.QueryParam("cursor"),
	}
	if f.Provider != "" && !providerNamePattern.MatchString(f.Provider) {
		msg := "provider must be a provider name: 1 to 64 lower-case letters, digits, _ or -"
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{"provider": msg}})
	}
	if len(f.Cursor) > maxCursorLen {
		msg := "cursor must be the next_cursor of a previous page"
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{"cursor": msg}})
	}
	if f.Status != "" && !f.Status.Valid() {
		msg := fmt.Sprintf("status must be one of %v", gpuflow.AllStatuses)
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{"status": msg}})
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			msg := fmt.Sprintf("limit must be between 1 and %d", maxListLimit)
			return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
				WithDetails(map[string]any{"fields": map[string]any{"limit": msg}})
		}
		f.Limit = n
	}
	jobs, next, err := s.cfg.Jobs.Jobs(c.Request().Context(), f)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	views := make([]jobView, 0, len(jobs))
	for _, j := range jobs {
		views = append(views, s.view(j))
	}
	return c.JSON(http.StatusOK, map[string]any{"tasks": views, "next_cursor": nullable(next)})
}

// cancelRequest is the optional body of a cancel.
type cancelRequest struct {
	Reason string `json:"reason"`
}

// handleCancelTask handles "POST /api/gpu/tasks/{id}/cancel": it signals the
// job's workflow to cancel and answers 202 with the job. 409 when the job
// has finished; 429 with Retry-After past the user's cancel rate.
func (s *Server) handleCancelTask(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	caller := callerFrom(c)
	if err := s.takeUserRate(c, rateCancel, s.rates.cancel); err != nil {
		return err
	}
	job, err := s.jobFor(c)
	if err != nil {
		return err
	}
	var in cancelRequest
	if err := decodeOptional(req, c.Response(), maxCancelBody, &in); err != nil {
		return err
	}
	if len(in.Reason) > maxCancelReasonLen {
		msg := fmt.Sprintf("reason must be at most %d characters", maxCancelReasonLen)
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{"reason": msg}})
	}
	if job.Status.Terminal() {
		return gpuflow.Errorf(gpuflow.ECONFLICT, "task %s has already finished (%s)", job.ID, job.Status).
			WithDetails(map[string]any{"status": job.Status})
	}
	if s.cfg.Temporal == nil {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "temporal is not configured")
	}
	err = s.cfg.Temporal.SignalWorkflow(ctx, job.WorkflowID, "", workflows.SignalCancel,
		workflows.CancelSignal{Reason: in.Reason, RequestedBy: caller.Name()})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return &gpuflow.Error{Code: gpuflow.ECONFLICT, Message: fmt.Sprintf("task %s has already finished", job.ID),
				Err: err}
		}
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "the cancel could not be sent (temporal is unavailable)",
			Err: fmt.Errorf("signal cancel to %s: %w", job.WorkflowID, err)}
	}
	s.log.InfoContext(ctx, "job cancel requested", "job_id", job.ID, "requested_by", caller.Name())
	return c.JSON(http.StatusAccepted, s.view(job))
}
