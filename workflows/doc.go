// Package workflows holds gpuflow's Temporal workflows: deterministic code
// that decides, while package activities does the I/O. The names in
// names.go are the wire contract shared with the API, the worker and any
// other service that signals or queries a job.
package workflows
