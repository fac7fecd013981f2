package gpuflow

import "strings"

// CPUOnly is the GPU type of offers and jobs without a GPU.
const CPUOnly = "CPU"

// knownGPUTypes are canonical GPU type names, longest first so that
// "A100" is not mistaken for "A10" nor "L40S" for "L4".
var knownGPUTypes = []string{
	"RTXA6000", "RTX6000ADA", "RTX4090", "RTX4080", "RTX3090", "RTX3080", "RTX2080TI",
	"A100SXM", "A100PCIE", "H100SXM", "H100NVL", "H100PCIE",
	"L40S", "A100", "H100", "H200", "B200", "V100", "A10G", "L40", "A40", "A30",
	"A16", "A10", "T4", "L4", "P100", "P4",
}

// NormalizeGPUType turns a vendor's GPU name ("NVIDIA GeForce RTX 4090",
// "nvidia-a100-80gb", "Tesla T4") into a canonical type ("RTX4090", "A100",
// "T4"). Unknown names are upper-cased with spaces and dashes removed.
func NormalizeGPUType(name string) string {
	s := strings.ToUpper(name)
	for _, cut := range []string{"NVIDIA", "GEFORCE", "TESLA", " ", "-", "_"} {
		s = strings.ReplaceAll(s, cut, "")
	}
	if s == "" {
		return ""
	}
	for _, k := range knownGPUTypes {
		if strings.Contains(s, k) {
			switch k { // collapse form-factor variants onto the family name
			case "A100SXM", "A100PCIE":
				return "A100"
			case "H100SXM", "H100NVL", "H100PCIE":
				return "H100"
			case "RTXA6000":
				return "A6000"
			}
			return k
		}
	}
	return s
}

// SameGPUType reports whether two GPU names denote the same type.
func SameGPUType(a, b string) bool { return NormalizeGPUType(a) == NormalizeGPUType(b) }
