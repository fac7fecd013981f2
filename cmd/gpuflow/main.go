// Command gpuflow runs the GPU job orchestrator.
//
//	gpuflow api       serve the HTTP API
//	gpuflow worker    run the Temporal workers (workflows and provider activities)
//	gpuflow migrate   apply the database migrations
//	gpuflow user create --email E [--superuser] [--password-stdin]
//	                  create an account (the first superuser); the password comes from stdin
//	gpuflow version   print the version
//
// Built with -tags dev it also has `gpuflow dev`, the whole system in one
// process (make run). Configuration comes from the environment; see
// internal/app.Config.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/telemetry"
)

// command is a subcommand: it runs until ctx is done or it fails.
type command struct {
	help string
	run  func(ctx context.Context, cfg app.Config, args []string) error
}

var commands = map[string]command{
	"api":     {"serve the HTTP API", runAPI},
	"worker":  {"run the Temporal workers", runWorker},
	"migrate": {"apply the database migrations", runMigrate},
	"version": {"print the version", func(context.Context, app.Config, []string) error {
		fmt.Println(app.Version)
		return nil
	}},
}

func main() {
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gpuflow:", err)
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage()
		return fmt.Errorf("unknown command %q", args[0])
	}
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.run(ctx, cfg, args[1:])
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: gpuflow <command>")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].help)
	}
}

func runMigrate(ctx context.Context, cfg app.Config, _ []string) error {
	logger := cfg.NewLogger()
	db, err := app.OpenDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := app.Migrate(ctx, db); err != nil {
		return err
	}
	logger.Info("migrations applied")
	return nil
}

// connect opens the database, Temporal and the providers for api and worker.
func connect(ctx context.Context, cfg app.Config) (app.Deps, func(), error) {
	logger := cfg.NewLogger()
	db, err := app.OpenDB(ctx, cfg, logger)
	if err != nil {
		return app.Deps{}, nil, err
	}
	reg := prometheus.NewRegistry()
	tc, err := app.DialTemporal(ctx, cfg, logger, reg)
	if err != nil {
		db.Close()
		return app.Deps{}, nil, err
	}
	ps, err := app.NewProviders(cfg, logger)
	if err != nil {
		tc.Close()
		db.Close()
		return app.Deps{}, nil, err
	}
	return app.Deps{DB: db, Temporal: tc, Providers: ps, Logger: logger, Metrics: reg}, func() { tc.Close(); db.Close() }, nil
}

func runAPI(ctx context.Context, cfg app.Config, _ []string) error {
	if err := cfg.CheckJWTSecret(); err != nil {
		return err
	}
	deps, closeDeps, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeDeps()
	deps.Logger.Info("api listening", "url", "http://"+cfg.HTTPAddr)
	return app.ServeAPI(ctx, cfg, app.NewAPI(cfg, deps), deps.Logger)
}

func runWorker(ctx context.Context, cfg app.Config, _ []string) error {
	deps, closeDeps, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeDeps()
	w, err := app.StartWorker(ctx, cfg, deps)
	if err != nil {
		return err
	}
	deps.Logger.Info("worker running", "providers", deps.Providers.Names())
	if cfg.MetricsAddr != "" {
		deps.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		go func() {
			if err := telemetry.Serve(ctx, cfg.MetricsAddr, deps.Metrics, deps.Logger); err != nil {
				deps.Logger.Error("worker metrics endpoint stopped", "addr", cfg.MetricsAddr, "err", err)
			}
		}()
		deps.Logger.Info("worker metrics", "url", "http://"+cfg.MetricsAddr+"/metrics")
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
