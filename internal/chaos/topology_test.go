package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/pgcluster"
	"github.com/gpuflow/gpuflow/internal/topology"
)

// reconcileInterval is the topology's GPUFLOW_RECONCILE_INTERVAL, short so
// that one sweep comes round soon after the last job ends.
const reconcileInterval = 10 * time.Second

// topo is the production topology as the suite's cluster.
type topo struct {
	*topology.Topology
	t *testing.T
}

func startCluster(t *testing.T) cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // a cold build of the binary takes minutes
	defer cancel()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	tp, err := topology.Start(ctx, topology.Options{Dir: t.TempDir(), Logger: logger, Env: []string{
		"GPUFLOW_RECONCILE_INTERVAL=" + reconcileInterval.String(),
		"GPUFLOW_RECONCILE_GRACE=30s",
		"GPUFLOW_REGISTRATION=open",
		"GPUFLOW_LOCAL_USERS=*",
		"GPUFLOW_LOCAL_CPU_SLOTS=8",
	}})
	if errors.Is(err, pgcluster.ErrServerNotFound) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("start topology: %v", err)
	}
	c := &topo{Topology: tp, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("CHAOS the processes' logs: %s", c.KeepLogs(t))
		}
		tp.Stop()
		if d := tp.Postgres.DataDir(); strings.Contains(d, "gpuflow-pg-") {
			_ = os.RemoveAll(d)
		}
	})
	return c
}

// KeepLogs copies D/logs to the system's temporary directory (the test's
// own is removed when it ends).
func (c *topo) KeepLogs(t *testing.T) string {
	dst, err := os.MkdirTemp("", "gpuflow-chaos-logs-")
	if err != nil {
		return c.LogDir() + " (not kept: " + err.Error() + ")"
	}
	if err := os.CopyFS(dst, os.DirFS(c.LogDir())); err != nil {
		return c.LogDir() + " (not kept: " + err.Error() + ")"
	}
	return dst
}

func (c *topo) APIs() []string { return c.APIURLs() }

func (c *topo) Components() []string {
	return []string{topology.NameWorker1, topology.NameAPI1, topology.NameTemporal, topology.NameWorker2,
		topology.NameEmulators, topology.NameAPI2}
}

func (c *topo) proc(name string) (*topology.Process, error) {
	p := c.Process(name)
	if p == nil {
		return nil, fmt.Errorf("no component %q", name)
	}
	return p, nil
}

func (c *topo) Kill(name string) error {
	p, err := c.proc(name)
	if err != nil {
		return err
	}
	p.Kill()
	return nil
}

func (c *topo) Restart(name string) error {
	p, err := c.proc(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return p.Start(ctx)
}

func (c *topo) RestartPostgres(ctx context.Context) error {
	if err := c.Postgres.Crash(ctx); err != nil {
		return err
	}
	return c.Postgres.Restart(ctx)
}

func (c *topo) ReconcileSweep() time.Duration { return 3 * reconcileInterval }

// Machines: the emulators' record of creates and live machines, and the
// local host's job processes still alive.
func (c *topo) Machines(t *testing.T) (twice, alive []string) {
	for cloud, base := range c.EmulatorURLs() {
		tw, al, err := emulatorMachines(base)
		if err != nil {
			t.Errorf("machines of %s: %v", cloud, err)
			continue
		}
		for _, s := range tw {
			twice = append(twice, cloud+" "+s)
		}
		for _, s := range al {
			alive = append(alive, cloud+" "+s)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(c.Dir, "local-jobs", "*", "pid"))
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fs := strings.Fields(string(b))
		if len(fs) == 0 {
			continue
		}
		pid, err := strconv.Atoi(fs[0])
		if err != nil || pid <= 1 {
			continue
		}
		// The wrapper leads its own process group: any member alive is
		// the job still running.
		if syscall.Kill(-pid, 0) == nil {
			alive = append(alive, "local "+filepath.Base(filepath.Dir(f))+fmt.Sprintf(" (process group %d)", pid))
		}
	}
	return twice, alive
}
