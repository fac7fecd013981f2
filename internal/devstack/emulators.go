package devstack

import (
	"fmt"
	"log/slog"
	"maps"
	"net"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/emuproc"
)

// Emulator is a cloud emulator the stack runs in process.
type Emulator = emuproc.Emulator

// runningEmulator is an emulator and its HTTP server, with its calls
// counted (Calls).
type runningEmulator = emuproc.Running

// startEmulators starts an emulator for every cloud without credentials
// or an emulator of its own elsewhere, and records their URLs in
// cfg.Clouds.Emulators.
func startEmulators(cfg *app.Config, logger *slog.Logger) (map[string]*runningEmulator, error) {
	out := map[string]*runningEmulator{}
	cfg.Clouds.Emulators = maps.Clone(cfg.Clouds.Emulators) // the caller's map stays as it was
	if cfg.Clouds.Emulators == nil {
		cfg.Clouds.Emulators = map[string]string{}
	}
	for _, name := range app.Clouds {
		// A live cloud needs none; one whose emulator URL is configured
		// (app.EmulatorURLEnv, e.g. RUNPOD_EMULATOR_URL) uses that
		// emulator, running elsewhere.
		if cfg.Clouds.Live(name) || cfg.Clouds.Emulators[name] != "" {
			continue
		}
		log := logger.With("emulator", name)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stopEmulators(out)
			return nil, fmt.Errorf("%s emulator: %w", name, err)
		}
		e, err := emuproc.New(name, log, "")
		if err != nil {
			_ = ln.Close()
			stopEmulators(out)
			return nil, err
		}
		r := emuproc.Serve(e, ln, log)
		out[name] = r
		cfg.Clouds.Emulators[name] = r.URL
	}
	return out, nil
}

func stopEmulators(es map[string]*runningEmulator) { emuproc.StopAll(es) }
