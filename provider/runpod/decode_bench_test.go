package runpod

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gpuflow/gpuflow/provider/agentscript"
)

// BenchmarkDecodeListing10k decodes a listing of 10,000 of gpuflow's pods
// (GET /v2/pods), each env holding the runner script, as a sweep does:
// the client's share of a sweep, apart from the emulator's.
func BenchmarkDecodeListing10k(b *testing.B) {
	const n = 10_000
	type listed struct {
		ID      string            `json:"id"`
		Name    string            `json:"name"`
		Status  string            `json:"desiredStatus"`
		Image   string            `json:"image"`
		Env     map[string]string `json:"env"`
		Runtime map[string]any    `json:"runtime"`
	}
	pods := make([]listed, n)
	for i := range pods {
		pods[i] = listed{ID: fmt.Sprintf("pod%08d", i), Name: fmt.Sprintf("%sjob-%d", NamePrefix, i), Status: "RUNNING", Image: "runpod/base:0.6.2",
			Env: map[string]string{agentscript.EnvRunner: agentscript.Runner(), agentscript.EnvJobID: fmt.Sprint(i), EnvTags: `{"gpuflow-managed":"true"}`,
				agentscript.EnvAgentToken: "x.y.z", agentscript.EnvAgentURL: "http://127.0.0.1:8080/agent/v1/jobs/1"},
			Runtime: map[string]any{"uptimeInSeconds": 10}}
	}
	body, err := json.Marshal(map[string]any{"pods": pods})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var r listPodsResponse
		if err := json.Unmarshal(body, &r); err != nil || len(r.Pods) != n {
			b.Fatal(len(r.Pods), err)
		}
	}
}
