// Package app wires gpuflow's production commands (api, worker, migrate)
// from configuration: it is the only place that reads the environment and
// builds concrete adapters. cmd/gpuflow calls it; the dev command and the
// integration tests reuse it.
package app

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/api"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/watcher"
)

// Config is everything gpuflow reads from its environment. Every variable,
// with its default:
//
//	GPUFLOW_DATA_DIR        .data                 runtime state: job directories, dev databases, generated secrets
//	HTTP_ADDR               127.0.0.1:8080        where the API listens
//	DATABASE_URL            (none)                PostgreSQL; required by api, worker and migrate; `dev` starts a private cluster when unset
//	TEMPORAL_ADDRESS        127.0.0.1:7233        Temporal frontend (gRPC)
//	TEMPORAL_NAMESPACE      default               Temporal namespace
//	TEMPORAL_UI_ADDR        127.0.0.1:8233        where `dev` serves the Temporal Web UI
//	TEMPORAL_UI_URL         http://<TEMPORAL_UI_ADDR>  the Web UI link the API shows
//	JWT_SECRET              (none)                HS256 key for API tokens, 32 bytes or more; required by api (`dev` generates <data dir>/jwt-secret)
//	JWT_LIFETIME            1h                    how long an API token is valid (1m to 720h)
//	TRUSTED_PROXIES         (none)                comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client
//	CORS_ALLOWED_ORIGINS    http://<HTTP_ADDR>    comma-separated browser origins (scheme://host[:port], or *) whose pages may call the API
//	LOG_LEVEL               info                  debug, info, warn or error
//	LOG_FORMAT              text                  text or json
//	GPUFLOW_LOCAL_ENABLED   true                  run jobs on this host (the local provider)
//	GPUFLOW_LOCAL_DIR       <data dir>/jobs       where local jobs run and keep their output
//	GPUFLOW_LOCAL_CPU_SLOTS number of CPUs        how many CPU-only local jobs run at once
//	<SECRET>_FILE                                        any secret above or below may instead come from the file this names
//	RUNPOD_API_KEY, RUNPOD_BASE_URL                      RunPod credentials (live mode) and API base override
//	TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY      Tencent Cloud credentials (live mode)
//	TENCENTCLOUD_REGIONS, TENCENTCLOUD_IMAGE_ID, TENCENTCLOUD_ENDPOINT  regions (default ap-guangzhou), GPU boot image, endpoint override
//	ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET  Alibaba Cloud credentials (live mode)
//	ALIBABA_CLOUD_REGIONS, ALIBABA_CLOUD_IMAGE_ID, ALIBABA_CLOUD_ENDPOINT  regions, GPU boot image, endpoint override
//	RUNPOD_EMULATOR_URL, TENCENTCLOUD_EMULATOR_URL, ALIBABA_CLOUD_EMULATOR_URL  a cloud without credentials runs emulated against the emulator at this URL
//	GPUFLOW_RECONCILE_INTERVAL 5m                 how often the reconciler looks for machines no live job owns
//	GPUFLOW_AGENT_URL       http://<HTTP_ADDR>    the API's base URL as cloud machines reach it (their agent reports there)
//	GPUFLOW_AGENT_REPORT_GRACE 10m                how long a machine's agent retries the job's end once its command ended; then it stops its machine
//	GPUFLOW_RECONCILE_GRACE 2m                    how old such a machine must be before it is terminated
//	GPUFLOW_MAX_RUNNING_JOBS 0                    per user: jobs holding or making a machine at once (0: no limit); more wait in queued
//	GPUFLOW_MAX_SPEND_PER_HOUR 0                  per user: dollars per hour of those jobs together (0: no limit); more wait in queued
//	GPUFLOW_QUEUE_RECHECK   15s                   how often the dispatcher looks again at waiting jobs when nothing woke it
//	METRICS_ADDR            127.0.0.1:9464        where `gpuflow worker` serves /metrics (the API serves its own; "off" disables)
//	GPUFLOW_PROGRESS_INTERVAL 5s                  the least time between two progress signals of one job (agent reports in between are coalesced)
//	GPUFLOW_WORKFLOW_CACHE    2000                the workflows a worker keeps in memory between their events (an evicted one replays at its next event)
//	GPUFLOW_REGISTRATION    closed (dev: open)    who may register: open, invite (a superuser's invitation code) or closed
//	GPUFLOW_LOCAL_USERS     (none; dev: *)        who may run local jobs besides superusers and accounts with can_run_local: comma-separated emails or user ids, * for everyone, none for no one else
//	GPUFLOW_LOCAL_RUN_AS    (none)                the unprivileged user (name or uid) local jobs run as; needs the worker to run as root
//	GPUFLOW_SUBMIT_RATE     120/1m (dev: off)     per user: submissions per period, counted across API replicas in PostgreSQL; off for none
//	GPUFLOW_CANCEL_RATE     120/1m (dev: off)     per user: cancels per period, likewise
type Config struct {
	DataDir           string
	HTTPAddr          string
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	TemporalUIAddr    string
	TemporalUIURL     string
	JWTSecret         string
	JWTLifetime       time.Duration
	AgentURL          string
	// AgentReportGrace is how long a machine's agent keeps trying to get
	// the job's end acknowledged once its command has ended, before it
	// stops its machine (gpuflow.AgentEndpoint.ReportGrace).
	AgentReportGrace  time.Duration
	Clouds            CloudConfig
	ReconcileInterval time.Duration
	ReconcileGrace    time.Duration
	TrustedProxies    []*net.IPNet
	// CORSAllowedOrigins are the browser origins allowed to call the API.
	CORSAllowedOrigins []string
	LogLevel           slog.Level
	LogFormat          string
	LocalEnabled       bool
	LocalDir           string
	LocalCPUSlots      int
	// Limits bound each user's running jobs and spend per hour.
	Limits       gpuflow.Limits
	QueueRecheck time.Duration
	// WorkflowCache is how many workflows a worker keeps in memory between
	// their events (GPUFLOW_WORKFLOW_CACHE). One that was evicted replays
	// its history at its next event: memory stays bounded however many jobs
	// run, and the cost of an eviction grows with events, not with time.
	WorkflowCache int
	// WatchInterval is how often each cloud's watcher looks at all its
	// machines (the local provider's looks every watcher.LocalInterval).
	WatchInterval time.Duration
	// MetricsAddr is where the worker serves /metrics ("" disables).
	MetricsAddr string
	// ProgressInterval is the least time between two progress signals
	// the API's relay sends one job.
	ProgressInterval time.Duration
	// Registration is GPUFLOW_REGISTRATION: gpuflow.RegistrationOpen,
	// RegistrationInvite or RegistrationClosed; "" when unset (the API
	// then closes it; WithDevDefaults opens it).
	Registration string
	// LocalUsers is GPUFLOW_LOCAL_USERS; nil when unset (the API then lets
	// only superusers and accounts with can_run_local run local jobs;
	// WithDevDefaults lets everyone).
	LocalUsers *gpuflow.LocalPolicy
	// LocalRunAs is the user local jobs run as ("" : the worker's own).
	LocalRunAs string
	// SubmitRate and CancelRate are GPUFLOW_SUBMIT_RATE and
	// GPUFLOW_CANCEL_RATE; nil when unset (the API's defaults, 120 a
	// minute; WithDevDefaults turns them off). A negative Limit is off.
	SubmitRate, CancelRate *api.RateLimit
}

// WithDevDefaults returns c with what `make run` leaves unset filled in for
// ease on one's own machine: open registration, local jobs for everyone,
// no submit or cancel rate limits. Production commands never call it.
func (c Config) WithDevDefaults() Config {
	if c.Registration == "" {
		c.Registration = gpuflow.RegistrationOpen
	}
	if c.LocalUsers == nil {
		c.LocalUsers = &gpuflow.LocalPolicy{Everyone: true}
	}
	off := &api.RateLimit{Limit: -1}
	if c.SubmitRate == nil {
		c.SubmitRate = off
	}
	if c.CancelRate == nil {
		c.CancelRate = off
	}
	return c
}

// EnvVars lists every environment variable Config reads.
var EnvVars = append([]string{
	"GPUFLOW_DATA_DIR", "HTTP_ADDR", "DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE",
	"TEMPORAL_UI_ADDR", "TEMPORAL_UI_URL", "JWT_SECRET", "JWT_SECRET_FILE", "JWT_LIFETIME", "TRUSTED_PROXIES", "CORS_ALLOWED_ORIGINS", "LOG_LEVEL", "LOG_FORMAT",
	"GPUFLOW_LOCAL_ENABLED", "GPUFLOW_LOCAL_DIR", "GPUFLOW_LOCAL_CPU_SLOTS",
	"GPUFLOW_RECONCILE_INTERVAL", "GPUFLOW_RECONCILE_GRACE", "GPUFLOW_AGENT_URL", "GPUFLOW_AGENT_REPORT_GRACE",
	"GPUFLOW_MAX_RUNNING_JOBS", "GPUFLOW_MAX_SPEND_PER_HOUR", "GPUFLOW_QUEUE_RECHECK", "GPUFLOW_WATCH_INTERVAL", "METRICS_ADDR",
	"GPUFLOW_PROGRESS_INTERVAL",
	"GPUFLOW_WORKFLOW_CACHE",
	"GPUFLOW_PROGRESS_INTERVAL", "GPUFLOW_REGISTRATION", "GPUFLOW_LOCAL_USERS", "GPUFLOW_LOCAL_RUN_AS",
	"GPUFLOW_SUBMIT_RATE", "GPUFLOW_CANCEL_RATE",
}, cloudEnvVars...)

// ConfigFromEnv reads Config from getenv (os.Getenv in production) and
// validates it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		DataDir:           cmp.Or(getenv("GPUFLOW_DATA_DIR"), ".data"),
		HTTPAddr:          cmp.Or(getenv("HTTP_ADDR"), "127.0.0.1:8080"),
		DatabaseURL:       getenv("DATABASE_URL"),
		TemporalAddress:   cmp.Or(getenv("TEMPORAL_ADDRESS"), "127.0.0.1:7233"),
		TemporalNamespace: cmp.Or(getenv("TEMPORAL_NAMESPACE"), "default"),
		TemporalUIAddr:    cmp.Or(getenv("TEMPORAL_UI_ADDR"), "127.0.0.1:8233"),
		JWTSecret:         getenv("JWT_SECRET"),
		LogFormat:         cmp.Or(getenv("LOG_FORMAT"), "text"),
		LocalDir:          getenv("GPUFLOW_LOCAL_DIR"),
	}
	c.TemporalUIURL = cmp.Or(getenv("TEMPORAL_UI_URL"), "http://"+c.TemporalUIAddr)
	c.AgentURL = cmp.Or(getenv("GPUFLOW_AGENT_URL"), "http://"+c.HTTPAddr)
	clouds, err := cloudConfigFromEnv(getenv)
	if err != nil {
		return c, err
	}
	c.Clouds = clouds
	jwt := secretReader{getenv: getenv}
	if c.JWTSecret = jwt.read("JWT_SECRET"); jwt.err != nil {
		return c, jwt.err
	}
	if c.LocalDir == "" {
		c.LocalDir = filepath.Join(c.DataDir, "jobs")
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(getenv("LOG_LEVEL"), "info"))); err != nil {
		return c, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("LOG_FORMAT must be text or json, not %q", c.LogFormat)
	}
	if c.ReconcileInterval, err = parseDuration(getenv("GPUFLOW_RECONCILE_INTERVAL"), DefaultReconcileInterval); err != nil {
		return c, fmt.Errorf("GPUFLOW_RECONCILE_INTERVAL: %w", err)
	}
	if c.ReconcileGrace, err = parseDuration(getenv("GPUFLOW_RECONCILE_GRACE"), 2*time.Minute); err != nil {
		return c, fmt.Errorf("GPUFLOW_RECONCILE_GRACE: %w", err)
	}
	if c.AgentReportGrace, err = parseDuration(getenv("GPUFLOW_AGENT_REPORT_GRACE"), agentscript.DefaultReportGrace); err != nil {
		return c, fmt.Errorf("GPUFLOW_AGENT_REPORT_GRACE: %w", err)
	}
	if c.AgentReportGrace < time.Second {
		return c, fmt.Errorf("GPUFLOW_AGENT_REPORT_GRACE must be at least 1s, not %s", c.AgentReportGrace)
	}
	if c.JWTLifetime, err = parseLifetime(getenv("JWT_LIFETIME")); err != nil {
		return c, fmt.Errorf("JWT_LIFETIME: %w", err)
	}
	if c.TrustedProxies, err = parseCIDRs(getenv("TRUSTED_PROXIES")); err != nil {
		return c, fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	if c.CORSAllowedOrigins, err = parseOrigins(cmp.Or(getenv("CORS_ALLOWED_ORIGINS"), "http://"+c.HTTPAddr)); err != nil {
		return c, fmt.Errorf("CORS_ALLOWED_ORIGINS: %w", err)
	}
	if c.LocalEnabled, err = parseBool(getenv("GPUFLOW_LOCAL_ENABLED"), true); err != nil {
		return c, fmt.Errorf("GPUFLOW_LOCAL_ENABLED: %w", err)
	}
	c.LocalCPUSlots = runtime.NumCPU()
	if s := getenv("GPUFLOW_LOCAL_CPU_SLOTS"); s != "" {
		if c.LocalCPUSlots, err = strconv.Atoi(s); err != nil || c.LocalCPUSlots < 1 {
			return c, fmt.Errorf("GPUFLOW_LOCAL_CPU_SLOTS must be a positive integer, not %q", s)
		}
	}
	if s := getenv("GPUFLOW_MAX_RUNNING_JOBS"); s != "" {
		if c.Limits.MaxRunning, err = strconv.Atoi(s); err != nil || c.Limits.MaxRunning < 0 {
			return c, fmt.Errorf("GPUFLOW_MAX_RUNNING_JOBS must be a whole number, 0 for no limit, not %q", s)
		}
	}
	if s := getenv("GPUFLOW_MAX_SPEND_PER_HOUR"); s != "" {
		if c.Limits.MaxSpendPerHour, err = strconv.ParseFloat(s, 64); err != nil || !(c.Limits.MaxSpendPerHour >= 0) || math.IsInf(c.Limits.MaxSpendPerHour, 0) {
			return c, fmt.Errorf("GPUFLOW_MAX_SPEND_PER_HOUR must be dollars per hour, 0 for no limit, not %q", s)
		}
	}
	c.WorkflowCache = DefaultWorkflowCache
	if s := getenv("GPUFLOW_WORKFLOW_CACHE"); s != "" {
		if c.WorkflowCache, err = strconv.Atoi(s); err != nil || c.WorkflowCache < 1 {
			return c, fmt.Errorf("GPUFLOW_WORKFLOW_CACHE must be a whole number of workflows, at least 1, not %q", s)
		}
	}
	if c.QueueRecheck, err = parseDuration(getenv("GPUFLOW_QUEUE_RECHECK"), 15*time.Second); err != nil {
		return c, fmt.Errorf("GPUFLOW_QUEUE_RECHECK: %w", err)
	}
	if c.WatchInterval, err = parseDuration(getenv("GPUFLOW_WATCH_INTERVAL"), watcher.DefaultInterval); err != nil {
		return c, fmt.Errorf("GPUFLOW_WATCH_INTERVAL: %w", err)
	}
	if c.ProgressInterval, err = parseDuration(getenv("GPUFLOW_PROGRESS_INTERVAL"), 5*time.Second); err != nil {
		return c, fmt.Errorf("GPUFLOW_PROGRESS_INTERVAL: %w", err)
	}
	switch c.Registration = strings.ToLower(strings.TrimSpace(getenv("GPUFLOW_REGISTRATION"))); c.Registration {
	case "", gpuflow.RegistrationOpen, gpuflow.RegistrationInvite, gpuflow.RegistrationClosed:
	default:
		return c, fmt.Errorf("GPUFLOW_REGISTRATION must be open, invite or closed, not %q", c.Registration)
	}
	if c.LocalUsers, err = parseLocalUsers(getenv("GPUFLOW_LOCAL_USERS")); err != nil {
		return c, fmt.Errorf("GPUFLOW_LOCAL_USERS: %w", err)
	}
	c.LocalRunAs = strings.TrimSpace(getenv("GPUFLOW_LOCAL_RUN_AS"))
	if c.SubmitRate, err = parseRate(getenv("GPUFLOW_SUBMIT_RATE")); err != nil {
		return c, fmt.Errorf("GPUFLOW_SUBMIT_RATE: %w", err)
	}
	if c.CancelRate, err = parseRate(getenv("GPUFLOW_CANCEL_RATE")); err != nil {
		return c, fmt.Errorf("GPUFLOW_CANCEL_RATE: %w", err)
	}
	c.MetricsAddr = cmp.Or(getenv("METRICS_ADDR"), "127.0.0.1:9464")
	if c.MetricsAddr == "off" {
		c.MetricsAddr = ""
	} else if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
		return c, fmt.Errorf("METRICS_ADDR: %w", err)
	}
	for name, addr := range map[string]string{"HTTP_ADDR": c.HTTPAddr, "TEMPORAL_ADDRESS": c.TemporalAddress, "TEMPORAL_UI_ADDR": c.TemporalUIAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
	}
	return c, nil
}

// DefaultWorkflowCache is GPUFLOW_WORKFLOW_CACHE's default: about 1 GiB of
// worker memory at most (a cached job workflow holds about 0.5 MiB with its
// coroutines; docs/BENCHMARKS.md, issue 9). The SDK's own default, 10,000,
// lets the worker grow to several GiB at 10,000 running jobs.
const DefaultWorkflowCache = 2000

// Bounds of JWT_LIFETIME.
const (
	minJWTLifetime = time.Minute
	maxJWTLifetime = 720 * time.Hour
)

// MinJWTSecretLen is the shortest JWT_SECRET the API accepts (256 bits).
const MinJWTSecretLen = auth.MinSecretLen

// CheckJWTSecret returns an error saying how to fix JWT_SECRET when it is
// unset or too short. The API refuses to start without a good one; the
// other commands do not need it. The message never contains the secret.
func (c Config) CheckJWTSecret() error {
	if c.JWTSecret == "" {
		return fmt.Errorf("JWT_SECRET is not set: the API signs its access tokens with it; "+
			"set it to %d or more random bytes, e.g. JWT_SECRET=$(openssl rand -hex 32)", MinJWTSecretLen)
	}
	if len(c.JWTSecret) < MinJWTSecretLen {
		return fmt.Errorf("JWT_SECRET is too short (%d bytes): use %d or more random bytes, "+
			"e.g. JWT_SECRET=$(openssl rand -hex 32)", len(c.JWTSecret), MinJWTSecretLen)
	}
	return nil
}

func parseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return auth.DefaultLifetime, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1h or 30m", s)
	}
	if d < minJWTLifetime || d > maxJWTLifetime {
		return 0, fmt.Errorf("%s is not between %s and %s", d, minJWTLifetime, maxJWTLifetime)
	}
	return d, nil
}

// parseCIDRs parses a comma-separated list of CIDRs; a bare address stands
// for itself alone.
func parseCIDRs(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip := net.ParseIP(f)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", f)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseBool(s string, def bool) (bool, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseBool(strings.ToLower(s))
}

// NewLogger builds the process's logger from the config.
func (c Config) NewLogger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func parseDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration such as 90s, not %q", s)
	}
	return d, nil
}

// parseOrigins parses a comma-separated list of browser origins: each
// http(s)://host[:port] (a trailing slash is dropped), or "*" for any.
func parseOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		o = strings.TrimSuffix(o, "/")
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an origin like https://app.example.com[:port] or *", o)
		}
		out = append(out, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	return out, nil
}

// parseLocalUsers parses GPUFLOW_LOCAL_USERS: nil when unset; "*" lets
// everyone; "none" no one beyond superusers and can_run_local; otherwise
// comma-separated emails or user ids.
func parseLocalUsers(s string) (*gpuflow.LocalPolicy, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return nil, nil
	case "*":
		return &gpuflow.LocalPolicy{Everyone: true}, nil
	case "none":
		return &gpuflow.LocalPolicy{}, nil
	}
	p := &gpuflow.LocalPolicy{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if id, err := uuid.Parse(f); err == nil && len(f) == 36 {
			p.Users = append(p.Users, id.String())
			continue
		}
		email, err := gpuflow.NormalizeEmail(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an email nor a user id (use * for everyone, none for no one)", f)
		}
		p.Users = append(p.Users, email)
	}
	return p, nil
}

// parseRate parses a rate such as "120/1m", "10/s" or "off": nil when
// unset, a negative Limit for off.
func parseRate(s string) (*api.RateLimit, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.EqualFold(s, "off") {
		return &api.RateLimit{Limit: -1}, nil
	}
	bad := fmt.Errorf("want requests per period such as 120/1m, 10/s or off, not %q", s)
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return nil, bad
	}
	limit, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || limit < 1 {
		return nil, bad
	}
	per = strings.TrimSpace(per)
	switch per {
	case "s", "m", "h":
		per = "1" + per
	}
	period, err := time.ParseDuration(per)
	if err != nil || period < time.Second || period > 24*time.Hour {
		return nil, bad
	}
	return &api.RateLimit{Limit: limit, Period: period}, nil
}

// DefaultReconcileInterval is how often the reconciler looks for machines
// no live job owns. Each look lists every machine of every provider and
// every running job workflow: at 10,000 jobs, one a minute was 30 % of the
// Temporal server's CPU and 16 % of the worker's while jobs merely ran
// (docs/BENCHMARKS.md, session 7). A leaked machine is rare (the watchers
// and the workflows tear machines down); five minutes plus the grace bounds
// what one costs.
const DefaultReconcileInterval = 5 * time.Minute
