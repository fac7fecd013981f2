package scheduler

import (
	"encoding/json"
	"strconv"

	"github.com/gpuflow/gpuflow"
)

// ReasonCode says why an offer was rejected. The codes are stable (they
// are serialized); the text of Rejection.Reason may change.
type ReasonCode string

// Rejection reasons.
const (
	ReasonProviderNotAllowed ReasonCode = "provider_not_allowed" // not in the job's provider/providers
	ReasonNotConfigured      ReasonCode = "not_configured"       // the provider has no credentials
	ReasonCPUOnlyJob         ReasonCode = "cpu_only_job"         // the job wants no GPU; the offer has some
	ReasonNoGPU              ReasonCode = "no_gpu"               // the job wants GPUs; the offer has none
	ReasonGPUType            ReasonCode = "gpu_type"             // another GPU type (Detail: the job's)
	ReasonGPUCount           ReasonCode = "gpu_count"            // too few GPUs (Have, Want)
	ReasonMemory             ReasonCode = "memory"               // too little host memory in GB (Have, Want)
	ReasonVCPUs              ReasonCode = "vcpus"                // too few vCPUs (Have, Want)
	ReasonNoSpot             ReasonCode = "no_spot"              // the job wants spot; the offer has no spot price
	ReasonSpotOnly           ReasonCode = "spot_only"            // the job wants on-demand; the offer is spot only
	ReasonMaxPrice           ReasonCode = "max_price"            // the job's price per hour (Have) over max_price_per_hour (Want)
	ReasonUnhealthy          ReasonCode = "unhealthy"            // the provider's last health check failed
	ReasonBlocked            ReasonCode = "blocked"              // blocked for this job after a failure (Detail: why)
	ReasonRefused            ReasonCode = "refused"              // the provider offered nothing (Detail: why)
)

// Rejection is an offer that cannot serve the job, and why. Ranking stores
// a code and the numbers; Reason formats them on demand.
type Rejection struct {
	Offer  gpuflow.Offer `json:"offer"`
	Code   ReasonCode    `json:"code"`
	Have   float64       `json:"have,omitempty"`
	Want   float64       `json:"want,omitempty"`
	Detail string        `json:"detail,omitempty"`
}

// Reason is the rejection in words.
func (r Rejection) Reason() string {
	switch r.Code {
	case ReasonProviderNotAllowed:
		return "provider not allowed by the job"
	case ReasonNotConfigured:
		return "provider not configured"
	case ReasonCPUOnlyJob:
		return "job is CPU-only; offer has GPUs"
	case ReasonNoGPU:
		return "offer has no GPU"
	case ReasonGPUType:
		return "gpu type " + r.Offer.GPUType + ", job wants " + r.Detail
	case ReasonGPUCount:
		return "at most " + itoa(r.Have) + " GPUs, job wants " + itoa(r.Want)
	case ReasonMemory:
		return ftoa(r.Have, 0) + " GB memory, job wants " + ftoa(r.Want, 0)
	case ReasonVCPUs:
		return itoa(r.Have) + " vCPUs, job wants " + itoa(r.Want)
	case ReasonNoSpot:
		return "no spot capacity"
	case ReasonSpotOnly:
		return "offer is spot only; job is not"
	case ReasonMaxPrice:
		return "price " + ftoa(r.Have, 2) + "/h over max_price_per_hour " + ftoa(r.Want, 2)
	case ReasonUnhealthy:
		return "provider unhealthy: its last health check failed"
	case ReasonBlocked:
		return "blocked after a failure: " + r.Detail
	case ReasonRefused:
		return r.Detail
	}
	if r.Detail != "" {
		return string(r.Code) + ": " + r.Detail
	}
	return string(r.Code)
}

// MarshalJSON adds the reason in words to the stored fields.
func (r Rejection) MarshalJSON() ([]byte, error) {
	type plain Rejection
	return json.Marshal(struct {
		plain
		Reason string `json:"reason"`
	}{plain(r), r.Reason()})
}

func itoa(f float64) string           { return strconv.FormatInt(int64(f), 10) }
func ftoa(f float64, prec int) string { return strconv.FormatFloat(f, 'f', prec, 64) }
