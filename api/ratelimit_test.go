package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/mocks"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/pgtest"
	"github.com/gpuflow/gpuflow/postgres"
	"github.com/gpuflow/gpuflow/workflows"
)

// The package's tests that need PostgreSQL get a throwaway cluster,
// started on first use only.
func TestMain(m *testing.M) { pgtest.Main(m) }

// wantRateLimited checks a 429: the error shape and a Retry-After in
// whole seconds within (lo, hi].
func wantRateLimited(t *testing.T, rec *httptest.ResponseRecorder, lo, hi int) {
	t.Helper()
	e := wantError(t, rec, http.StatusTooManyRequests, "rate_limited")
	ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || ra <= lo || ra > hi {
		t.Fatalf("Retry-After = %q, want seconds in (%d, %d]", rec.Header().Get("Retry-After"), lo, hi)
	}
	if e.Error.Details["retry_after_seconds"] != float64(ra) {
		t.Errorf("details = %v", e.Error.Details)
	}
}

// TestUserRateLimits: each user has their own submit and cancel buckets;
// past one, 429 with Retry-After and nothing done; they refill with time.
func TestUserRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clk := &clock{now: testNow}
	b.srv.now = clk.Now
	b.srv.rates = newUserRates(Config{Now: clk.Now, SubmitRate: RateLimit{Limit: 2, Period: time.Minute},
		CancelRate: RateLimit{Limit: 1, Period: time.Minute}})
	body := `{"command":["python","train.py"],"gpu_type":"RTX4090"}`
	for range 2 {
		b.expectStart(t)
		if rec := b.submit(t, body); rec.Code != http.StatusAccepted {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	calls := len(b.temporal.Calls)
	jobs := b.store.count()
	// Every request counts, even one that would be refused for its body.
	wantRateLimited(t, b.submit(t, body), 0, 30)
	wantRateLimited(t, b.submit(t, `{`), 0, 30)
	if len(b.temporal.Calls) != calls || b.store.count() != jobs {
		t.Error("a rate-limited submission started or stored something")
	}
	// Bob has his own bucket.
	b.expectStart(t)
	if rec := b.do(t, http.MethodPost, "/api/gpu/jobs/submit", body, jsonCT, b.as(bobID)); rec.Code != http.StatusAccepted {
		t.Fatalf("bob: %d %s", rec.Code, rec.Body)
	}
	// Cancels have theirs (an unknown job counts too: no probing past it).
	wantError(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+uuid.NewString()+"/cancel", ""), http.StatusNotFound, "not_found")
	wantRateLimited(t, b.do(t, http.MethodPost, "/api/gpu/tasks/"+uuid.NewString()+"/cancel", ""), 0, 60)
	// Half a minute refills one submission (2 a minute).
	clk.advance(30 * time.Second)
	b.expectStart(t)
	if rec := b.submit(t, body); rec.Code != http.StatusAccepted {
		t.Fatalf("after the refill: %d %s", rec.Code, rec.Body)
	}
	wantRateLimited(t, b.submit(t, body), 0, 30)

	// A negative limit turns it off.
	b.srv.rates = newUserRates(Config{Now: clk.Now, SubmitRate: RateLimit{Limit: -1}})
	for range 5 {
		wantError(t, b.submit(t, `{`), http.StatusBadRequest, "invalid_json")
	}
}

// TestRateLimitsAcrossReplicas: two API servers on one database share
// each user's submit and cancel counts (the database's token buckets).
func TestRateLimitsAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	db1, db2 := open(), open()
	if err := db1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	hasher := &auth.Hasher{Cost: auth.MinCost}
	hash, _ := hasher.Hash("correct horse")
	alice := &gpuflow.User{Email: "alice@example.com", HashedPassword: hash, IsActive: true}
	bob := &gpuflow.User{Email: "bob@example.com", HashedPassword: hash, IsActive: true}
	for _, u := range []*gpuflow.User{alice, bob} {
		if err := db1.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	temporal := &mocks.Client{}
	run := &mocks.WorkflowRun{}
	run.On("GetRunID").Return("run-1").Maybe()
	run.On("GetID").Return("").Maybe()
	temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).Return(run, nil)
	temporal.On("SignalWorkflow", mock.Anything, mock.Anything, "", workflows.SignalCancel, mock.Anything).Return(nil)
	runpod := &fakeProvider{info: gpuflow.ProviderInfo{Name: "runpod", Mode: gpuflow.ModeLive},
		offers: []gpuflow.Offer{{Provider: "runpod", GPUType: "RTX4090", GPUCount: 1, PricePerHour: 0.69, Available: 3}}}
	replica := func(db *postgres.DB) *Server {
		return New(Config{Jobs: db, Temporal: temporal, Providers: gpuflow.Providers{runpod}, Limiter: db,
			SubmitRate: RateLimit{Limit: 3, Period: time.Hour}, CancelRate: RateLimit{Limit: 2, Period: time.Hour},
			Auth: AuthConfig{Users: db, Secret: testSecret, PasswordCost: auth.MinCost}})
	}
	servers := []*Server{replica(db1), replica(db2)}
	tokens, _ := auth.NewTokens(testSecret, time.Hour, nil)
	token := func(u *gpuflow.User) string { tok, _, _ := tokens.Issue(u.ID); return tok }
	send := func(i int, u *gpuflow.User, method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token(u))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		servers[i%2].Handler().ServeHTTP(rec, req)
		return rec
	}
	body := `{"command":["python","train.py"],"gpu_type":"RTX4090"}`
	var ids []string
	for i := range 3 { // across both replicas
		rec := send(i, alice, http.MethodPost, "/api/gpu/jobs/submit", body)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("submission %d: %d %s", i, rec.Code, rec.Body)
		}
		ids = append(ids, decode[submitResponse](t, rec).TaskID)
	}
	// The fourth and fifth, on either replica: 429, a token back in 20 min.
	for i := range 2 {
		wantRateLimited(t, send(i, alice, http.MethodPost, "/api/gpu/jobs/submit", body), 19*60, 20*60)
	}
	if jobs, _, err := db1.Jobs(ctx, gpuflow.JobFilter{OwnerID: alice.ID, Limit: 10}); err != nil || len(jobs) != 3 {
		t.Errorf("alice has %d jobs (%v), want 3", len(jobs), err)
	}
	if rec := send(1, bob, http.MethodPost, "/api/gpu/jobs/submit", body); rec.Code != http.StatusAccepted {
		t.Errorf("bob: %d %s", rec.Code, rec.Body)
	}
	for i, id := range ids[:2] {
		if rec := send(i, alice, http.MethodPost, "/api/gpu/tasks/"+id+"/cancel", ""); rec.Code != http.StatusAccepted {
			t.Fatalf("cancel %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	wantRateLimited(t, send(0, alice, http.MethodPost, "/api/gpu/tasks/"+ids[2]+"/cancel", ""), 29*60, 30*60)
	signals := 0
	for _, c := range temporal.Calls {
		if c.Method == "SignalWorkflow" {
			signals++
		}
	}
	if signals != 2 {
		t.Errorf("%d cancels signalled, want 2", signals)
	}
}
