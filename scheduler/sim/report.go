package sim

import (
	"fmt"
	"io"
	"time"
)

// Markdown writes results as a markdown table, with the differences to
// the baseline result (the one whose Policy is baseline).
func Markdown(w io.Writer, results []Result, baseline string) error {
	var base *Result
	for i := range results {
		if results[i].Policy == baseline {
			base = &results[i]
		}
	}
	rel := func(v, b float64) string {
		if base == nil || b == 0 {
			return ""
		}
		return fmt.Sprintf(" (%+.1f %%)", 100*(v-b)/b)
	}
	if _, err := fmt.Fprintln(w, "| policy | total cost (USD) | start p50 (min) | start p95 (min) | trace done (h) | failed attempts | preemptions | jobs done |"); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		var bc, bp50, bp95, bm float64
		if base != nil {
			bc, bp50, bp95, bm = base.Cost, minutes(base.WaitPercentile(50)), minutes(base.WaitPercentile(95)), base.Makespan.Hours()
		}
		p50, p95 := minutes(r.WaitPercentile(50)), minutes(r.WaitPercentile(95))
		if _, err := fmt.Fprintf(w, "| %s | %.0f%s | %.1f%s | %.1f%s | %.1f%s | %d | %d | %d/%d |\n", r.Policy,
			r.Cost, rel(r.Cost, bc), p50, rel(p50, bp50), p95, rel(p95, bp95), r.Makespan.Hours(), rel(r.Makespan.Hours(), bm),
			r.FailedAttempts(), r.Preemptions, r.Done, r.Jobs); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	return nil
}

func minutes(d time.Duration) float64 { return d.Minutes() }
