// Package agentscript writes what runs a job on a cloud machine and reports
// it to the API's agent endpoint:
//
//   - Script: the boot script (cloud-init user data) of a Tencent or
//     Alibaba VM, which runs the job's image with the GPU container runtime;
//   - Runner: the command of a RunPod pod's container, which runs the job's
//     argv inside the job's image exactly once (see provider/runpod).
//
// Both share one agent (agent.sh, POSIX sh and curl) whose reports are
// durable: each report is retried until the API acknowledges it with a 2xx,
// with exponential backoff (GPUFLOW_RETRY_MIN_MS, 1 s, doubling to
// GPUFLOW_RETRY_MAX_MS, 30 s, each wait drawn in [d/2, d], a longer
// Retry-After obeyed up to 5 min) through refused connections, timeouts,
// 429 and 5xx alike. A 4xx that can never succeed (400, 401, 403, 404, 409,
// 410, 413, 422) ends that report, and nothing is retried past
// GPUFLOW_DEADLINE (the job's allowed life: its agent token has expired by
// then and the cloud's safety timer removes the machine).
//
// The job's output never blocks it and is never held in memory: it goes to
// a spool file (output.log in the state directory) that a shipper posts in
// chunks of at most GPUFLOW_LOG_CHUNK bytes (256 KiB), every
// GPUFLOW_LOG_INTERVAL_MS (5 s) while the job runs, each chunk retried like
// a report and sent with its byte offset in the job's output
// (Gpuflow-Log-Offset), so the API can drop a chunk it already has. When
// the job ends, what is left is shipped, then the finished report
// {"exit_code":N} is sent.
//
// A machine whose end is never acknowledged stops itself. Once the job's
// command has ended, the agent retries for GPUFLOW_REPORT_GRACE (10 min by
// default; the endpoint's ReportGrace). If the rest of the output and the
// exit code are not acknowledged by then, or the API refuses them for
// good, the boot script powers the VM off and the runner stops its pod.
// No cloud API carries a job's exit code, but each shows a stopped
// machine: the provider's watcher sees it within one interval and the job
// ends, failed with its exit code unknown, instead of billing until its
// max duration.
//
// The cloud emulators read the script's header back with Env and play the
// job through provider/emulate, which follows the same rules.
package agentscript

import (
	"bufio"
	"cmp"
	_ "embed"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Variables the scripts read (Script exports them in its header; a RunPod
// pod has them in its env).
const (
	EnvJobID      = "GPUFLOW_JOB_ID"
	EnvAgentURL   = "GPUFLOW_AGENT_URL"
	EnvAgentToken = "GPUFLOW_AGENT_TOKEN" // #nosec G101 -- the name of an environment variable, not a credential
	EnvImage      = "GPUFLOW_IMAGE"
	// EnvDeadline is when the agent stops retrying, in Unix seconds (0:
	// never). The runner stops its RunPod pod then.
	EnvDeadline = "GPUFLOW_DEADLINE"
	// EnvReportGrace is how long, in seconds, the agent keeps trying to
	// get the rest of the output and the exit code acknowledged once the
	// job's command has ended (ReportGrace). Past it, or when the API
	// refuses the report for good, the agent stops its machine: the boot
	// script powers the VM off, the runner stops its pod.
	EnvReportGrace = "GPUFLOW_REPORT_GRACE"
	// EnvPrefixJob prefixes the job's own environment in the script's
	// header (GPUFLOW_JOBENV_<NAME>), so the header stays parseable.
	EnvPrefixJob = "GPUFLOW_JOBENV_"
	// EnvRunner holds the runner script (Runner) in a pod's env; the
	// container's command evals it (RunnerArgs).
	EnvRunner = "GPUFLOW_RUNNER"
	// EnvStateDir is the runner's state directory: it must be on storage
	// that survives a restart of the container.
	EnvStateDir = "GPUFLOW_STATE_DIR"
)

// Tuning knobs the agent reads from its environment (defaults in
// agent.sh); tests set them small.
const (
	EnvRetryMinMS    = "GPUFLOW_RETRY_MIN_MS"
	EnvRetryMaxMS    = "GPUFLOW_RETRY_MAX_MS"
	EnvLogChunk      = "GPUFLOW_LOG_CHUNK"
	EnvLogIntervalMS = "GPUFLOW_LOG_INTERVAL_MS"
	// EnvRunPodAPI overrides the RunPod API base URL the runner stops its
	// pod through (default https://api.runpod.io).
	EnvRunPodAPI = "GPUFLOW_RUNPOD_API"
)

// HeaderLogOffset carries a log chunk's byte offset in the job's output.
const HeaderLogOffset = "Gpuflow-Log-Offset"

// Retry defaults, as agent.sh has them.
const (
	RetryMin = time.Second
	RetryMax = 30 * time.Second
)

// Marker and state-file names the runner keeps in its state directory.
const (
	// RunnerMarker is the runner script's first line.
	RunnerMarker = "# gpuflow container runner: sh -c 'eval \"$GPUFLOW_RUNNER\"' gpuflow ARGV..."
)

// DefaultImage runs command-only jobs on cloud VMs.
const DefaultImage = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"

// DefaultReportGrace is the agent's report grace when the endpoint sets
// none: long enough for an API restart or a short network outage, short
// enough that a machine whose end cannot be reported stops billing soon.
const DefaultReportGrace = 10 * time.Minute

// ReportGrace is the endpoint's report grace in whole seconds (at least
// one), DefaultReportGrace when it sets none: the value of EnvReportGrace.
func ReportGrace(a *gpuflow.AgentEndpoint) string {
	g := DefaultReportGrace
	if a != nil && a.ReportGrace > 0 {
		g = a.ReportGrace
	}
	return strconv.FormatInt(max(int64(g/time.Second), 1), 10)
}

// ParseReportGrace reads EnvReportGrace's value; DefaultReportGrace when
// absent or invalid.
func ParseReportGrace(v string) time.Duration {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return DefaultReportGrace
	}
	return time.Duration(n) * time.Second
}

// DefaultLife is a job's allowed life when neither the request nor the
// spec bounds it.
const DefaultLife = 24 * time.Hour

var (
	//go:embed agent.sh
	agentLib string
	//go:embed boot.sh
	bootStart string
	//go:embed boot_end.sh
	bootEnd string
	//go:embed runner.sh
	runnerBody string
)

var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote quotes s for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Life is the job's allowed life: the request's MaxDuration, else the
// spec's max_duration_minutes, else DefaultLife.
func Life(req gpuflow.ProvisionRequest) time.Duration {
	return cmp.Or(max(req.MaxDuration, 0), max(req.Spec.MaxDuration(), 0), DefaultLife)
}

// Deadline is when a VM's agent stops retrying: the job's allowed life
// from the start of the current hour, plus two hours (so at least an hour
// past the life from now, and the same for every try within the hour: the
// clouds' ClientToken idempotency compares the user data).
func Deadline(req gpuflow.ProvisionRequest, now time.Time) time.Time {
	return now.UTC().Truncate(time.Hour).Add(Life(req) + 2*time.Hour)
}

// Script returns the boot script for req. The job's command runs inside
// the image as argv (never re-parsed by a shell).
func Script(req gpuflow.ProvisionRequest) (string, error) {
	if req.Agent == nil {
		return "", fmt.Errorf("agent endpoint required")
	}
	image := req.Spec.Image
	if image == "" {
		image = DefaultImage
	}
	if strings.HasPrefix(image, "-") || strings.IndexFunc(image, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		// "docker run ... $GPUFLOW_IMAGE" would take it as an option
		// (--privileged, -v /:/host) or split it. The API refuses such
		// images; this guards every other caller.
		return "", fmt.Errorf("image %q is not an image reference", image)
	}
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# gpuflow job runner (generated)\nset -u\n")
	w := func(k, v string) { fmt.Fprintf(&b, "export %s=%s\n", k, quote(v)) }
	w(EnvJobID, req.JobID)
	w(EnvAgentURL, req.Agent.URL)
	w(EnvAgentToken, req.Agent.Token)
	w(EnvImage, image)
	w(EnvDeadline, strconv.FormatInt(Deadline(req, time.Now()).Unix(), 10))
	w(EnvReportGrace, ReportGrace(req.Agent))
	for _, k := range slices.Sorted(maps.Keys(req.Spec.Env)) {
		if !validName.MatchString(k) {
			return "", fmt.Errorf("env name %q is not a valid variable name", k)
		}
		w(EnvPrefixJob+k, req.Spec.Env[k])
	}
	b.WriteString("# --- end of header ---\n")
	b.WriteString(agentLib)
	b.WriteString(bootStart)
	b.WriteString(`docker run --rm --gpus all --name "gpuflow-$GPUFLOW_JOB_ID" ${envargs[@]+"${envargs[@]}"} "$GPUFLOW_IMAGE"`)
	for _, a := range req.Spec.Command {
		b.WriteString(" " + quote(a))
	}
	b.WriteString(" </dev/null >>\"$GF_S/output.log\" 2>&1\n")
	b.WriteString(bootEnd)
	return b.String(), nil
}

// Runner returns the container runner: a POSIX sh script (it needs curl,
// and installs it with the image's package manager when missing) that a
// container runs as RunnerArgs, with the variables above in its env and
// EnvStateDir on storage that survives a restart of the container. It runs
// the job's argv once, recording that it started and its exit code in the
// state directory; spools and ships the output and reports the exit code
// as the agent does; and then keeps the container from exiting (RunPod
// restarts a container whose command ends) until EnvDeadline, when it
// stops its pod through RunPod's API with the pod-scoped RUNPOD_API_KEY
// RunPod gives every pod (RUNPOD_POD_ID names it). Started again after a
// restart, it does not run the job again: after the job ended it ships
// what is left and reports the recorded exit code if that report was not
// acknowledged yet; if the job had started and not ended, it reports exit
// code -1.
func Runner() string {
	return RunnerMarker + "\nset -u\n" + agentLib + strings.TrimPrefix(runnerBody, RunnerMarker+"\n")
}

// RunnerArgs is the container command that runs the job's argv through
// the runner in EnvRunner: the argv are positional parameters, never
// re-parsed by a shell.
func RunnerArgs(argv []string) []string {
	return append([]string{"sh", "-c", `eval "$` + EnvRunner + `"`, "gpuflow"}, argv...)
}

// IsRunner reports whether script is a runner written by Runner (of any
// version: it checks the marker line).
func IsRunner(script string) bool { return strings.HasPrefix(script, RunnerMarker+"\n") }

// Env reads the exported header of a script written by Script: the agent
// endpoint, the image, the deadline and the job's environment (under
// EnvPrefixJob).
func Env(script string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(script))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "# --- end of header ---" {
			break
		}
		rest, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			continue
		}
		out[k] = unquote(v)
	}
	return out
}

// ParseDeadline reads EnvDeadline's value; zero when absent or invalid.
func ParseDeadline(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
	}
	return v
}
