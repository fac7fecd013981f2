package sim

import "time"

// StockReport is how a cloud advertises its stock in its offers.
type StockReport uint8

// Stock reports.
const (
	// StockBuckets reports levels, like RunPod's stockStatus: 0 when
	// nothing is free, 1 (low) below 4 free GPUs, 4 (medium) below 16, 16
	// (high) above.
	StockBuckets StockReport = iota + 1
	// StockSoldOut says only "sold out" (0) or "on sale" (-1, unknown), like
	// Tencent's DescribeZoneInstanceConfigInfos status.
	StockSoldOut
	// StockNone says nothing (-1), like Alibaba's instance type listing.
	StockNone
)

// Window is a span of simulated time since the start.
type Window struct{ From, To time.Duration }

// Cloud is an emulated provider's behaviour. Its offers' stock, what it
// advertises, how and when it fails: none of it is shown to the policies,
// which only see the advertised offers and their own attempts' outcomes.
type Cloud struct {
	Name string
	// Stock is how offers advertise the free GPUs, refreshed every Refresh
	// (the stock in between is stale).
	Stock   StockReport
	Refresh time.Duration
	// A request for more GPUs than are free fails after CapacityError plus
	// up to CapacityJitter: immediately for clouds that check stock up
	// front, late for those that accept the request and fail the launch.
	CapacityError  time.Duration
	CapacityJitter time.Duration
	// A request that gets GPUs runs after a log-normal time: median
	// StartMedian, log-σ StartSigma (image pulls, boot). FailRate of those
	// (or the offer's own rate) never come up: the cloud reports the
	// failure at that time or, when StuckFor is set, the machine hangs in
	// "starting" and is given up after StuckFor (a boot timeout).
	StartMedian time.Duration
	StartSigma  float64
	FailRate    float64
	StuckFor    time.Duration
	// PreemptPerHour is the rate at which spot machines are reclaimed.
	PreemptPerHour float64
	// Outages are spans in which every request fails after OutageError and
	// health checks fail.
	Outages     []Window
	OutageError time.Duration
	// Other tenants hold a fraction of each offer's GPUs that wanders
	// (mean-reverting, every 10 min) around BackgroundMean with steps of
	// BackgroundVol.
	BackgroundMean, BackgroundVol float64
}

func (c *Cloud) down(t time.Duration) bool {
	for _, w := range c.Outages {
		if t >= w.From && t < w.To {
			return true
		}
	}
	return false
}

// Offer is one GPU pool of a cloud in a region.
type Offer struct {
	Cloud       string
	GPU         string // the cloud's name for the GPU
	Region      string
	GPUs        int // the pool's size, shared with other tenants
	MaxGPUs     int // per machine
	GPUMemoryGB float64
	Price, Spot float64 // per GPU-hour
	// Speed is the GPU's speed relative to its family's fastest variant,
	// which the trace's durations are measured on.
	Speed float64
	// FailRate overrides the cloud's launch failure rate when set: some
	// datacenters are flakier than others.
	FailRate float64
}

// World is the emulated clouds and their offers.
type World struct {
	Start  time.Time
	Seed   uint64 // draws the other tenants' load
	Clouds []Cloud
	Offers []Offer
}

// DefaultWorld is three emulated clouds, named after gpuflow's providers
// and modelled on what their APIs show and on reported behaviour:
//
//   - runpod: cheapest, busiest (other tenants hold ~75 % of each pool, and
//     it swings), stock advertised as levels refreshed every minute, "no
//     capacity" within 3–5 s, pods up in ~2.5 min with a long tail (image
//     pulls, log-σ 0.6). 3 % of pods hang while starting and are given up
//     after a 10-minute boot timeout — 25 % in the EU-RO-1 datacenter (pods
//     stuck in provisioning are a recurring report in SkyPilot's and
//     dstack's RunPod issues). Spot pods are reclaimed at 0.3/h.
//   - tencent: mid-priced, ~65 % held by others, "sold out" flags refreshed
//     every 10 min, capacity failures found late (the instance fails to
//     launch after 1–2 min), instances up in ~4 min, 2 % launch failures,
//     spot reclaimed at 0.1/h, and a 3-hour API outage on the second day.
//   - alibaba: dearest, ~50 % held by others, no stock shown, NoStock in
//     2–3 s, instances up in ~2 min, 1 % failures, spot reclaimed at 0.05/h.
//
// Prices per GPU-hour: RunPod's are the community prices of its public
// price list (late 2026); the others, which publish no reachable list, are
// set 10–35 % above; spot is 35–50 % of on-demand.
func DefaultWorld() World {
	const flakyRegion = "EU-RO-1"
	w := World{
		Start: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), // a Monday
		Seed:  7,
		Clouds: []Cloud{
			{Name: "runpod", Stock: StockBuckets, Refresh: time.Minute,
				CapacityError: 3 * time.Second, CapacityJitter: 2 * time.Second,
				StartMedian: 150 * time.Second, StartSigma: 0.6, FailRate: 0.03, StuckFor: 10 * time.Minute, PreemptPerHour: 0.3,
				OutageError: 30 * time.Second, BackgroundMean: 0.75, BackgroundVol: 0.08},
			{Name: "tencent", Stock: StockSoldOut, Refresh: 10 * time.Minute,
				CapacityError: 60 * time.Second, CapacityJitter: 60 * time.Second,
				StartMedian: 4 * time.Minute, StartSigma: 0.3, FailRate: 0.02, PreemptPerHour: 0.1,
				Outages: []Window{{From: 30 * time.Hour, To: 33 * time.Hour}}, OutageError: 30 * time.Second,
				BackgroundMean: 0.65, BackgroundVol: 0.06},
			{Name: "alibaba", Stock: StockNone, Refresh: 10 * time.Minute,
				CapacityError: 2 * time.Second, CapacityJitter: time.Second,
				StartMedian: 2 * time.Minute, StartSigma: 0.3, FailRate: 0.01, PreemptPerHour: 0.05,
				OutageError: 30 * time.Second, BackgroundMean: 0.5, BackgroundVol: 0.05},
		},
	}
	add := func(cloud, gpu string, mem float64, maxGPUs int, speed, price, spot float64, pools ...any) {
		for i := 0; i < len(pools); i += 2 {
			o := Offer{Cloud: cloud, GPU: gpu, Region: pools[i].(string), GPUs: pools[i+1].(int),
				MaxGPUs: maxGPUs, GPUMemoryGB: mem, Price: price, Spot: spot, Speed: speed}
			if o.Region == flakyRegion {
				o.FailRate = 0.25
			}
			w.Offers = append(w.Offers, o)
		}
	}
	// H100: the SXM is the reference; the PCIe runs at 0.68 of it (the
	// geometric mean of its TFLOPS and bandwidth ratios).
	add("runpod", "NVIDIA H100 80GB HBM3", 80, 8, 1, 2.69, 1.35, "US-TX-3", 48, "EU-RO-1", 32)
	add("runpod", "NVIDIA H100 PCIe", 80, 4, 0.68, 1.99, 0.99, "US-KS-2", 24)
	add("tencent", "NVIDIA H100 SXM5", 80, 8, 1, 3.05, 1.07, "ap-guangzhou", 48, "na-siliconvalley", 32)
	add("alibaba", "NVIDIA H100 SXM5 80GB", 80, 8, 1, 3.45, 1.38, "us-west-1", 48, "eu-central-1", 32)
	// A100: SXM 80 GB is the reference; PCIe 80 GB 0.97, 40 GB 0.87.
	add("runpod", "NVIDIA A100-SXM4-80GB", 80, 8, 1, 1.39, 0.70, "US-TX-3", 40, "EU-RO-1", 32)
	add("runpod", "NVIDIA A100 80GB PCIe", 80, 8, 0.97, 1.19, 0.60, "US-KS-2", 32)
	add("tencent", "NVIDIA A100 40GB", 40, 8, 0.87, 1.45, 0.51, "ap-guangzhou", 48)
	add("alibaba", "NVIDIA A100-SXM4-80GB", 80, 8, 1, 1.85, 0.74, "us-west-1", 48, "eu-central-1", 32)
	add("runpod", "NVIDIA L40S", 48, 8, 1, 0.86, 0.43, "US-TX-3", 24, "EU-RO-1", 16)
	add("alibaba", "NVIDIA L40S", 48, 8, 1, 1.10, 0.44, "us-west-1", 32)
	add("runpod", "NVIDIA L4", 24, 4, 1, 0.43, 0.22, "US-TX-3", 24)
	add("tencent", "NVIDIA L4", 24, 4, 1, 0.48, 0.17, "ap-guangzhou", 32)
	add("alibaba", "NVIDIA L4", 24, 4, 1, 0.55, 0.22, "us-west-1", 32)
	add("runpod", "NVIDIA GeForce RTX 4090", 24, 4, 1, 0.34, 0.17, "US-TX-3", 48, "EU-RO-1", 32)
	add("tencent", "NVIDIA GeForce RTX 4090", 24, 4, 1, 0.45, 0.16, "ap-guangzhou", 32)
	add("tencent", "Tesla T4", 16, 4, 1, 0.30, 0.11, "ap-guangzhou", 32, "na-siliconvalley", 24)
	add("alibaba", "NVIDIA T4", 16, 4, 1, 0.35, 0.14, "us-west-1", 32)
	return w
}
