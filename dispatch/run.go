package dispatch

import (
	"context"
	"log/slog"
	"time"
)

// DefaultQueueRecheck is how often a dispatcher looks at the queue again
// while jobs wait and nothing woke it: cloud stock comes back without
// telling anyone, and failed offers' blocks expire.
const DefaultQueueRecheck = 15 * time.Second

// Run runs admission passes until ctx is done: once at start, each
// time listen reports that capacity may have been freed, and every recheck
// while jobs wait. Wake-ups that arrive during a pass fold into one more.
func (d *Dispatcher) Run(ctx context.Context, listen func(context.Context, func()) error, recheck time.Duration, logger *slog.Logger) {
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if listen != nil {
		go func() {
			if err := listen(ctx, poke); err != nil {
				logger.Error("queue listener stopped; the dispatcher falls back to its recheck", "err", err)
			}
		}()
	}
	poke()
	timer := time.NewTimer(recheck)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
		res, err := d.Pass(ctx, "")
		if err != nil && ctx.Err() == nil {
			logger.Warn("admission pass failed; trying again", "err", err, "in", recheck)
		}
		next := time.Hour // nothing waits: only a wake-up starts a pass
		if err != nil || res.Waiting > 0 {
			next = recheck
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}
