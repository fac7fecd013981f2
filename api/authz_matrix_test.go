package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/mocks"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/workflows"
)

// The callers of the authorization matrix, in the order of a row's want.
const (
	cAnonymous    = iota // no Authorization header
	cForged              // a well-formed user token signed with another key
	cExpired             // alice's token, expired
	cInactive            // a valid token of a deactivated account
	cAgentOwn            // the agent token of the matrix's job
	cAgentOther          // an agent token of another job
	cAgentExpired        // the matrix job's agent token, expired
	cOtherUser           // bob
	cOwner               // alice, who owns the job
	cSuperuser           // admin
	nCallers
)

var callerNames = [nCallers]string{"Anonymous", "ForgedToken", "ExpiredToken", "InactiveAccount",
	"AgentTokenOwnJob", "AgentTokenOtherJob", "AgentTokenExpired", "OtherUser", "Owner", "Superuser"}

// authzRow is what one route answers each caller.
type authzRow struct {
	path    string           // the concrete path (the template's parameters filled in)
	body    func(int) string // the body a caller sends
	headers []header         // besides Authorization
	want    [nCallers]int    // per caller
}

// public: everyone gets status.
func public(status int) [nCallers]int {
	var w [nCallers]int
	for i := range w {
		w[i] = status
	}
	return w
}

// userRoute: user tokens only; other, for another user than the owner.
func userRoute(owner, other int) [nCallers]int {
	w := public(http.StatusUnauthorized)
	w[cOtherUser], w[cOwner], w[cSuperuser] = other, owner, owner
	return w
}

// superuserRoute: user tokens only, and superusers only among them.
func superuserRoute(status int) [nCallers]int {
	w := public(http.StatusUnauthorized)
	w[cOtherUser], w[cOwner], w[cSuperuser] = http.StatusForbidden, http.StatusForbidden, status
	return w
}

// agentRoute: the job's own, unexpired agent token only.
func agentRoute(status int) [nCallers]int {
	w := public(http.StatusUnauthorized)
	w[cAgentOwn] = status
	return w
}

func fixed(s string) func(int) string { return func(int) string { return s } }

// matrixStore is the fake store with agent reports and events.
type matrixStore struct {
	*reportStore
	events *eventStore
}

func (m matrixStore) Events(ctx context.Context, id string) ([]gpuflow.Event, error) {
	return m.events.Events(ctx, id)
}

// TestAuthorizationMatrixFromRoutes sends every route the server has, as
// listed by Echo itself (e.Routes()), as each kind of caller, and checks
// the status against the route's row. A route without a row fails the
// test, so a new route cannot ship without its row, and a row without a
// route fails it too.
func TestAuthorizationMatrixFromRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	jobID := uuid.NewString()
	b.store.put(runningJob(jobID, testNow)) // alice's
	_ = b.store.AppendLog(context.Background(), jobID, 0, []byte("hello\n"))
	feed := newFeedFake()
	feed.publish(jobID, aliceID, gpuflow.EventStatus, gpuflow.StatusRunning, "")
	reports := newReportStore(b.store)
	b.srv.cfg.Jobs = matrixStore{reportStore: reports, events: &eventStore{fakeStore: b.store, feed: feed}}
	b.srv.cfg.UI = fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}, "assets/app.js": {Data: []byte("1")}}
	b.srv.auth.perAddress = nil // every caller registers and logs in from one address
	b.withInvitations()
	run := &mocks.WorkflowRun{}
	run.On("GetRunID").Return("run-1").Maybe()
	run.On("GetID").Return("").Maybe()
	b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).Return(run, nil)
	b.temporal.On("SignalWorkflow", mock.Anything, "job-"+jobID, "", workflows.SignalCancel, mock.Anything).Return(nil)

	agents, err := auth.NewAgentTokens(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.srv.cfg.Agents = agents
	past, _ := auth.NewAgentTokens(testSecret, func() time.Time { return time.Now().Add(-3 * time.Hour) })
	agentOwn, _ := agents.Issue(jobID, time.Hour)
	agentOther, _ := agents.Issue(uuid.NewString(), time.Hour)
	agentExpired, _ := past.Issue(jobID, time.Hour)
	old, _ := auth.NewTokens(testSecret, time.Hour, func() time.Time { return testNow.Add(-2 * time.Hour) })
	expired, _, _ := old.Issue(aliceID)
	const daveID = "da7e0000-0000-4000-8000-000000000004"
	b.addUser(t, daveID, "dave@example.com", false)
	b.users.edit(daveID, func(u *gpuflow.User) { u.IsActive = false })
	auths := [nCallers]string{
		cAnonymous:    "",
		cForged:       "Bearer " + b.forge(t, aliceID, []byte("another-secret-another-secret-another")),
		cExpired:      "Bearer " + expired,
		cInactive:     "Bearer " + b.tokens[daveID],
		cAgentOwn:     "Bearer " + agentOwn,
		cAgentOther:   "Bearer " + agentOther,
		cAgentExpired: "Bearer " + agentExpired,
		cOtherUser:    "Bearer " + b.tokens[bobID],
		cOwner:        "Bearer " + b.tokens[aliceID],
		cSuperuser:    "Bearer " + b.tokens[adminID],
	}

	const (
		ok       = http.StatusOK
		accepted = http.StatusAccepted
		notFound = http.StatusNotFound
	)
	task := "/api/gpu/tasks/" + jobID
	agent := "/agent/v1/jobs/" + jobID
	rows := map[string]authzRow{
		"GET /":                {path: "/", want: public(ok)},
		"GET /health":          {path: "/health", want: public(ok)},
		"GET /openapi.json":    {path: "/openapi.json", want: public(ok)},
		"GET /docs":            {path: "/docs", want: public(ok)},
		"GET /docs/:file":      {path: "/docs/swagger-ui.css", want: public(ok)},
		"GET /metrics":         {path: "/metrics", want: public(ok)},
		"GET /ui":              {path: "/ui", want: public(http.StatusMovedPermanently)},
		"GET /ui/":             {path: "/ui/", want: public(ok)},
		"GET /ui/assets/:file": {path: "/ui/assets/app.js", want: public(ok)},
		"POST /auth/register": {path: "/auth/register", headers: []header{jsonCT}, want: public(http.StatusCreated),
			body: func(i int) string {
				return `{"email":"` + strings.ToLower(callerNames[i]) + `@example.com","password":"correct horse"}`
			}},
		"POST /auth/jwt/login": {path: "/auth/jwt/login", headers: []header{formCT}, want: public(ok),
			body: fixed(loginForm("alice@example.com", "alice@example.com-password"))},
		"GET /users/me":                           {path: "/users/me", want: userRoute(ok, ok)},
		"PATCH /users/:id":                        {path: "/users/" + bobID, headers: []header{jsonCT}, body: fixed(`{"can_run_local":true}`), want: superuserRoute(ok)},
		"POST /users/invitations":                 {path: "/users/invitations", want: superuserRoute(http.StatusCreated)},
		"GET /api/gpu/providers":                  {path: "/api/gpu/providers", want: userRoute(ok, ok)},
		"GET /api/gpu/providers/:name/gpus":       {path: "/api/gpu/providers/runpod/gpus", want: userRoute(ok, ok)},
		"GET /api/gpu/scheduling/recommendations": {path: "/api/gpu/scheduling/recommendations?gpu_type=RTX4090", want: userRoute(ok, ok)},
		"GET /api/gpu/scheduling/metrics":         {path: "/api/gpu/scheduling/metrics", want: userRoute(ok, ok)},
		"POST /api/gpu/jobs/submit": {path: "/api/gpu/jobs/submit", headers: []header{jsonCT},
			body: fixed(`{"command":["x"],"gpu_type":"RTX4090"}`), want: userRoute(accepted, accepted)},
		"GET /api/gpu/tasks":             {path: "/api/gpu/tasks", want: userRoute(ok, ok)},
		"GET /api/gpu/tasks/:id":         {path: task, want: userRoute(ok, notFound)},
		"POST /api/gpu/tasks/:id/cancel": {path: task + "/cancel", want: userRoute(accepted, notFound)},
		"GET /api/gpu/tasks/:id/logs":    {path: task + "/logs", want: userRoute(ok, notFound)},
		"GET /api/gpu/tasks/:id/events":  {path: task + "/events", want: userRoute(ok, notFound)},
		"GET /api/gpu/websocket/stats":   {path: "/api/gpu/websocket/stats", want: userRoute(ok, ok)},
		// Authorised callers get as far as the upgrade (this is no
		// WebSocket request: 426); TestWebSocketAuthenticates dials.
		"GET /api/gpu/ws": {path: "/api/gpu/ws", want: userRoute(http.StatusUpgradeRequired, http.StatusUpgradeRequired)},
		"POST /agent/v1/jobs/:id/progress": {path: agent + "/progress", headers: []header{jsonCT},
			body: fixed(`{"percent":5}`), want: agentRoute(accepted)},
		"POST /agent/v1/jobs/:id/finished": {path: agent + "/finished", headers: []header{jsonCT},
			body: fixed(`{"exit_code":0}`), want: agentRoute(accepted)},
		"POST /agent/v1/jobs/:id/logs": {path: agent + "/logs", headers: []header{{"Content-Type", "text/plain"}},
			body: fixed("output\n"), want: agentRoute(accepted)},
	}

	seen := map[string]bool{}
	for _, r := range b.srv.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // Echo's own 404 routes of group middleware
		}
		key := r.Method + " " + r.Path
		row, ok := rows[key]
		if !ok {
			t.Errorf("route %s has no row in the authorization matrix (TestAuthorizationMatrixFromRoutes): add one", key)
			continue
		}
		seen[key] = true
		for i := range nCallers {
			t.Run(strings.ReplaceAll(key, "/", "_")+"/"+callerNames[i], func(t *testing.T) {
				body := ""
				if row.body != nil {
					body = row.body(i)
				}
				hs := append([]header{{"Authorization", auths[i]}}, row.headers...)
				rec := b.do(t, r.Method, row.path, body, hs...)
				if rec.Code != row.want[i] {
					t.Fatalf("status = %d, want %d; body %.300s", rec.Code, row.want[i], rec.Body)
				}
				switch rec.Code {
				case http.StatusUnauthorized:
					wantError(t, rec, rec.Code, "unauthorized")
					if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
						t.Errorf("WWW-Authenticate = %q", h)
					}
				case http.StatusForbidden:
					wantError(t, rec, rec.Code, "forbidden")
				case http.StatusNotFound:
					wantError(t, rec, rec.Code, "not_found")
				}
			})
		}
	}
	for key := range rows {
		if !seen[key] {
			t.Errorf("the matrix has a row for %s, which the server does not have", key)
		}
	}
	// Nothing a refused caller sent took effect: bob's flags changed once
	// (by the superuser), the job's reports came from its agent only.
	if u, _ := b.users.User(context.Background(), bobID); !u.CanRunLocal || u.IsSuperuser {
		t.Errorf("bob = %+v", u)
	}
	reports.get(func(s *reportStore) {
		if s.calls != 2 {
			t.Errorf("%d agent reports recorded, want 2 (the job's own agent's progress and exit code)", s.calls)
		}
	})
	if logs, _ := b.store.Logs(context.Background(), jobID, 0, 100); string(logs) != "hello\noutput\n" {
		t.Errorf("logs = %q, want one chunk from the job's own agent", logs)
	}
}
