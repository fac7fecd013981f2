package chaos

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/gpuflow/gpuflow/internal/topology"
)

// TestUpgradeDrill: jobs started by the previous commit's APIs and workers
// finish on this commit's. The topology starts with migrate, the APIs and
// the workers built from GPUFLOW_UPGRADE_FROM (default HEAD~1); jobs of
// every kind are submitted and run; then this commit's migrate runs and
// each API and worker is killed (SIGKILL) and started from the new build,
// one at a time, while the jobs run. Every job must end as its machine
// earned, a job cancelled after the upgrade must end cancelled, and no
// machine may be left. It runs in make chaos (not in make test: two
// builds and a topology take minutes), and skips when the checkout has no
// such commit (a shallow clone) or that commit predates the topology.
func TestUpgradeDrill(t *testing.T) {
	if os.Getenv("GPUFLOW_CHAOS") != "full" && os.Getenv("GPUFLOW_UPGRADE_FROM") == "" {
		t.Skip("the upgrade drill runs in make chaos (GPUFLOW_CHAOS=full) or with GPUFLOW_UPGRADE_FROM=<commit>")
	}
	ctx := t.Context()
	repo, err := repoRoot()
	if err != nil {
		t.Skip(err)
	}
	from := cmp.Or(os.Getenv("GPUFLOW_UPGRADE_FROM"), "HEAD~1")
	rev, err := git(repo, "rev-parse", "--verify", "--quiet", from+"^{commit}")
	if err != nil {
		t.Skipf("no commit %s to upgrade from in %s (a shallow clone?): %v", from, repo, err)
	}
	rev = strings.TrimSpace(rev)
	if _, err := git(repo, "cat-file", "-e", rev+":internal/topology/topology.go"); err != nil {
		t.Skipf("%s predates the topology: nothing to drill", rev[:12])
	}
	dir := t.TempDir()
	old := filepath.Join(dir, "gpuflow-old")
	if err := buildAt(ctx, repo, rev, filepath.Join(dir, "src"), old); err != nil {
		t.Fatalf("build %s: %v", rev[:12], err)
	}
	newBin, err := topology.Build(ctx, repo, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	tp, err := topology.Start(ctx, topology.Options{Dir: filepath.Join(dir, "topo"), Binary: newBin, ServiceBinary: old, Logger: logger,
		Env: []string{"GPUFLOW_RECONCILE_INTERVAL=" + reconcileInterval.String(), "GPUFLOW_RECONCILE_GRACE=30s", "GPUFLOW_LOCAL_CPU_SLOTS=8"}})
	if errors.Is(err, pgcluster.ErrServerNotFound) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("start topology on %s: %v", rev[:12], err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("UPGRADE the processes' logs: %s", tp.LogDir())
		}
		tp.Stop()
		if d := tp.Postgres.DataDir(); strings.Contains(d, "gpuflow-pg-") {
			_ = os.RemoveAll(d)
		}
	})
	cl := &topo{Topology: tp, t: t}
	c := newClient(tp.APIURLs(), "upgrade@example.com", 7)
	if err := c.register(ctx); err != nil {
		t.Fatal(err)
	}

	// Jobs of every kind that run across the upgrade, and one to cancel
	// after it.
	type job struct {
		id, kind, want string
	}
	var jobs []job
	submit := func(kind string, run, code int, want string) {
		a, _, err := c.do(ctx, http.MethodPost, "/api/gpu/jobs/submit", jobSpec(kind, run, code), nil)
		if err != nil || a.code != http.StatusAccepted {
			t.Fatalf("submit %s on %s: %v %d %s", kind, rev[:12], err, a.code, a.raw)
		}
		jobs = append(jobs, job{a.body["task_id"].(string), kind, want})
	}
	for _, kind := range []string{"local", "runpod", "tencent", "alibaba"} {
		submit(kind, 40, 0, "succeeded")
		submit(kind, 45, 3, "failed")
	}
	submit("tencent", 3600, 0, "cancelled")
	for _, j := range jobs {
		waitJob(t, c, j.id, "running", 3*time.Minute)
	}
	t.Logf("UPGRADE %d jobs running on %s's APIs and workers", len(jobs), rev[:12])

	// The rolling upgrade: schema first, then each process in turn.
	start := time.Now()
	tp.SetServiceBinary(newBin)
	if err := tp.Migrate(ctx); err != nil {
		t.Fatalf("migrate to this commit: %v", err)
	}
	for _, p := range []*topology.Process{tp.Workers[1], tp.APIs[1], tp.Workers[0], tp.APIs[0]} {
		p.Kill()
		if err := p.Start(ctx); err != nil {
			t.Fatalf("start %s on this commit: %v", p.Name, err)
		}
	}
	t.Logf("UPGRADE migrate and every API and worker on this commit after %v", time.Since(start).Round(100*time.Millisecond))
	last := jobs[len(jobs)-1]
	if a, _, err := c.do(ctx, http.MethodPost, "/api/gpu/tasks/"+last.id+"/cancel", map[string]any{"reason": "upgrade drill"}, nil); err != nil || a.code != http.StatusAccepted {
		t.Fatalf("cancel after the upgrade: %v %d %s", err, a.code, a.raw)
	}
	wrong := 0
	for _, j := range jobs {
		got := waitEnded(t, c, j.id, 5*time.Minute)
		if got != j.want {
			wrong++
			t.Errorf("UPGRADE job %s (%s) started on %s ended %s on this commit, want %s", j.id, j.kind, rev[:12], got, j.want)
		}
	}
	time.Sleep(cl.ReconcileSweep())
	twice, alive := cl.Machines(t)
	for _, s := range append(twice, alive...) {
		t.Errorf("UPGRADE machine: %s", s)
	}
	t.Logf("UPGRADE result: from %s, %d jobs started before the upgrade, %d ended wrong, %d machines created twice, %d left",
		rev[:12], len(jobs), wrong, len(twice), len(alive))
}

func waitJob(t *testing.T, c *client, id, status string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		j, ok, err := c.job(t.Context(), id)
		if err == nil && ok && j["status"] == status {
			return
		}
		if err == nil && ok && isTerminal(j["status"]) {
			t.Fatalf("job %s ended %v (error %v) before it was %s", id, j["status"], j["error"], status)
		}
	}
	t.Fatalf("job %s not %s within %v", id, status, within)
}

func waitEnded(t *testing.T, c *client, id string, within time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(time.Second) {
		j, ok, err := c.job(t.Context(), id)
		if err == nil && ok && isTerminal(j["status"]) {
			return j["status"].(string)
		}
	}
	return "not ended"
}

// buildAt builds the dev binary of commit rev, exported into src.
func buildAt(ctx context.Context, repo, rev, src, out string) error {
	if err := os.MkdirAll(src, 0o750); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", rev) // #nosec G204 -- a commit id from git rev-parse
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var errs bytes.Buffer
	archive.Stderr, untar.Stderr = &errs, &errs
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		return fmt.Errorf("git archive: %v %s", err, errs.String())
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("tar: %v %s", err, errs.String())
	}
	build := exec.CommandContext(ctx, "go", "build", "-tags", "dev", "-o", out, "./cmd/gpuflow")
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

func repoRoot() (string, error) {
	out, err := git(".", "rev-parse", "--show-toplevel")
	if err != nil {
		return "", fmt.Errorf("not in a git checkout: %v", err)
	}
	return strings.TrimSpace(out), nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...) // #nosec G204 -- fixed git commands
	b, err := cmd.Output()
	return string(b), err
}
