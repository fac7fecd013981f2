package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseJobFile: a job file (-f job.yaml) is the user's input. Parsing
// never panics, refuses with a usage error (exit code 2), and what it
// accepts is a body the CLI can send (it encodes as JSON) that keeps the
// file's rules: a GPU count of at least 1 with a type, durations of at
// least a minute, a string command run by sh -c.
func FuzzParseJobFile(f *testing.F) {
	for _, seed := range []string{
		"name: train\nimage: pytorch/pytorch\ncommand: [python, train.py]\nenv: {EPOCHS: \"3\"}\n" +
			"resources:\n  gpu: A100:1\n  memory: 32\n  vcpus: 8\n  disk: 100\n  spot: true\n  providers: [runpod, tencent]\n" +
			"strategy: cost\npriority: 7\nestimated_duration: 90m\nlimits:\n  max_price_per_hour: 2.5\n  max_duration: 2h\n  max_restarts: 2\n",
		"command: echo hi && sleep 1\nresources: {gpu: none}\n",
		"command: [\"true\"]\nresources: {gpu: \"T4\", provider: local}\n",
		"command: [a, {b: c}]\n", "command: {a: b}\n", "resources: {gpu: \":3\"}\n", "resources: {gpu: \"A100:0\"}\n",
		"resources: {provider: runpod, providers: [local]}\n", "estimated_duration: 30s\n", "limits: {max_duration: \"0\"}\n",
		"unknown: 1\n", "", "---\n", "[1, 2]\n", "name: &a x\nimage: *a\n", "priority: 1e3\n", "env: {A: [1]}\n",
		"a: &a [*a]\n", "command: !!binary aGk=\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseJobFile(strings.NewReader(string(data)), "job.yaml")
		if err != nil {
			if ExitCode(err) != ExitUsage {
				t.Fatalf("refusal of %q has exit code %d: %v", data, ExitCode(err), err)
			}
			if !strings.HasPrefix(err.Error(), "job.yaml") {
				t.Fatalf("refusal of %q does not name the file: %v", data, err)
			}
			return
		}
		if _, err := json.Marshal(b); err != nil {
			t.Fatalf("accepted %q but cannot send it: %v", data, err)
		}
		if b.GPUCount != nil && *b.GPUCount != 0 && (*b.GPUCount < 1 || b.GPUType == "") {
			t.Fatalf("accepted %q with gpu %q x %d", data, b.GPUType, *b.GPUCount)
		}
		for _, d := range []*int{b.EstimatedDuration, b.MaxDurationMinutes} {
			if d != nil && *d < 1 {
				t.Fatalf("accepted %q with a duration of %d minutes", data, *d)
			}
		}
		if len(b.Command) == 3 && b.Command[0] == "sh" && b.Command[1] == "-c" && strings.TrimSpace(b.Command[2]) == "" {
			t.Fatalf("accepted %q with an empty shell command", data)
		}
	})
}
