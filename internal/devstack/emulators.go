package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
	alibabaemu "github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
	runpodemu "github.com/gpuflow/gpuflow/provider/runpod/emulator"
	tencentemu "github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// Emulator is a cloud emulator the stack runs in process.
type Emulator interface {
	http.Handler
	Faults() *emulate.Switches
	Preempt(machineID string) error
	Live() []string
	Close()
}

// runningEmulator is an emulator and its HTTP server.
type runningEmulator struct {
	Emulator
	URL string
	srv *http.Server
}

// startEmulators starts an emulator for every cloud without credentials
// and records their URLs in cfg.Clouds.Emulators.
func startEmulators(cfg *app.Config, logger *slog.Logger) (map[string]*runningEmulator, error) {
	out := map[string]*runningEmulator{}
	cfg.Clouds.Emulators = map[string]string{}
	for _, name := range app.Clouds {
		if cfg.Clouds.Live(name) {
			continue
		}
		var e Emulator
		log := logger.With("emulator", name)
		switch name {
		case app.CloudRunPod:
			e = runpodemu.New(runpodemu.Options{Logger: log})
		case app.CloudTencent:
			e = tencentemu.New(tencentemu.Options{Logger: log,
				Credentials: map[string]string{app.TencentEmulatorID: app.TencentEmulatorKey}})
		case app.CloudAlibaba:
			e = alibabaemu.New(alibabaemu.Options{Logger: log,
				Credentials: map[string]string{app.AlibabaEmulatorID: app.AlibabaEmulatorSecret}})
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.Close()
			stopEmulators(out)
			return nil, fmt.Errorf("%s emulator: %w", name, err)
		}
		r := &runningEmulator{Emulator: e, URL: "http://" + ln.Addr().String(),
			srv: &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}}
		go func() {
			if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("emulator stopped", "err", err)
			}
		}()
		out[name] = r
		cfg.Clouds.Emulators[name] = r.URL
	}
	return out, nil
}

func stopEmulators(es map[string]*runningEmulator) {
	for _, e := range es {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = e.srv.Shutdown(ctx)
		cancel()
		e.Close()
	}
}
