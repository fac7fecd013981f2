package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/emuproc"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// The scale benchmark measures each process apart (GPUFLOW_SCALE_PROCESSES,
// default "split"): the Temporal server (the dev stack's, on its SQLite
// file) and the cloud emulators (with every emulated machine and its
// agent: the clouds' side, not gpuflow's) run as processes of their own,
// children of this test binary, and this process is gpuflow: the API, the
// worker, the relay, the watchers, the dispatcher. With "one" everything
// but PostgreSQL runs in this process, as `make run` does.

// benchProc is one process the benchmark measures.
type benchProc struct {
	name string // what it hosts
	pid  int
}

// sideProcs are the benchmark's child processes in the split mode.
type sideProcs struct {
	temporal, emulators *benchChild
	emulatorURLs        map[string]string
}

// benchChild is a child process and the address of its net/http/pprof
// endpoints.
type benchChild struct {
	role  string
	cmd   *exec.Cmd
	pprof string
}

// startSideProcs starts the emulators and the Temporal server as
// processes of their own for a stack configured by cfg (its Temporal
// address and data directory), and points cfg's clouds at the emulators.
// They are stopped when the test ends (after the stack, registered
// before it).
func startSideProcs(t *testing.T, cfg *app.Config) *sideProcs {
	t.Helper()
	sp := &sideProcs{emulatorURLs: map[string]string{}}
	var addrs []string
	for _, name := range app.Clouds {
		addr := freeAddr(t)
		addrs = append(addrs, name+"="+addr)
		sp.emulatorURLs[name] = "http://" + addr
	}
	dir := t.TempDir()
	sp.emulators = startBenchChild(t, "emulators", append(env(*cfg), childEmulatorsEnv+"="+strings.Join(addrs, ",")), dir)
	sp.temporal = startBenchChild(t, "temporal", env(*cfg), dir)
	cfg.Clouds.Emulators = sp.emulatorURLs
	return sp
}

// startBenchChild runs this test binary as role with environ, its output
// in dir/<role>.log, and waits until it serves (it creates its ready file)
// for at most two minutes. When the test ends it gets SIGTERM, then
// SIGKILL after 20 s.
func startBenchChild(t *testing.T, role string, environ []string, dir string) *benchChild {
	t.Helper()
	logPath := filepath.Join(dir, role+".log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, role+".ready")
	cmd := childCmd(t, role, append(environ, childReadyEnv+"="+ready))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if addr, err := os.ReadFile(ready); err == nil && len(addr) > 0 {
			t.Logf("BENCH scale: %s runs as process %d (log %s)", role, cmd.Process.Pid, logPath)
			return &benchChild{role: role, cmd: cmd, pprof: string(addr)}
		}
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s child exited before it served: %v\n%s", role, err, b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s child not serving after 2 min", role)
		}
	}
}

// benchProcs are the processes to measure: this one alone, or gpuflow,
// the Temporal server and the emulators.
func (sp *sideProcs) benchProcs() []benchProc {
	if sp == nil {
		return []benchProc{{"all but PostgreSQL (API, worker, Temporal server, emulators)", os.Getpid()}}
	}
	return []benchProc{
		{"gpuflow (API, worker)", os.Getpid()},
		{"Temporal server", sp.temporal.cmd.Process.Pid},
		{"emulators (the clouds and their machines)", sp.emulators.cmd.Process.Pid},
	}
}

// temporalPID is the process that writes Temporal's SQLite file.
func (sp *sideProcs) temporalPID() int {
	if sp == nil {
		return os.Getpid()
	}
	return sp.temporal.cmd.Process.Pid
}

// profileCPU profiles each child's CPU for d into dir/<role>.<name>
// (nothing when dir is "" or there are no children); the returned func
// waits for the profiles.
func (sp *sideProcs) profileCPU(t *testing.T, dir, name string, d time.Duration) func() {
	if sp == nil || dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, c := range []*benchChild{sp.temporal, sp.emulators} {
		wg.Go(func() {
			u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.pprof, int(d.Seconds()))
			resp, err := http.Get(u) // #nosec G107 -- the child's loopback address
			if err != nil {
				t.Logf("%s profile: %v", c.role, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, c.role+"."+name))
			if err != nil {
				t.Logf("%s profile: %v", c.role, err)
				return
			}
			defer f.Close()
			if _, err := io.Copy(f, resp.Body); err != nil {
				t.Logf("%s profile: %v", c.role, err)
			}
		})
	}
	return wg.Wait
}

// benchClouds reads the emulators: in this process (devstack's) or, in
// the split mode, over their admin endpoints.
type benchClouds struct {
	inProcess map[string]*emuproc.Running
	urls      map[string]string
}

func newBenchClouds(s *devstack.Stack, sp *sideProcs) benchClouds {
	if sp == nil {
		return benchClouds{inProcess: s.Emulators}
	}
	return benchClouds{urls: sp.emulatorURLs}
}

// calls are the cloud API requests each emulator has answered, by
// operation.
func (c benchClouds) calls(t *testing.T) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for name, e := range c.inProcess {
		out[name] = e.Calls()
	}
	for name, u := range c.urls {
		var calls map[string]int64
		if err := getJSON(u+emuproc.CallsPath, &calls); err != nil {
			t.Logf("%s calls: %v", name, err)
		}
		out[name] = calls
	}
	return out
}

// live is how many machines each emulator holds (-1: not known).
func (c benchClouds) live(t *testing.T) map[string]int {
	out := map[string]int{}
	for name, e := range c.inProcess {
		out[name] = len(e.Live())
	}
	for name, u := range c.urls {
		var rep emulate.LiveReport
		if err := getJSON(u+"/_emulator/live", &rep); err != nil {
			t.Logf("%s live: %v", name, err)
			out[name] = -1
			continue
		}
		out[name] = len(rep.Instances)
	}
	return out
}

func getJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return errors.Join(fmt.Errorf("GET %s", url), err)
	}
	return nil
}
