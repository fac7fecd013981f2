package emuproc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/emuproc"
	"github.com/gpuflow/gpuflow/internal/freeport"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// The test binary doubles as the emulators process: with envChild set it
// runs emuproc.Run as `gpuflow-dev emulators` does, on the addresses and
// state directory in the environment, until SIGTERM.
const envChild = "GPUFLOW_EMUPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "" {
		os.Exit(m.Run())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := emuproc.Config{StateDir: os.Getenv("EMU_STATE"), Addrs: map[string]string{
		app.CloudRunPod: os.Getenv("EMU_RUNPOD"), app.CloudTencent: os.Getenv("EMU_TENCENT"), app.CloudAlibaba: os.Getenv("EMU_ALIBABA"),
	}}
	if err := emuproc.Run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc is the emulators process, restartable on the same addresses.
type proc struct {
	t     *testing.T
	env   []string
	addrs map[string]string
	cmd   *exec.Cmd
}

func (p *proc) start() {
	p.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	for name, addr := range p.addrs {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/_emulator/live")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				p.t.Fatalf("the %s emulator never answered: %v", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func live(t *testing.T, addr string) emulate.LiveReport {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/_emulator/live")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep emulate.LiveReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// agent records the jobs' finished reports.
type agent struct {
	srv      *httptest.Server
	mu       sync.Mutex
	finished map[string][]string
}

func newAgent(t *testing.T) *agent {
	a := &agent{finished: map[string][]string{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if job, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/jobs/"), "/finished"); ok {
			a.mu.Lock()
			a.finished[job] = append(a.finished[job], string(body))
			a.mu.Unlock()
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *agent) reports(job string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.finished[job]...)
}

// TestKilledProcessKeepsMachines runs the emulators process, creates a
// machine on each cloud through the providers the workers use, kills the
// process with SIGKILL while the jobs run, and starts it again on the same
// state directory and addresses: the machines are there with their ids,
// the same idempotency key answers the same machine, no key created two,
// and every job reports its exit code. SIGTERM then stops the process
// cleanly.
func TestKilledProcessKeepsMachines(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a process")
	}
	addrs := map[string]string{app.CloudRunPod: freeAddr(t), app.CloudTencent: freeAddr(t), app.CloudAlibaba: freeAddr(t)}
	p := &proc{t: t, addrs: addrs, env: []string{envChild + "=1", "EMU_STATE=" + t.TempDir(),
		"EMU_RUNPOD=" + addrs[app.CloudRunPod], "EMU_TENCENT=" + addrs[app.CloudTencent], "EMU_ALIBABA=" + addrs[app.CloudAlibaba]}}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})

	emulators := map[string]string{}
	for name, addr := range addrs {
		emulators[name] = "http://" + addr
	}
	providers, err := app.NewProviders(app.Config{Clouds: app.CloudConfig{Emulators: emulators}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ag := newAgent(t)
	ctx := context.Background()
	machines := map[string]*gpuflow.Machine{}
	reqs := map[string]gpuflow.ProvisionRequest{}
	for _, name := range app.Clouds {
		prov := providers.Get(name)
		offers, err := prov.Offers(ctx)
		if err != nil || len(offers) == 0 {
			t.Fatalf("%s offers: %v, %v", name, offers, err)
		}
		job := "job-" + name
		var (
			m   *gpuflow.Machine
			req gpuflow.ProvisionRequest
		)
		for _, o := range offers { // the first one in stock
			req = gpuflow.ProvisionRequest{JobID: job, IdempotencyKey: job + "-a1", Offer: o,
				Spec: gpuflow.JobSpec{Command: []string{"train"}, GPUType: o.GPUType, GPUCount: o.GPUCount, Strategy: gpuflow.StrategyBalanced,
					Env: map[string]string{emulate.EnvExitCode: "4", emulate.EnvRunSeconds: "2"}},
				Agent: &gpuflow.AgentEndpoint{URL: ag.srv.URL + "/jobs/" + job, Token: "token-" + job}}
			if m, err = prov.Provision(ctx, req); gpuflow.ProviderErrorKindOf(err) != gpuflow.KindNoCapacity {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s provision: %v", name, err)
		}
		machines[name], reqs[name] = m, req
	}

	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	p.start()

	for _, name := range app.Clouds {
		prov, m := providers.Get(name), machines[name]
		d, err := prov.Describe(ctx, m.ID)
		if err != nil || d.State == gpuflow.MachineGone {
			t.Errorf("%s: machine %s after the kill: %+v, %v", name, m.ID, d, err)
		}
		again, err := prov.Provision(ctx, reqs[name])
		if err != nil || again.ID != m.ID {
			t.Errorf("%s: the same key after the kill: %+v, %v; want %s", name, again, err, m.ID)
		}
		rep := live(t, addrs[name])
		if len(rep.Machines) != 1 || rep.Machines[0].JobID != reqs[name].JobID {
			t.Errorf("%s: live %+v", name, rep)
		}
		for key, n := range rep.Creates {
			if n != 1 {
				t.Errorf("%s: key %s created %d machines", name, key, n)
			}
		}
	}
	for _, name := range app.Clouds {
		job := reqs[name].JobID
		deadline := time.Now().Add(30 * time.Second)
		for len(ag.reports(job)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := ag.reports(job); len(got) == 0 || !strings.Contains(got[0], `"exit_code":4`) {
			t.Errorf("%s: finished reports %v, want exit code 4", name, got)
		}
	}
	for _, name := range app.Clouds {
		prov, m := providers.Get(name), machines[name]
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := prov.Terminate(ctx, m.ID)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s terminate: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("SIGTERM: the process ended with %v, want exit status 0", err)
	}
}

// TestRunNeedsAnEmulator: no address, no process.
func TestRunNeedsAnEmulator(t *testing.T) {
	if err := emuproc.Run(context.Background(), emuproc.Config{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Run with no address: nil error")
	}
}

// GET /_emulator/calls answers the cloud API requests served, by
// operation, as Calls does; admin requests are not counted.
func TestCallsEndpoint(t *testing.T) {
	e, err := emuproc.New(app.CloudTencent, slog.New(slog.DiscardHandler), "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := emuproc.Serve(e, ln, slog.New(slog.DiscardHandler))
	t.Cleanup(r.Stop)
	providers, err := app.NewProviders(app.Config{Clouds: app.CloudConfig{Emulators: map[string]string{app.CloudTencent: r.URL}}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := providers.Get(app.CloudTencent).Offers(context.Background()); err != nil {
		t.Fatal(err)
	}
	get := func() map[string]int64 {
		resp, err := http.Get(r.URL + emuproc.CallsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", emuproc.CallsPath, resp.StatusCode)
		}
		var calls map[string]int64
		if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
			t.Fatal(err)
		}
		return calls
	}
	first := get()
	if len(first) == 0 {
		t.Fatal("no call counted after Offers")
	}
	if second := get(); fmt.Sprint(second) != fmt.Sprint(first) || fmt.Sprint(r.Calls()) != fmt.Sprint(first) {
		t.Errorf("calls: first %v, then %v, Calls() %v: admin requests were counted or the answers differ", first, second, r.Calls())
	}
	resp, err := http.Post(r.URL+emuproc.CallsPath, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d, want 405", emuproc.CallsPath, resp.StatusCode)
	}
}
