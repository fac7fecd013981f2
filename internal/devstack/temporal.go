package devstack

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gpuflow/gpuflow/internal/devtemporal"
	"github.com/gpuflow/gpuflow/workflows"
)

// TemporalOptions configure RunTemporal.
type TemporalOptions struct {
	// DB is the executions database's postgres:// URL; the visibility
	// database is its name plus "_visibility". Both are created if missing.
	DB string
	// Host is the loopback address to listen on (default 127.0.0.1).
	Host string
	// Port is the frontend's gRPC port; UIPort the Web UI's (0: no UI).
	Port, UIPort int
	// Namespace is created with gpuflow's search attributes.
	Namespace string
	// HistoryShards is the shard count of a new database (default
	// devtemporal.DefaultHistoryShards); an existing one must match.
	HistoryShards int
}

// RunTemporal runs the Temporal server (and Web UI) on PostgreSQL, as a
// process of its own does for the topology (`gpuflow-dev temporal`), until
// ctx is done.
func RunTemporal(ctx context.Context, opts TemporalOptions, logger *slog.Logger) error {
	pg, err := devtemporal.PostgresFromURL(opts.DB)
	if err != nil {
		return err
	}
	pg.HistoryShards = opts.HistoryShards
	s, err := devtemporal.Start(ctx, devtemporal.Options{
		Postgres: pg, Host: opts.Host, Port: opts.Port, UIPort: opts.UIPort, Namespace: opts.Namespace,
		SearchAttributes: workflows.SearchAttributeNames, Logger: logger.With("component", "temporal-server"),
	})
	if err != nil {
		return err
	}
	fmt.Printf("temporal ready: frontend %s, web ui %s, namespace %s, database %s\n",
		s.FrontendAddr(), s.UIURL(), opts.Namespace, redact(opts.DB))
	<-ctx.Done()
	logger.Info("temporal stopping")
	s.Stop()
	return nil
}
