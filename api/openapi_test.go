package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/mocks"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/workflows"
)

// loadDoc loads and validates the served OpenAPI document.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapiDoc)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	// Every operation has an id, a summary and an answer for 500.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s: no operationId or summary", method, path)
			}
			if op.Responses.Status(http.StatusInternalServerError) == nil {
				t.Errorf("%s %s: no 500 answer", method, path)
			}
		}
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// TestOpenAPIMatchesRoutes: the document describes exactly the routes the
// server has.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	env := newFeedEnv(t, nil, nil, nil, nil)
	served := map[string]bool{}
	for _, r := range env.srv.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // Echo's own 404 routes of group middleware
		}
		served[r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	for _, r := range missing {
		t.Errorf("route %s is not in openapi.json", r)
	}
	for _, r := range extra {
		t.Errorf("openapi.json describes %s, which the server does not have", r)
	}
}

var registerDecoders sync.Once

// docChecker validates real requests and answers against the document.
type docChecker struct {
	t      *testing.T
	router routers.Router
	seen   map[string]bool // "METHOD path status" checked
}

func newDocChecker(t *testing.T) *docChecker {
	t.Helper()
	registerDecoders.Do(func() {
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/png", "image/svg+xml"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
		}
	})
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: "http://example.com"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &docChecker{t: t, router: router, seen: map[string]bool{}}
}

// check validates an answer (status, headers, body) to req; validRequest
// also validates the request against the document. It returns the body.
func (d *docChecker) check(name string, req *http.Request, reqBody []byte, validRequest bool, status int, header http.Header, body []byte) {
	t := d.t
	t.Helper()
	u := *req.URL
	u.Scheme, u.Host = "http", "example.com"
	vreq := req.Clone(context.Background())
	vreq.URL = &u
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := d.router.FindRoute(vreq)
	if err != nil {
		t.Errorf("%s: %s %s is not in the document: %v", name, req.Method, req.URL.Path, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true,
		IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if validRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s: the request does not match the document: %v", name, err)
		}
		vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	})
	if err != nil {
		t.Errorf("%s: the %d answer does not match the document: %v\nbody: %.500s", name, status, err, body)
	}
	d.seen[req.Method+" "+route.Path+" "+http.StatusText(status)] = true
}

// TestOpenAPIAnswersMatchSchemas makes real requests to every route, good
// and bad, and validates each answer against the document.
func TestOpenAPIAnswersMatchSchemas(t *testing.T) {
	t.Parallel()
	temporal := &mocks.Client{}
	run := &mocks.WorkflowRun{}
	run.On("GetRunID").Return("run-1").Maybe()
	run.On("GetID").Return("").Maybe()
	temporal.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.JobWorkflowName, mock.Anything).Return(run, nil)
	temporal.On("SignalWorkflow", mock.Anything, mock.Anything, "", workflows.SignalCancel, mock.Anything).Return(nil)
	healthy := true
	var healthMu sync.Mutex
	env := newFeedEnv(t, nil, nil, nil, nil, func(c *Config, _ *feedEnv) {
		c.Temporal = temporal
		c.TemporalUIURL = "http://127.0.0.1:8233"
		c.Providers = append(gpuflow.Providers{&fakeProvider{
			info: gpuflow.ProviderInfo{Name: "runpod", DisplayName: "RunPod", Description: "RunPod GPU cloud computing platform",
				Mode: gpuflow.ModeEmulated},
			offers: []gpuflow.Offer{{Provider: "runpod", GPUType: "RTX4090", GPUCount: 1, MemoryGB: 32, GPUMemoryGB: 24, VCPUs: 8,
				PricePerHour: 0.69, SpotPricePerHour: 0.35, Region: "US", Available: 3}},
			healthErr: nil,
		}}, c.Providers...)
		c.HealthChecks = map[string]func(context.Context) error{
			"postgres": func(context.Context) error {
				healthMu.Lock()
				defer healthMu.Unlock()
				if !healthy {
					return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "connection refused")
				}
				return nil
			},
		}
	})
	d := newDocChecker(t)
	aliceJob, finished, bobJob := env.job(env.alice), env.job(env.alice), env.job(env.bob)
	env.store.setStatus(finished, gpuflow.StatusSucceeded)
	if err := env.store.AppendLog(t.Context(), finished, 0, []byte("done\n")); err != nil {
		t.Fatal(err)
	}
	env.feed.publish(aliceJob, env.alice, gpuflow.EventStatus, gpuflow.StatusRunning, `{"attempt":1}`)
	env.feed.publish(aliceJob, env.alice, gpuflow.EventProgress, "", "")

	const (
		form = "application/x-www-form-urlencoded"
		js   = "application/json"
	)
	type call struct {
		name, method, path, token, ctype, body string
		status                                 int
		validRequest                           bool
	}
	tok := env.aliceTok
	calls := []call{
		{"root", "GET", "/", "", "", "", 200, true},
		{"health", "GET", "/health", "", "", "", 200, true},
		{"openapi", "GET", "/openapi.json", "", "", "", 200, true},
		{"docs", "GET", "/docs", "", "", "", 200, true},
		{"docs css", "GET", "/docs/swagger-ui.css", "", "", "", 200, true},
		{"docs js", "GET", "/docs/swagger-ui-bundle.js", "", "", "", 200, true},
		{"docs png", "GET", "/docs/favicon-32x32.png", "", "", "", 200, true},
		{"docs license", "GET", "/docs/LICENSE", "", "", "", 200, true},
		{"docs missing", "GET", "/docs/nope.js", "", "", "", 404, true},
		{"register", "POST", "/auth/register", "", js, `{"email":"carol@example.com","password":"a long enough password 42"}`, 201, true},
		{"register taken", "POST", "/auth/register", "", js, `{"email":"carol@example.com","password":"a long enough password 42"}`, 400, true},
		{"register weak", "POST", "/auth/register", "", js, `{"email":"dave@example.com","password":"x"}`, 400, true},
		{"register bad json", "POST", "/auth/register", "", js, `{"email":`, 400, false},
		{"register form", "POST", "/auth/register", "", form, `email=a`, 415, false},
		{"login form", "POST", "/auth/jwt/login", "", form, "username=carol%40example.com&password=a+long+enough+password+42", 200, true},
		{"login json", "POST", "/auth/jwt/login", "", js, `{"username":"carol@example.com","password":"a long enough password 42"}`, 200, true},
		{"login wrong", "POST", "/auth/jwt/login", "", form, "username=carol%40example.com&password=wrong", 400, true},
		{"login missing", "POST", "/auth/jwt/login", "", form, "username=carol%40example.com", 400, false},
		{"login text", "POST", "/auth/jwt/login", "", "text/plain", "hi", 415, false},
		{"me", "GET", "/users/me", tok, "", "", 200, true},
		{"me anonymous", "GET", "/users/me", "", "", "", 401, false},
		{"metrics empty", "GET", "/api/gpu/scheduling/metrics", tok, "", "", 200, true},
		{"providers", "GET", "/api/gpu/providers", tok, "", "", 200, true},
		{"providers anonymous", "GET", "/api/gpu/providers", "", "", "", 401, false},
		{"providers bad token", "GET", "/api/gpu/providers", "nope", "", "", 401, false},
		{"gpus", "GET", "/api/gpu/providers/runpod/gpus", tok, "", "", 200, true},
		{"gpus local", "GET", "/api/gpu/providers/local/gpus", tok, "", "", 200, true},
		{"gpus unknown", "GET", "/api/gpu/providers/nope/gpus", tok, "", "", 404, true},
		{"submit", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["python","train.py"],"gpu_type":"RTX4090","gpu_count":1,"provider":null,"max_price_per_hour":null}`, 202, true},
		{"submit cpu", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["true"],"gpu_count":0}`, 202, true},
		{"submit invalid", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["python"],"gpu_type":"RTX4090","gpu_count":9}`, 400, false},
		{"submit unknown field", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["python"],"gpus":1}`, 400, false},
		{"submit malformed", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":`, 400, false},
		{"submit text", "POST", "/api/gpu/jobs/submit", tok, "text/plain", `hi`, 415, false},
		{"submit too large", "POST", "/api/gpu/jobs/submit", tok, js, `{"name":"` + strings.Repeat("x", maxSubmitBody) + `"}`, 413, false},
		{"submit unschedulable", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["python"],"gpu_type":"H100","gpu_count":8}`, 422, true},
		{"tasks", "GET", "/api/gpu/tasks", tok, "", "", 200, true},
		{"tasks page", "GET", "/api/gpu/tasks?limit=1&status=running", tok, "", "", 200, true},
		{"tasks bad limit", "GET", "/api/gpu/tasks?limit=0", tok, "", "", 400, false},
		{"task", "GET", "/api/gpu/tasks/" + aliceJob, tok, "", "", 200, true},
		{"task other's", "GET", "/api/gpu/tasks/" + bobJob, tok, "", "", 404, true},
		{"task superuser", "GET", "/api/gpu/tasks/" + bobJob, env.rootTok, "", "", 200, true},
		{"cancel", "POST", "/api/gpu/tasks/" + aliceJob + "/cancel", tok, js, `{"reason":"enough"}`, 202, true},
		{"cancel no body", "POST", "/api/gpu/tasks/" + aliceJob + "/cancel", tok, "", "", 202, true},
		{"cancel finished", "POST", "/api/gpu/tasks/" + finished + "/cancel", tok, "", "", 409, true},
		{"cancel bad body", "POST", "/api/gpu/tasks/" + aliceJob + "/cancel", tok, js, `{"why":1}`, 400, false},
		{"cancel text body", "POST", "/api/gpu/tasks/" + aliceJob + "/cancel", tok, "text/plain", `why`, 415, false},
		{"logs", "GET", "/api/gpu/tasks/" + finished + "/logs", tok, "", "", 200, true},
		{"logs offset", "GET", "/api/gpu/tasks/" + finished + "/logs?offset=2", tok, "", "", 200, true},
		{"logs follow", "GET", "/api/gpu/tasks/" + finished + "/logs?follow=1", tok, "", "", 200, true},
		{"logs bad offset", "GET", "/api/gpu/tasks/" + finished + "/logs?offset=-1", tok, "", "", 400, false},
		{"logs unknown", "GET", "/api/gpu/tasks/6f1e4bde-0000-4000-8000-000000000000/logs", tok, "", "", 404, true},
		{"events", "GET", "/api/gpu/tasks/" + aliceJob + "/events", tok, "", "", 200, true},
		{"events other's", "GET", "/api/gpu/tasks/" + bobJob + "/events", tok, "", "", 404, true},
		{"ws anonymous", "GET", "/api/gpu/ws", "", "", "", 401, true},
		{"ws not upgrade", "GET", "/api/gpu/ws", tok, "", "", 426, true},
		{"ws bad since", "GET", "/api/gpu/ws?since=x", tok, "", "", 400, false},
		{"ws stats", "GET", "/api/gpu/websocket/stats", tok, "", "", 200, true},
		{"recommendations", "GET", "/api/gpu/scheduling/recommendations?gpu_type=RTX4090&gpu_count=1", tok, "", "", 200, true},
		{"recommendations cpu", "GET", "/api/gpu/scheduling/recommendations?gpu_count=0", tok, "", "", 200, true},
		{"recommendations none", "GET", "/api/gpu/scheduling/recommendations?gpu_type=H100&gpu_count=8", tok, "", "", 200, true},
		{"recommendations bad count", "GET", "/api/gpu/scheduling/recommendations?gpu_type=RTX4090&gpu_count=x", tok, "", "", 400, false},
		{"recommendations no type", "GET", "/api/gpu/scheduling/recommendations", tok, "", "", 400, true},
		{"recommendations anonymous", "GET", "/api/gpu/scheduling/recommendations?gpu_type=RTX4090", "", "", "", 401, false},
		{"metrics", "GET", "/api/gpu/scheduling/metrics", tok, "", "", 200, true},
		{"metrics anonymous", "GET", "/api/gpu/scheduling/metrics", "", "", "", 401, false},
	}
	const idemBody = `{"command":["python","train.py"],"gpu_type":"RTX4090"}`
	keyed := map[string]string{ // call name -> Idempotency-Key
		"submit keyed": "key-1", "submit keyed replay": "key-1", "submit keyed reused": "key-1",
		"submit key too long": strings.Repeat("k", MaxIdempotencyKeyLen+1),
	}
	calls = append(calls,
		call{"submit keyed", "POST", "/api/gpu/jobs/submit", tok, js, idemBody, 202, true},
		call{"submit keyed replay", "POST", "/api/gpu/jobs/submit", tok, js, idemBody, 202, true},
		call{"submit keyed reused", "POST", "/api/gpu/jobs/submit", tok, js, `{"command":["other"],"gpu_type":"RTX4090"}`, 409, true},
		call{"submit key too long", "POST", "/api/gpu/jobs/submit", tok, js, idemBody, 400, false},
		call{"metrics after submissions", "GET", "/api/gpu/scheduling/metrics", tok, "", "", 200, true},
	)
	for _, c := range calls {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req := httptest.NewRequest(c.method, c.path, body)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		if k := keyed[c.name]; k != "" {
			req.Header.Set(HeaderIdempotencyKey, k)
		}
		rec := httptest.NewRecorder()
		env.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d: %.300s", c.name, rec.Code, c.status, rec.Body.String())
			continue
		}
		d.check(c.name, req, []byte(c.body), c.validRequest, rec.Code, rec.Header(), rec.Body.Bytes())
	}

	t.Run("Unhealthy", func(t *testing.T) {
		healthMu.Lock()
		healthy = false
		healthMu.Unlock()
		req := httptest.NewRequest(http.MethodGet, "/health", nil)
		rec := httptest.NewRecorder()
		env.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d", rec.Code)
		}
		d.check("unhealthy", req, nil, true, rec.Code, rec.Header(), rec.Body.Bytes())
	})
	t.Run("WebSocket", func(t *testing.T) {
		for _, sub := range []bool{false, true} {
			dialer := websocket.Dialer{}
			target := env.wsURL("token=" + url.QueryEscape(env.aliceTok) + "&since=0")
			if sub {
				dialer.Subprotocols = []string{"bearer", env.aliceTok}
				target = env.wsURL("")
			}
			conn, resp, err := dialer.Dial(target, nil)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(target)
			req := httptest.NewRequest(http.MethodGet, u.RequestURI(), nil)
			d.check("ws upgrade", req, nil, true, resp.StatusCode, resp.Header, nil)
			// Every message it sends matches the Event or the server
			// message schema.
			wsSend(t, conn, `{"action":"subscribe","task_id":"`+bobJob+`"}`)
			wsSend(t, conn, `{"action":"subscribe","task_id":"`+aliceJob+`"}`)
			wsSend(t, conn, `{"action":"ping"}`)
			env.feed.publish(aliceJob, env.alice, gpuflow.EventLog, "", `{"line":"x"}`)
			schemas := loadDoc(t).Components.Schemas
			seen := map[string]bool{}
			for !(seen["error"] && seen["subscribed"] && seen["pong"] && seen["event"]) {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, data, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("read (seen %v): %v", seen, err)
				}
				var v map[string]any
				if err := json.Unmarshal(data, &v); err != nil {
					t.Fatal(err)
				}
				schema, kind := "WebSocketServerMessage", v["type"].(string)
				if v["seq"] != nil {
					schema, kind = "Event", "event"
				}
				seen[kind] = true
				if err := schemas[schema].Value.VisitJSON(v); err != nil {
					t.Errorf("message %s does not match %s: %v", data, schema, err)
				}
			}
			conn.Close()
		}
	})
}
