package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Name is the provider's name.
const Name = "local"

// Region is the region of every offer and machine.
const Region = "local"

const (
	defaultKillGrace = 5 * time.Second
	// killWait bounds the wait for a process group to vanish after SIGKILL.
	killWait     = 10 * time.Second
	pollInterval = 100 * time.Millisecond
	// smiTimeout bounds the nvidia-smi query at start-up.
	smiTimeout = 20 * time.Second
	// dockerTimeout bounds "docker rm -f".
	dockerTimeout = 30 * time.Second
)

// Config configures a local provider.
type Config struct {
	// Dir holds one directory per job (e.g. ".data/jobs"); it is created if
	// missing. Required.
	Dir string
	// CPUSlots bounds how many CPU-only jobs run at once; 0 or less means
	// runtime.NumCPU().
	CPUSlots int
	// NvidiaSMI is the nvidia-smi command; empty means "nvidia-smi" looked up
	// on the PATH. A host without it offers CPU-only jobs.
	NvidiaSMI string
	// KillGrace is how long Terminate waits after SIGTERM before SIGKILL;
	// 0 means 5s.
	KillGrace time.Duration
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// LookPath finds nvidia-smi, docker and podman; nil means exec.LookPath.
	LookPath func(string) (string, error)
	// RunAs is the unprivileged user (a name or a uid) jobs run as, so that
	// they cannot read or signal the worker, its files or its secrets. The
	// worker must run as root for it (New fails otherwise, unless RunAs is
	// the worker's own user); each job then works in <Dir>/<job_id>/work,
	// the one directory that user may write. Empty: jobs run as the
	// worker's own user.
	RunAs string
}

// Provider runs jobs as process groups on this host. It implements
// gpuflow.Provider, gpuflow.LogSource and gpuflow.PollHinter. It is safe
// for concurrent use, and several Providers (in one or several processes)
// may share a Dir.
type Provider struct {
	dir       string
	cpuSlots  int
	killGrace time.Duration
	log       *slog.Logger
	lookPath  func(string) (string, error)
	gpus      []gpu   // the host's GPUs, by index
	memoryGB  float64 // host memory
	script    string  // the wrapper's sh script
	baseEnv   map[string]string
	runAs     *runAs // nil: jobs run as the worker's user

	// mu orders this process's goroutines; the lock file in dir orders
	// processes.
	mu sync.RWMutex

	// Offers reuse a usage snapshot for offerUsageTTL: stock in an offer is
	// advisory (Provision recounts under the lock), and every submission
	// asks for offers.
	offerMu     sync.Mutex
	offerUsed   usage
	offerUsedAt time.Time

	// changeMu guards onChange, told when a job this process started ends.
	changeMu sync.Mutex
	onChange []func(machineID string)
}

// OnChange registers fn to be told, with the job's id, when a job this
// process started ends (its wrapper has recorded the exit code by then).
// Jobs re-attached after a restart are found by the watcher's sweep.
func (p *Provider) OnChange(fn func(machineID string)) {
	p.changeMu.Lock()
	p.onChange = append(p.onChange, fn)
	p.changeMu.Unlock()
}

func (p *Provider) changed(id string) {
	p.changeMu.Lock()
	fns := slices.Clone(p.onChange)
	p.changeMu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
}

// offerUsageTTL is how long Offers trusts a usage snapshot.
const offerUsageTTL = 500 * time.Millisecond

func (p *Provider) offerUsage() (usage, error) {
	p.offerMu.Lock()
	defer p.offerMu.Unlock()
	if !p.offerUsedAt.IsZero() && time.Since(p.offerUsedAt) < offerUsageTTL {
		return p.offerUsed, nil
	}
	unlock, err := p.lock(false)
	if err != nil {
		return usage{}, err
	}
	u, err := p.usage("")
	unlock()
	if err != nil {
		return usage{}, err
	}
	p.offerUsed, p.offerUsedAt = u, time.Now()
	return u, nil
}

var (
	_ gpuflow.Provider   = (*Provider)(nil)
	_ gpuflow.LogSource  = (*Provider)(nil)
	_ gpuflow.PollHinter = (*Provider)(nil)
)

// inheritedEnv names the worker's variables a job inherits; everything
// else comes from the job's spec.
var inheritedEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
	// for the docker and podman clients
	"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "CONTAINER_HOST", "XDG_RUNTIME_DIR",
}

// New returns a provider over cfg.Dir, creating it if needed, and queries
// the host's GPUs with nvidia-smi when it is present.
func New(cfg Config) (*Provider, error) {
	if cfg.Dir == "" {
		return nil, errors.New("local: a job directory is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("local: job directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: create job directory: %w", err)
	}
	p := &Provider{
		dir:       dir,
		cpuSlots:  cfg.CPUSlots,
		killGrace: cmp.Or(cfg.KillGrace, defaultKillGrace),
		log:       cfg.Logger,
		lookPath:  cfg.LookPath,
		baseEnv:   map[string]string{},
	}
	if p.cpuSlots <= 0 {
		p.cpuSlots = runtime.NumCPU()
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("provider", Name)
	if p.lookPath == nil {
		p.lookPath = exec.LookPath
	}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			p.baseEnv[k] = v
		}
	}
	if p.baseEnv["PATH"] == "" {
		p.baseEnv["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	p.script = wrapperScript
	if cfg.RunAs != "" {
		if p.runAs, err = setupRunAs(cfg.RunAs, dir); err != nil {
			return nil, fmt.Errorf("local: GPUFLOW_LOCAL_RUN_AS: %w", err)
		}
	}
	if p.runAs == nil && os.Geteuid() == 0 {
		p.log.Warn("local jobs run as root, with every right of the worker: set GPUFLOW_LOCAL_RUN_AS to an unprivileged user")
	}

	smi := cfg.NvidiaSMI
	if smi == "" {
		smi, err = p.lookPath("nvidia-smi")
		if err != nil {
			smi = ""
		}
	}
	if smi != "" {
		ctx, cancel := context.WithTimeout(context.Background(), smiTimeout)
		p.gpus, err = queryGPUs(ctx, smi)
		cancel()
		if err != nil {
			// A broken driver leaves the host usable for CPU jobs.
			p.log.Warn("cannot list GPUs; offering CPU-only jobs", "nvidia_smi", smi, "err", err)
			p.gpus = nil
		}
	}
	p.memoryGB = hostMemoryGB()
	p.log.Info("local provider ready", "dir", dir, "gpus", len(p.gpus), "cpu_slots", p.cpuSlots)
	return p, nil
}

// wrapperScript is the fixed script of the wrapper shell. The job's argv
// arrives as the positional parameters and is run as "$@", so the shell
// never interprets it; stdout and stderr are inherited (the log file).
// The exit status goes, in one write of a line, to descriptor 3: the
// exit_code file, which the worker opened (so a job running as another
// user needs no right in the job directory to have it recorded).
//
// The wrapper first waits at a gate: descriptor 4 is a pipe on which the
// worker writes the wrapper's pid once the pid file names it, then closes
// it; the kernel closes it when the worker dies first. The job runs only if
// the gate said this wrapper's pid ($$), so a worker killed between
// starting the wrapper and writing the pid file leaves a wrapper that exits
// without running anything, and the retried Provision starts the job
// exactly once. The job itself gets neither descriptor.
const wrapperScript = `read -r p _ <&4
exec 4<&-
[ "$p" = "$$" ] || exit 0
"$@" </dev/null 3>&-
c=$?
printf '%s\n' "$c" >&3
exit "$c"
`

// Info describes the provider.
func (p *Provider) Info() gpuflow.ProviderInfo {
	return gpuflow.ProviderInfo{
		Name:        Name,
		DisplayName: "Local machine",
		Description: "Runs jobs on the worker's own host",
		Mode:        gpuflow.ModeLocal,
	}
}

// PollInterval says how often a job's state is worth polling: often, since
// Describe only reads local files.
func (p *Provider) PollInterval() time.Duration { return pollInterval }

// Health returns nil when the job directory is writable.
func (p *Provider) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.CreateTemp(p.dir, ".health-*")
	if err != nil {
		return p.transient("job directory is not writable", err)
	}
	name := f.Name()
	err = f.Close()
	if rmErr := os.Remove(name); err == nil {
		err = rmErr
	}
	if err != nil {
		return p.transient("job directory is not writable", err)
	}
	return nil
}

// Offers lists one offer per GPU model on the host, with the free GPUs of
// that model as Available, and one CPU-only offer with the free CPU slots.
func (p *Provider) Offers(ctx context.Context) ([]gpuflow.Offer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := p.offerUsage()
	if err != nil {
		return nil, err
	}
	vcpus := runtime.NumCPU()
	byType := map[string][]gpu{}
	for _, g := range p.gpus {
		byType[g.Type] = append(byType[g.Type], g)
	}
	var offers []gpuflow.Offer
	for _, t := range slices.Sorted(maps.Keys(byType)) {
		gs := byType[t]
		free := 0
		for _, g := range gs {
			if _, used := u.gpus[g.Index]; !used {
				free++
			}
		}
		offers = append(offers, gpuflow.Offer{
			Provider:    Name,
			GPUType:     t,
			GPUCount:    len(gs),
			MemoryGB:    p.memoryGB,
			GPUMemoryGB: gs[0].MemoryGB,
			VCPUs:       vcpus,
			Region:      Region,
			Available:   free,
			PerGPU:      true,
		})
	}
	offers = append(offers, gpuflow.Offer{
		Provider:  Name,
		GPUType:   gpuflow.CPUOnly,
		MemoryGB:  p.memoryGB,
		VCPUs:     vcpus,
		Region:    Region,
		Available: max(p.cpuSlots-u.cpuJobs, 0),
	})
	return offers, nil
}

// Check reports whether this host can ever run spec, so callers can reject
// a job before provisioning. It returns nil, or a *gpuflow.ProviderError of
// kind KindInvalidRequest whose message says why (no docker or podman for
// an image, no such GPUs, a command not on the PATH).
func (p *Provider) Check(spec gpuflow.JobSpec) error {
	_, err := p.plan("", spec)
	return err
}

// jobPlan is what Check works out for a spec: how to start it.
type jobPlan struct {
	gpuType   string // normalized; CPUOnly for CPU jobs
	candidate []gpu  // GPUs of the right model
	runtime   string // docker or podman path, for image jobs
	runtimeNm string // "docker" or "podman"
	argv0     string // the resolved command, for jobs without an image
}

func (p *Provider) plan(jobID string, spec gpuflow.JobSpec) (*jobPlan, error) {
	pl := &jobPlan{gpuType: gpuflow.CPUOnly}
	if len(spec.Command) == 0 && spec.Image == "" {
		return nil, p.invalid("a command (or an image) is required")
	}
	for _, a := range spec.Command {
		if strings.ContainsRune(a, 0) {
			return nil, p.invalid("command arguments must not contain NUL bytes")
		}
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, p.invalid(fmt.Sprintf("invalid environment variable %q", k))
		}
	}
	if spec.Image != "" && strings.HasPrefix(spec.Image, "-") {
		return nil, p.invalid(fmt.Sprintf("invalid image %q", spec.Image))
	}
	switch {
	case spec.GPUCount < 0:
		return nil, p.invalid("gpu_count must not be negative")
	case spec.GPUCount > 0:
		want := gpuflow.NormalizeGPUType(spec.GPUType)
		var have []string
		for _, g := range p.gpus {
			if want == "" || g.Type == want {
				pl.candidate = append(pl.candidate, g)
			}
			if !slices.Contains(have, g.Type) {
				have = append(have, g.Type)
			}
		}
		if len(p.gpus) == 0 {
			return nil, p.invalid("this host has no GPUs")
		}
		if len(pl.candidate) == 0 {
			return nil, p.invalid(fmt.Sprintf("this host has no %s GPUs (it has %s)", want, strings.Join(have, ", ")))
		}
		if len(pl.candidate) < spec.GPUCount {
			return nil, p.invalid(fmt.Sprintf("this host has %d %s GPUs, the job wants %d",
				len(pl.candidate), pl.candidate[0].Type, spec.GPUCount))
		}
		pl.gpuType = pl.candidate[0].Type
	}
	if spec.Image != "" {
		for _, rt := range []string{"docker", "podman"} {
			if path, err := p.lookPath(rt); err == nil {
				pl.runtime, pl.runtimeNm = path, rt
				break
			}
		}
		if pl.runtime == "" {
			return nil, p.invalid("image jobs need docker or podman on the worker's PATH")
		}
		return pl, nil
	}
	env := p.jobEnv(jobID, spec, "")
	dir := p.dir
	if jobID != "" {
		dir = p.cwd(jobID)
	}
	argv0, err := resolveCommand(spec.Command[0], env["PATH"], dir)
	if err != nil {
		return nil, p.invalid(err.Error())
	}
	pl.argv0 = argv0
	return pl, nil
}

// resolveCommand finds name on path the way execvp does. The result
// always contains a slash, so the wrapper shell runs it as a program,
// never as one of its builtins. Names with a slash are used as they are
// (relative ones from the job's directory).
func resolveCommand(name, path, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		cand := filepath.Join(d, name)
		if !filepath.IsAbs(cand) {
			cand = filepath.Join(dir, cand)
		}
		if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("command %q not found on the job's PATH", name)
}

// jobEnv is the job's environment: the inherited minimum, the spec's
// variables, then the variables gpuflow sets (which the spec cannot
// override). cvd is CUDA_VISIBLE_DEVICES.
func (p *Provider) jobEnv(jobID string, spec gpuflow.JobSpec, cvd string) map[string]string {
	env := maps.Clone(p.baseEnv)
	if ra := p.runAs; ra != nil {
		// The account's own, not the worker's (whose home it may not read).
		env["USER"], env["LOGNAME"] = ra.name, ra.name
		env["HOME"] = cmp.Or(ra.home, p.cwd(jobID))
		delete(env, "XDG_RUNTIME_DIR")
	}
	maps.Copy(env, spec.Env)
	env["GPUFLOW_JOB_ID"] = jobID
	env["CUDA_VISIBLE_DEVICES"] = cvd
	env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID" // nvidia-smi's numbering
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$`)

// validID reports whether id can name a job directory (and a container).
func validID(id string) bool { return idPattern.MatchString(id) }

func (p *Provider) jobDir(id string) string { return filepath.Join(p.dir, id) }

// cwd is where the job runs: its directory, or with RunAs its work
// directory in there.
func (p *Provider) cwd(id string) string {
	if p.runAs != nil {
		return filepath.Join(p.jobDir(id), workDirName)
	}
	return p.jobDir(id)
}

// lock takes this process's mutex and the lock file in Dir, shared or
// exclusive. Each call opens its own descriptor, so flock also orders
// goroutines.
func (p *Provider) lock(exclusive bool) (func(), error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
		p.mu.Lock()
	} else {
		p.mu.RLock()
	}
	release := func() {
		if exclusive {
			p.mu.Unlock()
		} else {
			p.mu.RUnlock()
		}
	}
	f, err := os.OpenFile(filepath.Join(p.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, p.transient("open lock file", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		release()
		return nil, p.transient("lock job directory", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		release()
	}, nil
}

func (p *Provider) invalid(msg string) error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindInvalidRequest, Message: msg}
}

func (p *Provider) noCapacity(msg string) error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindNoCapacity, Message: msg}
}

func (p *Provider) transient(msg string, err error) error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient, Message: msg, Err: err}
}

// invalidateOffers drops the usage snapshot after this process started or
// stopped a job.
func (p *Provider) invalidateOffers() {
	p.offerMu.Lock()
	p.offerUsedAt = time.Time{}
	p.offerMu.Unlock()
}
