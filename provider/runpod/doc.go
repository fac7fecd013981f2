// Package runpod is the gpuflow provider for RunPod GPU pods.
//
// RunPod has no Go SDK, and its REST v1 API was retired on 2026-11-15, so
// the package carries its own small typed client (client.go) for the two
// surfaces that remain:
//
//   - REST v2 (https://api.runpod.io/v2/...) for on-demand pods, listing,
//     describing and deleting pods, and the GPU catalogue;
//   - GraphQL (https://api.runpod.io/graphql) for interruptible (spot) pods
//     (podRentInterruptable: the v2 API has no spot field) and spot prices
//     (gpuTypes).
//
// Both authenticate with "Authorization: Bearer <key>"; the key is never
// put in a URL (GraphQL's ?api_key= form would leak it into url.Error
// messages) and never logged: Config implements String and LogValue.
//
// # Idempotency
//
// RunPod has no idempotency key. Each provision request gets a unique,
// deterministic pod name, PodName(IdempotencyKey) = "gpuflow-<key>".
// Provision first looks the name up (so a retried activity finds the pod an
// earlier try created) and, after a 5xx or a timeout on create, looks it up
// again before returning the error: RunPod is known to create a pod and
// then answer 500.
//
// # Tags
//
// Pods carry no tags. gpuflow's pods are recognised by the name prefix
// "gpuflow-"; the request's tags (gpuflow.TagManaged, gpuflow.TagJob, ...)
// travel as JSON in the pod's GPUFLOW_TAGS environment variable, and the job
// id in GPUFLOW_JOB_ID. The pod's env also carries GPUFLOW_AGENT_URL and
// GPUFLOW_AGENT_TOKEN: RunPod's API offers no job exit code, so the job's
// agent reports progress, output and the exit code to gpuflow's agent
// endpoint (the provider implements no gpuflow.LogSource).
//
// # Safety timer
//
// Spot pods are created with GraphQL's terminateAfter set to
// MaxDuration (24h when zero) plus Config.SafetyMargin, so RunPod removes
// them even if gpuflow is gone. The v2 create body has no such field (it
// rejects unknown fields with 422), so on-demand pods rely on gpuflow's
// reconciler (List) alone.
//
// # States
//
// PROVISIONING is pending; STARTING, and RUNNING without a runtime block
// (RunPod reports RUNNING before the container is up), are starting;
// RUNNING with a runtime is running; EXITED is exited (no exit code: the
// agent reports it) for on-demand pods and failed ("preempted") for spot
// pods, which RunPod stops when it reclaims them; ERROR is failed;
// TERMINATED, or 404, is gone.
//
// # Prices
//
// Offers are per GPU-hour in USD, as RunPod quotes them (the v2 catalogue's
// price.secure/price.community, GraphQL's secureSpotPrice and
// communitySpotPrice). RunPod bills in USD only, so no conversion is done.
// When the live catalogue cannot be read, Offers falls back to catalog.json,
// seed prices with their source and date, which offers no spot prices.
package runpod
