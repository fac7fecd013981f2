package devtemporal

import (
	"bytes"
	"context"
	"crypto/md5" // #nosec G501 -- Temporal's schema update log records each manifest's MD5: a checksum, not security
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/server/common/config"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence"
	"go.temporal.io/server/common/persistence/serialization"
	sqlpersistence "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/resolver"
	dbschemas "go.temporal.io/server/schema"
	pgschema "go.temporal.io/server/schema/postgresql/v12"

	"github.com/gpuflow/gpuflow/internal/pgcluster"
)

// DefaultHistoryShards is the number of history shards a PostgreSQL-backed
// server uses unless Postgres.HistoryShards says otherwise. A database keeps
// the count it was created with forever: Start refuses another.
const DefaultHistoryShards = 4

// Postgres configures a server that keeps its state in PostgreSQL (Temporal's
// postgres12_pgx SQL plugin), as production does, instead of SQLite. Both
// databases are created if missing, their schema set up or upgraded to this
// build's version (Temporal's embedded schema files), and a database that a
// newer Temporal has upgraded is refused.
//
// One server at a time may use a pair of databases: nothing here stops a
// second one, which would fight the first over the history shards.
type Postgres struct {
	// Host and Port locate the server (default 127.0.0.1:5432).
	Host string
	Port int
	// User and Password authenticate; the user must own the databases, or
	// be allowed to create them when they are missing.
	User     string
	Password string
	// Database holds the executions (default "temporal").
	Database string
	// VisibilityDatabase holds visibility records (default Database +
	// "_visibility").
	VisibilityDatabase string
	// HistoryShards is the number of history shards (default
	// DefaultHistoryShards). It can never change for a database.
	HistoryShards int
	// MaxConns bounds each of the server's connection pools (there is one
	// per service and store: about eight in all; default 10).
	MaxConns int
}

// PostgresFromURL reads a Postgres from a postgres:// URL naming the
// executions database (user, password, host, port and database; the query
// is ignored). The visibility database is the same name plus "_visibility".
func PostgresFromURL(raw string) (*Postgres, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, errors.New("temporal database: want a URL such as postgres://user:password@127.0.0.1:5432/temporal")
	}
	pg := &Postgres{Host: u.Hostname(), User: u.User.Username(), Database: strings.TrimPrefix(u.Path, "/")}
	pg.Password, _ = u.User.Password()
	if p := u.Port(); p != "" {
		if pg.Port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("temporal database: bad port %q", p)
		}
	}
	return pg, nil
}

func (p *Postgres) normalize() error {
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	if p.Port == 0 {
		p.Port = 5432
	}
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("temporal database port %d: out of range", p.Port)
	}
	if p.User == "" {
		p.User = "postgres"
	}
	if p.Database == "" {
		p.Database = "temporal"
	}
	if p.VisibilityDatabase == "" {
		p.VisibilityDatabase = p.Database + "_visibility"
	}
	if p.VisibilityDatabase == p.Database {
		return errors.New("temporal database: executions and visibility need two databases")
	}
	if p.HistoryShards == 0 {
		p.HistoryShards = DefaultHistoryShards
	}
	if p.HistoryShards < 1 {
		return fmt.Errorf("temporal database: %d history shards", p.HistoryShards)
	}
	if p.MaxConns == 0 {
		p.MaxConns = 10
	}
	return nil
}

// sqlConfig is the plugin configuration of one of the two databases.
func (p *Postgres) sqlConfig(database string) *config.SQL {
	return &config.SQL{
		PluginName:      pgplugin.PluginNamePGX,
		DatabaseName:    database,
		ConnectAddr:     net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		ConnectProtocol: "tcp",
		User:            p.User,
		Password:        p.Password,
		MaxConns:        p.MaxConns,
		MaxIdleConns:    p.MaxConns,
		MaxConnLifetime: time.Hour,
	}
}

// url is the libpq URL of database, for pgx.
func (p *Postgres) url(database string) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), Path: "/" + database,
		RawQuery: "sslmode=disable"}
	if p.Password != "" {
		u.User = url.UserPassword(p.User, p.Password)
	} else {
		u.User = url.User(p.User)
	}
	return u.String()
}

// Embedded schema directories and the versions this build needs.
const (
	pgExecSchema = "postgresql/v12/temporal"
	pgVisSchema  = "postgresql/v12/visibility"
)

// preparePostgres creates both databases if missing, brings their schema
// to this build's version, checks the history shard count, and returns the
// plugin configuration of each.
func preparePostgres(ctx context.Context, p *Postgres, logger *slog.Logger) (exec, vis *config.SQL, err error) {
	for _, db := range []string{p.Database, p.VisibilityDatabase} {
		if err := createPostgresDatabase(ctx, p, db); err != nil {
			return nil, nil, err
		}
	}
	exec, vis = p.sqlConfig(p.Database), p.sqlConfig(p.VisibilityDatabase)
	if err := migratePostgres(exec, pgExecSchema, pgschema.Version, logger); err != nil {
		return nil, nil, err
	}
	if err := migratePostgres(vis, pgVisSchema, pgschema.VisibilityVersion, logger); err != nil {
		return nil, nil, err
	}
	if err := checkShardCount(ctx, exec, p.HistoryShards); err != nil {
		return nil, nil, err
	}
	return exec, vis, nil
}

// createPostgresDatabase creates database unless it exists, through the
// server's maintenance database "postgres".
func createPostgresDatabase(ctx context.Context, p *Postgres, database string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		return fmt.Errorf("temporal database: connect to %s:%d: %w", p.Host, p.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := pgcluster.CreateDatabase(ctx, conn, database); err != nil {
		return fmt.Errorf("temporal database: %w", err)
	}
	return nil
}

// manifest is a versioned schema directory's manifest.json.
type manifest struct {
	CurrVersion          string
	MinCompatibleVersion string
	Description          string
	SchemaUpdateCqlFiles []string
}

// migratePostgres brings the database of conf from its recorded schema
// version (none: a new database) to target by applying, in order, the
// embedded versioned directories of schemaDir above it, each recorded in
// schema_version and schema_update_history once applied: what Temporal's
// temporal-sql-tool does with setup-schema -v 0.0 and update-schema. A
// version applied halfway (a crash) is applied again; its statements that
// find their table or column already there are skipped, as the tool does.
func migratePostgres(conf *config.SQL, schemaDir, target string, logger *slog.Logger) error {
	db, err := sqlpersistence.NewSQLAdminDB(sqlplugin.DbKindUnknown, conf, resolver.NewNoopResolver(), tlog.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("temporal database %s: %w", conf.DatabaseName, err)
	}
	defer func() { _ = db.Close() }()
	if err := db.CreateSchemaVersionTables(); err != nil {
		return fmt.Errorf("temporal database %s: create schema version tables: %w", conf.DatabaseName, err)
	}
	current, err := db.ReadSchemaVersion(conf.DatabaseName)
	if errors.Is(err, sql.ErrNoRows) {
		current, err = "0.0", nil
	}
	if err != nil {
		return fmt.Errorf("temporal database %s: read schema version: %w", conf.DatabaseName, err)
	}
	cur, err := parseSchemaVersion(current)
	if err != nil {
		return fmt.Errorf("temporal database %s: %w", conf.DatabaseName, err)
	}
	want, err := parseSchemaVersion(target)
	if err != nil {
		return err
	}
	if slices.Compare(cur, want) > 0 {
		return fmt.Errorf("temporal database %s has schema %s, newer than this build's %s (a newer Temporal upgraded it): "+
			"run that Temporal, or start on a fresh database", conf.DatabaseName, current, target)
	}

	fsys := dbschemas.Assets()
	versioned := path.Join(schemaDir, "versioned")
	entries, err := fs.ReadDir(fsys, versioned)
	if err != nil {
		return fmt.Errorf("embedded temporal schema %s: %w", versioned, err)
	}
	type step struct {
		dir string
		ver []int
	}
	var steps []step
	for _, e := range entries {
		v, err := parseSchemaVersion(strings.TrimPrefix(e.Name(), "v"))
		if !e.IsDir() || err != nil {
			continue
		}
		if slices.Compare(v, cur) > 0 && slices.Compare(v, want) <= 0 {
			steps = append(steps, step{dir: path.Join(versioned, e.Name()), ver: v})
		}
	}
	slices.SortFunc(steps, func(a, b step) int { return slices.Compare(a.ver, b.ver) })
	for _, s := range steps {
		raw, err := fs.ReadFile(fsys, path.Join(s.dir, "manifest.json"))
		if err != nil {
			return fmt.Errorf("embedded temporal schema: %w", err)
		}
		var m manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("embedded temporal schema %s: manifest: %w", s.dir, err)
		}
		var readers []io.Reader
		for _, f := range m.SchemaUpdateCqlFiles {
			b, err := fs.ReadFile(fsys, path.Join(s.dir, f))
			if err != nil {
				return fmt.Errorf("embedded temporal schema: %w", err)
			}
			readers = append(readers, bytes.NewReader(b))
		}
		stmts, err := persistence.LoadAndSplitQueryFromReaders(readers)
		if err != nil {
			return fmt.Errorf("embedded temporal schema %s: %w", s.dir, err)
		}
		for _, stmt := range stmts {
			if err := db.Exec(stmt); err != nil {
				if msg := err.Error(); strings.Contains(msg, "already exist") || strings.Contains(msg, "not found") {
					continue // applied before a crash
				}
				return fmt.Errorf("temporal database %s: schema %s: %w", conf.DatabaseName, m.CurrVersion, err)
			}
		}
		if err := db.UpdateSchemaVersion(conf.DatabaseName, m.CurrVersion, m.MinCompatibleVersion); err != nil {
			return fmt.Errorf("temporal database %s: record schema %s: %w", conf.DatabaseName, m.CurrVersion, err)
		}
		sum := md5.Sum(raw) // #nosec G401 -- the update log's manifest checksum, as Temporal's tool writes it
		if err := db.WriteSchemaUpdateLog(current, m.CurrVersion, hex.EncodeToString(sum[:]), m.Description); err != nil {
			return fmt.Errorf("temporal database %s: log schema %s: %w", conf.DatabaseName, m.CurrVersion, err)
		}
		current = m.CurrVersion
	}
	if len(steps) > 0 {
		logger.Info("temporal schema updated", "database", conf.DatabaseName, "version", current, "steps", len(steps))
	}
	return nil
}

// parseSchemaVersion parses "1.19" (or "0.0") into its numbers.
func parseSchemaVersion(s string) ([]int, error) {
	var v []int
	for f := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad schema version %q", s)
		}
		v = append(v, n)
	}
	for len(v) < 2 {
		v = append(v, 0)
	}
	return v, nil
}

// checkShardCount refuses a database whose cluster metadata (written by
// the server at its first start) records another number of history shards:
// Temporal would silently use the recorded count, and it can never change.
func checkShardCount(ctx context.Context, conf *config.SQL, shards int) error {
	db, err := sqlpersistence.NewSQLDB(sqlplugin.DbKindMain, conf, resolver.NewNoopResolver(), tlog.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("temporal database %s: %w", conf.DatabaseName, err)
	}
	defer func() { _ = db.Close() }()
	row, err := db.GetClusterMetadata(ctx, &sqlplugin.ClusterMetadataFilter{ClusterName: clusterName})
	if errors.Is(err, sql.ErrNoRows) {
		return nil // a new database: the server records the count at start
	}
	if err != nil {
		return fmt.Errorf("temporal database %s: read cluster metadata: %w", conf.DatabaseName, err)
	}
	md, err := serialization.NewSerializer().DeserializeClusterMetadata(persistence.NewDataBlob(row.Data, row.DataEncoding))
	if err != nil {
		return fmt.Errorf("temporal database %s: decode cluster metadata: %w", conf.DatabaseName, err)
	}
	if got := int(md.GetHistoryShardCount()); got != shards {
		return fmt.Errorf("temporal database %s was created with %d history shards and cannot change to %d: "+
			"start with HistoryShards %d, or on a fresh database", conf.DatabaseName, got, shards, got)
	}
	return nil
}
