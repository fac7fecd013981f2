package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// submitBody is the body of POST /api/gpu/jobs/submit. Absent fields are
// left out, so that the server's defaults apply.
type submitBody struct {
	Name               string            `json:"name,omitempty"`
	Image              string            `json:"image,omitempty"`
	Command            []string          `json:"command,omitempty"`
	Env                map[string]string `json:"env,omitempty"`
	GPUType            string            `json:"gpu_type,omitempty"`
	GPUCount           *int              `json:"gpu_count,omitempty"`
	MemoryGB           float64           `json:"memory_gb,omitempty"`
	VCPUs              int               `json:"vcpus,omitempty"`
	DiskGB             int               `json:"disk_gb,omitempty"`
	Priority           *int              `json:"priority,omitempty"`
	Strategy           string            `json:"strategy,omitempty"`
	Providers          []string          `json:"providers,omitempty"`
	Spot               bool              `json:"spot,omitempty"`
	MaxPricePerHour    *float64          `json:"max_price_per_hour,omitempty"`
	MaxDurationMinutes *int              `json:"max_duration_minutes,omitempty"`
	EstimatedDuration  *int              `json:"estimated_duration,omitempty"`
	MaxRestarts        int               `json:"max_restarts,omitempty"`
}

// jobFile is a job file (-f job.yaml), in the spirit of SkyPilot's task
// files:
//
//	name: train
//	image: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
//	command: [python, train.py]      # or a string, run by sh -c
//	env: {EPOCHS: "3"}
//	resources:
//	  gpu: A100:1                    # TYPE[:COUNT]; 0 or none: CPU only
//	  memory: 32                     # GB
//	  vcpus: 8
//	  disk: 100                      # GB
//	  spot: true
//	  providers: [runpod, tencent]   # or provider: runpod
//	strategy: cost                   # cost, performance, availability, balanced
//	priority: 7                      # 0-10
//	estimated_duration: 90m          # minutes, or a duration
//	limits:
//	  max_price_per_hour: 2.5
//	  max_duration: 2h               # minutes, or a duration
//	  max_restarts: 2
//
// Unknown keys are refused, so that a typo is not silently ignored.
type jobFile struct {
	Name              string            `yaml:"name"`
	Image             string            `yaml:"image"`
	Command           yaml.Node         `yaml:"command"`
	Env               map[string]string `yaml:"env"`
	Resources         jobResources      `yaml:"resources"`
	Strategy          string            `yaml:"strategy"`
	Priority          *int              `yaml:"priority"`
	EstimatedDuration string            `yaml:"estimated_duration"`
	Limits            struct {
		MaxPricePerHour *float64 `yaml:"max_price_per_hour"`
		MaxDuration     string   `yaml:"max_duration"`
		MaxRestarts     int      `yaml:"max_restarts"`
	} `yaml:"limits"`
}

type jobResources struct {
	GPU       string   `yaml:"gpu"`
	Memory    float64  `yaml:"memory"`
	VCPUs     int      `yaml:"vcpus"`
	Disk      int      `yaml:"disk"`
	Spot      bool     `yaml:"spot"`
	Provider  string   `yaml:"provider"`
	Providers []string `yaml:"providers"`
}

// parseJobFile reads a job file into a submission.
func parseJobFile(r io.Reader, name string) (submitBody, error) {
	var b submitBody
	data, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return b, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > 1<<20 {
		return b, Usage(fmt.Errorf("%s: a job file is at most 1 MiB", name))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f jobFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return b, usagef("%s is empty", name)
		}
		return b, usagef("%s: %s", name, yamlMessage(err))
	}
	bad := func(format string, args ...any) error {
		return usagef("%s: "+format, append([]any{name}, args...)...)
	}
	b.Name, b.Image, b.Env, b.Strategy, b.Priority = f.Name, f.Image, f.Env, f.Strategy, f.Priority
	switch f.Command.Kind {
	case 0:
	case yaml.ScalarNode:
		if s := strings.TrimSpace(f.Command.Value); s != "" {
			b.Command = []string{"sh", "-c", f.Command.Value}
		}
	case yaml.SequenceNode:
		if err := f.Command.Decode(&b.Command); err != nil {
			return b, bad("command must be a list of strings or one string: %v", err)
		}
	default:
		return b, bad("command must be a list of strings or one string (line %d)", f.Command.Line)
	}
	res := f.Resources
	if res.GPU != "" {
		t, n, err := parseGPU(res.GPU)
		if err != nil {
			return b, bad("resources.gpu: %v", err)
		}
		b.GPUType, b.GPUCount = t, &n
	}
	b.MemoryGB, b.VCPUs, b.DiskGB, b.Spot = res.Memory, res.VCPUs, res.Disk, res.Spot
	if res.Provider != "" && len(res.Providers) > 0 {
		return b, bad("resources: give provider or providers, not both")
	}
	b.Providers = res.Providers
	if res.Provider != "" {
		b.Providers = []string{res.Provider}
	}
	if f.EstimatedDuration != "" {
		m, err := parseMinutes(f.EstimatedDuration)
		if err != nil {
			return b, bad("estimated_duration: %v", err)
		}
		b.EstimatedDuration = &m
	}
	b.MaxPricePerHour, b.MaxRestarts = f.Limits.MaxPricePerHour, f.Limits.MaxRestarts
	if f.Limits.MaxDuration != "" {
		m, err := parseMinutes(f.Limits.MaxDuration)
		if err != nil {
			return b, bad("limits.max_duration: %v", err)
		}
		b.MaxDurationMinutes = &m
	}
	return b, nil
}

// yamlTypeName matches the Go types yaml.v3 names in its errors.
var yamlTypeName = regexp.MustCompile(` in type [A-Za-z0-9_.\[\]*]+`)

// yamlMessage is a YAML error in the job file's terms, not Go's.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	msg = yamlTypeName.ReplaceAllString(msg, "")
	msg = strings.ReplaceAll(msg, "field ", "key ")
	msg = strings.ReplaceAll(msg, " not found", " is not a job file key")
	return msg
}

// parseGPU reads TYPE[:COUNT] (A100:2, T4), or 0/none/cpu for a CPU-only
// job. A bare type means one GPU.
func parseGPU(s string) (string, int, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "0", "none", "cpu":
		return "", 0, nil
	case "":
		return "", 0, errors.New("empty; give TYPE[:COUNT], e.g. A100:1, or none")
	}
	t, c, hasCount := strings.Cut(s, ":")
	t = strings.TrimSpace(t)
	if t == "" {
		return "", 0, fmt.Errorf("%q has no GPU type; give TYPE[:COUNT], e.g. A100:1", s)
	}
	n := 1
	if hasCount {
		v, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || v < 1 {
			return "", 0, fmt.Errorf("%q: the count after ':' must be a whole number of at least 1", s)
		}
		n = v
	}
	return t, n, nil
}

// parseMinutes reads whole minutes ("90") or a Go duration ("1h30m"),
// rounded up to minutes.
func parseMinutes(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return 0, fmt.Errorf("%q must be at least 1 minute", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither minutes nor a duration such as 90m or 2h", s)
	}
	if d < time.Minute {
		return 0, fmt.Errorf("%q must be at least 1 minute", s)
	}
	return int(math.Ceil(d.Minutes())), nil
}

// parseEnv reads KEY=VALUE pairs.
func parseEnv(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("--env %q must be KEY=VALUE", p)
		}
		env[k] = v
	}
	return env, nil
}
