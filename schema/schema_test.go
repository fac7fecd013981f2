package schema

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/gpuflow/gpuflow"
)

func TestMigrationsArePaired(t *testing.T) {
	names, err := fs.Glob(Migrations, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no migrations embedded (err %v)", err)
	}
	re := regexp.MustCompile(`^migrations/(\d{4}_[a-z0-9_]+)\.(up|down)\.sql$`)
	ups, downs := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		m := re.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("%s: not named NNNN_name.(up|down).sql", n)
			continue
		}
		if m[2] == "up" {
			ups[m[1]] = true
		} else {
			downs[m[1]] = true
		}
	}
	for n := range ups {
		if !downs[n] {
			t.Errorf("%s has no .down.sql", n)
		}
	}
	for n := range downs {
		if !ups[n] {
			t.Errorf("%s has no .up.sql", n)
		}
	}
}

// The CHECK on jobs.status must list exactly the domain's statuses.
func TestStatusCheckMatchesDomain(t *testing.T) {
	b, err := fs.ReadFile(Migrations, "migrations/0001_jobs.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	sql := string(b)
	i := strings.Index(sql, "CONSTRAINT jobs_status_check")
	if i < 0 {
		t.Fatal("no jobs_status_check constraint")
	}
	check := sql[i : i+strings.Index(sql[i:], "))")]
	got := regexp.MustCompile(`'([a-z]+)'`).FindAllStringSubmatch(check, -1)
	if len(got) != len(gpuflow.AllStatuses) {
		t.Errorf("check lists %d statuses, domain has %d", len(got), len(gpuflow.AllStatuses))
	}
	for _, s := range gpuflow.AllStatuses {
		if !strings.Contains(check, "'"+string(s)+"'") {
			t.Errorf("check lacks status %q", s)
		}
	}
}
