package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/gpuflow/gpuflow"
)

// Job is one job of a workload trace.
type Job struct {
	ID       int
	Submit   time.Duration // since the trace's start
	GPUType  string        // family name, as a user writes it ("H100")
	GPUCount int
	// Duration is the run time on the family's reference GPU (the fastest
	// variant); slower variants take longer (Offer.Speed).
	Duration time.Duration
	// Estimate is the user's estimated_duration, in whole minutes; 0 when
	// the user gave none. It is Duration with a user's error.
	Estimate time.Duration
	Spot     bool
	MemoryGB float64
	VCPUs    int
}

// Spec is the job as submitted to gpuflow.
func (j Job) Spec() gpuflow.JobSpec {
	return gpuflow.JobSpec{
		Name: "sim-" + strconv.Itoa(j.ID), Command: []string{"train"},
		GPUType: j.GPUType, GPUCount: j.GPUCount, MemoryGB: j.MemoryGB, VCPUs: j.VCPUs,
		Spot: j.Spot, EstimatedDuration: int(j.Estimate / time.Minute),
	}
}

// TraceConfig sizes a generated trace.
type TraceConfig struct {
	Seed uint64
	Jobs int           // how many
	Span time.Duration // over how long they arrive
}

// DefaultTrace is the trace kept in testdata/trace.csv.
var DefaultTrace = TraceConfig{Seed: 20260301, Jobs: 1500, Span: 72 * time.Hour}

// family is a GPU family in the workload: how often jobs ask for it and
// how many GPUs at most.
type family struct {
	name    string
	weight  float64
	maxGPUs int
}

var families = []family{
	{"H100", 0.25, 8}, {"A100", 0.25, 8}, {"L40S", 0.10, 8},
	{"L4", 0.15, 4}, {"RTX4090", 0.15, 4}, {"T4", 0.10, 4},
}

// Generate draws a trace: arrivals follow a daily cycle (busiest in the
// afternoon, quietest at night, rate ratio 4:1) with a tenth of the jobs in
// sweeps of 25 to 40 alike jobs submitted within a quarter of an hour; GPU
// families by the weights above; 1, 2, 4 or 8 GPUs (50, 20, 15, 15 %, capped
// per family); run times log-normal around a median of 45 min (5 min to
// 24 h); a quarter of the jobs spot; 15 % without an estimate, the others
// with one off by a log-normal factor (σ 0.3). The same config gives the
// same trace.
func Generate(cfg TraceConfig) []Job {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	jobs := make([]Job, 0, cfg.Jobs)
	sweeps := cfg.Jobs / 10
	for len(jobs) < sweeps {
		at := time.Duration(r.Float64() * float64(cfg.Span-time.Hour))
		proto := drawJob(r)
		for range min(25+r.IntN(16), sweeps-len(jobs)) {
			j := proto
			j.Submit = at + time.Duration(r.Float64()*float64(15*time.Minute))
			j.Duration = clampDur(time.Duration(float64(proto.Duration) * math.Exp(0.2*r.NormFloat64())))
			j.Estimate = proto.Estimate
			jobs = append(jobs, j)
		}
	}
	for len(jobs) < cfg.Jobs {
		t := r.Float64() * float64(cfg.Span)
		// Daily cycle: rate 1 + 0.6·sin, peak at 15:00, thinned.
		hour := math.Mod(t/float64(time.Hour), 24)
		if r.Float64()*1.6 > 1+0.6*math.Sin(2*math.Pi*(hour-9)/24) {
			continue
		}
		j := drawJob(r)
		j.Submit = time.Duration(t)
		jobs = append(jobs, j)
	}
	slices.SortStableFunc(jobs, func(a, b Job) int { return int(a.Submit - b.Submit) })
	for i := range jobs {
		jobs[i].ID = i + 1
		jobs[i].Submit = jobs[i].Submit.Truncate(time.Second)
	}
	return jobs
}

func drawJob(r *rand.Rand) Job {
	x := r.Float64()
	f := families[len(families)-1]
	for _, c := range families {
		if x < c.weight {
			f = c
			break
		}
		x -= c.weight
	}
	count := 1
	switch y := r.Float64(); {
	case y < 0.50:
		count = 1
	case y < 0.70:
		count = 2
	case y < 0.85:
		count = 4
	default:
		count = 8
	}
	count = min(count, f.maxGPUs)
	d := clampDur(time.Duration(45 * float64(time.Minute) * math.Exp(r.NormFloat64())))
	j := Job{GPUType: f.name, GPUCount: count, Duration: d, Spot: r.Float64() < 0.25,
		MemoryGB: float64(16 * count), VCPUs: 8 * count}
	if r.Float64() >= 0.15 {
		j.Estimate = max(time.Minute, time.Duration(float64(d)*math.Exp(0.3*r.NormFloat64())).Round(time.Minute))
	}
	return j
}

func clampDur(d time.Duration) time.Duration {
	return min(max(d, 5*time.Minute), 24*time.Hour).Truncate(time.Second)
}

var header = []string{"id", "submit_s", "gpu_type", "gpu_count", "duration_s", "estimate_min", "spot", "memory_gb", "vcpus"}

// WriteCSV writes jobs as CSV with a header.
func WriteCSV(w io.Writer, jobs []Job) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	for _, j := range jobs {
		rec := []string{
			strconv.Itoa(j.ID), strconv.FormatInt(int64(j.Submit/time.Second), 10), j.GPUType, strconv.Itoa(j.GPUCount),
			strconv.FormatInt(int64(j.Duration/time.Second), 10), strconv.FormatInt(int64(j.Estimate/time.Minute), 10),
			strconv.FormatBool(j.Spot), strconv.FormatFloat(j.MemoryGB, 'f', -1, 64), strconv.Itoa(j.VCPUs),
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write trace: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// ReadCSV reads a trace written by WriteCSV.
func ReadCSV(r io.Reader) ([]Job, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], header) {
		return nil, fmt.Errorf("read trace: want header %v", header)
	}
	jobs := make([]Job, 0, len(recs)-1)
	for n, rec := range recs[1:] {
		var j Job
		var errs [8]error
		var submit, dur, est int64
		j.ID, errs[0] = strconv.Atoi(rec[0])
		submit, errs[1] = strconv.ParseInt(rec[1], 10, 64)
		j.GPUType = rec[2]
		j.GPUCount, errs[2] = strconv.Atoi(rec[3])
		dur, errs[3] = strconv.ParseInt(rec[4], 10, 64)
		est, errs[4] = strconv.ParseInt(rec[5], 10, 64)
		j.Spot, errs[5] = strconv.ParseBool(rec[6])
		j.MemoryGB, errs[6] = strconv.ParseFloat(rec[7], 64)
		j.VCPUs, errs[7] = strconv.Atoi(rec[8])
		for _, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("read trace: line %d: %w", n+2, e)
			}
		}
		j.Submit, j.Duration, j.Estimate = time.Duration(submit)*time.Second, time.Duration(dur)*time.Second, time.Duration(est)*time.Minute
		jobs = append(jobs, j)
	}
	return jobs, nil
}
