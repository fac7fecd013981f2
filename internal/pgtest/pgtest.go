// Package pgtest gives tests a PostgreSQL database: the server named by
// DATABASE_URL when set, otherwise one throwaway cluster (package
// pgcluster) per test binary, and a fresh database per test on it.
//
// A package whose tests use it runs them through Main:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable of an existing server to use. Its
// role must be allowed to create databases.
const EnvURL = "DATABASE_URL"

var (
	inMain   bool // set by Main before any test runs
	once     sync.Once
	cluster  *pgcluster.Cluster
	startErr error
)

// Main runs the tests, then stops the cluster they started, if any, and
// exits with their status.
func Main(m *testing.M) {
	inMain = true
	code := m.Run()
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := cluster.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop cluster:", err)
		}
		cancel()
	}
	os.Exit(code)
}

// URL returns the URL of the test server's main database: DATABASE_URL when
// set, otherwise the throwaway cluster's, started on first use. It skips the
// test when neither is available (PostgreSQL is not installed) and fails it
// when the cluster does not start or Main is not in use.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if !inMain {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain, so that the cluster is stopped after the tests")
	}
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cluster, startErr = pgcluster.Start(ctx, pgcluster.Options{Ephemeral: true})
	})
	if errors.Is(startErr, pgcluster.ErrServerNotFound) {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: %v (CI must install PostgreSQL: make test runs scripts/ensure-postgres.sh)", startErr)
		}
		t.Skipf("pgtest: %v", startErr)
	}
	if startErr != nil {
		t.Fatalf("pgtest: start cluster: %v", startErr)
	}
	return cluster.URL()
}

// NewDB creates an empty database with a unique name for this test and
// returns its URL; the database is dropped (its sessions ended) when the
// test and its cleanups registered earlier are done.
func NewDB(t testing.TB) string {
	t.Helper()
	base := URL(t)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %s must be a postgres:// URL", EnvURL)
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := admin(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin(ctx, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on the server's main database.
func admin(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// dbName derives a unique database name from a test name.
func dbName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 32 {
			break
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	return "test_" + b.String() + "_" + hex.EncodeToString(suffix[:])
}
