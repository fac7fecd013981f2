//go:build dev

package main

import (
	"context"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
)

// The dev command exists only in builds with -tags dev: it links the
// embedded Temporal server, which the production binary leaves out.
func init() {
	extraCommands = append(extraCommands, serverCmd("dev",
		"run the whole system in one process (Temporal, Web UI, PostgreSQL, worker, API)",
		func(ctx context.Context, cfg app.Config, _ []string) error {
			return devstack.Run(ctx, cfg, cfg.NewLogger())
		}))
}
