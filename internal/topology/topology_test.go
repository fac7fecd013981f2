package topology

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// startTopology starts a topology in a temporary directory, stopped when
// the test ends. It skips when PostgreSQL is not installed (outside CI).
func startTopology(t *testing.T) *Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // a cold build of the binary takes minutes
	defer cancel()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	topo, err := Start(ctx, Options{Dir: t.TempDir(), Logger: logger})
	if errors.Is(err, pgcluster.ErrServerNotFound) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("start topology: %v", err)
	}
	t.Cleanup(func() {
		topo.Stop()
		// A cluster that had to live outside the test's directory (root
		// runs it as postgres, who cannot enter a private temp dir).
		if d := topo.Postgres.DataDir(); strings.Contains(d, "gpuflow-pg-") {
			_ = os.RemoveAll(d)
		}
	})
	return topo
}

// TestTopologyJobsSurviveKills: on the whole topology, a cloud job and a
// local job submitted through one API succeed (seen through the other);
// after a kill -9 of worker-1 (the local host) and of the Temporal server,
// and their restarts, new jobs of both kinds succeed.
func TestTopologyJobsSurviveKills(t *testing.T) {
	topo := startTopology(t)
	for _, p := range topo.Processes() {
		if p.PID() == 0 {
			t.Fatalf("%s not running after Start", p.Name)
		}
		if _, err := os.Stat(p.LogPath()); err != nil {
			t.Fatalf("%s log: %v", p.Name, err)
		}
	}
	api1 := newClient(t, topo.APIURLs()[0])
	api2 := api1.on(topo.APIURLs()[1]) // the same user on the other API

	cloudJob := map[string]any{"command": []string{"python", "train.py"}, "gpu_type": "T4", "gpu_count": 1,
		"provider": "tencent", "env": map[string]string{emulate.EnvRunSeconds: "1"}}
	localJob := map[string]any{"command": []string{"sh", "-c", "echo hello from the topology"}, "gpu_count": 0, "provider": "local"}

	cloud := api1.submit(cloudJob)
	local := api1.submit(localJob)
	api2.waitStatus(cloud, "succeeded", 90*time.Second)
	api2.waitStatus(local, "succeeded", 90*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	worker, temporal := topo.Workers[0], topo.Temporal
	oldWorker, oldTemporal := worker.PID(), temporal.PID()
	worker.Kill()
	temporal.Kill()
	if worker.Running() || temporal.Running() || worker.PID() != 0 {
		t.Fatal("killed processes still running")
	}
	if st := temporal.ExitState(); st == nil || st.Success() {
		t.Fatalf("temporal exit state %v, want killed", st)
	}
	if err := temporal.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := worker.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if worker.PID() == oldWorker || temporal.PID() == oldTemporal {
		t.Fatalf("pids after restart %d %d, before %d %d", worker.PID(), temporal.PID(), oldWorker, oldTemporal)
	}

	// The jobs from before are still known; new ones run.
	api1.waitStatus(cloud, "succeeded", 30*time.Second)
	cloud2 := api2.submit(cloudJob)
	local2 := api2.submit(localJob)
	api1.waitStatus(cloud2, "succeeded", 90*time.Second)
	j := api1.waitStatus(local2, "succeeded", 90*time.Second)
	if j["provider"] != "local" {
		t.Fatalf("local job ran on %v", j["provider"])
	}
	if logs := api1.logs(local2); !strings.Contains(logs, "hello from the topology") {
		t.Fatalf("local job logs %q", logs)
	}
	for _, p := range []*Process{worker, temporal} {
		b, err := os.ReadFile(p.LogPath())
		if err != nil || strings.Count(string(b), "=== start ") != 2 {
			t.Fatalf("%s log: %d starts, %v", p.Name, strings.Count(string(b), "=== start "), err)
		}
	}

	// The rest of what the chaos suite does, once each: PostgreSQL crashed
	// and restarted (both databases), the emulators and an API killed and
	// restarted, Temporal cut off and restored. New jobs still run.
	if err := topo.Postgres.Crash(ctx); err != nil {
		t.Fatal(err)
	}
	if err := topo.Postgres.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := topo.Emulators.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := topo.APIs[0].Restart(ctx); err != nil {
		t.Fatal(err)
	}
	topo.CutTemporal()
	time.Sleep(3 * time.Second)
	topo.RestoreTemporal()
	if topo.TemporalProxy.Refused() == 0 {
		t.Error("nothing tried Temporal while it was cut")
	}
	began := time.Now()
	cloud3 := api1.submit(cloudJob)
	local3 := api1.submit(localJob)
	api2.waitStatus(cloud3, "succeeded", 90*time.Second)
	t.Logf("cloud job after the outages: succeeded in %s", time.Since(began).Round(time.Millisecond))
	api2.waitStatus(local3, "succeeded", 90*time.Second)
	t.Logf("local job after the outages: succeeded in %s", time.Since(began).Round(time.Millisecond))

	// SIGTERM stops each process cleanly (exit 0), in the order Stop uses.
	for _, p := range []*Process{topo.APIs[0], topo.APIs[1], topo.Workers[0], topo.Workers[1], topo.Emulators, topo.Temporal} {
		p.Stop(30 * time.Second)
		if st := p.ExitState(); st == nil || !st.Success() {
			t.Errorf("%s after SIGTERM: %v", p.Name, st)
		}
	}
}

// apiClient is a small client of one API, logged in as its own user.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func newClient(t *testing.T, base string) apiClient {
	t.Helper()
	c := apiClient{t: t, base: base}
	email := fmt.Sprintf("topology-%d@example.com", time.Now().UnixNano())
	if code, out := c.do(http.MethodPost, "/auth/register", map[string]any{"email": email, "password": "topology-password"}); code != http.StatusCreated {
		t.Fatalf("register: %d %v", code, out)
	}
	code, out := c.do(http.MethodPost, "/auth/jwt/login", map[string]any{"username": email, "password": "topology-password"})
	if code != http.StatusOK {
		t.Fatalf("login: %d %v", code, out)
	}
	c.token, _ = out["access_token"].(string)
	return c
}

// on is the same user on another API.
func (c apiClient) on(base string) apiClient { c.base = base; return c }

func (c apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (c apiClient) submit(spec map[string]any) string {
	c.t.Helper()
	code, out := c.do(http.MethodPost, "/api/gpu/jobs/submit", spec)
	if code != http.StatusAccepted {
		c.t.Fatalf("submit: %d %v", code, out)
	}
	return out["task_id"].(string)
}

func (c apiClient) logs(id string) string {
	c.t.Helper()
	code, out := c.do(http.MethodGet, "/api/gpu/tasks/"+id+"/logs", nil)
	if code != http.StatusOK {
		c.t.Fatalf("logs %s: %d %v", id, code, out)
	}
	s, _ := out["logs"].(string)
	return s
}

// waitStatus polls the job until it has status (failing on another end).
func (c apiClient) waitStatus(id, status string, within time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var j map[string]any
	for time.Now().Before(deadline) {
		code, out := c.do(http.MethodGet, "/api/gpu/tasks/"+id, nil)
		if code == http.StatusOK {
			j = out
			switch s, _ := j["status"].(string); s {
			case status:
				return j
			case "succeeded", "failed", "cancelled":
				c.t.Fatalf("job %s ended %s, want %s: %v", id, s, status, j)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("job %s not %s within %s: %v", id, status, within, j)
	return nil
}

// A binary without the emulators command is refused before anything
// starts, with what is missing.
func TestMissingEmulatorsCommand(t *testing.T) {
	sh := filepath.Join(t.TempDir(), "gpuflow-dev")
	if err := os.WriteFile(sh, []byte("#!/bin/sh\necho 'unknown command \"emulators\"' >&2\nexit 2\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Options{Dir: t.TempDir(), Binary: sh})
	if err == nil || !strings.Contains(err.Error(), "has no `emulators` command") || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("Start: %v", err)
	}
}
