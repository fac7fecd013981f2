// Package gpuflow is the domain of the GPU job orchestrator: jobs and their
// specs, providers and the machines they rent out, events, and the error
// codes every layer speaks. It depends on the standard library only; every
// adapter (PostgreSQL, the providers, the HTTP API) talks in these types.
package gpuflow
