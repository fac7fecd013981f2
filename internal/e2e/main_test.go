// Package e2e holds the integration tests: the real embedded Temporal
// server, a real PostgreSQL, the real local provider and the HTTP API, with
// workers and whole stacks killed and restarted as separate processes.
//
// The test binary doubles as those processes: with GPUFLOW_E2E_CHILD set it
// runs a worker ("worker"), the whole dev stack ("dev"), the dev stack's
// Temporal server alone ("temporal") or the cloud emulators alone
// ("emulators") instead of tests, configured from the environment like the
// real binary.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/devtemporal"
	"github.com/gpuflow/gpuflow/internal/emuproc"
	"github.com/gpuflow/gpuflow/internal/pgtest"
)

const childEnv = "GPUFLOW_E2E_CHILD"

// Environment of the "temporal" and "emulators" children: the file a child
// creates once it serves, and the emulators' listen addresses
// ("runpod=127.0.0.1:7001,tencent=...").
const (
	childReadyEnv     = "GPUFLOW_E2E_READY"
	childEmulatorsEnv = "GPUFLOW_E2E_EMULATORS"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := runChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// runChild runs a worker or a whole stack until SIGTERM (or SIGKILL).
func runChild(role string) error {
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	logger := cfg.NewLogger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch role {
	case "worker":
		db, err := app.OpenDB(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer db.Close()
		tc, err := app.DialTemporal(ctx, cfg, logger, nil)
		if err != nil {
			return err
		}
		defer tc.Close()
		ps, err := app.NewProviders(cfg, logger)
		if err != nil {
			return err
		}
		w, err := app.StartWorker(ctx, cfg, app.Deps{DB: db, Temporal: tc, Providers: ps, Logger: logger})
		if err != nil {
			return err
		}
		<-ctx.Done()
		w.Stop()
		return nil
	case "dev":
		return devstack.Run(ctx, cfg, logger)
	case "temporal":
		// The dev stack's server, as devstack.Start embeds it.
		opts, err := devstack.EmbeddedTemporalOptions(cfg, devstack.Options{NoUI: true}, logger)
		if err != nil {
			return err
		}
		srv, err := devtemporal.Start(ctx, opts)
		if err != nil {
			return err
		}
		defer srv.Stop()
		return childServe(ctx)
	case "emulators":
		addrs := map[string]string{}
		for kv := range strings.SplitSeq(os.Getenv(childEmulatorsEnv), ",") {
			if name, addr, ok := strings.Cut(kv, "="); ok {
				addrs[name] = addr
			}
		}
		es, err := emuproc.Start(emuproc.Config{Addrs: addrs}, logger)
		if err != nil {
			return err
		}
		defer emuproc.StopAll(es)
		return childServe(ctx)
	}
	return fmt.Errorf("unknown role %q", role)
}

// childServe says the child serves (the file named by childReadyEnv),
// then waits for the end. The file holds the address of the child's
// net/http/pprof endpoints (loopback), for the benchmark's profiles.
func childServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if err := os.WriteFile(os.Getenv(childReadyEnv), []byte(ln.Addr().String()), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
