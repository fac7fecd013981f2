package agentscript

import (
	"strings"
	"testing"

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
}
