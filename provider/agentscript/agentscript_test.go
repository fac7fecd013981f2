package agentscript

import (
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func TestScriptRoundTrip(t *testing.T) {
	t.Parallel()
	req := gpuflow.ProvisionRequest{
		JobID: "j1",
		Spec:  gpuflow.JobSpec{Command: []string{"python", "-c", "print('hi'); import os"}, Env: map[string]string{"A": "it's $HOME", "B": "2"}},
		Agent: &gpuflow.AgentEndpoint{URL: "http://127.0.0.1:8080/api/agent/v1/jobs/j1", Token: "tok'en"},
	}
	s, err := Script(req)
	if err != nil {
		t.Fatal(err)
	}
	env := Env(s)
	for k, want := range map[string]string{
		EnvJobID: "j1", EnvAgentURL: req.Agent.URL, EnvAgentToken: "tok'en", EnvImage: DefaultImage,
		EnvPrefixJob + "A": "it's $HOME", EnvPrefixJob + "B": "2",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if !strings.Contains(s, `'print('\''hi'\''); import os'`) {
		t.Errorf("command not quoted as one argument:\n%s", s)
	}
	if _, err := Script(gpuflow.ProvisionRequest{JobID: "x", Spec: gpuflow.JobSpec{Env: map[string]string{"BAD NAME": "1"}}, Agent: req.Agent}); err == nil {
		t.Error("invalid env name accepted")
	}
	if !IsRunner(Runner()) || IsRunner(s) {
		t.Error("IsRunner does not tell the runner from the boot script")
	}
}

func TestDeadlineCoversTheJobsLife(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 59, 59, 0, time.UTC)
	week := 7 * 24 * 60
	for _, tc := range []struct {
		name string
		req  gpuflow.ProvisionRequest
		life time.Duration
	}{
		{"request", gpuflow.ProvisionRequest{MaxDuration: 90 * time.Minute}, 90 * time.Minute},
		{"spec", gpuflow.ProvisionRequest{Spec: gpuflow.JobSpec{MaxDurationMinutes: &week}}, 7 * 24 * time.Hour},
		{"default", gpuflow.ProvisionRequest{}, DefaultLife},
	} {
		d := Deadline(tc.req, now)
		if Life(tc.req) != tc.life || d.Before(now.Add(tc.life+time.Hour)) {
			t.Errorf("%s: life %s, deadline %s: want life %s and a deadline past %s", tc.name, Life(tc.req), d, tc.life, now.Add(tc.life+time.Hour))
		}
		if d2 := Deadline(tc.req, now.Add(-30*time.Minute)); !d2.Equal(d) {
			t.Errorf("%s: deadline changes within the hour: %s, %s", tc.name, d, d2)
		}
	}
}
