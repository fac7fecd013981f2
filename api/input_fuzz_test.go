package api

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
)

// Fuzz targets for the API's decoders of outside input beyond the submit
// body and WebSocket messages (decode_fuzz_test.go, ws_fuzz_test.go): the
// spec's validation, the list query (filter, limit, cursor), the logs query
// (offset, follow), and the agent endpoint (report bodies, the log offset
// header). The HTTP targets go through the whole handler on one test server
// per process. Every seed corpus runs with plain go test; run one for a
// while with
//
//	go test -run '^$' -fuzz '^FuzzListTasksQuery$' -fuzztime 3m -parallel 1 ./api/

// wantClientError checks a refusal: a 4xx with the API's error body.
func wantClientError(t *testing.T, rec *httptest.ResponseRecorder, input any) {
	t.Helper()
	if rec.Code < 400 || rec.Code > 499 {
		t.Fatalf("status %d for %q: %s", rec.Code, input, rec.Body)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("error body for %q: %s (%v)", input, rec.Body, err)
	}
}

// FuzzSubmitValidate checks the spec's validation on every body the strict
// decoder accepts: it never panics, it refuses with EINVALID naming the
// field(s), it is deterministic, and what it accepts keeps every rule.
func FuzzSubmitValidate(f *testing.F) {
	for _, seed := range []string{
		`{"command":["python","train.py"],"gpu_type":"RTX4090","gpu_count":1}`,
		`{"image":"alpine","gpu_count":0,"strategy":"cost"}`,
		`{"command":["x"],"gpu_count":9,"gpu_type":"A100"}`,
		`{"command":[""],"gpu_count":0}`,
		`{"command":["x"],"gpu_count":1}`,
		`{"command":["x"],"memory_gb":-0.5,"vcpus":513,"disk_gb":65537,"priority":11}`,
		`{"command":["x"],"strategy":"fastest"}`,
		`{"command":["x"],"provider":"aws","providers":["runpod","gcp"]}`,
		`{"command":["x"],"max_price_per_hour":-1,"max_duration_minutes":0,"max_restarts":21,"estimated_duration":-1}`,
		`{"command":["x"],"env":{"":"v"}}`,
		`{"command":["x"],"max_duration_minutes":10080,"spot":true,"max_restarts":20}`,
	} {
		f.Add([]byte(seed))
	}
	known := []string{"runpod", "tencent", "alibaba", "local"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in submitRequest
		if decodeStrict(data, &in) != nil {
			return // FuzzDecodeSubmit covers refusals of the decoder
		}
		spec := in.spec()
		err := spec.Validate(known)
		again := in.spec()
		if err2 := again.Validate(known); (err == nil) != (err2 == nil) {
			t.Fatalf("Validate is not deterministic on %q: %v, then %v", data, err, err2)
		}
		if err != nil {
			status, body := errorResponse(err)
			if status != http.StatusBadRequest || gpuflow.ErrorCode(err) != gpuflow.EINVALID {
				t.Fatalf("status %d (%v) for %q", status, err, data)
			}
			fields, _ := body.Error.Details["fields"].(map[string]any)
			if len(fields) == 0 {
				t.Fatalf("refusal of %q names no field: %+v", data, body.Error)
			}
			return
		}
		// Accepted: every rule holds.
		ok := (len(spec.Command) > 0 || spec.Image != "") &&
			(len(spec.Command) == 0 || spec.Command[0] != "") &&
			len(spec.Command) <= gpuflow.MaxCommandArgs &&
			len(spec.Name) <= gpuflow.MaxNameLen && len(spec.Image) <= gpuflow.MaxStringLen &&
			spec.GPUCount >= 0 && spec.GPUCount <= gpuflow.MaxGPUCount &&
			(spec.GPUCount == 0 || spec.GPUType != "") && len(spec.GPUType) <= 64 &&
			spec.MemoryGB >= 0 && spec.MemoryGB <= 4096 &&
			spec.VCPUs >= 0 && spec.VCPUs <= 512 && spec.DiskGB >= 0 && spec.DiskGB <= 65536 &&
			spec.Priority >= 0 && spec.Priority <= gpuflow.MaxPriority &&
			spec.MaxRestarts >= 0 && spec.MaxRestarts <= gpuflow.MaxRestartsMax &&
			spec.EstimatedDuration >= 0 && spec.EstimatedDuration <= gpuflow.MaxDurationMinMax &&
			(spec.MaxPricePerHour == nil || *spec.MaxPricePerHour >= 0) &&
			(spec.MaxDurationMinutes == nil || (*spec.MaxDurationMinutes >= 1 && *spec.MaxDurationMinutes <= gpuflow.MaxDurationMinMax)) &&
			len(spec.Env) <= gpuflow.MaxEnvVars
		for k, v := range spec.Env {
			ok = ok && k != "" && len(k) <= 256 && len(v) <= gpuflow.MaxStringLen
		}
		for _, a := range spec.Command {
			ok = ok && len(a) <= gpuflow.MaxStringLen
		}
		strategyOK := false
		for _, s := range gpuflow.Strategies {
			strategyOK = strategyOK || s == spec.Strategy
		}
		for _, p := range append([]string{spec.Provider}, spec.Providers...) {
			known := p == ""
			for _, k := range []string{"runpod", "tencent", "alibaba", "local"} {
				known = known || k == p
			}
			ok = ok && known
		}
		if !ok || !strategyOK {
			t.Fatalf("accepted a spec that breaks a rule: %q -> %+v", data, spec)
		}
	})
}

// FuzzListTasksQuery sends any query string to GET /api/gpu/tasks: the
// answer is 200 or a 4xx error, and a 200 came from a filter that keeps
// the rules: the caller's own jobs only (no query widens the scope), a
// limit within bounds, a valid status.
func FuzzListTasksQuery(f *testing.F) {
	for _, seed := range []string{
		"", "status=queued", "status=running&provider=runpod&limit=10", "limit=200", "limit=201", "limit=0",
		"limit=-1", "limit=1e3", "limit=9223372036854775808", "status=QUEUED", "status=", "cursor=2",
		"cursor=abc", "owner_id=" + bobID, "owner=" + bobID + "&status=succeeded", "limit=5&limit=7",
		"provider=%00", "status=%ZZ", "a=1;b=2", "limit= 5",
	} {
		f.Add(seed)
	}
	b := setup(f)
	for i := range 3 {
		b.store.put(&gpuflow.Job{ID: uuid.NewString(), OwnerID: bobID, Status: gpuflow.StatusQueued,
			CreatedAt: testNow.Add(time.Duration(i) * time.Second)})
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, " #\x7f") || strings.ContainsFunc(q, func(r rune) bool { return r < 0x20 }) {
			return // not a request line an HTTP client can send
		}
		rec := b.do(t, http.MethodGet, "/api/gpu/tasks?"+q, "")
		if rec.Code != http.StatusOK {
			wantClientError(t, rec, q)
			return
		}
		b.store.mu.Lock()
		fl := b.store.lastFilter
		b.store.mu.Unlock()
		if fl.OwnerID != aliceID {
			t.Fatalf("query %q listed with owner %q, not the caller's", q, fl.OwnerID)
		}
		if fl.Limit < 1 || fl.Limit > maxListLimit || (fl.Status != "" && !fl.Status.Valid()) {
			t.Fatalf("query %q gave filter %+v", q, fl)
		}
		var body struct {
			Tasks []jobView `json:"tasks"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("answer to %q: %v", q, err)
		}
		for _, j := range body.Tasks {
			if j.OwnerID != aliceID {
				t.Fatalf("query %q answered another owner's job %+v", q, j)
			}
		}
	})
}

// FuzzTaskLogsQuery sends any query string to GET /api/gpu/tasks/{id}/logs
// of a finished job: 200 with the page from the offset asked, or a 4xx.
func FuzzTaskLogsQuery(f *testing.F) {
	for _, seed := range []string{
		"", "offset=0", "offset=6", "offset=12", "offset=100", "offset=-1", "offset=1.5", "offset=0x10",
		"offset=9223372036854775807", "offset=9223372036854775808", "follow=1", "follow=true&offset=6",
		"follow=yes", "follow=", "offset=+3", "offset=00", "offset=3&offset=4",
	} {
		f.Add(seed)
	}
	b := setup(f)
	id := uuid.NewString()
	b.store.put(&gpuflow.Job{ID: id, OwnerID: aliceID, Status: gpuflow.StatusSucceeded, CreatedAt: testNow})
	const logs = "hello\nworld\n"
	_ = b.store.AppendLog(context.Background(), id, 0, []byte(logs))
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, " #\x7f") || strings.ContainsFunc(q, func(r rune) bool { return r < 0x20 }) {
			return
		}
		// A follow of a finished job ends once all is sent; the deadline
		// only keeps a broken one from hanging the fuzzer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/gpu/tasks/"+id+"/logs?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+b.tokens[aliceID])
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		if ctx.Err() != nil {
			t.Fatalf("query %q: the handler ran until the deadline", q)
		}
		if rec.Code != http.StatusOK {
			wantClientError(t, rec, q)
			return
		}
		vals, err := url.ParseQuery(q)
		if err != nil {
			vals = req.URL.Query() // what the server parsed, leniently
		}
		off, _ := strconv.ParseInt(vals.Get("offset"), 10, 64)
		if follow, _ := strconv.ParseBool(vals.Get("follow")); follow {
			if want := logs[min(int(off), len(logs)):]; rec.Body.String() != want {
				t.Fatalf("follow %q streamed %q, want %q", q, rec.Body, want)
			}
			return
		}
		var page logsResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatalf("answer to %q: %v", q, err)
		}
		want := logs[min(int(off), len(logs)):]
		if page.Offset != off || page.Logs != want || page.NextOffset != off+int64(len(want)) {
			t.Fatalf("query %q: page %+v, want offset %d and %q", q, page, off, want)
		}
	})
}

// FuzzAgentReport posts any body to the agent's progress and finished
// endpoints: 202 with a report recorded that keeps the rules (percent
// 0..100, a message of at most 1000 bytes, an exit code -1..255), or a
// 4xx that recorded nothing.
func FuzzAgentReport(f *testing.F) {
	for _, seed := range []struct {
		finished bool
		body     string
	}{
		{false, `{"percent":50,"message":"half"}`}, {false, `{"percent":100}`}, {false, `{"percent":-0.001}`},
		{false, `{"percent":1e400}`}, {false, `{"message":"no percent"}`}, {false, `{"percent":"50"}`},
		{false, `{"percent":50,"message":"` + strings.Repeat("x", 1001) + `"}`}, {false, `{"percent":5,"x":1}`},
		{true, `{"exit_code":0}`}, {true, `{"exit_code":-1}`}, {true, `{"exit_code":256}`},
		{true, `{"exit_code":1.5}`}, {true, `{"exit_code":null}`}, {true, `{}`}, {true, `[]`}, {true, ``},
	} {
		f.Add(seed.finished, []byte(seed.body))
	}
	b, rs, agents := agentSetup(f)
	id := uuid.NewString()
	tok, err := agents.Issue(id, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, finished bool, body []byte) {
		path := "/agent/v1/jobs/" + id + "/progress"
		if finished {
			path = "/agent/v1/jobs/" + id + "/finished"
			rs.set(func(rs *reportStore) { delete(rs.finished, id) }) // each exec reports first
		}
		var before int
		rs.get(func(rs *reportStore) { before = rs.calls })
		rec := b.do(t, http.MethodPost, path, string(body), jsonCT, bearer(tok))
		var calls int
		var p, fin gpuflow.AgentReport
		rs.get(func(rs *reportStore) { calls, p, fin = rs.calls, rs.progress[id], rs.finished[id] })
		if rec.Code != http.StatusAccepted {
			wantClientError(t, rec, body)
			if calls != before {
				t.Fatalf("refused %q but recorded a report", body)
			}
			return
		}
		if calls != before+1 {
			t.Fatalf("accepted %q with %d recordings", body, calls-before)
		}
		if finished {
			if fin.ExitCode < -1 || fin.ExitCode > 255 || fin.JobID != id {
				t.Fatalf("recorded %+v for %q", fin, body)
			}
			return
		}
		if p.Percent < 0 || p.Percent > 100 || len(p.Message) > maxAgentMessage || p.JobID != id {
			t.Fatalf("recorded %+v for %q", p, body)
		}
	})
}

// FuzzAgentLogOffset posts output with any Gpuflow-Log-Offset header: a
// whole number from 0 stores the chunk at that offset (once), anything
// else is a 400 that stores nothing.
func FuzzAgentLogOffset(f *testing.F) {
	for _, seed := range []string{"0", "6", "12", "100", "-1", "1.0", "0x1", "+6", " 6", "6 ", "", "9223372036854775807",
		"9223372036854775808", "06", "1e2"} {
		f.Add(seed, []byte("chunk\n"))
	}
	b, _, agents := agentSetup(f)
	id := uuid.NewString()
	tok, err := agents.Issue(id, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h string, body []byte) {
		if strings.ContainsAny(h, "\r\n\x00") {
			return // not a header value a client can send
		}
		const start = "hello\n"
		b.store.mu.Lock()
		b.store.logs[id] = []byte(start)
		b.store.mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "/agent/v1/jobs/"+id+"/logs", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set(HeaderLogOffset, h)
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		b.store.mu.Lock()
		stored := string(b.store.logs[id])
		b.store.mu.Unlock()
		sent := req.Header.Get(HeaderLogOffset)
		off, perr := strconv.ParseInt(sent, 10, 64)
		valid := sent == "" || (perr == nil && off >= 0 && off <= math.MaxInt64-int64(len(body)))
		if !valid {
			wantClientError(t, rec, h)
			if stored != start {
				t.Fatalf("refused offset %q but stored %q", h, stored)
			}
			return
		}
		if rec.Code != http.StatusAccepted {
			t.Fatalf("offset %q: status %d %s", h, rec.Code, rec.Body)
		}
		var ans struct {
			Offset     int64 `json:"offset"`
			NextOffset int64 `json:"next_offset"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			t.Fatalf("answer %s: %v", rec.Body, err)
		}
		switch {
		case sent == "" || off == int64(len(start)): // appended at the end
			if stored != start+string(body) {
				t.Fatalf("offset %q: stored %q", h, stored)
			}
		default: // a chunk at another offset: this store keeps only contiguous output
			if stored != start {
				t.Fatalf("offset %q: stored %q", h, stored)
			}
		}
		if sent != "" && (ans.Offset != off || ans.NextOffset != off+int64(len(body))) {
			t.Fatalf("offset %q: answered %+v", h, ans)
		}
		if ans.NextOffset < ans.Offset {
			t.Fatalf("offset %q with %d bytes: next_offset %d is before offset %d", h, len(body), ans.NextOffset, ans.Offset)
		}
	})
}
