package agentscript

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuflow/gpuflow"
)

// TestBootScriptHostileValues: the job's argv and env values reach
// docker as they are, one argument each; none of them is run by the boot
// script's shell.
func TestBootScriptHostileValues(t *testing.T) {
	t.Parallel()
	api := newAgentAPI(t)
	ln := listen(t)
	serve(t, ln, api)
	marker := filepath.Join(t.TempDir(), "PWNED")
	hostile := []string{
		"; touch " + marker, "$(touch " + marker + ")", "`touch " + marker + "`", "' ; touch " + marker + " ; '",
		"\"; touch " + marker + "; \"", "a\nb", "${IFS}touch${IFS}" + marker, "--privileged", "-v=/:/host",
	}
	req := bootRequest("http://" + ln.Addr().String())
	req.Spec.Command = append([]string{"python"}, hostile...)
	req.Spec.Env = map[string]string{"A": "$(touch " + marker + ")", "B": "'; touch " + marker + "; '", "C": "x\ny"}
	script, err := Script(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startBoot(t, script, append(fastEnv(t.TempDir()), "PATH="+stubDocker(t)+":"+os.Getenv("PATH"))...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("boot script: %v\n%s", err, stderr.text())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a value of the job was run by the boot script's shell")
	}
	logs, finished, _ := api.snapshot()
	var want strings.Builder
	for _, a := range append([]string{"run", "--rm", "--gpus", "all", "--name", "gpuflow-j1",
		"-e", "A=$(touch " + marker + ")", "-e", "B='; touch " + marker + "; '", "-e", "C=x\ny", DefaultImage, "python"}, hostile...) {
		fmt.Fprintf(&want, "<%s>\n", a)
	}
	want.WriteString("on stderr\n")
	if logs != want.String() {
		t.Errorf("docker got:\n%s\nwant:\n%s", logs, want.String())
	}
	if len(finished) != 1 || finished[0] != 0 {
		t.Errorf("finished = %v", finished)
	}
}

// TestScriptRefusesOptionImages: an image that docker would read as an
// option, or that would split, is refused (the API refuses it first).
func TestScriptRefusesOptionImages(t *testing.T) {
	t.Parallel()
	for _, img := range []string{"--privileged", "-v=/:/host", "alpine --privileged", "alpine\nreboot", "a\tb"} {
		req := gpuflow.ProvisionRequest{JobID: "j1", Spec: gpuflow.JobSpec{Image: img, Command: []string{"true"}},
			Agent: &gpuflow.AgentEndpoint{URL: "http://x", Token: "t"}}
		if _, err := Script(req); err == nil {
			t.Errorf("Script accepted image %q", img)
		}
	}
}
