package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// helperEnv makes the test binary act as a worker that provisions one job
// and then waits to be killed (see TestReattachAfterWorkerKill).
const helperEnv = "GPUFLOW_LOCAL_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

func runHelper(spec string) int {
	var h struct {
		Dir string
		Req gpuflow.ProvisionRequest
		// KillAfterStart: the worker is killed (SIGKILL, by itself)
		// between starting the job and writing its pid file.
		KillAfterStart bool
	}
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if h.KillAfterStart {
		afterStartHook = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	p, err := New(Config{Dir: h.Dir, LookPath: noRuntimes})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := p.Provision(context.Background(), h.Req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("provisioned")
	select {} // until killed
}

// noRuntimes is a LookPath that finds neither docker, podman nor nvidia-smi.
func noRuntimes(name string) (string, error) {
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.LookPath == nil {
		cfg.LookPath = noRuntimes
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func cpuJob(id string, command ...string) gpuflow.ProvisionRequest {
	return gpuflow.ProvisionRequest{
		JobID:          id,
		IdempotencyKey: id + "-1",
		Spec:           gpuflow.JobSpec{Command: command, Strategy: gpuflow.StrategyCost},
		Tags:           map[string]string{gpuflow.TagManaged: "true", gpuflow.TagJob: id},
	}
}

func gpuJob(id string, count int, command ...string) gpuflow.ProvisionRequest {
	r := cpuJob(id, command...)
	r.Spec.GPUType = "H100"
	r.Spec.GPUCount = count
	return r
}

// provision starts req and terminates it when the test ends.
func provision(t *testing.T, p *Provider, req gpuflow.ProvisionRequest) *gpuflow.Machine {
	t.Helper()
	m, err := p.Provision(context.Background(), req)
	if err != nil {
		t.Fatalf("Provision %s: %v", req.JobID, err)
	}
	t.Cleanup(func() {
		if err := p.Terminate(context.Background(), req.JobID); err != nil {
			t.Errorf("cleanup: Terminate %s: %v", req.JobID, err)
		}
	})
	return m
}

// waitState polls Describe until the machine reaches state.
func waitState(t *testing.T, p *Provider, id string, state gpuflow.MachineState) *gpuflow.Machine {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var m *gpuflow.Machine
	for time.Now().Before(deadline) {
		var err error
		m, err = p.Describe(context.Background(), id)
		if err != nil {
			t.Fatalf("Describe %s: %v", id, err)
		}
		if m.State == state {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("machine %s: state %s (reason %q), want %s", id, m.State, m.Reason, state)
	return nil
}

// waitLog polls ReadLogs until the log contains want, and returns the log.
func waitLog(t *testing.T, p *Provider, id, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		b, err := p.ReadLogs(context.Background(), id, 0, 0)
		if err != nil {
			t.Fatalf("ReadLogs %s: %v", id, err)
		}
		if log = string(b); strings.Contains(log, want) {
			return log
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log of %s = %q, want it to contain %q", id, log, want)
	return ""
}

func logOf(t *testing.T, p *Provider, id string) string {
	t.Helper()
	b, err := p.ReadLogs(context.Background(), id, 0, 0)
	if err != nil {
		t.Fatalf("ReadLogs %s: %v", id, err)
	}
	return string(b)
}

func wantKind(t *testing.T, err error, kind gpuflow.ProviderErrorKind) {
	t.Helper()
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) || pe.Kind != kind {
		t.Fatalf("error = %v, want a *ProviderError of kind %s", err, kind)
	}
}

func pidOf(t *testing.T, p *Provider, id string) pidRecord {
	t.Helper()
	rec, err := readPid(p.jobDir(id))
	if err != nil {
		t.Fatalf("read pid of %s: %v", id, err)
	}
	return rec
}

// processRuns reports whether pid exists and is not a zombie.
func processRuns(pid int) bool {
	pi, err := readProcStat(pid)
	return err == nil && !pi.dead()
}

func TestEchoExitsZero(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	m := provision(t, p, cpuJob("echo", "echo", "hello"))
	if m.ID != "echo" || m.Provider != Name || m.GPUType != gpuflow.CPUOnly {
		t.Errorf("machine = %+v", m)
	}
	m = waitState(t, p, "echo", gpuflow.MachineExited)
	if m.ExitCode == nil || *m.ExitCode != 0 {
		t.Fatalf("exit code = %v, want 0", m.ExitCode)
	}
	if m.Tags[gpuflow.TagJob] != "echo" || m.CreatedAt.IsZero() {
		t.Errorf("machine = %+v, want tags and a creation time", m)
	}
	if got := logOf(t, p, "echo"); got != "hello\n" {
		t.Errorf("log = %q, want %q", got, "hello\n")
	}
}

func TestExitCodePropagated(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	provision(t, p, cpuJob("three", "sh", "-c", "echo failing >&2; exit 3"))
	m := waitState(t, p, "three", gpuflow.MachineExited)
	if m.ExitCode == nil || *m.ExitCode != 3 {
		t.Fatalf("exit code = %v, want 3", m.ExitCode)
	}
	if got := logOf(t, p, "three"); got != "failing\n" {
		t.Errorf("log = %q, want stderr in it", got)
	}
}

func TestShellBuiltinNamesRunAsPrograms(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	// "exit" is not a program: the wrapper must not run its builtin.
	_, err := p.Provision(context.Background(), cpuJob("builtin", "exit", "4"))
	wantKind(t, err, gpuflow.KindInvalidRequest)
	if err := p.Check(gpuflow.JobSpec{Command: []string{"no-such-program-gpuflow"}}); err == nil {
		t.Error("Check accepted a command that is not on the PATH")
	}
}

func TestEnvAndArgvNotInterpreted(t *testing.T) {
	t.Setenv("GPUFLOW_TEST_SECRET", "leak")
	p := newProvider(t, Config{})
	req := cpuJob("env", "sh", "-c",
		`printf '%s|%s|[%s]|[%s]|%s\n' "$GREETING" "$GPUFLOW_JOB_ID" "${CUDA_VISIBLE_DEVICES-unset}" "${GPUFLOW_TEST_SECRET-unset}" "$(pwd)"`)
	req.Spec.Env = map[string]string{"GREETING": "hi there"}
	provision(t, p, req)
	provision(t, p, cpuJob("argv", "printf", `%s\n`, "$HOME;echo pwned", "`id`", "a b"))
	waitState(t, p, "env", gpuflow.MachineExited)
	waitState(t, p, "argv", gpuflow.MachineExited)

	want := fmt.Sprintf("hi there|env|[]|[unset]|%s\n", p.jobDir("env"))
	if got := logOf(t, p, "env"); got != want {
		t.Errorf("env job log = %q, want %q", got, want)
	}
	if got, want := logOf(t, p, "argv"), "$HOME;echo pwned\n`id`\na b\n"; got != want {
		t.Errorf("argv job log = %q, want %q", got, want)
	}
}

func TestProvisionIdempotent(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	marker := filepath.Join(t.TempDir(), "runs")
	count := func() int {
		b, err := os.ReadFile(marker)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "run\n")
	}
	// The job appends to the marker, then waits for a "go" file in its
	// directory before it exits.
	req := cpuJob("idem", "sh", "-c", `echo run >> "$1"; while [ ! -e go ]; do sleep 0.02; done`, "sh", marker)
	m1 := provision(t, p, req)
	m2, err := p.Provision(context.Background(), req)
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if m1.ID != m2.ID {
		t.Fatalf("ids %q and %q, want the same machine", m1.ID, m2.ID)
	}
	// Another key while the job runs: still the same machine, no new run.
	other := req
	other.IdempotencyKey = "idem-2"
	if m3, err := p.Provision(context.Background(), other); err != nil || m3.ID != m1.ID {
		t.Fatalf("Provision with another key while running = %v, %v", m3, err)
	}
	waitState(t, p, "idem", gpuflow.MachineRunning)
	if err := os.WriteFile(filepath.Join(p.jobDir("idem"), "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, "idem", gpuflow.MachineExited)
	if _, err := p.Provision(context.Background(), req); err != nil {
		t.Fatalf("Provision after exit: %v", err)
	}
	if m := waitState(t, p, "idem", gpuflow.MachineExited); *m.ExitCode != 0 {
		t.Errorf("exit code = %d", *m.ExitCode)
	}
	if n := count(); n != 1 {
		t.Fatalf("the command ran %d times, want 1", n)
	}

	// A new key after the attempt ended starts a new attempt and keeps the
	// old one's files.
	if _, err := p.Provision(context.Background(), other); err != nil {
		t.Fatalf("Provision of a new attempt: %v", err)
	}
	waitState(t, p, "idem", gpuflow.MachineExited)
	if n := count(); n != 2 {
		t.Fatalf("the command ran %d times, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(p.jobDir("idem"), "attempt-1", exitCodeFile)); err != nil {
		t.Errorf("the first attempt was not kept: %v", err)
	}
	md, err := readMeta(p.jobDir("idem"))
	if err != nil || md.Attempt != 2 || md.IdempotencyKey != "idem-2" {
		t.Errorf("meta = %+v, %v; want attempt 2 with the new key", md, err)
	}
	if log := logOf(t, p, "idem"); !strings.Contains(log, "attempt 2") {
		t.Errorf("log = %q, want the attempt marker", log)
	}
}

func TestConcurrentProvisionSameKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p1 := newProvider(t, Config{Dir: dir})
	p2 := newProvider(t, Config{Dir: dir}) // another worker on the host
	marker := filepath.Join(t.TempDir(), "runs")
	req := cpuJob("race", "sh", "-c", `echo run >> "$1"`, "sh", marker)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := p1
			if i%2 == 1 {
				p = p2
			}
			if _, err := p.Provision(context.Background(), req); err != nil {
				t.Errorf("Provision: %v", err)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() { _ = p1.Terminate(context.Background(), "race") })
	waitState(t, p1, "race", gpuflow.MachineExited)
	if b, _ := os.ReadFile(marker); string(b) != "run\n" {
		t.Fatalf("marker = %q, want one run", b)
	}
}

func TestTerminateKillsProcessGroup(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	provision(t, p, cpuJob("sleepy", "sh", "-c", `sleep 300 & echo $! > child.pid; echo started; sleep 300`))
	waitLog(t, p, "sleepy", "started")
	wrapper := pidOf(t, p, "sleepy")
	b, err := os.ReadFile(filepath.Join(p.jobDir("sleepy"), "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !processRuns(child) {
		t.Fatalf("grandchild %q not running (%v)", b, err)
	}
	if pi, err := readProcStat(child); err != nil || pi.pgrp != wrapper.PID {
		t.Fatalf("grandchild group = %+v, %v; want %d", pi, err, wrapper.PID)
	}
	if err := p.Terminate(context.Background(), "sleepy"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if processRuns(child) || processRuns(wrapper.PID) {
		t.Fatalf("Terminate returned while the group runs (child %d, wrapper %d)", child, wrapper.PID)
	}
	if m, _ := p.Describe(context.Background(), "sleepy"); m.State != gpuflow.MachineGone {
		t.Fatalf("state after Terminate = %s, want gone", m.State)
	}
	if got := logOf(t, p, "sleepy"); got != "started\n" {
		t.Errorf("log after Terminate = %q", got)
	}
	if err := p.Terminate(context.Background(), "sleepy"); err != nil {
		t.Errorf("second Terminate: %v", err)
	}
	ms, err := p.List(context.Background())
	if err != nil || len(ms) != 0 {
		t.Errorf("List = %v, %v; want no machines", ms, err)
	}
}

func TestTerminateEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{KillGrace: 200 * time.Millisecond})
	// Ignoring SIGTERM is inherited by the sleep.
	provision(t, p, cpuJob("stubborn", "sh", "-c", `trap "" TERM; echo started; sleep 300`))
	waitLog(t, p, "stubborn", "started")
	start := time.Now()
	if err := p.Terminate(context.Background(), "stubborn"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Terminate took %s, want at least the grace period", d)
	}
	if rec := pidOf(t, p, "stubborn"); jobAlive(rec.PID, rec.Start, scanProcs()) {
		t.Fatal("job still alive after Terminate")
	}
}

func TestTerminateUnknown(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	for _, id := range []string{"nope", "../etc", ""} {
		if err := p.Terminate(context.Background(), id); err != nil {
			t.Errorf("Terminate(%q) = %v, want nil", id, err)
		}
		m, err := p.Describe(context.Background(), id)
		if err != nil || m.State != gpuflow.MachineGone {
			t.Errorf("Describe(%q) = %+v, %v; want gone", id, m, err)
		}
	}
	_, err := p.ReadLogs(context.Background(), "nope", 0, 10)
	wantKind(t, err, gpuflow.KindNotFound)
}

func TestReattachFromNewProvider(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p1 := newProvider(t, Config{Dir: dir})
	provision(t, p1, cpuJob("long", "sh", "-c", `echo waiting; while [ ! -e go ]; do sleep 0.02; done; echo finished; exit 7`))
	waitLog(t, p1, "long", "waiting")

	p2 := newProvider(t, Config{Dir: dir})
	if m := waitState(t, p2, "long", gpuflow.MachineRunning); m.GPUType != gpuflow.CPUOnly {
		t.Errorf("re-attached machine = %+v", m)
	}
	ms, err := p2.List(context.Background())
	if err != nil || len(ms) != 1 || ms[0].ID != "long" {
		t.Fatalf("List from the new provider = %+v, %v", ms, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "long", "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := waitState(t, p2, "long", gpuflow.MachineExited)
	if *m.ExitCode != 7 {
		t.Errorf("exit code = %d, want 7", *m.ExitCode)
	}
	if log := logOf(t, p2, "long"); log != "waiting\nfinished\n" {
		t.Errorf("log = %q", log)
	}
}

// TestReattachAfterWorkerKill starts a job from another process (the test
// binary as a worker), kills that worker with SIGKILL, and checks that the
// job lives on and a new Provider learns its outcome.
func TestReattachAfterWorkerKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	req := cpuJob("orphan", "sh", "-c", `echo waiting; while [ ! -e go ]; do sleep 0.02; done; exit 5`)
	spec, err := json.Marshal(map[string]any{"Dir": dir, "Req": req})
	if err != nil {
		t.Fatal(err)
	}
	worker := exec.Command(os.Args[0], "-test.run=^$")
	worker.Env = append(os.Environ(), helperEnv+"="+string(spec))
	out, err := worker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("provisioned\n"))
	if _, err := out.Read(line); err != nil || string(line) != "provisioned\n" {
		_ = worker.Process.Kill()
		t.Fatalf("helper worker said %q, %v", line, err)
	}
	if err := worker.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = worker.Wait()

	p := newProvider(t, Config{Dir: dir})
	t.Cleanup(func() { _ = p.Terminate(context.Background(), "orphan") })
	waitLog(t, p, "orphan", "waiting")
	waitState(t, p, "orphan", gpuflow.MachineRunning)
	if err := os.WriteFile(filepath.Join(dir, "orphan", "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := waitState(t, p, "orphan", gpuflow.MachineExited)
	if *m.ExitCode != 5 {
		t.Errorf("exit code = %d, want 5", *m.ExitCode)
	}
}

func TestVanishedProcessFails(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	provision(t, p, cpuJob("victim", "sleep", "300"))
	waitState(t, p, "victim", gpuflow.MachineRunning)
	rec := pidOf(t, p, "victim")
	if err := syscall.Kill(-rec.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m := waitState(t, p, "victim", gpuflow.MachineFailed)
	if m.Reason != reasonVanished || m.ExitCode != nil {
		t.Errorf("machine = %+v, want reason %q", m, reasonVanished)
	}
	if err := p.Terminate(context.Background(), "victim"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	waitState(t, p, "victim", gpuflow.MachineGone)
}

func TestReusedPidIsNotTheJob(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	provision(t, p, cpuJob("reused", "true"))
	waitState(t, p, "reused", gpuflow.MachineExited)
	// Pretend the job never recorded its code and its pid now belongs to
	// this test process, which started at another time.
	dir := p.jobDir("reused")
	if err := os.Remove(filepath.Join(dir, exitCodeFile)); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	fake := pidRecord{PID: self, Start: startTime(self) + 1}
	if err := writeAtomic(filepath.Join(dir, pidFile), []byte(fake.String())); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Describe(context.Background(), "reused"); m.State != gpuflow.MachineFailed {
		t.Fatalf("state = %s, want failed: a reused pid is not the job", m.State)
	}
	// Terminate must not signal the unrelated process (this one).
	if err := p.Terminate(context.Background(), "reused"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
}

// fakeSMI writes an nvidia-smi that reports two H100s and returns its path.
func fakeSMI(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nvidia-smi")
	script := `#!/bin/sh
echo "0, GPU-00000000-aaaa, NVIDIA H100 80GB HBM3, 81559"
echo "1, GPU-11111111-bbbb, NVIDIA H100 80GB HBM3, 81559"
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGPUAssignment(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{NvidiaSMI: fakeSMI(t)})
	show := []string{"sh", "-c", `echo "cvd=[$CUDA_VISIBLE_DEVICES]"; exec sleep 300`}
	cvd := func(id string) string {
		log := waitLog(t, p, id, "]")
		return strings.TrimSpace(strings.TrimPrefix(log, "cvd="))
	}
	provision(t, p, gpuJob("g1", 1, show...))
	provision(t, p, gpuJob("g2", 1, show...))
	a, b := cvd("g1"), cvd("g2")
	if a == b || (a != "[0]" && a != "[1]") || (b != "[0]" && b != "[1]") {
		t.Fatalf("CUDA_VISIBLE_DEVICES = %s and %s, want [0] and [1]", a, b)
	}
	if m, _ := p.Describe(context.Background(), "g1"); m.GPUType != "H100" || m.GPUCount != 1 {
		t.Errorf("machine = %+v", m)
	}
	_, err := p.Provision(context.Background(), gpuJob("g3", 1, show...))
	wantKind(t, err, gpuflow.KindNoCapacity)

	offers, err := p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 2 || offers[0].GPUType != "H100" || offers[0].GPUCount != 2 ||
		offers[0].Available != 0 || offers[0].GPUMemoryGB != 79.6 || offers[0].Region != Region {
		t.Errorf("offers = %+v", offers)
	}

	// A restarted provider sees the same allocations.
	p2 := newProvider(t, Config{Dir: p.dir, NvidiaSMI: fakeSMI(t)})
	_, err = p2.Provision(context.Background(), gpuJob("g3", 1, show...))
	wantKind(t, err, gpuflow.KindNoCapacity)

	if err := p.Terminate(context.Background(), "g1"); err != nil {
		t.Fatal(err)
	}
	provision(t, p2, gpuJob("g3", 1, show...))
	if got := cvd("g3"); got != a {
		t.Errorf("g3 got %s, want the freed GPU %s", got, a)
	}

	// CPU jobs on a GPU host see no GPU; jobs that can never fit are invalid.
	provision(t, p, cpuJob("cpu", "sh", "-c", `echo "cvd=[$CUDA_VISIBLE_DEVICES]"`))
	if got := cvd("cpu"); got != "[]" {
		t.Errorf("CPU job CUDA_VISIBLE_DEVICES = %s, want empty", got)
	}
	_, err = p.Provision(context.Background(), gpuJob("big", 3, "true"))
	wantKind(t, err, gpuflow.KindInvalidRequest)
	a100 := gpuJob("a100", 1, "true")
	a100.Spec.GPUType = "A100"
	_, err = p.Provision(context.Background(), a100)
	wantKind(t, err, gpuflow.KindInvalidRequest)
}

func TestNoGPUs(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{CPUSlots: 3})
	_, err := p.Provision(context.Background(), gpuJob("g", 1, "true"))
	wantKind(t, err, gpuflow.KindInvalidRequest)
	offers, err := p.Offers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 1 {
		t.Fatalf("offers = %+v, want one CPU offer", offers)
	}
	o := offers[0]
	if o.Provider != Name || o.GPUType != gpuflow.CPUOnly || o.GPUCount != 0 || o.Available != 3 ||
		o.VCPUs < 1 || o.MemoryGB <= 0 || o.PricePerHour != 0 {
		t.Errorf("CPU offer = %+v", o)
	}
}

func TestCPUSlotsBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p1 := newProvider(t, Config{Dir: dir, CPUSlots: 2})
	p2 := newProvider(t, Config{Dir: dir, CPUSlots: 2})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		started []string
		refused int
	)
	for i := range 6 {
		wg.Go(func() {
			p := p1
			if i%2 == 1 {
				p = p2
			}
			id := fmt.Sprintf("cpu%d", i)
			_, err := p.Provision(context.Background(), cpuJob(id, "sleep", "300"))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				started = append(started, id)
				return
			}
			if gpuflow.ProviderErrorKindOf(err) != gpuflow.KindNoCapacity {
				t.Errorf("Provision %s: %v", id, err)
			}
			refused++
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, id := range started {
			if err := p1.Terminate(context.Background(), id); err != nil {
				t.Error(err)
			}
		}
	})
	if len(started) != 2 || refused != 4 {
		t.Fatalf("%d started (%v), %d refused; want 2 and 4", len(started), started, refused)
	}
	offers, err := p1.Offers(context.Background())
	if err != nil || offers[len(offers)-1].Available != 0 {
		t.Errorf("offers = %+v, %v; want no free CPU slot", offers, err)
	}
	if err := p1.Terminate(context.Background(), started[0]); err != nil {
		t.Fatal(err)
	}
	provision(t, p2, cpuJob("cpu-next", "true"))
}

func TestImageWithoutRuntime(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	req := cpuJob("img", "python", "train.py")
	req.Spec.Image = "pytorch/pytorch:latest"
	_, err := p.Provision(context.Background(), req)
	wantKind(t, err, gpuflow.KindInvalidRequest)
	if !strings.Contains(err.Error(), "docker or podman") {
		t.Errorf("error = %v, want it to name docker or podman", err)
	}
	if err := p.Check(req.Spec); err == nil || !strings.Contains(err.Error(), "docker or podman") {
		t.Errorf("Check = %v", err)
	}
	if _, err := os.Stat(p.jobDir("img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused job left a directory: %v", err)
	}
}

func TestImageRunsInContainer(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	docker := filepath.Join(bin, "docker")
	// The fake client records its calls; "run ... wait" keeps running like
	// a long container.
	script := `#!/bin/sh
printf '%s\n' "$*" >> ` + shellQuote(calls) + `
if [ "$1" = run ]; then
	printf 'arg=%s\n' "$@"; echo "TOKEN=$TOKEN"
	for last; do :; done
	if [ "$last" = wait ]; then exec sleep 300; fi
fi
`
	if err := os.WriteFile(docker, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	look := func(name string) (string, error) {
		if name == "docker" {
			return docker, nil
		}
		return noRuntimes(name)
	}
	p := newProvider(t, Config{LookPath: look, NvidiaSMI: fakeSMI(t)})
	req := gpuJob("ctr", 2, "python", "-c", "print(1)")
	req.Spec.Image = "pytorch/pytorch:latest"
	req.Spec.Env = map[string]string{"TOKEN": "s3cret"}
	if err := p.Check(req.Spec); err != nil {
		t.Fatalf("Check: %v", err)
	}
	provision(t, p, req)
	waitState(t, p, "ctr", gpuflow.MachineExited)
	log := logOf(t, p, "ctr")
	want := strings.Join([]string{"run", "--rm", "--name", "gpuflow-ctr",
		"--label", "gpuflow-managed=true", "--label", "gpuflow-job=ctr",
		"--gpus", `"device=0,1"`, "-e", "TOKEN", "-e", "GPUFLOW_JOB_ID",
		"pytorch/pytorch:latest", "python", "-c", "print(1)"}, "\narg=")
	if !strings.Contains(log, "arg="+want+"\n") {
		t.Errorf("docker argv in log:\n%s\nwant:\narg=%s", log, want)
	}
	if !strings.Contains(log, "TOKEN=s3cret\n") {
		t.Errorf("log = %q, want the env value passed through the client's environment", log)
	}
	// The client returned the container's status: nothing to remove.
	if err := p.Terminate(context.Background(), "ctr"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}

	long := cpuJob("ctr-long", "wait")
	long.Spec.Image = "busybox"
	provision(t, p, long)
	waitLog(t, p, "ctr-long", "TOKEN=")
	if err := p.Terminate(context.Background(), "ctr-long"); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("the secret appeared on the docker command line: %q", b)
	}
	if got := strings.Count(string(b), "rm -f"); got != 1 || !strings.Contains(string(b), "rm -f gpuflow-ctr-long\n") {
		t.Errorf("docker calls = %q, want one rm -f gpuflow-ctr-long", b)
	}
}

func TestReadLogsOffsetLimit(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	provision(t, p, cpuJob("logs", "printf", "0123456789"))
	waitState(t, p, "logs", gpuflow.MachineExited)
	for _, tc := range []struct {
		offset int64
		limit  int
		want   string
	}{{0, 4, "0123"}, {4, 4, "4567"}, {8, 4, "89"}, {10, 4, ""}, {20, 4, ""}, {3, 0, "3456789"}} {
		b, err := p.ReadLogs(context.Background(), "logs", tc.offset, tc.limit)
		if err != nil || string(b) != tc.want {
			t.Errorf("ReadLogs(%d, %d) = %q, %v; want %q", tc.offset, tc.limit, b, err, tc.want)
		}
	}
}

func TestInfoHealthPoll(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	info := p.Info()
	if info.Name != "local" || info.DisplayName != "Local machine" || info.Mode != gpuflow.ModeLocal ||
		info.Description != "Runs jobs on the worker's own host" {
		t.Errorf("Info = %+v", info)
	}
	if err := p.Health(context.Background()); err != nil {
		t.Errorf("Health = %v", err)
	}
	if d := p.PollInterval(); d <= 0 || d > time.Second {
		t.Errorf("PollInterval = %s", d)
	}
	if err := os.Chmod(p.dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(p.dir, 0o700)
	if os.Geteuid() != 0 { // root writes anyway
		if err := p.Health(context.Background()); err == nil {
			t.Error("Health = nil for a read-only directory")
		}
	}
}

func TestParseGPUs(t *testing.T) {
	t.Parallel()
	gpus, err := parseGPUs([]byte("0, GPU-a, NVIDIA GeForce RTX 4090, 24564\n1, GPU-b, Tesla T4, 15360\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || gpus[0].Type != "RTX4090" || gpus[1].Type != "T4" || gpus[0].MemoryGB != 24 {
		t.Errorf("gpus = %+v", gpus)
	}
	if _, err := parseGPUs([]byte("garbage\n")); err == nil {
		t.Error("parseGPUs accepted garbage")
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100\n"
	pi, err := parseStat([]byte(line))
	if err != nil || pi.state != 'S' || pi.pgrp != 1234 || pi.start != 987654 {
		t.Errorf("parseStat = %+v, %v", pi, err)
	}
}

func TestNewAttemptStopsLeftovers(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{NvidiaSMI: fakeSMI(t)})
	// The job exits at once but leaves a background process in its group,
	// which keeps holding its GPU.
	req := gpuJob("leftover", 2, "sh", "-c", `sleep 300 & echo $! > child.pid; echo bye`)
	provision(t, p, req)
	waitState(t, p, "leftover", gpuflow.MachineExited)
	b, err := os.ReadFile(filepath.Join(p.jobDir("leftover"), "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !processRuns(child) {
		t.Fatal("background process not running")
	}
	_, err = p.Provision(context.Background(), gpuJob("other", 1, "true"))
	wantKind(t, err, gpuflow.KindNoCapacity)

	next := gpuJob("leftover", 2, "echo", "second")
	next.IdempotencyKey = "leftover-2"
	if _, err := p.Provision(context.Background(), next); err != nil {
		t.Fatalf("Provision of a new attempt: %v", err)
	}
	if processRuns(child) {
		t.Error("the previous attempt's background process survived the new attempt's start")
	}
	waitLog(t, p, "leftover", "second")
}

func TestNeverStartedIsStartedAgain(t *testing.T) {
	t.Parallel()
	p := newProvider(t, Config{})
	req := cpuJob("crashed", "echo", "ran")
	// A worker that died between writing job.json and starting the wrapper.
	dir := p.jobDir("crashed")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	md, _ := json.Marshal(meta{JobID: "crashed", IdempotencyKey: req.IdempotencyKey, Attempt: 1, GPUType: gpuflow.CPUOnly})
	if err := os.WriteFile(filepath.Join(dir, metaFile), md, 0o600); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Describe(context.Background(), "crashed"); m.State != gpuflow.MachineFailed || m.Reason != reasonNotStarted {
		t.Fatalf("machine = %+v, want failed: never started", m)
	}
	provision(t, p, req)
	waitState(t, p, "crashed", gpuflow.MachineExited)
	if got := logOf(t, p, "crashed"); got != "ran\n" {
		t.Errorf("log = %q", got)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// A worker killed (kill -9) after starting a job and before writing its
// pid file leaves a job directory without a pid: the retried Provision
// starts the job, and the job runs once, not twice.
func TestKilledBeforePidFileRunsOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	req := cpuJob("once", "sh", "-c", `echo ran >>runs; sleep 1`)
	spec, err := json.Marshal(map[string]any{"Dir": dir, "Req": req, "KillAfterStart": true})
	if err != nil {
		t.Fatal(err)
	}
	worker := exec.Command(os.Args[0], "-test.run=^$")
	worker.Env = append(os.Environ(), helperEnv+"="+string(spec))
	err = worker.Run()
	if ws, ok := worker.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper worker: %v, want killed by SIGKILL", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "once", pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file after the kill: %v; want none", err)
	}

	// The workflow retries Provision on a restarted worker.
	p := newProvider(t, Config{Dir: dir})
	provision(t, p, req)
	waitState(t, p, "once", gpuflow.MachineExited)
	b, err := os.ReadFile(filepath.Join(dir, "once", "runs"))
	if err != nil || string(b) != "ran\n" {
		t.Fatalf("the job ran %d times (%q, %v), want once", strings.Count(string(b), "ran"), b, err)
	}
}
