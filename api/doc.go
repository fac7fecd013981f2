// Package api is gpuflow's HTTP API: an Echo v4 server that plans jobs with
// the scheduler, starts their Temporal workflows, and answers from the job
// store. Paths and shapes follow the HTTP contract, which keeps the earlier
// system's paths and answers working for its clients.
//
// Every handler gets the caller from callerFrom and checks access to a job in
// exactly one place (auth.go); errors of every kind are turned into the one
// JSON error shape in exactly one place (error.go). The package imports the
// domain (gpuflow), the scheduler and workflows' names and input types only:
// never the activities, the store or a provider implementation.
package api
