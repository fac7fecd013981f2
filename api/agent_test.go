package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/testutil"
)

// AppendLogTail makes the fake store a LogAppender.
func (s *fakeStore) AppendLogTail(_ context.Context, jobID string, data []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := int64(len(s.logs[jobID]))
	s.logs[jobID] = append(s.logs[jobID], data...)
	return off, nil
}

// reportStore is the fake job store with agent reports, kept as the real
// store keeps them: progress coalesced per job, the first finished kept,
// ended jobs refused. down makes it answer as a store that is away.
type reportStore struct {
	*fakeStore
	mu       sync.Mutex
	next     int64
	progress map[string]gpuflow.AgentReport
	finished map[string]gpuflow.AgentReport
	ended    map[string]bool
	down     bool
	calls    int
}

func newReportStore(fs *fakeStore) *reportStore {
	return &reportStore{fakeStore: fs, progress: map[string]gpuflow.AgentReport{},
		finished: map[string]gpuflow.AgentReport{}, ended: map[string]bool{}}
}

func (s *reportStore) RecordReport(_ context.Context, r gpuflow.AgentReport) (gpuflow.AgentReport, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return r, false, &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "database unavailable"}
	}
	if s.ended[r.JobID] {
		return r, false, gpuflow.Errorf(gpuflow.ECONFLICT, "the job has finished")
	}
	if r.Kind == gpuflow.ReportFinished {
		if kept, ok := s.finished[r.JobID]; ok {
			return kept, false, nil
		}
	}
	s.next++
	r.ID = s.next
	if r.Kind == gpuflow.ReportFinished {
		s.finished[r.JobID] = r
	} else {
		s.progress[r.JobID] = r
	}
	return r, true, nil
}

func (s *reportStore) set(fn func(s *reportStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *reportStore) get(fn func(s *reportStore)) { s.set(fn) }

// agentSetup is a server with agent tokens and a report store, whose
// Temporal is unreachable: every call to it fails.
func agentSetup(t testing.TB) (*bundle, *reportStore, *auth.AgentTokens) {
	t.Helper()
	b := setup(t)
	agents, err := auth.NewAgentTokens(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.srv.cfg.Agents = agents
	rs := newReportStore(b.store)
	b.srv.cfg.Jobs = rs
	b.temporal.On("SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Return(serviceerror.NewUnavailable("connection refused")).Maybe()
	return b, rs, agents
}

func bearer(tk string) header { return header{"Authorization", "Bearer " + tk} }

// TestAgentEndpoint: reports are recorded and acknowledged while Temporal
// is unreachable; the API never signals.
func TestAgentEndpoint(t *testing.T) {
	t.Parallel()
	b, rs, agents := agentSetup(t)
	id, other := uuid.NewString(), uuid.NewString()
	tok, _ := agents.Issue(id, time.Hour)
	otherTok, _ := agents.Issue(other, time.Hour)

	for _, body := range []string{`{"percent":50,"message":"half"}`, `{"percent":75}`} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/progress", body, jsonCT, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("progress %s: %d %s", body, rec.Code, rec.Body)
		}
	}
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":3}`, jsonCT, bearer(tok)); rec.Code != http.StatusAccepted {
		t.Fatalf("finished: %d %s", rec.Code, rec.Body)
	}
	for _, line := range []string{"one\n", "two\n"} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", line, header{"Content-Type", "text/plain"}, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("logs: %d %s", rec.Code, rec.Body)
		}
	}
	rs.get(func(rs *reportStore) {
		p, f := rs.progress[id], rs.finished[id]
		if p.Kind != gpuflow.ReportProgress || p.Percent != 75 || p.Message != "" || p.JobID != id || !p.ReceivedAt.Equal(testNow) {
			t.Errorf("recorded progress %+v", p)
		}
		if f.Kind != gpuflow.ReportFinished || f.ExitCode != 3 || f.JobID != id {
			t.Errorf("recorded finished %+v", f)
		}
	})
	if got := string(b.store.logs[id]); got != "one\ntwo\n" {
		t.Fatalf("stored output %q", got)
	}
	// A chunk resent at its offset (its answer was lost) is stored once;
	// a bad offset is refused.
	for _, h := range []string{"8", "8", "0"} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", "three\n", header{"Content-Type", "text/plain"}, header{HeaderLogOffset, h}, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("logs at %s: %d %s", h, rec.Code, rec.Body)
		}
	}
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", "x", header{"Content-Type", "text/plain"}, header{HeaderLogOffset, "-3"}, bearer(tok)); rec.Code != http.StatusBadRequest {
		t.Fatalf("logs at a negative offset: %d %s", rec.Code, rec.Body)
	}
	if got := string(b.store.logs[id]); got != "one\ntwo\nthree\n" {
		t.Fatalf("stored output after resends %q", got)
	}
	b.temporal.AssertNotCalled(t, "SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)

	// Refused: no token, a user token, another job's token, bad input;
	// nothing is recorded.
	rs.set(func(rs *reportStore) { rs.calls = 0 })
	userTok := b.as(aliceID)
	for name, h := range map[string][]header{
		"no token":   {jsonCT, anonymous},
		"user token": {jsonCT, userTok},
		"other job":  {jsonCT, bearer(otherTok)},
		"garbage":    {jsonCT, bearer("x.y.z")},
	} {
		rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":0}`, h...)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, rec.Code)
		}
	}
	for path, bodies := range map[string][]string{
		"progress": {`{"percent":101}`, `{"percent":-1}`, `{}`, `{"percent":5,"bogus":1}`, `nope`,
			`{"percent":5,"message":"` + strings.Repeat("x", 1001) + `"}`},
		"finished": {`{"exit_code":256}`, `{"exit_code":-2}`, `{}`, `{"exit_code":"0"}`},
	} {
		for _, body := range bodies {
			rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/"+path, body, jsonCT, bearer(tok))
			if rec.Code != http.StatusBadRequest {
				t.Errorf("%s %.40s: %d, want 400", path, body, rec.Code)
			}
		}
	}
	rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/progress", `{"percent":101}`, jsonCT, bearer(tok))
	var out struct {
		Error struct {
			Details struct {
				Fields map[string]string `json:"fields"`
			} `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Error.Details.Fields["percent"] == "" {
		t.Errorf("field details of a bad percent: %s", rec.Body)
	}
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":0}`, header{"Content-Type", "text/plain"}, bearer(tok)); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain finished: %d, want 415", rec.Code)
	}
	rs.get(func(rs *reportStore) {
		if rs.calls != 0 {
			t.Errorf("%d refused reports reached the store", rs.calls)
		}
	})

	// A report for a job that has ended.
	rs.set(func(rs *reportStore) { rs.ended[other] = true })
	for path, body := range map[string]string{"finished": `{"exit_code":0}`, "progress": `{"percent":1}`} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+other+"/"+path, body, jsonCT, bearer(otherTok)); rec.Code != http.StatusConflict {
			t.Errorf("%s of an ended job: %d, want 409", path, rec.Code)
		}
	}
}

// A second exit code is acknowledged and ignored; a different one is
// logged.
func TestAgentFinishedTwice(t *testing.T) {
	t.Parallel()
	b, rs, agents := agentSetup(t)
	logs := &testutil.SyncBuffer{}
	b.srv.log = slog.New(slog.NewTextHandler(logs, nil))
	id := uuid.NewString()
	tok, _ := agents.Issue(id, time.Hour)
	for _, code := range []string{"3", "3", "0"} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":`+code+`}`, jsonCT, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("finished %s: %d %s", code, rec.Code, rec.Body)
		}
	}
	rs.get(func(rs *reportStore) {
		if f := rs.finished[id]; f.ExitCode != 3 || f.ID != 1 {
			t.Errorf("kept %+v, want the first", f)
		}
	})
	if out := logs.String(); strings.Count(out, "second, different exit code") != 1 || !strings.Contains(out, "ignored_exit_code=0") {
		t.Errorf("log: %s", out)
	}
}

// With the store down the agent is told to retry (503); with Temporal
// down it is not (the other tests).
func TestAgentStoreDown(t *testing.T) {
	t.Parallel()
	b, rs, agents := agentSetup(t)
	rs.set(func(rs *reportStore) { rs.down = true })
	id := uuid.NewString()
	tok, _ := agents.Issue(id, time.Hour)
	for path, body := range map[string]string{"finished": `{"exit_code":0}`, "progress": `{"percent":1}`} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/"+path, body, jsonCT, bearer(tok)); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s with the store down: %d %s, want 503", path, rec.Code, rec.Body)
		}
	}
	// A store that cannot record reports at all also answers 503.
	b.srv.cfg.Jobs = b.store
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":0}`, jsonCT, bearer(tok)); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("finished without a report store: %d, want 503", rec.Code)
	}
	b.temporal.AssertNotCalled(t, "SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
}

// TestAgentEmptyJobID: a path with an empty job id is refused, whatever
// job the token is for (a token once passed for the empty id).
func TestAgentEmptyJobID(t *testing.T) {
	t.Parallel()
	b, rs, agents := agentSetup(t)
	tok, _ := agents.Issue(uuid.NewString(), time.Hour)
	for _, p := range []string{"/agent/v1/jobs//finished", "/agent/v1/jobs//progress", "/agent/v1/jobs//logs"} {
		if rec := b.do(t, http.MethodPost, p, `{"exit_code":0,"percent":1}`, jsonCT, bearer(tok)); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", p, rec.Code, rec.Body)
		}
	}
	rs.get(func(rs *reportStore) {
		if rs.calls != 0 {
			t.Errorf("%d reports recorded", rs.calls)
		}
	})
	if len(b.store.logs[""]) != 0 {
		t.Errorf("output stored for the empty job id: %q", b.store.logs[""])
	}
}
