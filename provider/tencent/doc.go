// Package tencent is the gpuflow provider for Tencent Cloud CVM GPU
// instances, on the official tencentcloud-sdk-go (cvm API 2017-03-12,
// TC3-HMAC-SHA256 signatures). Package emulator beside it serves the same
// API for `make run` and the tests; only Config.Endpoint differs.
//
// Calls:
//
//   - Offers: DescribeZoneInstanceConfigInfos per region (GPU families,
//     POSTPAID_BY_HOUR and SPOTPAID rows) is the catalogue, the price and
//     the stock in one call. Answers are cached for Config.OffersTTL; when
//     the call fails the embedded catalog.json (estimates, with their
//     source and date) stands in.
//   - Provision: RunInstances with a ClientToken derived from the request's
//     idempotency key (the API returns the instances the first call with
//     that token created), TagSpecification (gpuflow-managed=true,
//     gpuflow-job=<job id>, plus the request's tags), the boot script of
//     package agentscript as base64 UserData, SPOTPAID (with
//     InstanceMarketOptions when the job caps its price) for spot jobs, and
//     an ActionTimer that terminates the instance Config.TimerMargin after
//     the request's MaxDuration (24h when zero) in case gpuflow is gone.
//     A transient failure of RunInstances (InternalError, a timeout, a lost
//     answer) is retried with the same token, so a create whose answer was
//     lost yields exactly one instance.
//   - Describe: DescribeInstances by id; an absent instance is gone.
//   - Terminate: TerminateInstances; InvalidInstanceId.NotFound counts as
//     gone, UnsupportedOperation.InstanceStatePending is transient (the
//     workflow retries), InstanceStateTerminating is accepted.
//   - DescribeMany: DescribeInstances with up to 100 InstanceIds a call,
//     per region, for the machine watcher; throttled calls (and List's)
//     are repeated with jittered backoff (docs/PROVIDERS.md).
//   - List: DescribeInstances filtered on tag:gpuflow-managed=true.
//   - Health: DescribeInstancesStatus (Limit 1).
//
// The API offers no job output: the machine's agent uploads it, so the
// provider is no gpuflow.LogSource.
//
// Machine ids are the instance ids ("ins-xxxxxxxx") for instances in the
// first configured region and "<region>:ins-xxxxxxxx" elsewhere.
//
// States (InstanceState → gpuflow): PENDING → pending; STARTING, REBOOTING
// → starting; RUNNING and the rescue/migration states → running (the VM
// stays RUNNING after its job ends; the agent reports the exit code);
// LAUNCH_FAILED → failed (LatestOperationErrorMsg); STOPPING, STOPPED,
// SHUTDOWN, TERMINATING → stopping, except that a SPOTPAID instance that
// goes down without a TerminateInstances of ours is failed, "spot instance
// preempted"; absent → gone. A reclaimed spot instance vanishes after a
// while; one this provider saw as spot earlier is then still reported
// preempted until gpuflow terminates it.
//
// Prices: Tencent answers in the account's currency (CNY on the China
// site, USD on the international site, per instance-hour). Config.Currency
// says which; CNY is converted at Config.CNYPerUSD. Offers are per
// GPU-hour in USD (instance price ÷ GPU count, the discounted unit price
// when given); Machine.PricePerHour is the whole instance's USD price.
//
// Errors are *gpuflow.ProviderError: the stock and quota codes
// (ResourceInsufficient.*, ResourcesSoldOut.*, ResourceUnavailable.*,
// LimitExceeded.*Quota, spot refusals, InvalidAccount.InsufficientBalance)
// are no_capacity; AuthFailure.*, UnauthorizedOperation and other account
// codes are auth; parameter codes are invalid_request; RequestLimitExceeded
// (RetryAfter 1s), InternalError, busy instances, network failures and
// timeouts are transient; InvalidInstanceId.NotFound is not_found.
package tencent
