package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow/activities"
)

// Timeouts of the job workflow's steps, chosen on purpose:
const (
	// recordTimeout bounds one write to the job store as a local activity,
	// retries included; a write it does not finish goes on as a regular
	// activity (storeRetryMax).
	recordTimeout = 10 * time.Second
	// storeRetryMax is the longest wait between two tries of a write to
	// the job store that is down: it is retried without a limit on
	// attempts or time, until the store answers.
	storeRetryMax = time.Minute
	// selectTimeout bounds one Admit: waiting for the queue's lock and one
	// admission pass (which lists every provider's offers).
	selectTimeout = 2 * time.Minute
	// provisionTimeout bounds one create call at a provider (not the boot).
	provisionTimeout = time.Minute
	// provisionAttempts caps create calls for one offer: they may bill.
	provisionAttempts = 8
	// safetyCheck is the watch's long timer: how often a running job
	// makes sure its machine is watched (and looks itself when the
	// provider's watcher is dead). The watcher's signals make it rare
	// work, not the way a job learns of its end.
	safetyCheck = 30 * time.Minute
	// unwatchedCheck replaces safetyCheck while a machine's watch is not
	// recorded (it was provisioned while the store was down): the check
	// records it.
	unwatchedCheck = time.Minute
	// checkTimeout bounds one safety check.
	checkTimeout = time.Minute
	// exitReportGrace is how long a job whose machine stopped without an
	// exit code waits for its agent's report.
	exitReportGrace = 2 * time.Minute
	// continueAsNewAt is the history length at which a watch carries on in
	// a new run (Temporal suggests it earlier; its hard limit is 51,200).
	continueAsNewAt = 10000
	// terminateTimeout bounds one teardown call; teardown retries forever.
	terminateTimeout = 2 * time.Minute
	// teardownRetryWait is the wait before trying again a teardown whose
	// retry policy gave up (a non-retryable error).
	teardownRetryWait = 30 * time.Second
	// admitRecheck is how long a queued job waits for the dispatcher's
	// signal before asking for admission again (a lost signal costs at
	// most this).
	admitRecheck = 10 * time.Minute
	// maxLaunchRetries caps how often a job whose machine failed before it
	// ran the job (a hung or crashed boot) is started again elsewhere.
	maxLaunchRetries = 2
	// maxNoCapacityAttempts caps the attempts that end in "no capacity"
	// (offers that do not say their stock) before the job fails; see
	// noCapacity.
	maxNoCapacityAttempts = 24
	// maxNoCapacityBackoff caps how long an offer that keeps answering
	// "no capacity" is blocked for the job (doubling from the admission's
	// block TTL).
	maxNoCapacityBackoff = time.Hour
	// hostPickup is how soon the host picked for a local job must take
	// its Provision; a host that does not counts as "no capacity".
	hostPickup = time.Minute
)

// withRecordOptions is a write to the job store as a local activity: the
// fast way, bounded in time (ScheduleToClose, retries included) so that a
// store that is down does not hold the workflow task; the write then goes
// on with withStoreOptions.
func withRecordOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: recordTimeout,
		StartToCloseTimeout:    recordTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidRecord},
		},
	})
}

// withStoreOptions is a write to the job store as a regular activity,
// retried by the server, without a limit on attempts or time, until the
// store takes it (or refuses it for good); it adds no history while it
// retries.
func withStoreOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: recordTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: storeRetryMax,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidRecord},
		},
	})
}

// withSelectOptions is Admit: retried without a limit (the queue is in
// the job store, and an outage must not fail a job the API accepted); a
// cancel stops it.
func withSelectOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: selectTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: storeRetryMax,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// withPickHostOptions is PickHost, on the provider's shared queue.
func withPickHostOptions(ctx workflow.Context, provider string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           ProviderTaskQueue(provider),
		StartToCloseTimeout: checkTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 5, NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// withProvisionOptions is Provision on queue. On a host's own queue
// (host != "") it must be taken within hostPickup: a host that is gone
// does not hold the job.
func withProvisionOptions(ctx workflow.Context, queue string, host string) workflow.Context {
	var toStart time.Duration
	if host != "" {
		toStart = hostPickup
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              queue,
		ScheduleToStartTimeout: toStart,
		StartToCloseTimeout:    provisionTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: provisionAttempts, NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

func withCheckOptions(ctx workflow.Context, queue string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: checkTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 5, NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

func withTerminateOptions(ctx workflow.Context, queue string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: terminateTimeout,
		// No MaximumAttempts: teardown is retried until the provider
		// confirms the machine is gone.
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
		},
	})
}
