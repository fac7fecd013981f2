package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
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
	// RateLimiter is the emulator's per-account request rates (the
	// cloud's throttling) and its counts of calls let through and refused.
	RateLimiter() *emulate.RateLimiter
	Preempt(machineID string) error
	Live() []string
	Close()
}

// runningEmulator is an emulator and its HTTP server.
type runningEmulator struct {
	Emulator
	URL string
	srv *http.Server

	// calls counts the cloud API requests served, by operation (benchmarks
	// read it through Calls; the admin endpoints are not counted).
	mu    sync.Mutex
	calls map[string]int64
}

// Calls returns how many cloud API requests the emulator has answered, by
// operation: the Tencent action (X-TC-Action), the Alibaba action (Action
// or x-acs-action), or, for RunPod, the method and route ("GET /v2/pods/{id}",
// "POST /graphql").
func (r *runningEmulator) Calls() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.calls))
	for k, v := range r.calls {
		out[k] = v
	}
	return out
}

// ServeHTTP counts the request, then lets the emulator answer it.
func (r *runningEmulator) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/_emulator/") {
		op := req.Header.Get("X-TC-Action")
		if op == "" {
			op = req.Header.Get("x-acs-action")
		}
		if op == "" {
			op = req.URL.Query().Get("Action")
		}
		if op == "" {
			path := req.URL.Path
			if rest, ok := strings.CutPrefix(path, "/v2/pods/"); ok {
				_, action, _ := strings.Cut(rest, "/")
				path = strings.TrimSuffix("/v2/pods/{id}/"+action, "/")
			}
			op = req.Method + " " + path
		}
		r.mu.Lock()
		r.calls[op]++
		r.mu.Unlock()
	}
	r.Emulator.ServeHTTP(w, req)
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
		r := &runningEmulator{Emulator: e, URL: "http://" + ln.Addr().String(), calls: map[string]int64{}}
		r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
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
