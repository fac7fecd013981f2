package topology

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one component of the topology run as an OS process of its
// own: the Temporal server, the emulators, an API or a worker. It keeps its
// command line, environment and ports across restarts, so clients find it
// again where they left it. Its stdout and stderr go to its log file
// (appended, each start headed by a line "=== start ..."), written by the
// process itself: nothing of it passes through the topology.
//
// Its methods are safe for concurrent use.
type Process struct {
	// Name is the component's name: "temporal", "emulators", "api-1",
	// "api-2", "worker-1" (also the local host) or "worker-2".
	Name string
	// URL is where it serves (the API's base URL, the Web UI's, ...), or "".
	URL string

	bin     string
	args    []string
	env     []string
	logPath string
	ready   func(ctx context.Context) error

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{} // closed when the running command has exited
	state *os.ProcessState
}

// readyTimeout bounds how long Start waits for a component to be ready.
const readyTimeout = 2 * time.Minute

// setBinary makes bin the binary of the process's next start.
func (p *Process) setBinary(bin string) {
	p.mu.Lock()
	p.bin = bin
	p.mu.Unlock()
}

// LogPath is the component's log file, D/logs/NAME.log.
func (p *Process) LogPath() string { return p.logPath }

// Args is the command line (without the binary).
func (p *Process) Args() []string { return append([]string(nil), p.args...) }

// PID is the running process's id, or 0 when it is not running.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Process) runningLocked() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited is closed when the current run of the process ends (nil when it
// was never started).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitState is how the last run ended (nil while running or never run).
func (p *Process) ExitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Start starts the process and waits until it is ready (it answers where
// it serves), or fails with the end of its log if it exits first or is not
// ready within two minutes. Starting a running process is an error.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.runningLocked() {
		p.mu.Unlock()
		return fmt.Errorf("%s is already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	offset, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "=== start %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...) // #nosec G204 -- the topology's own binary and arguments
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Stdin = nil
	// Its own process group: a Ctrl-C at the terminal reaches the
	// topology, which stops the components in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		p.mu.Unlock()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	_ = logf.Close() // the child holds its own copy
	done := make(chan struct{})
	p.cmd, p.done, p.state = cmd, done, nil
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		if p.cmd == cmd {
			p.state = cmd.ProcessState
		}
		p.mu.Unlock()
		close(done)
	}()

	if p.ready == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- p.ready(rctx) }()
	select {
	case err := <-readyErr:
		if err == nil {
			return nil
		}
		p.Kill()
		return fmt.Errorf("%s did not become ready: %w\n%s", p.Name, err, p.logTail(offset))
	case <-done:
		cancel()
		return fmt.Errorf("%s exited at start (%v); its log %s ends:\n%s", p.Name, cmd.ProcessState, p.logPath, p.logTail(offset))
	}
}

// Kill sends SIGKILL (kill -9: nothing of the process's own shutdown runs)
// and waits until it has exited. Killing a process that is not running does
// nothing.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	running := p.runningLocked()
	p.mu.Unlock()
	if !running {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and waits for the process to exit, then SIGKILLs it
// if it has not within timeout.
func (p *Process) Stop(timeout time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	running := p.runningLocked()
	p.mu.Unlock()
	if !running {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// Restart kills the process (SIGKILL) if it is running and starts it
// again with the same command line, environment and ports, waiting until
// it is ready.
func (p *Process) Restart(ctx context.Context) error {
	p.Kill()
	return p.Start(ctx)
}

// Wait waits for the current run to end (a one-shot command such as
// migrate) and returns an error unless it exited 0.
func (p *Process) Wait(ctx context.Context) error {
	done := p.Exited()
	if done == nil {
		return fmt.Errorf("%s was not started", p.Name)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if st := p.ExitState(); st == nil || !st.Success() {
		return fmt.Errorf("%s failed (%v); its log %s ends:\n%s", p.Name, st, p.logPath, p.logTail(0))
	}
	return nil
}

// logTail is the last lines of the log written since offset.
func (p *Process) logTail(offset int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 64<<10 {
		offset = fi.Size() - 64<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, "    "+sc.Text())
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
