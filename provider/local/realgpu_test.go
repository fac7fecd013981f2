package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// TestRealGPU runs on a host with NVIDIA GPUs (GPUFLOW_REAL_GPU=1): the
// provider finds them through the real nvidia-smi, offers them pooled, and
// gives each job its own GPU through CUDA_VISIBLE_DEVICES — checked from
// inside the job by the GPU nvidia-smi shows it (its UUID) — until they are
// all taken, then refuses for lack of capacity; a freed GPU is reused.
func TestRealGPU(t *testing.T) {
	if os.Getenv("GPUFLOW_REAL_GPU") == "" {
		t.Skip("set GPUFLOW_REAL_GPU=1 on a host with NVIDIA GPUs")
	}
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	list, _ := exec.Command(smi, "-L").CombinedOutput()
	t.Logf("nvidia-smi -L:\n%s", list)

	p, err := New(Config{Dir: t.TempDir(), CPUSlots: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.gpus) == 0 {
		t.Fatal("no GPUs found")
	}
	for _, g := range p.gpus {
		t.Logf("found GPU %d: %s (%s) type %q, %.1f GB", g.Index, g.Name, g.UUID, g.Type, g.MemoryGB)
	}
	offers, err := p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(offers)
	t.Logf("offers: %s", js)
	gpuType := p.gpus[0].Type
	var gpuOffer *gpuflow.Offer
	for i := range offers {
		if offers[i].GPUType == gpuType {
			gpuOffer = &offers[i]
		}
	}
	if gpuOffer == nil || !gpuOffer.PerGPU || gpuOffer.Available != gpuOffer.GPUCount || gpuOffer.GPUMemoryGB < 1 {
		t.Fatalf("GPU offer %+v", gpuOffer)
	}

	// One job per GPU: each sees exactly the GPU it was given.
	n := gpuOffer.GPUCount
	seen := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("real-%d", i)
		req := gpuJob(id, 1, "sh", "-c", `echo "cvd=[$CUDA_VISIBLE_DEVICES]"; nvidia-smi --query-gpu=index,uuid --format=csv,noheader; echo end; exec sleep 120`)
		req.Spec.GPUType = gpuType
		provision(t, p, req)
		log := waitLog(t, p, id, "end")
		t.Logf("job %s sees:\n%s", id, log)
		lines := strings.Split(strings.TrimSpace(log), "\n")
		cvd := strings.TrimSuffix(strings.TrimPrefix(lines[0], "cvd=["), "]")
		var visible []string
		for _, l := range lines[1 : len(lines)-1] {
			if f := strings.Split(l, ","); len(f) == 2 {
				visible = append(visible, strings.TrimSpace(f[1]))
			}
		}
		if cvd == "" || len(visible) != 1 || seen[visible[0]] {
			t.Fatalf("job %s: CUDA_VISIBLE_DEVICES=%q, GPUs visible %v (seen %v)", id, cvd, visible, seen)
		}
		seen[visible[0]] = true
	}
	offers, _ = p.Offers(context.Background())
	for _, o := range offers {
		if o.GPUType == gpuType && o.Available != 0 {
			t.Fatalf("all GPUs taken, offer says %d free", o.Available)
		}
	}
	extra := gpuJob("real-extra", 1, "true")
	extra.Spec.GPUType = gpuType
	_, err = p.Provision(context.Background(), extra)
	wantKind(t, err, gpuflow.KindNoCapacity)

	// Free one; the next job gets it.
	if err := p.Terminate(context.Background(), "real-0"); err != nil {
		t.Fatal(err)
	}
	provisionWhenFree(t, p, extra)
	t.Cleanup(func() { _ = p.Terminate(context.Background(), "real-extra") })
	t.Logf("REALGPU OK: %d × %s found, one per job, capacity enforced, freed GPU reused", n, gpuType)

	// With a CUDA-enabled Python (GPUFLOW_REAL_GPU_PYTHON, torch installed),
	// a job computes on the GPU it was given and sees no other.
	py := os.Getenv("GPUFLOW_REAL_GPU_PYTHON")
	if py == "" {
		return
	}
	if err := p.Terminate(context.Background(), "real-extra"); err != nil {
		t.Fatal(err)
	}
	job := gpuJob("real-torch", 1, py, "-c", `import torch
x = torch.randn(4096, 4096, device="cuda")
torch.cuda.synchronize()
print("cuda", torch.cuda.device_count(), torch.cuda.get_device_name(0), round(float((x @ x).abs().mean()), 1), flush=True)
print("end")`)
	job.Spec.GPUType = gpuType
	provisionWhenFree(t, p, job)
	t.Cleanup(func() { _ = p.Terminate(context.Background(), "real-torch") })
	deadline := time.Now().Add(90 * time.Second)
	for {
		m, err := p.Describe(context.Background(), "real-torch")
		if err != nil {
			t.Fatal(err)
		}
		if m.State == gpuflow.MachineExited || m.State == gpuflow.MachineFailed {
			out, _ := p.ReadLogs(context.Background(), "real-torch", 0, 0)
			code := -1
			if m.ExitCode != nil {
				code = *m.ExitCode
			}
			t.Logf("torch job (%s, exit %d):\n%s", m.State, code, out)
			if m.ExitCode == nil || *m.ExitCode != 0 || !strings.Contains(string(out), "cuda 1 ") {
				t.Fatal("the job did not compute on exactly one GPU")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("torch job did not finish in 90 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Log("REALGPU TORCH OK")
}

// provisionWhenFree provisions req once the GPU it needs is free (a
// terminated job's GPU is released as its process group goes).
func provisionWhenFree(t *testing.T, p *Provider, req gpuflow.ProvisionRequest) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := p.Provision(context.Background(), req)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("provision %s: %v", req.JobID, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
