// Package chaos is the chaos suite of issue 10: the production topology
// (internal/topology: Temporal on PostgreSQL, two APIs, two workers, the
// cloud emulators in a process of their own) runs a mix of jobs on the
// local provider and every emulated cloud while the suite kills its
// processes with SIGKILL at random points, restarts PostgreSQL and cuts
// Temporal and PostgreSQL off; then it checks that nothing was lost,
// duplicated or leaked.
//
// The short run is part of `make test`; `make chaos` runs the full one
// (GPUFLOW_CHAOS=full: 500 jobs, 50 kills, 10 outages: 2 PostgreSQL
// restarts, 4 Temporal cuts of 60 s, 4 PostgreSQL cuts of 120 s).
// Every size is an environment knob (see options); the seed is printed and
// GPUFLOW_CHAOS_SEED replays a schedule.
package chaos
