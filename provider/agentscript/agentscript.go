// Package agentscript writes the boot script (cloud-init user data) that
// runs a job on a cloud VM: it starts the job's image with the GPU container
// runtime, streams output and reports progress and the exit code to the
// API's agent endpoint. The cloud emulators read the same script back with
// Env, so the emulated VM reports exactly as a real one would.
package agentscript

import (
	"bufio"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/gpuflow/gpuflow"
)

// Variables the script exports before the job starts.
const (
	EnvJobID      = "GPUFLOW_JOB_ID"
	EnvAgentURL   = "GPUFLOW_AGENT_URL"
	EnvAgentToken = "GPUFLOW_AGENT_TOKEN"
	EnvImage      = "GPUFLOW_IMAGE"
	// EnvPrefixJob prefixes the job's own environment in the script's
	// header (GPUFLOW_JOBENV_<NAME>), so the header stays parseable.
	EnvPrefixJob = "GPUFLOW_JOBENV_"
)

// DefaultImage runs command-only jobs on cloud VMs.
const DefaultImage = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"

var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote quotes s for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

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
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# gpuflow job runner (generated)\nset -u\n")
	w := func(k, v string) { fmt.Fprintf(&b, "export %s=%s\n", k, quote(v)) }
	w(EnvJobID, req.JobID)
	w(EnvAgentURL, req.Agent.URL)
	w(EnvAgentToken, req.Agent.Token)
	w(EnvImage, image)
	for _, k := range slices.Sorted(maps.Keys(req.Spec.Env)) {
		if !validName.MatchString(k) {
			return "", fmt.Errorf("env name %q is not a valid variable name", k)
		}
		w(EnvPrefixJob+k, req.Spec.Env[k])
	}
	b.WriteString("# --- end of header ---\n")
	b.WriteString(`report() { curl -fsS -m 10 --retry 5 -H "Authorization: Bearer $GPUFLOW_AGENT_TOKEN" -H 'Content-Type: application/json' -d "$2" "$GPUFLOW_AGENT_URL/$1" >/dev/null || true; }
envargs=()
for v in $(compgen -e | grep '^GPUFLOW_JOBENV_'); do envargs+=(-e "${v#GPUFLOW_JOBENV_}=${!v}"); done
report progress '{"percent":0,"message":"pulling image"}'
`)
	b.WriteString(`docker run --rm --gpus all --name gpuflow-"$GPUFLOW_JOB_ID" "${envargs[@]}" "$GPUFLOW_IMAGE"`)
	for _, a := range req.Spec.Command {
		b.WriteString(" " + quote(a))
	}
	b.WriteString(` 2>&1 | while IFS= read -r line; do printf '%s\n' "$line" | curl -fsS -m 10 -H "Authorization: Bearer $GPUFLOW_AGENT_TOKEN" --data-binary @- "$GPUFLOW_AGENT_URL/logs" >/dev/null || true; done
code=${PIPESTATUS[0]}
report finished "{\"exit_code\":$code}"
`)
	return b.String(), nil
}

// Env reads the exported header of a script written by Script: the agent
// endpoint, the image, and the job's environment (under EnvPrefixJob).
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

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
	}
	return v
}
