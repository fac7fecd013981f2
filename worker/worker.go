// Package worker registers gpuflow's workflows and activities with Temporal
// workers: one on the workflow task queue, and one per provider on that
// provider's activity task queue (so only hosts that can reach a provider —
// for "local", the hosts that run the jobs — pick up its activities). A
// host that runs a provider's machines itself (local) also serves its own
// queue (workflows.HostTaskQueue), where the activities on the machines it
// runs go.
package worker

import (
	"context"
	"fmt"
	"sync"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow/activities"
	"github.com/gpuflow/gpuflow/workflows"
)

// Options tune the workers.
type Options struct {
	// MaxConcurrentActivities bounds activities running at once per task
	// queue (0: the SDK default).
	MaxConcurrentActivities int
	// WorkflowCacheSize bounds the workflows kept in memory between their
	// events (0: the SDK default, 10,000). It is process-wide: the SDK has
	// one cache for every worker of the process, made when the first of
	// them starts (in the dev stack that is the embedded Temporal server's
	// system worker, so devstack sets the size before starting it).
	WorkflowCacheSize int
	// Services are the long-running loops the worker runs for its
	// lifetime (the queue's dispatcher, the machine watchers); each
	// returns when its context is done.
	Services []func(ctx context.Context)
}

// Worker is a set of Temporal workers serving gpuflow's task queues.
type Worker struct {
	workers []sdkworker.Worker
	loops   []func(context.Context)
	stop    context.CancelFunc
	done    sync.WaitGroup
}

// New creates workers for the workflow task queue and for every provider in
// acts.Providers. Nothing runs until Start.
func New(c client.Client, acts *activities.Activities, opts Options) *Worker {
	if opts.WorkflowCacheSize > 0 {
		sdkworker.SetStickyWorkflowCacheSize(opts.WorkflowCacheSize)
	}
	wo := sdkworker.Options{MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities}
	main := sdkworker.New(c, workflows.TaskQueue, wo)
	for _, r := range workflows.Registrations() {
		main.RegisterWorkflowWithOptions(r.Func, workflow.RegisterOptions{Name: r.Name})
	}
	main.RegisterActivity(acts)
	w := &Worker{workers: []sdkworker.Worker{main}}
	w.loops = append(w.loops, opts.Services...)
	for _, p := range acts.Providers {
		name := p.Info().Name
		pw := sdkworker.New(c, workflows.ProviderTaskQueue(name), wo)
		registerMachine(pw, acts)
		pw.RegisterActivityWithOptions(acts.ReconcileProvider, activity.RegisterOptions{Name: "ReconcileProvider"})
		w.workers = append(w.workers, pw)
		if host := acts.Hosts[name]; host != "" {
			// The provider's machines run on this host: it offers itself
			// for new ones on the shared queue (PickHost) and serves
			// those it runs on its own queue.
			pw.RegisterActivityWithOptions(acts.PickHost, activity.RegisterOptions{Name: "PickHost"})
			hw := sdkworker.New(c, workflows.HostTaskQueue(name, host), wo)
			registerMachine(hw, acts)
			w.workers = append(w.workers, hw)
		}
	}
	return w
}

// registerMachine registers the activities on one machine.
func registerMachine(w sdkworker.Worker, acts *activities.Activities) {
	w.RegisterActivityWithOptions(acts.Provision, activity.RegisterOptions{Name: "Provision"})
	w.RegisterActivityWithOptions(acts.CheckMachine, activity.RegisterOptions{Name: "CheckMachine"})
	w.RegisterActivityWithOptions(acts.TerminateMachine, activity.RegisterOptions{Name: "TerminateMachine"})
}

// Start starts every worker; on failure the ones started are stopped.
func (w *Worker) Start() error {
	for i, sw := range w.workers {
		if err := sw.Start(); err != nil {
			for _, started := range w.workers[:i] {
				started.Stop()
			}
			return fmt.Errorf("start worker: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	for _, loop := range w.loops {
		w.done.Go(func() { loop(ctx) })
	}
	return nil
}

// Stop stops every worker, waiting for running activities to return.
func (w *Worker) Stop() {
	if w.stop != nil {
		w.stop()
		w.done.Wait()
	}
	for _, sw := range w.workers {
		sw.Stop()
	}
}

// Run starts the workers and stops them when ctx is done.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
