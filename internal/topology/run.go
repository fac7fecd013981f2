package topology

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/gpuflow/gpuflow/internal/app"
)

// Run starts the topology, prints where everything is to out, and stops it
// when ctx is done (Ctrl-C): `make topology`.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	t, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer t.Stop()
	ui := t.TemporalUIURL()
	if ui == "" {
		ui = "(off)"
	}
	fmt.Fprintf(out, "gpuflow topology is running (each component a process of its own; Ctrl-C stops it)\n")
	for _, p := range t.APIs {
		fmt.Fprintf(out, "  %-16s %s (pid %d)\n", p.Name, p.URL, p.PID())
	}
	for _, p := range t.Workers {
		role := "cloud providers"
		if p == t.Workers[0] {
			role = "cloud providers and this host (local)"
		}
		fmt.Fprintf(out, "  %-16s %s, metrics %s/metrics (pid %d)\n", p.Name, role, p.URL, p.PID())
	}
	fmt.Fprintf(out, "  %-16s %s (pid %d)\n", "Temporal Web UI", ui, t.Temporal.PID())
	fmt.Fprintf(out, "  %-16s %s via proxy, %s direct (namespace %s, PostgreSQL)\n", "Temporal gRPC", t.TemporalAddress(), t.TemporalDirectAddress(), Namespace)
	fmt.Fprintf(out, "  %-16s %s via proxy, %s direct\n", "PostgreSQL", redact(t.DatabaseURL()), redact(t.DirectDatabaseURL()))
	for _, cloud := range app.Clouds {
		u := t.emulatorURLs[cloud]
		fmt.Fprintf(out, "  %-16s %s (faults: %s/_emulator/faults; pid %d)\n", "emulator "+cloud, u, u, t.Emulators.PID())
	}
	fmt.Fprintf(out, "  %-16s %s\n", "logs", t.LogDir())
	fmt.Fprintf(out, "  Create an account: curl -X POST %s/auth/register -H 'Content-Type: application/json' -d '{\"email\":\"you@example.com\",\"password\":\"a-long-password\"}'\n", t.APIs[0].URL)
	<-ctx.Done()
	fmt.Fprintln(out, "gpuflow topology: stopping")
	return nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
