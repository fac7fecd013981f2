package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/api"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/provider/local"
	"github.com/gpuflow/gpuflow/worker"
)

// Version is the build's version, set with -ldflags "-X .../internal/app.Version=...".
var Version = "dev"

// OpenDB connects to PostgreSQL at cfg.DatabaseURL.
func OpenDB(ctx context.Context, cfg Config, logger *slog.Logger) (*postgres.DB, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set")
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, logger)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// Migrate applies the embedded migrations.
func Migrate(ctx context.Context, db *postgres.DB) error {
	if err := postgres.Migrate(ctx, db.Pool); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// DialTemporal connects a Temporal client to cfg.TemporalAddress.
func DialTemporal(ctx context.Context, cfg Config, logger *slog.Logger) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    sdklog.NewStructuredLogger(logger.With("component", "temporal")),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	return c, nil
}

// NewProviders builds the configured providers, in preference order.
func NewProviders(cfg Config, logger *slog.Logger) (gpuflow.Providers, error) {
	var ps gpuflow.Providers
	if cfg.LocalEnabled {
		p, err := local.New(local.Config{Dir: cfg.LocalDir, CPUSlots: cfg.LocalCPUSlots, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("local provider: %w", err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Deps are the connections a process shares between the API and the worker.
type Deps struct {
	DB        *postgres.DB
	Temporal  client.Client
	Providers gpuflow.Providers
	Logger    *slog.Logger
}

// NewWorker builds the Temporal workers over deps.
func NewWorker(deps Deps) *worker.Worker {
	acts := &activities.Activities{Jobs: deps.DB, Providers: deps.Providers, Logger: deps.Logger}
	return worker.New(deps.Temporal, acts, worker.Options{})
}

// NewAPI builds the HTTP API over deps.
func NewAPI(cfg Config, deps Deps) *api.Server {
	return api.New(api.Config{
		Jobs:          deps.DB,
		Temporal:      deps.Temporal,
		Namespace:     cfg.TemporalNamespace,
		Providers:     deps.Providers,
		TemporalUIURL: cfg.TemporalUIURL,
		Version:       Version,
		Logger:        deps.Logger,
		Feed:          deps.DB, // Serve runs its listener; Shutdown stops it
		Auth: api.AuthConfig{
			Users:          deps.DB,
			Secret:         []byte(cfg.JWTSecret),
			TokenLifetime:  cfg.JWTLifetime,
			TrustedProxies: cfg.TrustedProxies,
		},
		HealthChecks: map[string]func(context.Context) error{
			"postgres": deps.DB.Ping,
			"temporal": func(ctx context.Context) error {
				_, err := deps.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			},
		},
	})
}

// ServeAPI runs srv on cfg.HTTPAddr until ctx is done, then shuts it down
// gracefully.
func ServeAPI(ctx context.Context, cfg Config, srv *api.Server, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(cfg.HTTPAddr) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api on %s: %w", cfg.HTTPAddr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("api shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
