package e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/devstack"
	"github.com/gpuflow/gpuflow/internal/testutil"
)

// TestAgentReportsSurviveTemporalOutage: with Temporal cut off (a TCP proxy
// between the stack's Temporal client and the real server, closed), the
// API still acknowledges a job's agent reports; the relay keeps them, and
// delivers them to the workflow once Temporal is back. The job is a local
// `sleep 600`: only its delivered finished report can end it early, with
// the reported exit code.
//
//	go test ./internal/e2e/ -run TestAgentReportsSurviveTemporalOutage -v
func TestAgentReportsSurviveTemporalOutage(t *testing.T) {
	cfg := testConfig(t)
	proxy := testutil.NewTCPProxy(t, cfg.TemporalAddress)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true, TemporalClientAddr: proxy.Addr()})
	c := newAPI(t, s.APIURL())
	id := c.submit(map[string]any{"command": []string{"sleep", "600"}, "gpu_count": 0})
	c.waitStatus(id, "running", 60*time.Second)

	tokens, err := auth.NewAgentTokens([]byte(s.Config.JWTSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	report := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.APIURL()+"/agent/v1/jobs/"+id+"/"+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("report %s: %v", path, err)
		}
		drain(resp)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("report %s while Temporal is unreachable: %d, want 202", path, resp.StatusCode)
		}
	}
	// waitTried waits until the relay has tried to deliver the job's report
	// of kind and failed (Temporal is away): it is kept, undelivered.
	waitTried := func(kind string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			var attempts int
			var pending bool
			err := s.DB.Pool.QueryRow(context.Background(), `SELECT attempts, delivered_at IS NULL FROM agent_reports
				WHERE job_id = $1 AND kind = $2`, id, kind).Scan(&attempts, &pending)
			if err != nil {
				t.Fatalf("read the %s report: %v", kind, err)
			}
			if !pending {
				t.Fatalf("the %s report was delivered while Temporal was cut off", kind)
			}
			if attempts > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the relay never tried the %s report", kind)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	unreachable := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := s.Client.DescribeWorkflowExecution(ctx, "job-"+id, ""); err == nil {
			t.Fatal("Temporal answered through the cut proxy")
		}
	}

	// Progress, through an outage.
	proxy.Cut()
	unreachable()
	report("progress", `{"percent":42,"message":"during the outage"}`)
	waitTried("progress")
	proxy.Restore()
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, ev := c.do(http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil)
		if code == http.StatusOK && strings.Contains(fmtJSON(ev), "during the outage") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the progress never reached the workflow: %d %v", code, ev)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The exit code, through another.
	proxy.Cut()
	unreachable()
	report("finished", `{"exit_code":3}`)
	waitTried("finished")
	if j := c.job(id); j["status"] != "running" {
		t.Fatalf("job during the outage: %v", j)
	}
	proxy.Restore()
	j := c.waitStatus(id, "failed", 120*time.Second)
	if code, _ := j["exit_code"].(float64); code != 3 {
		t.Fatalf("job %v, want exit code 3 from the report", j)
	}
	var note *string
	var delivered bool
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT delivered_at IS NOT NULL, note FROM agent_reports
		WHERE job_id = $1 AND kind = 'finished'`, id).Scan(&delivered, &note); err != nil || !delivered || note != nil {
		t.Fatalf("finished report after delivery: delivered %v, note %v, err %v", delivered, note, err)
	}
}
