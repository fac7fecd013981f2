//go:build dev

package main

import (
	"cmp"
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/devtemporal"
	"github.com/gpuflow/gpuflow/internal/topology"
)

// The dev commands exist only in builds with -tags dev: they link the
// embedded Temporal server, which the production binary leaves out.
func init() {
	extraCommands = append(extraCommands,
		serverCmd("dev",
			"run the whole system in one process (Temporal, Web UI, PostgreSQL, worker, API)",
			func(ctx context.Context, cfg app.Config, _ []string) error {
				return devstack.Run(ctx, cfg, cfg.NewLogger())
			}),
		temporalCmd(),
		topologyCmd(),
	)
}

// temporalCmd runs the Temporal server on PostgreSQL as a process of its
// own (the topology's; internal/topology).
func temporalCmd() *cobra.Command {
	var opts devstack.TemporalOptions
	cmd := &cobra.Command{
		Use:     "temporal --db postgres://USER@HOST:PORT/temporal",
		Short:   "run the Temporal server (and Web UI) on PostgreSQL, as its own process, until SIGTERM",
		GroupID: groupServer, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.ConfigFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			opts.Namespace = cmp.Or(opts.Namespace, cfg.TemporalNamespace)
			return devstack.RunTemporal(cmd.Context(), opts, cfg.NewLogger())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DB, "db", "", "the executions database's postgres:// URL (visibility: the same name + _visibility; both created if missing)")
	f.StringVar(&opts.Host, "host", "127.0.0.1", "loopback address to listen on")
	f.IntVar(&opts.Port, "port", devtemporal.DefaultPort, "frontend gRPC port")
	f.IntVar(&opts.UIPort, "ui-port", devtemporal.DefaultUIPort, "Web UI port (0: no UI)")
	f.StringVar(&opts.Namespace, "namespace", "", "namespace to create (default $TEMPORAL_NAMESPACE or default)")
	f.IntVar(&opts.HistoryShards, "shards", devtemporal.DefaultHistoryShards, "history shards of a new database (an existing one must match)")
	_ = cmd.MarkFlagRequired("db")
	return cmd
}

// topologyCmd runs the production topology on this machine, each
// component a process of this binary (make topology).
func topologyCmd() *cobra.Command {
	var opts topology.Options
	cmd := &cobra.Command{
		Use:     "topology",
		Short:   "run the production topology here: PostgreSQL, Temporal, the emulators, migrate, two APIs and two workers, each its own process",
		GroupID: groupServer, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				opts.Binary = exe
			}
			cfg, err := app.ConfigFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			opts.Logger = cfg.NewLogger()
			return topology.Run(cmd.Context(), opts, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", ".data/topology", "where its databases, state and logs live (kept across runs)")
	f.StringVar(&opts.Binary, "binary", "", "the gpuflow-dev binary the components run (default: this one)")
	f.BoolVar(&opts.UI, "ui", true, "serve the Temporal Web UI")
	return cmd
}
