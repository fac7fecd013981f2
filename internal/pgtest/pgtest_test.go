package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func currentDB(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var name string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func dbExists(t *testing.T, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestNewDBIsolatedAndDropped(t *testing.T) {
	var names []string
	t.Run("Create", func(t *testing.T) {
		a, b := NewDB(t), NewDB(t)
		na, nb := currentDB(t, a), currentDB(t, b)
		if na == nb {
			t.Fatalf("two NewDB calls gave the same database %s", na)
		}
		for _, n := range []string{na, nb} {
			if !strings.HasPrefix(n, "test_testnewdbisolatedanddropped") {
				t.Errorf("database name %q does not derive from the test name", n)
			}
		}
		names = append(names, na, nb)
	})
	for _, n := range names {
		if dbExists(t, n) {
			t.Errorf("database %s still exists after its test", n)
		}
	}
}

func TestDBName(t *testing.T) {
	n := dbName("TestSomething/With Sub-Test#01" + strings.Repeat("x", 100))
	if len(n) > 63 {
		t.Errorf("dbName gave %d bytes, more than PostgreSQL's 63", len(n))
	}
	if strings.ContainsAny(n, "/ -#") {
		t.Errorf("dbName(%q) kept unsafe characters", n)
	}
}
