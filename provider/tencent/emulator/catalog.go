package emulator

import (
	"regexp"
	"strings"
)

// instanceType is a GPU instance type the emulator sells, in every region,
// in the zones <region>-3 and <region>-6. Prices are deterministic USD per
// instance-hour.
type instanceType struct {
	Name, Family, TypeName string
	CPU, MemoryGB          int64
	GPUs                   int64
	GPUModel               string
	Price                  float64 // POSTPAID_BY_HOUR
	SpotPrice              float64 // SPOTPAID; 0 when spot is not sold
	// Stock by zone suffix ("3", "6"): "" means EnoughStock.
	Stock map[string]string
}

// zoneSuffixes are the zones of every region: <region>-3 and <region>-6.
var zoneSuffixes = []string{"3", "6"}

// catalog is what the emulator sells.
var catalog = []instanceType{
	{Name: "GN7.2XLARGE32", Family: "GN7", TypeName: "GPU Compute GN7", CPU: 8, MemoryGB: 32, GPUs: 1, GPUModel: "NVIDIA T4", Price: 0.72, SpotPrice: 0.22},
	{Name: "GN7.5XLARGE80", Family: "GN7", TypeName: "GPU Compute GN7", CPU: 20, MemoryGB: 80, GPUs: 1, GPUModel: "NVIDIA T4", Price: 1.05, SpotPrice: 0.32},
	{Name: "GN7.10XLARGE160", Family: "GN7", TypeName: "GPU Compute GN7", CPU: 40, MemoryGB: 160, GPUs: 2, GPUModel: "NVIDIA T4", Price: 2.10, SpotPrice: 0.63},
	{Name: "GN7.20XLARGE320", Family: "GN7", TypeName: "GPU Compute GN7", CPU: 80, MemoryGB: 320, GPUs: 4, GPUModel: "NVIDIA T4", Price: 4.20, SpotPrice: 1.26},
	{Name: "GN10Xp.2XLARGE40", Family: "GN10Xp", TypeName: "GPU Compute GN10Xp", CPU: 10, MemoryGB: 40, GPUs: 1, GPUModel: "NVIDIA V100", Price: 2.20, SpotPrice: 0.66},
	{Name: "GN10Xp.20XLARGE320", Family: "GN10Xp", TypeName: "GPU Compute GN10Xp", CPU: 80, MemoryGB: 320, GPUs: 8, GPUModel: "NVIDIA V100", Price: 17.60, SpotPrice: 5.28},
	{Name: "GT4.4XLARGE96", Family: "GT4", TypeName: "GPU Compute GT4", CPU: 16, MemoryGB: 96, GPUs: 1, GPUModel: "NVIDIA A100", Price: 3.90, SpotPrice: 1.17,
		Stock: map[string]string{"6": "UnderStock"}},
	{Name: "GT4.41XLARGE948", Family: "GT4", TypeName: "GPU Compute GT4", CPU: 164, MemoryGB: 948, GPUs: 8, GPUModel: "NVIDIA A100", Price: 31.20,
		Stock: map[string]string{"6": "UnderStock"}},
	{Name: "PNV4.7XLARGE116", Family: "PNV4", TypeName: "GPU Compute PNV4", CPU: 28, MemoryGB: 116, GPUs: 1, GPUModel: "NVIDIA A10", Price: 1.60, SpotPrice: 0.48,
		Stock: map[string]string{"3": "WithoutStock"}},
}

func lookupType(name string) (instanceType, bool) {
	for _, t := range catalog {
		if t.Name == name {
			return t, true
		}
	}
	return instanceType{}, false
}

var (
	regionPattern = regexp.MustCompile(`^[a-z]{2}-[a-z]+(-[a-z]+)?$`)
	idPattern     = regexp.MustCompile(`^ins-[a-z0-9]{8}$`)
	imagePattern  = regexp.MustCompile(`^img-[a-z0-9]{8}$`)
)

// zonesOf returns the zones of region.
func zonesOf(region string) []string {
	zs := make([]string, len(zoneSuffixes))
	for i, s := range zoneSuffixes {
		zs[i] = region + "-" + s
	}
	return zs
}

// stockOf returns the StatusCategory of t in zone.
func stockOf(t instanceType, zone string) string {
	i := strings.LastIndexByte(zone, '-')
	if s := t.Stock[zone[i+1:]]; s != "" {
		return s
	}
	return "EnoughStock"
}
