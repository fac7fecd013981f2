package devtemporal

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// clusterName is the name of the single cluster the dev server runs.
const clusterName = "active"

// schemaVersionLine is what the sidecar file of a DB created by this build
// holds: the Temporal SQLite schema versions it was set up with.
var schemaVersionLine = "temporal-sqlite-schema " + sqliteschema.Version +
	" visibility " + sqliteschema.VisibilityVersion

// schemaVersionFile is the sidecar of dbFile that records its schema version.
// Temporal's SQLite plugin neither records nor checks one itself.
func schemaVersionFile(dbFile string) string { return dbFile + ".schema-version" }

// prepareDB returns the SQLite config for dbFile ("" = in memory). A new file
// gets the schema and its sidecar; an existing one must have a sidecar with
// this build's schema version, since nothing migrates it.
func prepareDB(dbFile string) (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if dbFile == "" {
		// A private name: several in-memory servers may share a process (tests).
		conf.DatabaseName = "gpuflow-dev-" + randomHex(8)
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		return conf, nil
	}

	conf.DatabaseName = dbFile
	conf.ConnectAttributes = map[string]string{
		"mode": "rwc",
		// Pragmas (the plugin passes unknown attributes as pragmas). WAL with
		// synchronous=normal roughly doubles throughput on a file and stays
		// consistent after a crash (the last commits may be lost on power loss).
		"journal_mode": "wal",
		"synchronous":  "normal",
	}

	_, err := os.Stat(dbFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := setupSchema(conf, dbFile); err != nil {
			return nil, err
		}
		return conf, nil
	case err != nil:
		return nil, fmt.Errorf("temporal db %s: %w", dbFile, err)
	}

	sidecar := schemaVersionFile(dbFile)
	b, err := os.ReadFile(sidecar)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("temporal db %s has no %s, so its schema version is unknown and it cannot be used safely; "+
			"move %s (and any -wal/-shm files next to it) away to start with a fresh database", dbFile, sidecar, dbFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sidecar, err)
	}
	if got := strings.TrimSpace(string(b)); got != schemaVersionLine {
		return nil, fmt.Errorf("temporal db %s was created with %q but this build needs %q and does not migrate dev databases; "+
			"move %s (and any -wal/-shm files next to it) away to start with a fresh database", dbFile, got, schemaVersionLine, dbFile)
	}
	return conf, nil
}

// setupSchema creates dbFile with Temporal's schema and writes its sidecar. On
// failure it removes what it created so the next start tries again.
func setupSchema(conf *config.SQL, dbFile string) (err error) {
	defer func() {
		if err != nil {
			for _, f := range []string{dbFile, dbFile + "-wal", dbFile + "-shm", schemaVersionFile(dbFile)} {
				_ = os.Remove(f)
			}
		}
	}()
	if err := sqliteschema.SetupSchema(conf); err != nil {
		return fmt.Errorf("set up temporal schema in %s: %w", dbFile, err)
	}
	if err := writeFileAtomic(schemaVersionFile(dbFile), []byte(schemaVersionLine+"\n")); err != nil {
		return fmt.Errorf("record temporal schema version: %w", err)
	}
	return nil
}

// createNamespace registers namespace with the Keyword search attributes
// attrs unless it exists (then it is left alone: missing attributes are added
// through the running server, see ensureSearchAttributes).
func createNamespace(conf *config.SQL, namespace string, attrs []string) error {
	types := make(map[string]enumspb.IndexedValueType, len(attrs))
	for _, name := range attrs {
		types[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, namespace, false, types)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	return nil
}

// ensureDir creates the directory that will hold file.
func ensureDir(file string) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", file, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
