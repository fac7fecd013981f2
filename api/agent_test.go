package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/serviceerror"

	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/workflows"
)

// AppendLogTail makes the fake store a LogAppender.
func (s *fakeStore) AppendLogTail(_ context.Context, jobID string, data []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := int64(len(s.logs[jobID]))
	s.logs[jobID] = append(s.logs[jobID], data...)
	return off, nil
}

func TestAgentEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	agents, err := auth.NewAgentTokens(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.srv.cfg.Agents = agents
	id, other := uuid.NewString(), uuid.NewString()
	tok, _ := agents.Issue(id, time.Hour)
	otherTok, _ := agents.Issue(other, time.Hour)
	bearer := func(tk string) header { return header{"Authorization", "Bearer " + tk} }

	b.temporal.On("SignalWorkflow", mock.Anything, "job-"+id, "", workflows.SignalProgress,
		workflows.ProgressSignal{Percent: 50, Message: "half"}).Return(nil).Once()
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/progress", `{"percent":50,"message":"half"}`, jsonCT, bearer(tok)); rec.Code != http.StatusAccepted {
		t.Fatalf("progress: %d %s", rec.Code, rec.Body)
	}
	b.temporal.On("SignalWorkflow", mock.Anything, "job-"+id, "", workflows.SignalFinished,
		workflows.FinishedSignal{ExitCode: 3}).Return(nil).Once()
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":3}`, jsonCT, bearer(tok)); rec.Code != http.StatusAccepted {
		t.Fatalf("finished: %d %s", rec.Code, rec.Body)
	}
	for _, line := range []string{"one\n", "two\n"} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", line, header{"Content-Type", "text/plain"}, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("logs: %d %s", rec.Code, rec.Body)
		}
	}
	if got := string(b.store.logs[id]); got != "one\ntwo\n" {
		t.Fatalf("stored output %q", got)
	}
	b.temporal.AssertExpectations(t)

	// Refused: no token, a user token, another job's token, bad input.
	userTok := b.as(aliceID)
	for name, h := range map[string][]header{
		"no token":   {jsonCT},
		"user token": {jsonCT, userTok},
		"other job":  {jsonCT, bearer(otherTok)},
		"garbage":    {jsonCT, bearer("x.y.z")},
	} {
		rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/finished", `{"exit_code":0}`, h...)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, rec.Code)
		}
	}
	for _, body := range []string{`{"percent":101}`, `{}`, `{"percent":5,"bogus":1}`, `nope`} {
		if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/progress", body, jsonCT, bearer(tok)); rec.Code != http.StatusBadRequest {
			t.Errorf("progress %s: %d, want 400", body, rec.Code)
		}
	}
	// A report for a finished job.
	b.temporal.On("SignalWorkflow", mock.Anything, "job-"+other, "", workflows.SignalFinished, mock.Anything).
		Return(serviceerror.NewNotFound("workflow execution already completed")).Once()
	if rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+other+"/finished", `{"exit_code":0}`, jsonCT, bearer(otherTok)); rec.Code != http.StatusConflict {
		t.Errorf("finished job: %d, want 409", rec.Code)
	}
}
