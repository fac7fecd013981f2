package testutil

import (
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// SweepBench returns a benchmark of a provider's batched describe sweeps
// on an emulator: sweep runs one sweep by the describer newDescriber made
// (p); warm makes one describer and sweeps once before timing (a watcher's
// later sweeps), otherwise each sweep gets a new describer (a first
// sweep). It reports the CPU time of the whole process (client and
// emulator alike, which other load on a shared machine does not inflate
// as it does ns/op), and the calls of actions the emulator accepted and
// throttled, per sweep.
func SweepBench[P any](warm bool, newDescriber func(*testing.B) P, sweep func(*testing.B, P), limits *emulate.RateLimiter, actions ...string) func(*testing.B) {
	return func(b *testing.B) {
		p := newDescriber(b)
		if warm {
			sweep(b, p)
		}
		count := func() (calls, throttled int64) {
			for _, a := range actions {
				c := limits.Counts(a)
				calls, throttled = calls+c.Allowed, throttled+c.Throttled
			}
			return calls, throttled
		}
		calls, throttled := count()
		sweeps := 0
		cpu0 := CPUTime()
		b.ResetTimer()
		for b.Loop() {
			if !warm {
				p = newDescriber(b)
			}
			sweep(b, p)
			sweeps++
		}
		b.StopTimer()
		calls2, throttled2 := count()
		b.ReportMetric(float64((CPUTime()-cpu0).Milliseconds())/float64(sweeps), "cpu-ms/op")
		b.ReportMetric(float64(calls2-calls)/float64(sweeps), "calls/op")
		b.ReportMetric(float64(throttled2-throttled)/float64(sweeps), "throttled/op")
	}
}

// CPUTime is the CPU time this process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
