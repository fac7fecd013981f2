// Package emuproc serves the cloud emulators (provider/*/emulator) over
// HTTP: in process for `gpuflow dev` (internal/devstack), and as a process
// of their own for `gpuflow-dev emulators`, which the production topology
// and its chaos tests run beside the API and the workers:
//
//	gpuflow-dev emulators --state DIR --runpod ADDR --tencent ADDR --alibaba ADDR
//
// Each flag with an address serves that cloud's emulator there (a fixed
// address, so that a restarted process keeps the URLs the workers are
// configured with); --state DIR keeps each emulator's state in
// DIR/<cloud>.json (provider/emulate: state files), so the machines, their
// jobs and the ClientToken records survive a kill -9 of the process. The
// Tencent and Alibaba emulators accept the dev credentials
// (app.TencentEmulatorID/Key, app.AlibabaEmulatorID/Secret); RunPod any
// key. Logs go to stderr; SIGTERM or SIGINT stops the process.
//
// Admin endpoints of every emulator, without auth: GET/PUT
// /_emulator/faults, GET/PUT /_emulator/ratelimits, GET /_emulator/live
// (emulate.LiveReport), GET /_emulator/calls (the cloud API requests
// answered, by operation) and POST /_emulator/preempt/<machine id>.
package emuproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
	alibabaemu "github.com/gpuflow/gpuflow/provider/alibaba/emulator"
	"github.com/gpuflow/gpuflow/provider/emulate"
	runpodemu "github.com/gpuflow/gpuflow/provider/runpod/emulator"
	tencentemu "github.com/gpuflow/gpuflow/provider/tencent/emulator"
)

// Emulator is a cloud emulator served over HTTP.
type Emulator interface {
	http.Handler
	Faults() *emulate.Switches
	// RateLimiter is the emulator's per-account request rates (the
	// cloud's throttling) and its counts of calls let through and refused.
	RateLimiter() *emulate.RateLimiter
	Preempt(machineID string) error
	Live() []string
	// LiveReport is what GET /_emulator/live answers.
	LiveReport() emulate.LiveReport
	Close()
}

// New returns the emulator of cloud name (app.CloudRunPod, CloudTencent,
// CloudAlibaba) with the dev credentials, persisting its state to
// stateFile unless it is "".
func New(name string, logger *slog.Logger, stateFile string) (Emulator, error) {
	switch name {
	case app.CloudRunPod:
		return runpodemu.New(runpodemu.Options{Logger: logger, StateFile: stateFile}), nil
	case app.CloudTencent:
		return tencentemu.New(tencentemu.Options{Logger: logger, StateFile: stateFile,
			Credentials: map[string]string{app.TencentEmulatorID: app.TencentEmulatorKey}}), nil
	case app.CloudAlibaba:
		return alibabaemu.New(alibabaemu.Options{Logger: logger, StateFile: stateFile,
			Credentials: map[string]string{app.AlibabaEmulatorID: app.AlibabaEmulatorSecret}}), nil
	}
	return nil, fmt.Errorf("no emulator for cloud %q", name)
}

// Running is an emulator and its HTTP server.
type Running struct {
	Emulator
	URL string
	srv *http.Server
	log *slog.Logger

	// calls counts the cloud API requests served, by operation (benchmarks
	// read it through Calls; the admin endpoints are not counted).
	mu    sync.Mutex
	calls map[string]int64
}

// Serve serves e on ln until Stop.
func Serve(e Emulator, ln net.Listener, logger *slog.Logger) *Running {
	r := &Running{Emulator: e, URL: "http://" + ln.Addr().String(), log: logger, calls: map[string]int64{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("emulator stopped", "err", err)
		}
	}()
	return r
}

// Calls returns how many cloud API requests the emulator has answered, by
// operation: the Tencent action (X-TC-Action), the Alibaba action (Action
// or x-acs-action), or, for RunPod, the method and route ("GET /v2/pods/{id}",
// "POST /graphql").
func (r *Running) Calls() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calls)
}

// CallsPath serves Calls as JSON ({"DescribeInstances": 12, ...}) to GET,
// for a benchmark that runs the emulators as a process of their own.
const CallsPath = "/_emulator/calls"

// ServeHTTP counts the request, then lets the emulator answer it.
func (r *Running) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == CallsPath {
		if req.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Calls())
		return
	}
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

// Stop stops serving (waiting up to 2s for calls in flight) and closes
// the emulator.
func (r *Running) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = r.srv.Shutdown(ctx)
	cancel()
	r.Close()
}

// Config is what `gpuflow-dev emulators` serves: an address per cloud
// ("" serves none) and the state directory ("" keeps no state).
type Config struct {
	Addrs    map[string]string // by cloud name
	StateDir string
}

// Start serves the configured emulators; on failure it stops those it
// started.
func Start(cfg Config, logger *slog.Logger) (map[string]*Running, error) {
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
			return nil, fmt.Errorf("emulator state: %w", err)
		}
	}
	out := map[string]*Running{}
	for _, name := range app.Clouds {
		addr := cfg.Addrs[name]
		if addr == "" {
			continue
		}
		stateFile := ""
		if cfg.StateDir != "" {
			stateFile = filepath.Join(cfg.StateDir, name+".json")
		}
		log := logger.With("emulator", name)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			StopAll(out)
			return nil, fmt.Errorf("%s emulator: %w", name, err)
		}
		e, err := New(name, log, stateFile)
		if err != nil {
			_ = ln.Close()
			StopAll(out)
			return nil, err
		}
		out[name] = Serve(e, ln, log)
	}
	return out, nil
}

// StopAll stops every emulator of es.
func StopAll(es map[string]*Running) {
	for _, e := range es {
		e.Stop()
	}
}

// Run serves the configured emulators until ctx is done.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if len(cfg.Addrs) == 0 {
		return errors.New("no emulator to serve: give at least one of --runpod, --tencent, --alibaba")
	}
	es, err := Start(cfg, logger)
	if err != nil {
		return err
	}
	if len(es) == 0 {
		return errors.New("no emulator to serve: give at least one of --runpod, --tencent, --alibaba")
	}
	for name, e := range es {
		logger.Info("emulator listening", "emulator", name, "url", e.URL, "state_dir", cfg.StateDir)
	}
	<-ctx.Done()
	logger.Info("emulators stopping")
	StopAll(es)
	return nil
}
