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
// # Running the job exactly once
//
// A pod is a container whose command, when it ends, RunPod runs again
// (the container restarts; the docs' answer is an idle command: "ensure you
// have an idle job (e.g., `sleep infinity`)", pods/manage-pods.mdx). So the
// job's argv is not the pod's command. The command (args, or dockerArgs on
// GraphQL spot pods) is agentscript's runner, sh -c 'eval
// "$GPUFLOW_RUNNER"' gpuflow ARGV..., with the runner script in the env:
//
//   - It records that the job started, and then its exit code, in
//     GPUFLOW_STATE_DIR on the pod's volume (REST mounts.persistent, GraphQL
//     volumeInGb, 10 GB, RunPod's floor, at /gpuflow so it hides nothing of
//     the image). The container disk would not do: it is "ephemeral, wiped
//     on restart" (v2 spec, BaseContainerConfig.disk); the volume disk
//     "survives Pod stops and restarts, but is deleted when the Pod is
//     terminated" (pods/storage/types.mdx).
//   - It runs the argv as positional parameters (never re-parsed by a
//     shell), spools the output on the volume and ships it, and reports
//     the exit code with agentscript's durable agent (retried until the API
//     acknowledges it, bounded by the job's deadline and, once the job has
//     ended, by its report grace).
//   - An end not acknowledged within the report grace (or refused for
//     good) stops the pod at once, the same way as at the deadline below,
//     so that gpuflow sees it EXITED and ends the job (failed, its exit
//     code unknown) instead of the pod billing on. A spot pod is removed
//     (DELETE /v2/pods/$RUNPOD_POD_ID) instead: stopped, it would read as
//     reclaimed, and the job would run again.
//   - Then it keeps the container from exiting, so RunPod restarts nothing
//     and the pod stays RUNNING until gpuflow terminates it. A restarted
//     container (host trouble, a restart or stop/start action) finds the
//     state: a job that ended is not run again (its report is re-sent only
//     if it was never acknowledged); one that started and did not end is
//     reported with exit code -1, not run again.
//   - At GPUFLOW_DEADLINE (the job's life plus Config.SafetyMargin) it stops
//     its own pod (POST /v2/pods/$RUNPOD_POD_ID/action {"action":"stop"})
//     with the key RunPod gives every pod: "RUNPOD_API_KEY: Used to make
//     RunPod API calls to the specific pod. It's limited in scope to only
//     the pod" (pods/references/environment-variables.mdx; the docs stop a
//     pod from inside it the same way: "sleep 2h; runpodctl stop pod
//     $RUNPOD_POD_ID"). This is the on-demand pods' safety timer.
//
// Why not stop the pod as soon as the job ends: a stopped pod reads EXITED,
// which is also how RunPod shows a reclaimed spot pod, so gpuflow could not
// tell a finished job from a preemption; and gpuflow terminates the pod
// within seconds of the acknowledged report anyway. The stop is kept for
// the case where no report can get through. The runner needs curl
// (it installs it with apt-get, apk, microdnf, dnf or yum when missing) and
// an image whose ENTRYPOINT, if any, runs its arguments as a command; a
// job with no command (an image's own default command) is refused as an
// invalid request, since it could not be run once and reported.
//
// # Safety timer
//
// Spot pods are created with GraphQL's terminateAfter set to the job's
// life (MaxDuration, else the spec's max_duration_minutes, else 24h) plus
// Config.SafetyMargin, so RunPod removes them even if gpuflow is gone. The
// v2 create body has no such field (it rejects unknown fields with 422):
// on-demand pods are stopped by their runner at the same time, and
// removed by gpuflow's reconciler (List).
//
// # States
//
// PROVISIONING is pending; STARTING, and RUNNING without a runtime block
// (RunPod reports RUNNING before the container is up), are starting;
// RUNNING with a runtime is running (also after the job: the runner
// idles); EXITED is failed for on-demand pods (the runner stops its pod
// only when no report of the job's end got through, or at the deadline,
// and a stop outside gpuflow kills the job: no report follows either way)
// and failed ("preempted") for spot pods, which RunPod stops when it
// reclaims them;
// ERROR is failed;
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
