// Command gpuflow runs the GPU job orchestrator, and is its command-line
// client.
//
// Server commands (configured from the environment; see internal/app.Config):
//
//	gpuflow api       serve the HTTP API
//	gpuflow worker    run the Temporal workers (workflows and provider activities)
//	gpuflow migrate   apply the database migrations
//	gpuflow user create --email E [--superuser] [--local] [--password-stdin]
//	                  create an account (the first superuser); the password comes from stdin
//	gpuflow version   print the version
//
// Built with -tags dev it also has `gpuflow dev`, the whole system in one
// process (make run), and `gpuflow emulators --state DIR --runpod ADDR
// --tencent ADDR --alibaba ADDR`, the cloud emulators as a process of their
// own (internal/emuproc).
//
// Client commands (internal/cli): login, logout, submit, ls, status, logs,
// cancel, watch, providers, gpus, recommend; `gpuflow help` lists them and
// the exit codes are documented in internal/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/cli"
	"github.com/gpuflow/gpuflow/internal/telemetry"
)

// groupServer is the help group of the server commands.
const groupServer = "server"

// extraCommands are added by build-tagged files (dev.go).
var extraCommands []*cobra.Command

// serverCmd is a server command: it reads the configuration from the
// environment and runs until ctx is done or it fails.
func serverCmd(name, short string, run func(ctx context.Context, cfg app.Config, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use: name, Short: short, GroupID: groupServer, Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := app.ConfigFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, args)
		},
	}
}

// newRoot is the program's command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "gpuflow",
		Short: "gpuflow runs GPU jobs on RunPod, Tencent Cloud, Alibaba Cloud or this host, as Temporal workflows",
		Long: `gpuflow runs GPU jobs on RunPod, Tencent Cloud, Alibaba Cloud or this host,
as durable Temporal workflows. The server commands run the system; the
client commands talk to its API.

Exit codes of the client: 0 success, 1 error, 2 usage, 3 the job failed,
4 not logged in or refused, 5 timed out, 6 the job was cancelled.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %s?)", s[0])
				}
				return cli.Usage(fmt.Errorf("%s; run `gpuflow help` for the list", msg))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cli.Usage(fmt.Errorf("%w (see `%s --help`)", err, c.CommandPath()))
	})
	root.AddGroup(&cobra.Group{ID: cli.GroupClient, Title: "Client commands:"},
		&cobra.Group{ID: groupServer, Title: "Server commands:"})
	root.AddCommand(cli.Commands(cli.Options{Version: app.Version})...)
	root.AddCommand(
		serverCmd("api", "serve the HTTP API", runAPI),
		serverCmd("worker", "run the Temporal workers", runWorker),
		serverCmd("migrate", "apply the database migrations", runMigrate),
		userCmd(),
		versionCmd(),
	)
	root.AddCommand(extraCommands...)
	return root
}

func versionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "version", Short: "print the version", GroupID: groupServer, Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "text":
				fmt.Fprintln(cmd.OutOrStdout(), app.Version)
			case "json", "jsonl":
				fmt.Fprintf(cmd.OutOrStdout(), "{\"version\":%q}\n", app.Version)
			default:
				return cli.Usage(fmt.Errorf("-o must be text, json or jsonl, not %q", output))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or jsonl")
	return cmd
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run runs the command line args and returns the exit status.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return cli.ExitOK
	}
	if !cli.Silent(err) {
		fmt.Fprintln(os.Stderr, "gpuflow:", err)
		if h := cli.Hint(err); h != "" {
			fmt.Fprintln(os.Stderr, h)
		}
	}
	return cli.ExitCode(err)
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
	defer app.StartRelay(ctx, cfg, deps)() // delivers agent reports; stopped before deps close
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
