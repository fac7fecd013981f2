// Package local is the gpuflow provider that runs jobs on the worker's own
// host.
//
// Each job runs in <Dir>/<job_id>/ under a small /bin/sh wrapper started in
// its own session and process group. The wrapper runs the job's argv as
// positional parameters (so no user string is ever interpreted by a shell),
// sends stdout and stderr to output.log and records the exit status in
// exit_code, a file the worker opens and hands it as descriptor 3 (the job
// itself does not get it). Its environment is an allowlist of the worker's
// (PATH, HOME, locale, the container clients' settings: inheritedEnv) plus
// the job's own variables and gpuflow's: never the worker's secrets.
//
// With Config.RunAs (GPUFLOW_LOCAL_RUN_AS; the worker must be root) the
// wrapper and the job run as that unprivileged user, in <job_id>/work/, the
// only directory it may write: it can neither read the worker's files nor
// forge the control files (pid, terminated, exit_code) that Terminate and
// the GPU allocation trust, nor signal the worker. Without it a job runs
// as the worker's user and can do what that user can. The wrapper's pid and
// start time are kept in the pid file, so a worker that restarts (a new
// Provider over the same Dir) re-attaches to running jobs and learns how
// finished ones ended, and a reused pid is never mistaken for the job. The
// wrapper runs the job only once the pid file names it (it waits on a pipe
// the worker closes after writing the file, or that closes when the worker
// dies), so a worker killed between starting a job and recording it leaves
// nothing running, and the retried Provision starts the job exactly once.
//
// Jobs with an image run through docker or podman ("docker run --rm --name
// gpuflow-<job_id> ..."). GPUs come from nvidia-smi; each job gets its own
// GPUs through CUDA_VISIBLE_DEVICES, and CPU-only jobs are bounded by a
// number of CPU slots. Allocations are derived from the job directories of
// live jobs under a lock file in Dir, so two workers on one host, or a
// restarted one, never hand out a GPU twice.
//
// Files in a job directory:
//
//	job.json      what was started: idempotency key, attempt, GPUs, image, tags
//	gpus          the GPU indices the job holds, comma-separated (empty: CPU job)
//	pid           "<pid> <start time>" of the wrapper (pid == process group id)
//	output.log    stdout and stderr of every attempt, appended
//	exit_code     the exit status, one line written by the wrapper when the job ends (empty before)
//	terminating   Terminate is stopping the job
//	terminated    the job was terminated; its GPUs are free
//	attempt-N/    the control files of an earlier attempt
//	work/         with RunAs: the job's working directory, owned by that user
package local
