package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/gpuflow/gpuflow"
)

// gpu is one of the host's GPUs as nvidia-smi reports it.
type gpu struct {
	Index    int
	UUID     string
	Name     string
	Type     string // gpuflow.NormalizeGPUType(Name)
	MemoryGB float64
}

// queryGPUs runs nvidia-smi and parses its CSV listing.
func queryGPUs(ctx context.Context, smi string) ([]gpu, error) {
	cmd := exec.CommandContext(ctx, smi, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w: %s", smi, err, strings.TrimSpace(stderr.String()))
	}
	return parseGPUs(out)
}

// parseGPUs parses lines such as "0, GPU-5f3c..., NVIDIA H100 80GB HBM3, 81559".
func parseGPUs(out []byte) ([]gpu, error) {
	var gpus []gpu
	seen := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 4 {
			return nil, fmt.Errorf("unexpected nvidia-smi line %q", line)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 || seen[idx] {
			return nil, fmt.Errorf("unexpected GPU index in nvidia-smi line %q", line)
		}
		seen[idx] = true
		name := strings.Join(f[2:len(f)-1], ",") // a name may hold a comma
		g := gpu{Index: idx, UUID: f[1], Name: name, Type: gpuflow.NormalizeGPUType(name)}
		if mib, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			g.MemoryGB = round1(mib / 1024)
		}
		if g.Type == "" {
			g.Type = "GPU"
		}
		gpus = append(gpus, g)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nvidia-smi output: %w", err)
	}
	return gpus, nil
}

// hostMemoryGB returns MemTotal from /proc/meminfo, or 0 when unknown.
func hostMemoryGB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0
		}
		return round1(kb / 1024 / 1024)
	}
	return 0
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
