package runpod

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
)

// NamePrefix starts the name of every pod gpuflow creates.
const NamePrefix = "gpuflow-"

// Env variables the provider sets on a pod, besides agentscript's
// GPUFLOW_JOB_ID, GPUFLOW_AGENT_URL, GPUFLOW_AGENT_TOKEN, GPUFLOW_DEADLINE,
// GPUFLOW_RUNNER and GPUFLOW_STATE_DIR.
const (
	// EnvTags holds the request's tags as a JSON object.
	EnvTags = "GPUFLOW_TAGS"
	// EnvSpot is "true" on interruptible (spot) pods.
	EnvSpot = "GPUFLOW_SPOT"
)

// The pod's volume, where the runner keeps its state: it survives restarts
// of the container (the container disk does not). 10 GB is RunPod's floor
// for a persistent mount. It is mounted at a path of its own so that it
// hides nothing of the job's image (RunPod's default, /workspace, is where
// many images keep their code).
const (
	StateMount    = "/gpuflow"
	StateVolumeGB = 10
	stateDir      = StateMount + "/state"
)

// maxNameLen bounds pod names; RunPod documents no limit, this is a
// conservative one.
const maxNameLen = 63

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// PodName is the pod name for an idempotency key: "gpuflow-<key>", or, for
// a key that is long or has other characters than letters, digits, "_",
// "." and "-", its cleaned prefix and a hash of the whole key.
func PodName(key string) string {
	if plainKey.MatchString(key) && len(NamePrefix)+len(key) <= maxNameLen {
		return NamePrefix + key
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:6])
	clean := []byte(key)
	for i, c := range clean {
		if !plainKey.Match([]byte{c}) {
			clean[i] = '-'
		}
	}
	if n := maxNameLen - len(NamePrefix) - len(h) - 1; len(clean) > n {
		clean = clean[:n]
	}
	return NamePrefix + string(clean) + "-" + h
}

// Provision starts a pod for the job: on-demand through REST v2 (POST
// /v2/pods), spot through GraphQL (podRentInterruptable, bidding the
// offer's spot price, with terminateAfter set past the job's life). The
// pod runs the job's image (agentscript.DefaultImage for command-only
// jobs); its command is agentscript's runner, which runs the job's argv
// once and reports it (see the package doc), with the runner's state on a
// volume of StateVolumeGB at StateMount; its env is the job's plus the
// agent endpoint and the runner.
//
// It first looks for a pod named PodName(IdempotencyKey) and returns it if
// one exists (unless req.FirstTry: a listing of every pod is the only way
// to look, megabytes with thousands of pods); after a 5xx or no answer on
// create it looks again before giving up, so a retried call never makes a
// second pod.
func (p *Provider) Provision(ctx context.Context, req gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	if err := p.checkKey(); err != nil {
		return nil, err
	}
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	name := PodName(req.IdempotencyKey)
	log := p.log.With("job_id", req.JobID, "pod_name", name)
	if !req.FirstTry {
		if m, err := p.findByName(ctx, name); err != nil {
			return nil, err
		} else if m != nil {
			log.InfoContext(ctx, "pod already exists", "machine_id", m.ID, "state", m.State)
			return m, nil
		}
	}
	gpu, ok := p.resolveGPU(req)
	if !ok {
		return nil, invalid("unknown GPU type %q", cmp.Or(req.Offer.GPUType, req.Spec.GPUType))
	}
	dcs := p.cfg.DataCenterIDs
	if req.Offer.Region != "" {
		dcs = []string{req.Offer.Region}
	}
	var (
		m   *gpuflow.Machine
		err error
	)
	if req.Spec.Spot {
		m, err = p.rent(ctx, req, name, gpu, dcs)
	} else {
		m, err = p.create(ctx, req, name, gpu, dcs)
	}
	if err != nil {
		if isLostCreate(err) && ctx.Err() == nil {
			// RunPod may have created the pod and failed to say so.
			if found, ferr := p.findByName(ctx, name); ferr == nil && found != nil {
				log.WarnContext(ctx, "create failed but the pod exists", "machine_id", found.ID, "err", classify("create pod", err, true))
				return found, nil
			}
		}
		return nil, classify("create pod "+name, err, true)
	}
	log.InfoContext(ctx, "pod created", "machine_id", m.ID, "gpu_type", m.GPUType, "gpu_count", m.GPUCount, "spot", req.Spec.Spot)
	return m, nil
}

func invalid(format string, args ...any) error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

func checkRequest(req gpuflow.ProvisionRequest) error {
	switch {
	case req.IdempotencyKey == "":
		return invalid("an idempotency key is required")
	case req.Agent == nil || req.Agent.URL == "":
		return invalid("an agent endpoint is required: RunPod reports no exit code")
	case req.Spec.GPUCount < 1:
		return invalid("CPU-only jobs are not offered on RunPod")
	case len(req.Spec.Command) == 0:
		// The container's command is gpuflow's runner, which runs the
		// job's argv: an image's own default command cannot be run once
		// and reported (RunPod restarts a container whose command ends).
		return invalid("a command is required on RunPod: gpuflow runs it through its runner as the container's command")
	}
	return nil
}

// create starts an on-demand pod through REST v2.
func (p *Provider) create(ctx context.Context, req gpuflow.ProvisionRequest, name string, gpu knownGPU, dcs []string) (*gpuflow.Machine, error) {
	body := &createPodRequest{
		Name:          name,
		Image:         cmp.Or(req.Spec.Image, agentscript.DefaultImage),
		GPU:           &gpuConfig{ID: gpu.ID, Count: req.Spec.GPUCount},
		Cloud:         p.cfg.Cloud,
		DataCenterIDs: dcs,
		Disk:          cmp.Or(max(req.Spec.DiskGB, 0), p.cfg.DiskGB),
		Args:          shellJoin(agentscript.RunnerArgs(req.Spec.Command)),
		Env:           p.podEnv(req),
		Mounts:        &podMounts{Persistent: &persistentMount{Size: StateVolumeGB, Path: StateMount}},
	}
	pd, err := p.c.createPod(ctx, body)
	if err != nil {
		return nil, err
	}
	return p.machine(pd), nil
}

// rent starts an interruptible pod through GraphQL.
func (p *Provider) rent(ctx context.Context, req gpuflow.ProvisionRequest, name string, gpu knownGPU, dcs []string) (*gpuflow.Machine, error) {
	bid := req.Offer.SpotPricePerHour
	if bid <= 0 || !strings.EqualFold(req.Offer.GPUType, gpu.ID) {
		bid = gpu.Spot
	}
	if bid <= 0 {
		return nil, invalid("no spot price known for %s", gpu.ID)
	}
	env := p.podEnv(req)
	in := &rentInput{
		BidPerGPU:         bid,
		GPUTypeID:         gpu.ID,
		GPUCount:          req.Spec.GPUCount,
		CloudType:         p.cfg.Cloud,
		Name:              name,
		ImageName:         cmp.Or(req.Spec.Image, agentscript.DefaultImage),
		DockerArgs:        shellJoin(agentscript.RunnerArgs(req.Spec.Command)),
		ContainerDiskInGb: cmp.Or(max(req.Spec.DiskGB, 0), p.cfg.DiskGB),
		VolumeInGb:        StateVolumeGB,
		VolumeMountPath:   StateMount,
		TerminateAfter:    p.deadline(req).UTC().Format(time.RFC3339),
	}
	if len(dcs) > 0 {
		in.DataCenterID = dcs[0] // GraphQL places in one data center
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		in.Env = append(in.Env, envVar{Key: k, Value: env[k]})
	}
	gp, err := p.c.rentInterruptable(ctx, in)
	if err != nil {
		return nil, err
	}
	m := &gpuflow.Machine{
		ID: gp.ID, Provider: Name, State: gpuflow.MachinePending,
		GPUType: gpu.ID, GPUCount: req.Spec.GPUCount, Region: in.DataCenterID,
		PricePerHour: bid, Tags: tagsOf(name, env[EnvTags], env[agentscript.EnvJobID]), CreatedAt: p.now(),
	}
	if gp.CostPerHr > 0 {
		m.PricePerHour = gp.CostPerHr / float64(req.Spec.GPUCount)
	}
	return m, nil
}

// podMounts is the v2 create body's mounts: the runner's state volume.
type podMounts struct {
	Persistent *persistentMount `json:"persistent,omitempty"`
}

type persistentMount struct {
	Size int    `json:"size"`
	Path string `json:"path"`
}

// deadline is the end of the pod's allowed life: the job's (its
// MaxDuration, else its spec's max_duration_minutes, else
// DefaultMaxDuration) plus Config.SafetyMargin, from now. Spot pods get it
// as terminateAfter; on every pod the runner stops the pod then (the v2
// create body has no timer).
func (p *Provider) deadline(req gpuflow.ProvisionRequest) time.Time {
	life := cmp.Or(max(req.MaxDuration, 0), max(req.Spec.MaxDuration(), 0), DefaultMaxDuration)
	return ceilSecond(p.now().Add(life + p.cfg.SafetyMargin))
}

// ceilSecond rounds t up to a whole second: DateTime has second
// precision, and the timer must not fire early.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); r.Before(t) {
		return r.Add(time.Second)
	}
	return t
}

// podEnv is the pod's environment: the job's, then the agent endpoint, the
// job id, the runner, its state directory and deadline, and the tags.
func (p *Provider) podEnv(req gpuflow.ProvisionRequest) map[string]string {
	env := maps.Clone(req.Spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[agentscript.EnvJobID] = req.JobID
	env[agentscript.EnvAgentURL] = req.Agent.URL
	env[agentscript.EnvAgentToken] = req.Agent.Token
	env[agentscript.EnvRunner] = agentscript.Runner()
	env[agentscript.EnvStateDir] = stateDir
	env[agentscript.EnvDeadline] = strconv.FormatInt(p.deadline(req).Unix(), 10)
	env[agentscript.EnvReportGrace] = agentscript.ReportGrace(req.Agent)
	tags := maps.Clone(req.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[gpuflow.TagManaged] = "true"
	tags[gpuflow.TagJob] = req.JobID
	b, _ := json.Marshal(tags) // a map of strings always encodes
	env[EnvTags] = string(b)
	if req.Spec.Spot {
		env[EnvSpot] = "true"
	} else {
		delete(env, EnvSpot)
	}
	return env
}

// findByName returns the live pod named name, or nil, from a listing
// begun after the call (shared with concurrent callers: listing.go).
func (p *Provider) findByName(ctx context.Context, name string) (*gpuflow.Machine, error) {
	pods, err := p.sharedPods(ctx)
	if err != nil {
		return nil, classify("list pods", err, false)
	}
	var found []*pod
	for i := range pods {
		if pods[i].Name == name && pods[i].Status != statusTerminated {
			found = append(found, &pods[i])
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(found, func(a, b *pod) int { return cmp.Compare(a.CreatedAt, b.CreatedAt) })
	if len(found) > 1 {
		ids := make([]string, len(found))
		for i, f := range found {
			ids[i] = f.ID
		}
		p.log.WarnContext(ctx, "several pods share one name; using the oldest", "pod_name", name, "machine_ids", ids)
	}
	return p.machine(found[0]), nil
}

// shellJoin joins argv into RunPod's args string, quoting each argument for
// a POSIX shell where needed.
func shellJoin(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = shellQuote(a)
	}
	return strings.Join(parts, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// errNotFound reports whether err is the API's 404.
func errNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && !ae.GraphQL && ae.Status == 404
}
