// Package schema is the SQL source of truth: the numbered migrations that
// build gpuflow's PostgreSQL schema, embedded so that the binary can apply
// them (see postgres.Migrate).
//
// Migrations are pairs named NNNN_name.up.sql and NNNN_name.down.sql, with a
// zero-padded version. A migration is never edited once released; changes
// come as a new pair. Constraints and indexes are named, and the DDL says
// why where it is not obvious.
package schema

import "embed"

// Migrations holds migrations/*.sql.
//
//go:embed migrations/*.sql
var Migrations embed.FS
