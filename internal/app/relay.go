package app

import (
	"context"
	"sync"

	"github.com/gpuflow/gpuflow/relay"
)

// NewRelay builds the relay that delivers the agent reports recorded by
// the API (deps.DB) to the jobs' workflows (deps.Temporal), woken by the
// store's notifications. Every API process runs one; they share the work.
func NewRelay(cfg Config, deps Deps) *relay.Relay {
	return relay.New(deps.DB, deps.Temporal, relay.Options{
		ProgressInterval: cfg.ProgressInterval,
		Listen:           deps.DB.ListenReports,
		Logger:           deps.Logger.With("component", "relay"),
	})
}

// StartRelay runs NewRelay's relay in the background until ctx is done or
// stop is called; stop waits for it to finish (before deps are closed).
func StartRelay(ctx context.Context, cfg Config, deps Deps) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	r := NewRelay(cfg, deps)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			deps.Logger.Error("agent report relay stopped", "err", err)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
