package emulate

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
)

var fast = Backoff{Min: 2 * time.Millisecond, Max: 10 * time.Millisecond}

// api is an agent endpoint that answers 503 to the first fail requests
// and then status (202 when zero), keeping the output and exit codes it
// acknowledged.
type api struct {
	t        *testing.T
	mu       sync.Mutex
	fail     int
	status   int
	hits     map[string]int
	logs     []byte
	finished []int
	gotDone  chan struct{}
}

func newAPI(t *testing.T) *api {
	return &api{t: t, hits: map[string]int{}, gotDone: make(chan struct{})}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	kind := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	a.hits[kind]++
	if r.Header.Get("Authorization") != "Bearer tok" {
		a.t.Errorf("%s: authorization %q", kind, r.Header.Get("Authorization"))
	}
	if a.fail > 0 {
		a.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if a.status != 0 {
		w.WriteHeader(a.status)
		return
	}
	switch kind {
	case "logs":
		off, err := strconv.Atoi(r.Header.Get(agentscript.HeaderLogOffset))
		if err != nil || off > len(a.logs) {
			a.t.Errorf("log chunk at offset %q, have %d", r.Header.Get(agentscript.HeaderLogOffset), len(a.logs))
		} else if off+len(body) > len(a.logs) {
			a.logs = append(a.logs, body[len(a.logs)-off:]...)
		}
	case "finished":
		code, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(body), `{"exit_code":`), "}"))
		if err != nil {
			a.t.Errorf("finished: %q", body)
		}
		a.finished = append(a.finished, code)
		if len(a.finished) == 1 {
			close(a.gotDone)
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

func serveOn(t *testing.T, ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestReportRetriesUntilAcknowledged(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.fail = 5
	ln := listen(t, "127.0.0.1:0")
	serveOn(t, ln, a)
	ag := Agent{URL: "http://" + ln.Addr().String() + "/j", Token: "tok", Backoff: fast}
	if err := ag.Report(t.Context(), "finished", []byte(`{"exit_code":4}`), nil); err != nil {
		t.Fatal(err)
	}
	if a.hits["finished"] != 6 || len(a.finished) != 1 || a.finished[0] != 4 {
		t.Errorf("hits %v, finished %v", a.hits, a.finished)
	}
}

func TestReportStopsOnPermanentRefusalAndAtTheDeadline(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.status = http.StatusConflict
	ln := listen(t, "127.0.0.1:0")
	serveOn(t, ln, a)
	ag := Agent{URL: "http://" + ln.Addr().String() + "/j", Token: "tok", Backoff: fast}
	if err := ag.Report(t.Context(), "finished", []byte(`{"exit_code":0}`), nil); !errors.Is(err, ErrRefused) || a.hits["finished"] != 1 {
		t.Errorf("409: %v after %d tries, want ErrRefused after one", err, a.hits["finished"])
	}
	a.mu.Lock()
	a.status = http.StatusTooManyRequests
	a.mu.Unlock()
	ag.Deadline = time.Now().Add(-time.Second)
	if err := ag.Report(t.Context(), "progress", []byte(`{"percent":1}`), nil); !errors.Is(err, ErrDeadline) || a.hits["progress"] != 1 {
		t.Errorf("past the deadline: %v after %d tries, want ErrDeadline after one", err, a.hits["progress"])
	}
}

// TestRunJobAcrossAnAPIRestart: the API goes away while the job runs (its
// port refuses connections) and comes back on the same address after the
// job ended; the job's output and exit code arrive once.
func TestRunJobAcrossAnAPIRestart(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	srv := serveOn(t, ln, a)
	ag := Agent{URL: "http://" + addr + "/j", Token: "tok", Backoff: fast, LogInterval: time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	// The job's own clock: it ends once the API is down.
	plan := JobPlan{ExitCode: 3, Run: time.Hour}
	var jobCtx context.Context
	jobCtx, endJob := context.WithCancel(ctx)
	out := &Spool{}
	r := StartReporter(ctx, ag, out)
	go func() {
		defer close(done)
		PlayJob(jobCtx, plan, "j", out, r.Progress)
		out.Write([]byte("emulated job j exiting with 3\n"))
		_ = r.Finish(3)
	}()
	srv.Close() // the API stops
	endJob()    // the job ends while it is down
	// The agent keeps trying to reach it: wait for a refused connection.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
	}
	ln = listen(t, addr)
	serveOn(t, ln, a)
	<-done
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.finished) != 1 || a.finished[0] != 3 {
		t.Errorf("finished %v, want [3]", a.finished)
	}
	if want := "emulated job j started\nemulated job j exiting with 3\n"; string(a.logs) != want {
		t.Errorf("output %q, want %q", a.logs, want)
	}
}

func TestRunJobReportsOnce(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.fail = 3
	ln := listen(t, "127.0.0.1:0")
	serveOn(t, ln, a)
	ag := Agent{URL: "http://" + ln.Addr().String() + "/j", Token: "tok", Backoff: fast, LogInterval: time.Millisecond}
	RunJob(t.Context(), ag, JobPlan{ExitCode: 0, Run: 5 * time.Millisecond}, "j")
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.finished) != 1 || a.finished[0] != 0 || !strings.HasSuffix(string(a.logs), "exiting with 0\n") {
		t.Errorf("finished %v, output %q", a.finished, a.logs)
	}
}

func TestRunJobHaltsWhenItsEndIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	// Every report answered 503: past the report grace after the job's
	// end, the agent gives up and stops its machine (Halt), and says the
	// job ended (Ended) but never that it was acknowledged.
	a := newAPI(t)
	a.status = http.StatusServiceUnavailable
	ln := listen(t, "127.0.0.1:0")
	serveOn(t, ln, a)
	ag := Agent{URL: "http://" + ln.Addr().String() + "/j", Token: "tok", Backoff: fast, Grace: 50 * time.Millisecond}
	var ended, acked, halted int
	ResumeJob(t.Context(), ag, JobState{Plan: JobPlan{ExitCode: 2, Run: 10 * time.Millisecond}}, "j", 0, JobHooks{
		Ended: func(int) { ended++ },
		Acked: func() { acked++ },
		Halt:  func() { halted++ },
	})
	a.mu.Lock()
	if ended != 1 || acked != 0 || halted != 1 || a.hits["finished"] < 1 || a.hits["logs"] < 2 {
		t.Errorf("ended %d, acked %d, halted %d after %d log and %d finished reports: want 1, 0, 1 after retries",
			ended, acked, halted, a.hits["logs"], a.hits["finished"])
	}
	// Acknowledged: no halt.
	a.status = 0
	a.mu.Unlock()
	halted = 0
	ResumeJob(t.Context(), ag, JobState{Plan: JobPlan{Run: 10 * time.Millisecond}}, "j", 0, JobHooks{Halt: func() { halted++ }})
	if halted != 0 {
		t.Errorf("halted %d times after an acknowledged end", halted)
	}
}
