package app

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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
// With deps.Metrics it exports the relay's counts there.
func StartRelay(ctx context.Context, cfg Config, deps Deps) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	r := NewRelay(cfg, deps)
	if deps.Metrics != nil {
		if err := registerRelayMetrics(deps.Metrics, r); err != nil {
			deps.Logger.Warn("agent report relay metrics not exported", "err", err)
		}
	}
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

// registerRelayMetrics exports r's counts in reg.
func registerRelayMetrics(reg prometheus.Registerer, r *relay.Relay) error {
	for _, m := range []struct {
		name, help string
		get        func(relay.Stats) int64
	}{
		{"gpuflow_agent_reports_delivered_total", "Agent reports this process's relay delivered to their workflows.", func(s relay.Stats) int64 { return s.Delivered }},
		{"gpuflow_agent_reports_dropped_total", "Agent reports dropped because their workflow was unknown, closed or refused them.", func(s relay.Stats) int64 { return s.Dropped }},
		{"gpuflow_agent_report_retries_total", "Agent report deliveries put off for a retry (Temporal unreachable, a failed signal).", func(s relay.Stats) int64 { return s.Retried }},
	} {
		get := m.get
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, func() float64 { return float64(get(r.Stats())) })
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
