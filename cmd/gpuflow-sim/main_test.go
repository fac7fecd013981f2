package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/scheduler"
	"github.com/gpuflow/gpuflow/scheduler/sim"
)

// TestSmallTrace runs every policy on a small generated trace.
func TestSmallTrace(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run([]string{"-seed", "5", "-jobs", "150", "-hours", "12"}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"cheapest-first (baseline)", "| cost |", "| performance |", "| availability |", "| balanced |", "balanced: p95 start"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "150/150") != 6 {
		t.Errorf("want all 150 jobs done for the six policies:\n%s", s)
	}
}

// TestRobustnessSmall runs the multi-seed comparison on two small traces.
func TestRobustnessSmall(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run([]string{"-seeds", "2", "-first-seed", "3", "-jobs", "100", "-hours", "6"}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Count(s, "\n| 3 | ")+strings.Count(s, "\n| 4 | ") != 4 || !strings.Contains(s, "of 4 runs") || !strings.Contains(s, "availability, the fastest") {
		t.Errorf("want two worlds for trace seeds 3 and 4 and a summary:\n%s", s)
	}
}

// TestRankedDeterministic: the same trace and world give the same result.
func TestRankedDeterministic(t *testing.T) {
	t.Parallel()
	trace := sim.Generate(sim.TraceConfig{Seed: 9, Jobs: 200, Span: 6 * time.Hour})
	a := sim.Run(sim.DefaultWorld(), trace, NewRanked(gpuflow.StrategyBalanced, scheduler.Config{}, DefaultHalfLives))
	b := sim.Run(sim.DefaultWorld(), trace, NewRanked(gpuflow.StrategyBalanced, scheduler.Config{}, DefaultHalfLives))
	if a.Cost != b.Cost || a.Decisions != b.Decisions || a.WaitPercentile(95) != b.WaitPercentile(95) || a.Done != 200 {
		t.Fatalf("runs differ or unfinished: %+v vs %+v", a.Cost, b.Cost)
	}
}

func TestParseWeights(t *testing.T) {
	t.Parallel()
	if w, err := parseWeights("0.5, 0.1,0.4"); err != nil || w != (scheduler.Weights{Cost: 0.5, Performance: 0.1, Availability: 0.4}) {
		t.Fatalf("%+v %v", w, err)
	}
	for _, bad := range []string{"1,2", "a,b,c", "1,-1,1"} {
		if _, err := parseWeights(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// TestSimulation replays the kept trace (GPUFLOW_BENCH=1, a few seconds)
// and checks the goals on it: every job runs, the cost strategy is
// never dearer than cheapest-first, balanced stays within 10 % of its cost
// and starts jobs at least 30 % sooner at p95. It logs the table.
func TestSimulation(t *testing.T) {
	if os.Getenv("GPUFLOW_BENCH") != "1" {
		t.Skip("set GPUFLOW_BENCH=1 to replay the whole trace")
	}
	var out bytes.Buffer
	if err := run([]string{"-trace", "../../scheduler/sim/testdata/trace.csv"}, &out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	f, err := os.Open("../../scheduler/sim/testdata/trace.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	trace, err := sim.ReadCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	results := Compare(sim.DefaultWorld(), trace, scheduler.Config{}, DefaultHalfLives)
	base := results[0]
	for _, r := range results {
		if r.Done != len(trace) {
			t.Errorf("%s finished %d of %d jobs", r.Policy, r.Done, len(trace))
		}
		switch r.Policy {
		case gpuflow.StrategyCost:
			if r.Cost > base.Cost {
				t.Errorf("cost strategy spent %.0f, baseline %.0f", r.Cost, base.Cost)
			}
		case gpuflow.StrategyBalanced:
			if r.Cost > 1.1*base.Cost {
				t.Errorf("balanced spent %.0f, over 110 %% of the baseline's %.0f", r.Cost, base.Cost)
			}
			if r.WaitPercentile(95).Seconds() > 0.7*base.WaitPercentile(95).Seconds() {
				t.Errorf("balanced p95 start %v, baseline %v: want at least 30 %% sooner", r.WaitPercentile(95), base.WaitPercentile(95))
			}
		}
	}
}
