package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestSubmitRefusesInjection: what would reach a shell, a container
// runtime's argument list, an environment or a terminal is refused with a
// 400 naming the field, and nothing is started or stored.
func TestSubmitRefusesInjection(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, field string }{
		"EnvNameShell":     {`{"command":["x"],"gpu_type":"RTX4090","env":{"A;rm -rf /":"1"}}`, "env"},
		"EnvNameEquals":    {`{"command":["x"],"gpu_type":"RTX4090","env":{"PATH=/tmp:":"1"}}`, "env"},
		"EnvNameDigit":     {`{"command":["x"],"gpu_type":"RTX4090","env":{"1X":"1"}}`, "env"},
		"EnvNameSpace":     {`{"command":["x"],"gpu_type":"RTX4090","env":{"A B":"1"}}`, "env"},
		"EnvNameSubst":     {`{"command":["x"],"gpu_type":"RTX4090","env":{"$(id)":"1"}}`, "env"},
		"EnvValueNUL":      {`{"command":["x"],"gpu_type":"RTX4090","env":{"A":"x\u0000y"}}`, "env"},
		"CommandNUL":       {`{"command":["x","a\u0000b"],"gpu_type":"RTX4090"}`, "command"},
		"ImageOption":      {`{"image":"--privileged","command":["x"],"gpu_type":"RTX4090"}`, "image"},
		"ImageVolume":      {`{"image":"-v=/:/host","command":["x"],"gpu_type":"RTX4090"}`, "image"},
		"ImageSpace":       {`{"image":"alpine --privileged","command":["x"],"gpu_type":"RTX4090"}`, "image"},
		"ImageShell":       {`{"image":"alpine;reboot","command":["x"],"gpu_type":"RTX4090"}`, "image"},
		"ImageNewline":     {`{"image":"alpine\nreboot","command":["x"],"gpu_type":"RTX4090"}`, "image"},
		"NameEscape":       {`{"name":"\u001b]0;pwned\u0007","command":["x"],"gpu_type":"RTX4090"}`, "name"},
		"NameNewline":      {`{"name":"a\nb","command":["x"],"gpu_type":"RTX4090"}`, "name"},
		"NameC1":           {`{"name":"a\u009bb","command":["x"],"gpu_type":"RTX4090"}`, "name"},
		"GPUTypeControl":   {`{"command":["x"],"gpu_type":"RTX\u00004090"}`, "gpu_type"},
		"NameTooLong":      {`{"name":"` + strings.Repeat("n", 201) + `","command":["x"],"gpu_type":"RTX4090"}`, "name"},
		"TooManyArgs":      {`{"command":[` + strings.Repeat(`"a",`, 256) + `"a"],"gpu_type":"RTX4090"}`, "command"},
		"ProviderUnknown":  {`{"command":["x"],"gpu_type":"RTX4090","provider":"../../etc"}`, "provider"},
		"PriorityTooHigh":  {`{"command":["x"],"gpu_type":"RTX4090","priority":11}`, "priority"},
		"NegativeDuration": {`{"command":["x"],"gpu_type":"RTX4090","max_duration_minutes":-5}`, "max_duration_minutes"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			e := wantError(t, b.submit(t, tc.body), http.StatusBadRequest, "validation_failed")
			fieldError(t, e, tc.field)
			b.assertNothingStarted(t)
		})
	}
	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// What is refused above is refused for what it is: ordinary
		// values pass, shell-looking argv included (it is never parsed).
		_, in := b.expectStart(t)
		rec := b.submit(t, `{"name":"train · 训练 (v2)","image":"ghcr.io/org/img:1.2@sha256:abc","command":["sh","-c","echo $HOME; id"],
			"env":{"_X1":"a=b; $(id)\nline"},"gpu_type":"RTX4090"}`)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if in.Spec.Env["_X1"] != "a=b; $(id)\nline" || in.Spec.Command[2] != "echo $HOME; id" {
			t.Errorf("spec = %+v", in.Spec)
		}
	})
}

// TestBadQueriesAndHeaders: filters, cursors, offsets and headers that are
// not what they should be answer 400 naming the parameter.
func TestBadQueriesAndHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	b.store.put(runningJob(id, testNow))
	_ = b.store.AppendLog(context.Background(), id, 0, []byte("hello\n"))
	q := url.QueryEscape
	for _, tc := range []struct{ path, field string }{
		{"/api/gpu/tasks?status=" + q("running' OR '1'='1"), "status"},
		{"/api/gpu/tasks?provider=" + q("runpod' OR 1=1 --"), "provider"},
		{"/api/gpu/tasks?provider=" + q("RUNPOD"), "provider"},
		{"/api/gpu/tasks?provider=" + strings.Repeat("p", 65), "provider"},
		{"/api/gpu/tasks?cursor=" + strings.Repeat("c", 513), "cursor"},
		{"/api/gpu/tasks?limit=-1", "limit"},
		{"/api/gpu/tasks?limit=201", "limit"},
		{"/api/gpu/tasks?limit=" + q("10; DROP TABLE jobs"), "limit"},
		{"/api/gpu/tasks/" + id + "/logs?offset=-1", "offset"},
		{"/api/gpu/tasks/" + id + "/logs?offset=1e3", "offset"},
		{"/api/gpu/tasks/" + id + "/logs?offset=0x10", "offset"},
		{"/api/gpu/tasks/" + id + "/logs?offset=99999999999999999999", "offset"},
		{"/api/gpu/tasks/" + id + "/logs?follow=maybe", "follow"},
		{"/api/gpu/scheduling/recommendations?gpu_type=" + q("A100\"; --") + "&gpu_count=1", "gpu_type"},
		{"/api/gpu/scheduling/recommendations?gpu_count=9", "gpu_count"},
	} {
		e := wantError(t, b.do(t, http.MethodGet, tc.path, ""), http.StatusBadRequest, "validation_failed")
		fieldError(t, e, tc.field)
	}
	// A malformed cursor the store cannot read is refused by it.
	wantError(t, b.do(t, http.MethodGet, "/api/gpu/tasks?cursor="+q("' OR 1=1 --"), ""), http.StatusBadRequest, "validation_failed")
	// The largest offset is just past the end: nothing, not an error.
	rec := b.do(t, http.MethodGet, "/api/gpu/tasks/"+id+"/logs?offset="+strconv.FormatInt(1<<62, 10), "")
	if rec.Code != http.StatusOK || decode[logsResponse](t, rec).Logs != "" {
		t.Errorf("offset past the end: %d %s", rec.Code, rec.Body)
	}
	// Malformed ids are unknown ones.
	for _, p := range []string{"/api/gpu/tasks/..%2f..%2fetc", "/api/gpu/tasks/" + q("' OR 1=1 --"), "/api/gpu/tasks/" + id + "x"} {
		wantError(t, b.do(t, http.MethodGet, p, ""), http.StatusNotFound, "not_found")
	}

	// Headers.
	body := `{"command":["x"],"gpu_type":"RTX4090"}`
	for _, key := range []string{"key\x01", "ключ", "tab\tkey", strings.Repeat("k", 201)} {
		e := wantError(t, b.do(t, http.MethodPost, "/api/gpu/jobs/submit", body, jsonCT, header{HeaderIdempotencyKey, key}),
			http.StatusBadRequest, "validation_failed")
		fieldError(t, e, "idempotency_key")
	}
	for _, ct := range []string{"text/plain", "application/json-patch+json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		wantError(t, b.do(t, http.MethodPost, "/api/gpu/jobs/submit", body, header{"Content-Type", ct}),
			http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
	for _, a := range []string{"Basic YWxpY2U6cHc=", "Bearer", "Bearer " + strings.Repeat("x", 5000), "Bearer a b c", b.tokens[aliceID]} {
		wantError(t, b.do(t, http.MethodGet, "/users/me", "", header{"Authorization", a}), http.StatusUnauthorized, "unauthorized")
	}
	if n := len(b.temporal.Calls); n != 0 || b.store.count() != 1 {
		t.Errorf("refused requests changed something: %d temporal calls, %d jobs", n, b.store.count())
	}
}

// TestOversizeBodies: bodies past each route's limit answer 413 before
// anything is done.
func TestOversizeBodies(t *testing.T) {
	t.Parallel()
	b, rs, agents := agentSetup(t)
	b.withInvitations()
	id := uuid.NewString()
	b.store.put(runningJob(id, testNow))
	tok, err := agents.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pad := func(n int) string { return `{"name":"` + strings.Repeat("x", n) + `"}` }
	for _, tc := range []struct {
		method, path, body string
		headers            []header
	}{
		{http.MethodPost, "/api/gpu/jobs/submit", pad(maxSubmitBody), []header{jsonCT}},
		{http.MethodPost, "/api/gpu/tasks/" + id + "/cancel", `{"reason":"` + strings.Repeat("r", maxCancelBody) + `"}`, []header{jsonCT}},
		{http.MethodPost, "/auth/register", pad(maxAuthBody), []header{jsonCT, anonymous}},
		{http.MethodPost, "/auth/jwt/login", "username=" + strings.Repeat("u", maxAuthBody), []header{formCT, anonymous}},
		{http.MethodPatch, "/users/" + bobID, pad(maxAuthBody), []header{jsonCT, b.as(adminID)}},
		{http.MethodPost, "/users/invitations", pad(maxAuthBody), []header{jsonCT, b.as(adminID)}},
		{http.MethodPost, "/agent/v1/jobs/" + id + "/progress", pad(64 << 10), []header{jsonCT, bearer(tok)}},
		{http.MethodPost, "/agent/v1/jobs/" + id + "/logs", strings.Repeat("o", maxSubmitBody+1), []header{bearer(tok)}},
	} {
		rec := b.do(t, tc.method, tc.path, tc.body, tc.headers...)
		wantError(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
	}
	if n := b.userCount(); n != 3 {
		t.Errorf("%d accounts after refused registrations", n)
	}
	rs.get(func(s *reportStore) {
		if s.calls != 0 {
			t.Errorf("%d reports recorded", s.calls)
		}
	})
	if logs, _ := b.store.Logs(context.Background(), id, 0, 10); len(logs) != 0 {
		t.Errorf("logs stored: %d bytes", len(logs))
	}
	if u, _ := b.users.User(context.Background(), bobID); u.CanRunLocal || u.IsSuperuser {
		t.Errorf("bob changed: %+v", u)
	}
	for _, c := range b.temporal.Calls {
		t.Errorf("temporal called: %s", c.Method)
	}
}

// TestAgentLogOffsets: an agent's chunk offset must be a byte offset whose
// chunk end fits; others are 400 and store nothing.
func TestAgentLogOffsets(t *testing.T) {
	t.Parallel()
	b, _, agents := agentSetup(t)
	id := uuid.NewString()
	b.store.put(runningJob(id, testNow))
	tok, _ := agents.Issue(id, time.Hour)
	for _, off := range []string{"-1", "abc", "1e3", " 1", "9223372036854775807", "9223372036854775800", "99999999999999999999"} {
		rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", "0123456789", bearer(tok), header{HeaderLogOffset, off})
		e := wantError(t, rec, http.StatusBadRequest, "validation_failed")
		fieldError(t, e, "offset")
	}
	if logs, _ := b.store.Logs(context.Background(), id, 0, 10); len(logs) != 0 {
		t.Errorf("logs stored: %q", logs)
	}
	rec := b.do(t, http.MethodPost, "/agent/v1/jobs/"+id+"/logs", "0123456789", bearer(tok), header{HeaderLogOffset, "0"})
	if rec.Code != http.StatusAccepted {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
