package devtemporal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gpuflow/gpuflow/internal/pgtest"
	pgschema "go.temporal.io/server/schema/postgresql/v12"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testPostgres names two fresh databases on the test server (created by
// Start, dropped when the test ends).
func testPostgres(t *testing.T) *Postgres {
	t.Helper()
	base := pgtest.URL(t)
	pg, err := PostgresFromURL(base)
	if err != nil {
		t.Fatal(err)
	}
	pg.Database = fmt.Sprintf("temporal_test_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop temporal databases: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, db := range []string{pg.Database, pg.Database + "_visibility"} {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", db, err)
			}
		}
	})
	return pg
}

func TestPostgresSurvivesRestart(t *testing.T) {
	pg := testPostgres(t)
	ctx := t.Context()
	start := func(p *Postgres) (*Server, error) {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return Start(sctx, Options{Postgres: p, SearchAttributes: testSearchAttributes, Logger: testLogger(t)})
	}
	s, err := start(pg)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	c := dial(t, s)
	w := worker.New(c, testTaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(upsertStatusWorkflow, workflow.RegisterOptions{Name: "upsertStatus"})
	w.RegisterWorkflowWithOptions(waitForSignalWorkflow, workflow.RegisterOptions{Name: "waitForSignal"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}

	// Visibility lives in the second database: a finished workflow is
	// found there by its custom search attribute.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "pg-upsert", TaskQueue: testTaskQueue}, "upsertStatus", "on-postgres")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "on-postgres" {
		t.Fatalf("upsertStatus = %q, %v", got, err)
	}
	poll(t, "visibility query on GpuflowStatus", func() error {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "GpuflowStatus = 'on-postgres'"})
		if err != nil {
			return err
		}
		if len(resp.GetExecutions()) != 1 {
			return fmt.Errorf("%d executions", len(resp.GetExecutions()))
		}
		return nil
	})

	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "pg-1", TaskQueue: testTaskQueue}, "waitForSignal"); err != nil {
		t.Fatal(err)
	}
	var historyLen int64
	poll(t, "workflow blocked on signal", func() error {
		d, err := c.DescribeWorkflowExecution(ctx, "pg-1", "")
		if err != nil {
			return err
		}
		if d.GetPendingWorkflowTask() != nil || d.GetWorkflowExecutionInfo().GetHistoryLength() < 4 {
			return errors.New("first workflow task not completed yet")
		}
		historyLen = d.GetWorkflowExecutionInfo().GetHistoryLength()
		return nil
	})
	w.Stop()
	c.Close()
	s.Stop()

	// Another shard count is refused: the database keeps the one it has.
	other := *pg
	other.HistoryShards = 2
	if _, err := start(&other); err == nil || !strings.Contains(err.Error(), "created with 4 history shards") {
		t.Fatalf("start with 2 shards: %v, want a refusal naming 4", err)
	}

	s, err = start(pg)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	t.Cleanup(s.Stop)
	c = dial(t, s)
	d, err := c.DescribeWorkflowExecution(ctx, "pg-1", "")
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("status after restart = %v, want RUNNING", st)
	}
	if n := d.GetWorkflowExecutionInfo().GetHistoryLength(); n != historyLen {
		t.Fatalf("history length after restart = %d, want %d", n, historyLen)
	}
	startWorker(t, c)
	if err := c.SignalWorkflow(ctx, "pg-1", "", "finish", "done"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if err := c.GetWorkflow(ctx, "pg-1", "").Get(ctx, &got); err != nil || got != "done" {
		t.Fatalf("result = %q, %v; want done", got, err)
	}

	// Both schemas are recorded at this build's versions.
	for db, want := range map[string]string{pg.Database: pgschema.Version, pg.Database + "_visibility": pgschema.VisibilityVersion} {
		conn, err := pgx.Connect(ctx, pg.url(db))
		if err != nil {
			t.Fatal(err)
		}
		var v string
		err = conn.QueryRow(ctx, "SELECT curr_version FROM schema_version WHERE db_name = $1", db).Scan(&v)
		_ = conn.Close(ctx)
		if err != nil || v != want {
			t.Errorf("schema version of %s = %q, %v; want %s", db, v, err, want)
		}
	}
}

func TestPostgresFromURL(t *testing.T) {
	pg, err := PostgresFromURL("postgres://u:p%40ss@127.0.0.1:5433/tdb?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.normalize(); err != nil {
		t.Fatal(err)
	}
	want := Postgres{Host: "127.0.0.1", Port: 5433, User: "u", Password: "p@ss", Database: "tdb",
		VisibilityDatabase: "tdb_visibility", HistoryShards: DefaultHistoryShards, MaxConns: 10}
	if *pg != want {
		t.Fatalf("got %+v, want %+v", *pg, want)
	}
	if _, err := PostgresFromURL("mysql://x/y"); err == nil {
		t.Fatal("a mysql URL was accepted")
	}
	if _, err := Start(t.Context(), Options{Postgres: pg, DBFile: "x.db"}); err == nil {
		t.Fatal("DBFile with Postgres was accepted")
	}
}
