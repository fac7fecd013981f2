package scheduler

import (
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gpuflow/gpuflow"
)

// GPUModel is the throughput of one GPU model, from its vendor datasheet.
type GPUModel struct {
	// Name is the model as the table knows it ("H100 SXM", "A100 PCIe 80GB").
	Name string
	// TFLOPS is the dense 16-bit tensor throughput: BF16 where the GPU has
	// it, FP16 with FP32 accumulate otherwise (T4, V100, P100). Datasheets
	// often print the figure "with sparsity": this is half of that.
	TFLOPS float64
	// BandwidthTBs is the GPU memory bandwidth in TB/s.
	BandwidthTBs float64
	// MemoryGB is the GPU memory.
	MemoryGB float64
	// Source is where the figures come from.
	Source string
}

// Reference throughput: the H100 SXM, which scores 1.0 per GPU.
const (
	refTFLOPS    = 989.4
	refBandwidth = 3.35
)

// Throughput is the model's speed per GPU relative to an H100 SXM: the
// geometric mean of the tensor TFLOPS ratio and the memory bandwidth ratio,
// so compute-bound and memory-bound work count alike.
func (m GPUModel) Throughput() float64 {
	return math.Sqrt(m.TFLOPS / refTFLOPS * m.BandwidthTBs / refBandwidth)
}

// GPUModels is the performance table used by the performance criterion.
// Figures are dense (no structured sparsity) and per GPU. Types missing here
// (A10G, A16, P4, vendor-specific cards) have no known throughput: offers of
// them score 0 on performance unless every candidate is unknown.
var GPUModels = []GPUModel{
	{"B200", 2250, 8.0, 180, "NVIDIA HGX B200 datasheet (2024): 36 PFLOPS FP16/BF16 sparse for 8 GPUs, 64 TB/s aggregate HBM3e"},
	{"H200 SXM", 989.4, 4.8, 141, "NVIDIA H200 Tensor Core GPU datasheet (2024): BF16 1,979 TFLOPS sparse, 4.8 TB/s"},
	{"H200 NVL", 835.5, 4.8, 141, "NVIDIA H200 Tensor Core GPU datasheet (2024): H200 NVL BF16 1,671 TFLOPS sparse, 4.8 TB/s"},
	{"H100 SXM", 989.4, 3.35, 80, "NVIDIA H100 Tensor Core GPU datasheet (2023): BF16 1,979 TFLOPS sparse, 3.35 TB/s"},
	{"H100 NVL", 835.5, 3.9, 94, "NVIDIA H100 Tensor Core GPU datasheet (2024 edition): H100 NVL BF16 1,671 TFLOPS sparse, 3.9 TB/s"},
	{"H100 PCIe", 756.5, 2.0, 80, "NVIDIA H100 Tensor Core GPU datasheet (2023): H100 PCIe BF16 1,513 TFLOPS sparse, 2.0 TB/s"},
	{"A100 SXM 80GB", 312, 2.039, 80, "NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, 2,039 GB/s"},
	{"A100 PCIe 80GB", 312, 1.935, 80, "NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, 1,935 GB/s"},
	{"A100 40GB", 312, 1.555, 40, "NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, 1,555 GB/s"},
	{"L40S", 362.05, 0.864, 48, "NVIDIA L40S datasheet (2023): BF16 362.05 TFLOPS dense, 864 GB/s"},
	{"L40", 181.05, 0.864, 48, "NVIDIA L40 datasheet (2022): BF16 181.05 TFLOPS dense, 864 GB/s"},
	{"RTX6000ADA", 364.25, 0.960, 48, "NVIDIA RTX 6000 Ada datasheet (2022): 1,457 TFLOPS FP8 sparse (FP16 dense is a quarter), 960 GB/s"},
	{"A6000", 154.8, 0.768, 48, "NVIDIA RTX A6000 datasheet (2021): tensor 309.7 TFLOPS sparse, 768 GB/s"},
	{"A40", 149.7, 0.696, 48, "NVIDIA A40 datasheet (2021): BF16 149.7 TFLOPS dense, 696 GB/s"},
	{"A30", 165, 0.933, 24, "NVIDIA A30 datasheet (2021): BF16 165 TFLOPS dense, 933 GB/s"},
	{"A10", 125, 0.600, 24, "NVIDIA A10 datasheet (2021): BF16 125 TFLOPS dense, 600 GB/s"},
	{"L4", 121, 0.300, 24, "NVIDIA L4 datasheet (2023): BF16 242 TFLOPS sparse, 300 GB/s"},
	{"RTX4090", 165.2, 1.008, 24, "NVIDIA Ada Lovelace architecture whitepaper v2.02: FP16 tensor with FP32 accumulate 165.2 TFLOPS dense, 1,008 GB/s"},
	{"RTX4080", 97.5, 0.717, 16, "NVIDIA Ada Lovelace architecture whitepaper v2.02: FP16 tensor with FP32 accumulate 97.5 TFLOPS dense, 716.8 GB/s"},
	{"RTX3090", 35.6, 0.936, 24, "NVIDIA Ampere GA102 whitepaper v2: FP16 tensor with FP32 accumulate 35.6 TFLOPS dense, 936 GB/s"},
	{"RTX3080", 29.8, 0.760, 10, "NVIDIA Ampere GA102 whitepaper v2: FP16 tensor with FP32 accumulate 29.8 TFLOPS dense, 760 GB/s"},
	{"RTX2080TI", 53.8, 0.616, 11, "NVIDIA Turing architecture whitepaper: FP16 tensor with FP32 accumulate 53.8 TFLOPS, 616 GB/s"},
	{"V100", 125, 0.900, 32, "NVIDIA V100 datasheet (2020): SXM2 tensor 125 TFLOPS (FP16), 900 GB/s"},
	{"T4", 65, 0.320, 16, "NVIDIA T4 datasheet (2019): mixed precision FP16/FP32 65 TFLOPS, 320 GB/s"},
	{"P100", 18.7, 0.732, 16, "NVIDIA Tesla P100 datasheet (2016): PCIe FP16 18.7 TFLOPS, 732 GB/s"},
}

// gpuModel returns the table entry named name.
func gpuModel(name string) *GPUModel {
	for i := range GPUModels {
		if GPUModels[i].Name == name {
			return &GPUModels[i]
		}
	}
	return nil
}

// gpuInfo is what the scheduler needs about a vendor's GPU name.
type gpuInfo struct {
	family  string    // gpuflow.NormalizeGPUType of the name
	model   *GPUModel // nil when unknown
	model80 *GPUModel // used instead when the offer says 80 GB or more (A100)
}

// LookupGPU returns the table entry for a vendor's GPU name and, when known,
// its memory per GPU (0 if unknown): "NVIDIA H100 PCIe" is the H100 PCIe,
// a plain "H100" the SXM (what clouds mostly rent), an A100 without "80GB"
// in its name nor 80 GB of memory the 40 GB part.
func LookupGPU(name string, memoryGB float64) (GPUModel, bool) {
	info := lookupGPU(name)
	m := info.model
	if info.model80 != nil && memoryGB >= 80 {
		m = info.model80
	}
	if m == nil {
		return GPUModel{}, false
	}
	return *m, true
}

// gpuCache maps vendor GPU names to their gpuInfo. Readers load the map
// without locking; writers copy it (names are few and repeat).
var gpuCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]gpuInfo]
}

// gpuCacheMax bounds the cache: further names are resolved every time.
const gpuCacheMax = 1024

func lookupGPU(name string) gpuInfo {
	if m := gpuCache.m.Load(); m != nil {
		if info, ok := (*m)[name]; ok {
			return info
		}
	}
	info := resolveGPU(name)
	gpuCache.mu.Lock()
	defer gpuCache.mu.Unlock()
	old := gpuCache.m.Load()
	if old != nil && len(*old) >= gpuCacheMax {
		return info
	}
	next := map[string]gpuInfo{}
	if old != nil {
		next = maps.Clone(*old)
	}
	next[name] = info
	gpuCache.m.Store(&next)
	return info
}

func resolveGPU(name string) gpuInfo {
	info := gpuInfo{family: gpuflow.NormalizeGPUType(name)}
	s := strings.ToUpper(name)
	for _, cut := range []string{" ", "-", "_"} {
		s = strings.ReplaceAll(s, cut, "")
	}
	switch info.family {
	case "H100":
		switch {
		case strings.Contains(s, "PCIE"):
			info.model = gpuModel("H100 PCIe")
		case strings.Contains(s, "NVL"):
			info.model = gpuModel("H100 NVL")
		default:
			info.model = gpuModel("H100 SXM")
		}
	case "H200":
		if strings.Contains(s, "NVL") {
			info.model = gpuModel("H200 NVL")
		} else {
			info.model = gpuModel("H200 SXM")
		}
	case "A100":
		m80 := gpuModel("A100 SXM 80GB")
		if strings.Contains(s, "PCIE") {
			m80 = gpuModel("A100 PCIe 80GB")
		}
		if strings.Contains(s, "80G") {
			info.model = m80
		} else {
			info.model, info.model80 = gpuModel("A100 40GB"), m80
		}
	default:
		info.model = gpuModel(info.family)
	}
	return info
}
