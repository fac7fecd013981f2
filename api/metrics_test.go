package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestPrometheusMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	b.do(t, http.MethodGet, "/health", "")
	b.do(t, http.MethodGet, "/api/gpu/tasks/"+id, "", b.as(aliceID))                        // 404
	b.do(t, http.MethodGet, "/api/gpu/tasks", "", header{"Authorization", "Bearer forged"}) // 401
	rec := b.do(t, http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`gpuflow_http_requests_total{method="GET",route="/health",status="200"} 1`,
		`gpuflow_http_requests_total{method="GET",route="/api/gpu/tasks/:id",status="404"} 1`,
		`gpuflow_http_requests_total{method="GET",route="/api/gpu/tasks",status="401"} 1`,
		`gpuflow_http_request_duration_seconds_bucket{method="GET",route="/health",le="0.001"}`,
		"gpuflow_websocket_connections 0",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s in\n%s", want, grepLines(body, "gpuflow_http_requests_total"))
		}
	}
	if strings.Contains(body, id) || strings.Contains(body, aliceID) {
		t.Error("a label holds a job or user id")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
