package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/workflows"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// from sends the request from the client address addr.
func (b *bundle) from(t *testing.T, addr, method, path, body string, headers ...header) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.RemoteAddr = addr
	for _, h := range headers {
		req.Header.Set(h.k, h.v)
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	return rec
}

var formCT = header{"Content-Type", "application/x-www-form-urlencoded"}

func loginForm(user, password string) string {
	return url.Values{"username": {user}, "password": {password}}.Encode()
}

// login logs in with the form and returns the response.
func (b *bundle) login(t *testing.T, user, password string) *httptest.ResponseRecorder {
	t.Helper()
	return b.do(t, http.MethodPost, "/auth/jwt/login", loginForm(user, password), formCT, anonymous)
}

// wantCoded checks a fastapi-users error: status, the code in error.code
// and in the top-level detail, and the one error shape otherwise.
func wantCoded(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) apiError {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw) != 2 || raw["error"] == nil {
		t.Fatalf("body %s is not {\"error\":{...},\"detail\":...}", rec.Body)
	}
	if string(raw["detail"]) != strconv.Quote(code) {
		t.Errorf("detail = %s, want %q", raw["detail"], code)
	}
	e := decode[apiError](t, rec)
	if e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("error = %+v, want code %s and a message", e.Error, code)
	}
	return e
}

// TestAuthorizationMatrix sends every route as nobody, with a forged
// token, as another user, as the owner and as a superuser.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	jobID := uuid.NewString()
	b.store.put(runningJob(jobID, testNow)) // alice's
	_ = b.store.AppendLog(context.Background(), jobID, 0, []byte("hello\n"))
	b.temporal.On("SignalWorkflow", mock.Anything, "job-"+jobID, "", workflows.SignalCancel, mock.Anything).Return(nil)
	run := &mocks.WorkflowRun{}
	run.On("GetRunID").Return("run-1").Maybe()
	run.On("GetID").Return("").Maybe()
	b.temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).Return(run, nil)

	forged := b.forge(t, aliceID, []byte("another-secret-another-secret-another"))
	callers := []struct {
		name string
		h    header
	}{
		{"NoToken", anonymous},
		{"BadToken", header{"Authorization", "Bearer " + forged}},
		{"OtherUser", b.as(bobID)},
		{"Owner", b.as(aliceID)},
		{"Superuser", b.as(adminID)},
	}
	const (
		u = http.StatusUnauthorized
		n = http.StatusNotFound
	)
	routes := []struct {
		method, path, body string
		want               [5]int // per caller, in order
	}{
		{"GET", "/api/gpu/tasks/" + jobID, "", [5]int{u, u, n, 200, 200}},
		{"GET", "/api/gpu/tasks", "", [5]int{u, u, 200, 200, 200}},
		{"POST", "/api/gpu/tasks/" + jobID + "/cancel", "", [5]int{u, u, n, 202, 202}},
		{"GET", "/api/gpu/tasks/" + jobID + "/logs", "", [5]int{u, u, n, 200, 200}},
		{"POST", "/api/gpu/jobs/submit", `{"command":["x"],"gpu_type":"RTX4090"}`, [5]int{u, u, 202, 202, 202}},
		{"GET", "/api/gpu/providers", "", [5]int{u, u, 200, 200, 200}},
		{"GET", "/api/gpu/providers/runpod/gpus", "", [5]int{u, u, 200, 200, 200}},
		{"GET", "/users/me", "", [5]int{u, u, 200, 200, 200}},
	}
	for _, r := range routes {
		for i, c := range callers {
			t.Run(r.method+strings.ReplaceAll(r.path, "/", "_")+"/"+c.name, func(t *testing.T) {
				rec := b.do(t, r.method, r.path, r.body, jsonCT, c.h)
				if rec.Code != r.want[i] {
					t.Fatalf("status = %d, want %d; body %s", rec.Code, r.want[i], rec.Body)
				}
				switch rec.Code {
				case u:
					wantError(t, rec, u, "unauthorized")
					if h := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
						t.Errorf("WWW-Authenticate = %q", h)
					}
				case n:
					// Exactly what an unknown id answers.
					e := wantError(t, rec, n, "not_found")
					unknown := b.do(t, r.method, strings.Replace(r.path, jobID, "f0000000-0000-4000-8000-00000000000f", 1),
						r.body, jsonCT, c.h)
					if ue := decode[apiError](t, unknown); unknown.Code != n ||
						strings.ReplaceAll(ue.Error.Message, "f0000000-0000-4000-8000-00000000000f", jobID) != e.Error.Message {
						t.Errorf("another user's job answers %s, an unknown one %d %s", rec.Body, unknown.Code, unknown.Body)
					}
				}
			})
		}
	}

	t.Run("ListsAreScoped", func(t *testing.T) {
		ids := func(h header) []string {
			p := decode[struct {
				Tasks []jobView `json:"tasks"`
			}](t, b.do(t, "GET", "/api/gpu/tasks?limit=200", "", h))
			var out []string
			for _, j := range p.Tasks {
				out = append(out, j.OwnerID)
			}
			return out
		}
		for _, tc := range []struct {
			h    header
			want []string // owners seen
		}{{b.as(aliceID), []string{aliceID}}, {b.as(bobID), []string{bobID}}} {
			owners := ids(tc.h)
			if len(owners) == 0 {
				t.Errorf("no jobs listed")
			}
			for _, o := range owners {
				if !slices.Contains(tc.want, o) {
					t.Errorf("listing shows a job of %s, want only %v", o, tc.want)
				}
			}
		}
		all := ids(b.as(adminID))
		if !slices.Contains(all, aliceID) || !slices.Contains(all, bobID) || !slices.Contains(all, adminID) {
			t.Errorf("the superuser sees owners %v, want everyone's", all)
		}
	})
}

// forge signs a well-formed token for id with another key.
func (b *bundle) forge(t *testing.T, id string, key []byte) string {
	t.Helper()
	tk, err := auth.NewTokens(key, time.Hour, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tk.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSubmitOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts, in := b.expectStart(t)
	rec := b.do(t, http.MethodPost, "/api/gpu/jobs/submit", `{"command":["x"],"gpu_type":"RTX4090"}`, jsonCT, b.as(bobID))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	id := decode[submitResponse](t, rec).TaskID
	if owner, _ := opts.TypedSearchAttributes.GetKeyword(temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttrOwner)); owner != bobID {
		t.Errorf("GpuflowOwner = %q, want %s", owner, bobID)
	}
	if in.OwnerID != bobID {
		t.Errorf("workflow input owner = %q", in.OwnerID)
	}
	if j, err := b.store.Job(context.Background(), id); err != nil || j.OwnerID != bobID {
		t.Fatalf("stored job = %+v, %v", j, err)
	}
	// Bob sees it; alice does not; the superuser does.
	for who, want := range map[string]int{bobID: 200, aliceID: 404, adminID: 200} {
		if rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+id, "", b.as(who)); rec.Code != want {
			t.Errorf("%s: GET = %d, want %d", who, rec.Code, want)
		}
	}
}

func TestOwnerlessJob(t *testing.T) {
	t.Parallel()
	// A job whose owner was deleted (owner_id NULL) stays readable by
	// superusers and by nobody else.
	b := setup(t)
	j := runningJob(uuid.NewString(), testNow)
	j.OwnerID = ""
	b.store.put(j)
	for who, want := range map[string]int{aliceID: 404, bobID: 404, adminID: 200} {
		if rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+j.ID, "", b.as(who)); rec.Code != want {
			t.Errorf("%s: GET = %d, want %d", who, rec.Code, want)
		}
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expired := func() string {
		tk, _ := auth.NewTokens(testSecret, time.Hour, func() time.Time { return testNow.Add(-2 * time.Hour) })
		tok, _, _ := tk.Issue(aliceID)
		return tok
	}()
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := jwt.MapClaims{"iss": auth.Issuer, "aud": auth.Audience, "sub": aliceID, "exp": testNow.Add(time.Hour).Unix()}
	noExp := jwt.MapClaims{"iss": auth.Issuer, "aud": auth.Audience, "sub": aliceID}
	ghost := b.forge(t, "9a000000-0000-4000-8000-000000000009", testSecret) // a user who never existed

	for name, h := range map[string]string{
		"Missing":         "",
		"Empty":           "Bearer ",
		"NotBearer":       "Basic " + b.tokens[aliceID],
		"NoScheme":        b.tokens[aliceID],
		"Garbage":         "Bearer garbage",
		"Expired":         "Bearer " + expired,
		"AlgNone":         "Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims),
		"HS512":           "Bearer " + sign(jwt.SigningMethodHS512, testSecret, claims),
		"MissingExp":      "Bearer " + sign(jwt.SigningMethodHS256, testSecret, noExp),
		"OtherSecret":     "Bearer " + b.forge(t, aliceID, []byte("another-secret-another-secret-another")),
		"UnknownUser":     "Bearer " + ghost,
		"TokenInQuery":    "", // ?token= is for WebSocket upgrades only
		"TrailingGarbage": "Bearer " + b.tokens[aliceID] + "x",
	} {
		t.Run(name, func(t *testing.T) {
			path := "/users/me"
			if name == "TokenInQuery" {
				path += "?token=" + b.tokens[aliceID]
			}
			rec := b.do(t, http.MethodGet, path, "", header{"Authorization", h})
			wantError(t, rec, http.StatusUnauthorized, "unauthorized")
			wa := rec.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer") {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if strings.Contains(rec.Body.String(), "signature") || strings.Contains(rec.Body.String(), "expired:") {
				t.Errorf("the reason leaked: %s", rec.Body)
			}
		})
	}

	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		if rec := b.do(t, http.MethodGet, "/users/me", "", header{"Authorization", "bearer  " + b.tokens[aliceID]}); rec.Code != 200 {
			t.Errorf("status = %d; body %s", rec.Code, rec.Body)
		}
	})

	t.Run("WebSocketUpgradeCarriesToken", func(t *testing.T) {
		for name, hs := range map[string][]header{
			"Query":       {anonymous, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}},
			"Subprotocol": {anonymous, {"Upgrade", "websocket"}, {"Sec-WebSocket-Protocol", "bearer, " + b.tokens[aliceID]}},
		} {
			path := "/users/me"
			if name == "Query" {
				path += "?token=" + b.tokens[aliceID]
			}
			if rec := b.do(t, http.MethodGet, path, "", hs...); rec.Code != 200 {
				t.Errorf("%s: status = %d; body %s", name, rec.Code, rec.Body)
			}
		}
	})
}

func TestTokenRevokedWithAccount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	me := func() int { return b.do(t, http.MethodGet, "/users/me", "").Code }
	if got := me(); got != 200 {
		t.Fatalf("status = %d", got)
	}
	// Deactivating takes effect at once: the user is loaded per request.
	b.users.edit(aliceID, func(u *gpuflow.User) { u.IsActive = false })
	if got := me(); got != 401 {
		t.Errorf("inactive user: status = %d, want 401", got)
	}
	b.users.edit(aliceID, func(u *gpuflow.User) { u.IsActive = true })
	if got := me(); got != 200 {
		t.Errorf("reactivated user: status = %d", got)
	}
	// Promotion too.
	b.users.edit(aliceID, func(u *gpuflow.User) { u.IsSuperuser = true })
	j := runningJob(uuid.NewString(), testNow)
	j.OwnerID = bobID
	b.store.put(j)
	if rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+j.ID, ""); rec.Code != 200 {
		t.Errorf("promoted user: status = %d", rec.Code)
	}
	b.users.remove(aliceID)
	if got := me(); got != 401 {
		t.Errorf("deleted user: status = %d, want 401", got)
	}
}

func TestAuthStoreDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.users.setErr(&gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "database unavailable"})
	// Not 401: the token may be fine; the client should retry.
	wantError(t, b.do(t, http.MethodGet, "/users/me", ""), http.StatusServiceUnavailable, "unavailable")
	wantError(t, b.login(t, "alice@example.com", "alice@example.com-password"), http.StatusServiceUnavailable, "unavailable")
	b.users.setErr(errors.New("connection reset: secret-host"))
	rec := b.do(t, http.MethodGet, "/users/me", "")
	wantError(t, rec, http.StatusInternalServerError, "internal")
	if strings.Contains(rec.Body.String(), "secret-host") {
		t.Errorf("cause leaked: %s", rec.Body)
	}
}

func TestAuthNotConfigured(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]AuthConfig{
		"NoSecret":    {Users: newFakeUsers()},
		"ShortSecret": {Users: newFakeUsers(), Secret: []byte("short")},
		"NoUsers":     {Secret: testSecret},
	} {
		t.Run(name, func(t *testing.T) {
			b := &bundle{srv: New(Config{Auth: cfg, Jobs: newFakeStore()})}
			wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks", "", anonymous), http.StatusServiceUnavailable, "unavailable")
			wantError(t, b.do(t, http.MethodGet, "/users/me", "", header{"Authorization", "Bearer x"}),
				http.StatusServiceUnavailable, "unavailable")
			wantError(t, b.login(t, "a@example.com", "password1"), http.StatusServiceUnavailable, "unavailable")
			if rec := b.do(t, http.MethodGet, "/", "", anonymous); rec.Code != 200 {
				t.Errorf("GET / = %d", rec.Code)
			}
		})
	}
}

func TestPublicRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, p := range []string{"/", "/health", "/openapi.json", "/docs"} {
		rec := b.do(t, http.MethodGet, p, "", anonymous)
		if rec.Code == http.StatusUnauthorized {
			t.Errorf("GET %s without a token = 401", p)
		}
	}
	for _, p := range []string{"/users/me", "/api/gpu/tasks", "/api/gpu/ws", "/api/gpu/websocket/stats",
		"/api/gpu/tasks/" + uuid.NewString() + "/events", "/nope", "/%61pi/gpu/tasks"} {
		if rec := b.do(t, http.MethodGet, p, "", anonymous); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token = %d, want 401", p, rec.Code)
		}
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.do(t, http.MethodPost, "/auth/register",
			`{"email":" Carol@Example.com","password":"correct horse","is_superuser":true,"is_active":false}`, jsonCT, anonymous)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[map[string]any](t, rec)
		if want := []string{"can_run_local", "created_at", "email", "id", "is_active", "is_superuser", "is_verified"}; !slices.Equal(keys(got), want) {
			t.Fatalf("keys = %v, want %v", keys(got), want)
		}
		if got["email"] != "carol@example.com" || got["is_active"] != true || got["is_superuser"] != false ||
			got["is_verified"] != false || got["created_at"] != "2025-09-06T14:35:41.818341Z" {
			t.Errorf("user = %v (a client must not make itself a superuser)", got)
		}
		id, _ := got["id"].(string)
		u, err := b.users.User(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if u.HashedPassword == "" || strings.Contains(u.HashedPassword, "correct horse") ||
			!b.srv.auth.hasher.Verify(u.HashedPassword, "correct horse") {
			t.Errorf("stored hash %q", u.HashedPassword)
		}
		if strings.Contains(rec.Body.String(), "hash") || strings.Contains(rec.Body.String(), "$2a$") {
			t.Errorf("the hash leaked: %s", rec.Body)
		}
		// The new account can log in and use the API.
		tok := decode[tokenResponse](t, b.login(t, "CAROL@example.com", "correct horse")).AccessToken
		if rec := b.do(t, http.MethodGet, "/api/gpu/tasks", "", header{"Authorization", "Bearer " + tok}); rec.Code != 200 {
			t.Errorf("new user's listing = %d", rec.Code)
		}
	})

	t.Run("ErrDuplicateAnyCase", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, email := range []string{"alice@example.com", "ALICE@example.com", "Alice@Example.COM"} {
			rec := b.do(t, http.MethodPost, "/auth/register", `{"email":"`+email+`","password":"correct horse"}`, jsonCT, anonymous)
			wantCoded(t, rec, http.StatusBadRequest, "REGISTER_USER_ALREADY_EXISTS")
		}
	})

	for name, tc := range map[string]struct {
		body, code, field string
		status            int
	}{
		"WeakPassword":      {`{"email":"d@example.com","password":"short"}`, "REGISTER_INVALID_PASSWORD", "password", 400},
		"NoPassword":        {`{"email":"d@example.com"}`, "REGISTER_INVALID_PASSWORD", "password", 400},
		"LongPassword":      {`{"email":"d@example.com","password":"` + strings.Repeat("p", 73) + `"}`, "REGISTER_INVALID_PASSWORD", "password", 400},
		"PasswordHasEmail":  {`{"email":"d@example.com","password":"D@example.com1"}`, "REGISTER_INVALID_PASSWORD", "password", 400},
		"BadEmail":          {`{"email":"not-an-email","password":"correct horse"}`, "validation_failed", "email", 400},
		"EmailDisplayName":  {`{"email":"Dan <d@example.com>","password":"correct horse"}`, "validation_failed", "email", 400},
		"EmailList":         {`{"email":"d@example.com, e@example.com","password":"correct horse"}`, "validation_failed", "email", 400},
		"NoEmail":           {`{"password":"correct horse"}`, "validation_failed", "email", 400},
		"UnknownField":      {`{"email":"d@example.com","password":"correct horse","role":"admin"}`, "validation_failed", "role", 400},
		"MalformedJSON":     {`{"email":`, "invalid_json", "", 400},
		"EmailTooLong":      {`{"email":"` + strings.Repeat("d", 250) + `@example.com","password":"correct horse"}`, "validation_failed", "email", 400},
		"PasswordWrongType": {`{"email":"d@example.com","password":12345678}`, "validation_failed", "password", 400},
	} {
		t.Run("Err"+name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			rec := b.do(t, http.MethodPost, "/auth/register", tc.body, jsonCT, anonymous)
			var e apiError
			if strings.ToUpper(tc.code) == tc.code {
				e = wantCoded(t, rec, tc.status, tc.code)
				if reason, _ := e.Error.Details["reason"].(string); reason == "" {
					t.Errorf("no reason: %s", rec.Body)
				}
			} else {
				e = wantError(t, rec, tc.status, tc.code)
			}
			if tc.field != "" {
				fieldError(t, e, tc.field)
			}
			if n := len(b.users.byID); n != 3 {
				t.Errorf("%d users after a refused registration, want 3", n)
			}
		})
	}

	t.Run("ErrContentType", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.do(t, http.MethodPost, "/auth/register", "email=d@example.com&password=correct+horse", formCT, anonymous)
		wantError(t, rec, http.StatusUnsupportedMediaType, "unsupported_media_type")
	})
}

func TestLogin(t *testing.T) {
	t.Parallel()

	t.Run("Form", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.do(t, http.MethodPost, "/auth/jwt/login",
			"grant_type=password&username=Alice%40Example.com&password=alice%40example.com-password&scope=", formCT, anonymous)
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		got := decode[map[string]any](t, rec)
		if !slices.Equal(keys(got), []string{"access_token", "expires_in", "token_type"}) || got["token_type"] != "bearer" ||
			got["expires_in"] != 3600.0 {
			t.Errorf("answer = %v", got)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q", cc)
		}
		tok, _ := got["access_token"].(string)
		me := b.do(t, http.MethodGet, "/users/me", "", header{"Authorization", "Bearer " + tok})
		if u := decode[userView](t, me); me.Code != 200 || u.ID != aliceID || u.Email != "alice@example.com" {
			t.Errorf("me = %d %s", me.Code, me.Body)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := b.do(t, http.MethodPost, "/auth/jwt/login",
			`{"username":"bob@example.com","password":"bob@example.com-password"}`, jsonCT, anonymous)
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		tok := decode[tokenResponse](t, rec).AccessToken
		me := decode[userView](t, b.do(t, http.MethodGet, "/users/me", "", header{"Authorization", "Bearer " + tok}))
		if me.ID != bobID || me.IsSuperuser {
			t.Errorf("me = %+v", me)
		}
	})

	t.Run("ErrBadCredentials", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.users.edit(bobID, func(u *gpuflow.User) { u.IsActive = false })
		var bodies []string
		for _, tc := range []struct{ user, password string }{
			{"alice@example.com", "wrong password"},
			{"nobody@example.com", "alice@example.com-password"},
			{"bob@example.com", "bob@example.com-password"}, // right password, inactive
			{"not an email", "whatever1"},
		} {
			rec := b.login(t, tc.user, tc.password)
			e := wantCoded(t, rec, http.StatusBadRequest, "LOGIN_BAD_CREDENTIALS")
			bodies = append(bodies, e.Error.Message)
		}
		// All alike: nothing tells which accounts exist.
		for _, m := range bodies {
			if m != bodies[0] {
				t.Errorf("messages differ: %q", bodies)
			}
		}
	})

	for name, tc := range map[string]struct {
		body   string
		ct     header
		status int
		code   string
	}{
		"NoPassword":     {"username=alice%40example.com", formCT, 400, "validation_failed"},
		"NoUsername":     {"password=x", formCT, 400, "validation_failed"},
		"GrantType":      {"grant_type=client_credentials&username=a&password=b", formCT, 400, "validation_failed"},
		"JSONUnknown":    {`{"username":"a","password":"b","otp":"1"}`, jsonCT, 400, "validation_failed"},
		"JSONMalformed":  {`{"username":`, jsonCT, 400, "invalid_json"},
		"TextPlain":      {"username=a&password=b", header{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		"NoContentType":  {"username=a&password=b", header{"Content-Type", ""}, 415, "unsupported_media_type"},
		"BadForm":        {"username=%zz&password=b", formCT, 400, "validation_failed"},
		"UsernameTooBig": {loginForm(strings.Repeat("u", 300), "b"), formCT, 400, "validation_failed"},
		"TooLarge":       {loginForm("a", strings.Repeat("p", 20<<10)), formCT, 413, "payload_too_large"},
	} {
		t.Run("Err"+name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			wantError(t, b.do(t, http.MethodPost, "/auth/jwt/login", tc.body, tc.ct, anonymous), tc.status, tc.code)
		})
	}
}

func TestLoginRateLimits(t *testing.T) {
	t.Parallel()

	t.Run("PerAccount", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		clk := &clock{now: testNow}
		b.srv.now = clk.Now
		for i := range 5 {
			wantCoded(t, b.from(t, fmt.Sprintf("198.51.100.%d:1000", i), http.MethodPost, "/auth/jwt/login",
				loginForm("alice@example.com", "wrong password"), formCT), 400, "LOGIN_BAD_CREDENTIALS")
		}
		// The sixth attempt is refused, even with the right password and
		// from a fresh address, and even as the email in another case.
		rec := b.from(t, "198.51.100.99:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("ALICE@example.com", "alice@example.com-password"), formCT)
		wantError(t, rec, http.StatusTooManyRequests, "rate_limited")
		if ra := rec.Header().Get("Retry-After"); ra != "900" {
			t.Errorf("Retry-After = %q, want 900", ra)
		}
		// Other accounts are not affected.
		if rec := b.from(t, "198.51.100.99:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("bob@example.com", "bob@example.com-password"), formCT); rec.Code != 200 {
			t.Errorf("bob: %d %s", rec.Code, rec.Body)
		}
		// Unknown emails are limited alike: the limit tells nothing.
		for range 5 {
			b.from(t, "198.51.100.98:1000", http.MethodPost, "/auth/jwt/login", loginForm("ghost@example.com", "x"), formCT)
		}
		wantError(t, b.from(t, "198.51.100.97:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("ghost@example.com", "x"), formCT), http.StatusTooManyRequests, "rate_limited")

		// The window slides: a minute later than the first failure plus 15
		// minutes, one attempt is free again.
		clk.advance(15*time.Minute + time.Second)
		rec = b.from(t, "198.51.100.99:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("alice@example.com", "alice@example.com-password"), formCT)
		if rec.Code != 200 {
			t.Fatalf("after the window: %d %s", rec.Code, rec.Body)
		}
		// A success clears the count.
		for range 4 {
			b.from(t, "198.51.100.1:1000", http.MethodPost, "/auth/jwt/login", loginForm("alice@example.com", "nope"), formCT)
		}
		if rec := b.from(t, "198.51.100.2:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("alice@example.com", "alice@example.com-password"), formCT); rec.Code != 200 {
			t.Errorf("fifth attempt: %d", rec.Code)
		}
		for range 4 {
			b.from(t, "198.51.100.3:1000", http.MethodPost, "/auth/jwt/login", loginForm("alice@example.com", "nope"), formCT)
		}
		if rec := b.from(t, "198.51.100.4:1000", http.MethodPost, "/auth/jwt/login",
			loginForm("alice@example.com", "alice@example.com-password"), formCT); rec.Code != 200 {
			t.Errorf("after a success the count did not restart: %d", rec.Code)
		}
	})

	t.Run("PerAddress", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		clk := &clock{now: testNow}
		b.srv.now = clk.Now
		const addr = "203.0.113.5:4000"
		for i := range 20 {
			rec := b.from(t, addr, http.MethodPost, "/auth/jwt/login",
				loginForm(fmt.Sprintf("user%d@example.com", i), "whatever1"), formCT,
				header{"X-Forwarded-For", fmt.Sprintf("10.0.0.%d", i)}) // not trusted: ignored
			if rec.Code != 400 {
				t.Fatalf("attempt %d: %d %s", i, rec.Code, rec.Body)
			}
		}
		for _, path := range []string{"/auth/jwt/login", "/auth/register"} {
			rec := b.from(t, addr, http.MethodPost, path, `{"username":"x","email":"x@example.com","password":"whatever1"}`,
				jsonCT, header{"X-Forwarded-For", "10.9.9.9"})
			wantError(t, rec, http.StatusTooManyRequests, "rate_limited")
			if ra, _ := strconv.Atoi(rec.Header().Get("Retry-After")); ra < 1 || ra > 60 {
				t.Errorf("%s: Retry-After = %q", path, rec.Header().Get("Retry-After"))
			}
		}
		// Another address is not affected.
		if rec := b.from(t, "203.0.113.6:4000", http.MethodPost, "/auth/jwt/login",
			loginForm("alice@example.com", "alice@example.com-password"), formCT); rec.Code != 200 {
			t.Errorf("other address: %d", rec.Code)
		}
		clk.advance(time.Minute)
		if rec := b.from(t, addr, http.MethodPost, "/auth/jwt/login",
			loginForm("alice@example.com", "alice@example.com-password"), formCT); rec.Code != 200 {
			t.Errorf("a minute later: %d", rec.Code)
		}
	})

	t.Run("TrustedProxy", func(t *testing.T) {
		t.Parallel()
		_, proxies, _ := net.ParseCIDR("10.1.0.0/16")
		users := newFakeUsers()
		srv := New(Config{Jobs: newFakeStore(), Now: func() time.Time { return testNow }, Auth: AuthConfig{
			Users: users, Secret: testSecret, PasswordCost: auth.MinCost, TrustedProxies: []*net.IPNet{proxies},
			AttemptsPerAddress: RateLimit{Limit: 2, Period: time.Minute},
		}})
		b := &bundle{srv: srv}
		try := func(peer, xff string) int {
			return b.from(t, peer, http.MethodPost, "/auth/jwt/login", loginForm("a@example.com", "whatever1"), formCT,
				header{"X-Forwarded-For", xff}).Code
		}
		// Through the proxy, each client has its own count.
		for range 2 {
			if got := try("10.1.2.3:80", "198.51.100.1"); got != 400 {
				t.Fatalf("client 1 = %d", got)
			}
		}
		if got := try("10.1.2.3:80", "198.51.100.1"); got != 429 {
			t.Errorf("client 1, third = %d, want 429", got)
		}
		// A client cannot pose as another by prepending to the header.
		if got := try("10.1.2.3:80", "198.51.100.2, 198.51.100.1"); got != 429 {
			t.Errorf("spoofed = %d, want 429", got)
		}
		if got := try("10.1.2.3:80", "198.51.100.2"); got != 400 {
			t.Errorf("client 2 = %d, want 400", got)
		}
		// A peer that is not a trusted proxy is the client, whatever it says.
		for range 2 {
			try("198.51.100.7:80", "198.51.100.50")
		}
		if got := try("198.51.100.7:80", "198.51.100.51"); got != 429 {
			t.Errorf("untrusted peer = %d, want 429", got)
		}
	})
}

func TestWindow(t *testing.T) {
	t.Parallel()
	w := newWindow(RateLimit{Limit: 3, Period: time.Minute}, defaultLoginPerAccount)
	t0 := testNow
	for i := range 3 {
		if d := w.take("k", t0.Add(time.Duration(i)*10*time.Second)); d != 0 {
			t.Fatalf("take %d = %s", i, d)
		}
	}
	if d := w.take("k", t0.Add(30*time.Second)); d != 30*time.Second {
		t.Errorf("full window: wait %s, want 30s (until the first event leaves)", d)
	}
	if d := w.take("other", t0.Add(30*time.Second)); d != 0 {
		t.Errorf("other key: %s", d)
	}
	if d := w.take("k", t0.Add(time.Minute)); d != 0 {
		t.Errorf("after the first event left: %s", d)
	}
	if d := w.take("k", t0.Add(time.Minute+time.Second)); d != 9*time.Second {
		t.Errorf("wait %s, want 9s", d)
	}
	w.reset("k")
	if d := w.take("k", t0.Add(time.Minute+time.Second)); d != 0 {
		t.Errorf("after reset: %s", d)
	}
	// Idle keys are forgotten.
	w.take("idle", t0)
	w.take("k2", t0.Add(10*time.Minute))
	if n := w.size(); n != 1 {
		t.Errorf("%d keys remembered after a sweep, want 1", n)
	}
	// Defaults and disabling.
	if d := newWindow(RateLimit{}, defaultAttemptsPerAddress); d.limit != 20 || d.period != time.Minute {
		t.Errorf("default = %d per %s", d.limit, d.period)
	}
	var off *window = newWindow(RateLimit{Limit: -1}, defaultAttemptsPerAddress)
	if off != nil || off.take("k", t0) != 0 {
		t.Error("a disabled window limits")
	}
	off.reset("k")
}

func TestRequestToken(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		headers map[string]string
		query   string
		want    string
	}{
		"Header":              {map[string]string{"Authorization": "Bearer abc"}, "", "abc"},
		"HeaderLowercase":     {map[string]string{"Authorization": "bearer abc"}, "", "abc"},
		"HeaderWins":          {map[string]string{"Authorization": "Bearer abc", "Upgrade": "websocket"}, "token=q", "abc"},
		"BadHeaderNoFallback": {map[string]string{"Authorization": "Basic abc", "Upgrade": "websocket"}, "token=q", ""},
		"QueryNeedsUpgrade":   {nil, "token=q", ""},
		"QueryOnUpgrade":      {map[string]string{"Upgrade": "WebSocket"}, "token=q", "q"},
		"Subprotocol":         {map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Protocol": "json, Bearer, tok"}, "", "tok"},
		"SubprotocolNoToken":  {map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Protocol": "bearer"}, "", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/gpu/ws?"+tc.query, nil)
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		got, ok := requestToken(req)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: requestToken = %q, %v; want %q", name, got, ok, tc.want)
		}
	}
}
