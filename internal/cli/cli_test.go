package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseJobFile(t *testing.T) {
	const file = `
name: train
image: pytorch/pytorch:2.5.1
command: [python, train.py, --epochs, "3"]
env:
  EPOCHS: 3
  MODE: fast
resources:
  gpu: A100:2
  memory: 32
  vcpus: 8
  disk: 100
  spot: true
  providers: [runpod, tencent]
strategy: cost
priority: 7
estimated_duration: 1h30m
limits:
  max_price_per_hour: 2.5
  max_duration: 120
  max_restarts: 2
`
	b, err := parseJobFile(strings.NewReader(file), "job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	two, seven, ninety, onetwenty, price := 2, 7, 90, 120, 2.5
	want := submitBody{
		Name: "train", Image: "pytorch/pytorch:2.5.1", Command: []string{"python", "train.py", "--epochs", "3"},
		Env: map[string]string{"EPOCHS": "3", "MODE": "fast"}, GPUType: "A100", GPUCount: &two,
		MemoryGB: 32, VCPUs: 8, DiskGB: 100, Spot: true, Providers: []string{"runpod", "tencent"},
		Strategy: "cost", Priority: &seven, EstimatedDuration: &ninety,
		MaxPricePerHour: &price, MaxDurationMinutes: &onetwenty, MaxRestarts: 2,
	}
	if !reflect.DeepEqual(b, want) {
		got, _ := json.Marshal(b)
		exp, _ := json.Marshal(want)
		t.Fatalf("parsed\n%s\nwant\n%s", got, exp)
	}

	// A string command runs through sh -c; gpu none is CPU only; absent
	// fields stay absent so that the server's defaults apply.
	b, err = parseJobFile(strings.NewReader("command: |\n  echo one\n  echo two\nresources:\n  gpu: none\n  provider: local\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Command, []string{"sh", "-c", "echo one\necho two\n"}) || *b.GPUCount != 0 ||
		b.GPUType != "" || !reflect.DeepEqual(b.Providers, []string{"local"}) {
		t.Fatalf("parsed %+v", b)
	}
	if raw, _ := json.Marshal(b); strings.Contains(string(raw), "priority") || strings.Contains(string(raw), "strategy") {
		t.Fatalf("absent fields sent: %s", raw)
	}

	for name, bad := range map[string]string{
		"unknown key":      "name: x\ncomand: [echo]\n",
		"unknown resource": "resources:\n  gpus: A100\n",
		"bad gpu count":    "resources:\n  gpu: A100:x\n",
		"zero gpu count":   "resources:\n  gpu: A100:0\n",
		"both providers":   "resources:\n  provider: a\n  providers: [b]\n",
		"bad duration":     "limits:\n  max_duration: soon\n",
		"command map":      "command: {a: b}\n",
		"empty":            "",
		"not yaml":         "name: [unclosed\n",
	} {
		_, err := parseJobFile(strings.NewReader(bad), "f")
		if err == nil || ExitCode(err) != ExitUsage {
			t.Errorf("%s: err = %v (exit %d), want a usage error", name, err, ExitCode(err))
		}
		if err != nil && strings.Contains(err.Error(), "cli.") {
			t.Errorf("%s: the message names Go types: %v", name, err)
		}
	}
}

func TestJobFileTypo(t *testing.T) {
	_, err := parseJobFile(strings.NewReader("name: x\ncomand: [echo]\n"), "job.yaml")
	if err == nil || err.Error() != "job.yaml: line 2: key comand is not a job file key" {
		t.Errorf("typo: %v", err)
	}
}

func TestParseGPU(t *testing.T) {
	for in, want := range map[string]struct {
		t string
		n int
	}{"A100:1": {"A100", 1}, "T4": {"T4", 1}, " RTX4090 : 4 ": {"RTX4090", 4}, "none": {"", 0}, "0": {"", 0}, "CPU": {"", 0}} {
		typ, n, err := parseGPU(in)
		if err != nil || typ != want.t || n != want.n {
			t.Errorf("parseGPU(%q) = %q, %d, %v; want %q, %d", in, typ, n, err, want.t, want.n)
		}
	}
	for _, bad := range []string{"", ":2", "A100:", "A100:-1", "A100:two"} {
		if _, _, err := parseGPU(bad); err == nil {
			t.Errorf("parseGPU(%q) succeeded", bad)
		}
	}
}

func TestParseMinutes(t *testing.T) {
	for in, want := range map[string]int{"90": 90, "2h": 120, "90s": 2, "1h30m": 90} {
		if got, err := parseMinutes(in); err != nil || got != want {
			t.Errorf("parseMinutes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-5", "30s", "soon", ""} {
		if _, err := parseMinutes(bad); err == nil {
			t.Errorf("parseMinutes(%q) succeeded", bad)
		}
	}
}

func TestEndpointPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gpuflow", "config.json")
	env := map[string]string{"XDG_CONFIG_HOME": dir}
	getenv := func(k string) string { return env[k] }

	if _, err := resolveEndpoint(getenv, "", ""); ExitCode(err) != ExitAuth || !errors.Is(err, errNotLoggedIn) {
		t.Fatalf("no config: err %v (exit %d), want not logged in (4)", err, ExitCode(err))
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := saveConfig(path, fileConfig{Server: "http://file:1/", Email: "a@example.com", Token: "file-token", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v, %v; want 0600", st.Mode(), err)
	}
	if d, _ := os.Stat(filepath.Dir(path)); d.Mode().Perm() != 0o700 {
		t.Fatalf("config dir mode %v; want 0700", d.Mode())
	}

	check := func(name, flagServer, flagToken, wantServer, wantToken string) {
		t.Helper()
		ep, err := resolveEndpoint(getenv, flagServer, flagToken)
		if err != nil || ep.Server != wantServer || ep.Token != wantToken {
			t.Errorf("%s: %+v, %v; want %s %s", name, ep, err, wantServer, wantToken)
		}
	}
	check("file", "", "", "http://file:1", "file-token")
	env[envServer], env[envToken] = "http://env:2", "env-token"
	check("env over file", "", "", "http://env:2", "env-token")
	check("flags over env", "flag:3", "flag-token", "http://flag:3", "flag-token")
	delete(env, envToken)
	check("server from env, token from file", "", "", "http://env:2", "file-token")

	// An expired token from the file is refused before any request.
	if err := saveConfig(path, fileConfig{Server: "http://file:1", Token: "old", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ep, err := resolveEndpoint(getenv, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.requireToken(); ExitCode(err) != ExitAuth || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	// GPUFLOW_CONFIG names the file itself.
	env[envConfig] = filepath.Join(dir, "other.json")
	if p, _ := configPath(getenv); p != env[envConfig] {
		t.Errorf("config path %s", p)
	}
	for _, bad := range []string{"ftp://x", "http://", "http://u:p@host", "http://h/?q=1"} {
		if _, err := normalizeServer(bad); err == nil {
			t.Errorf("server %q accepted", bad)
		}
	}
}

func TestExitCodes(t *testing.T) {
	code := func(status, errMsg string) int {
		e := errMsg
		return outcomeCode(&Job{Status: status, Error: &e})
	}
	if code("succeeded", "") != 0 || code("failed", "job exited with code 1") != 3 ||
		code("failed", "max_duration_minutes (1) reached") != 5 || code("cancelled", "cancelled: x") != 6 {
		t.Error("outcome codes")
	}
	ok, failed, cancelled := &Job{Status: "succeeded"}, &Job{Status: "failed"}, &Job{Status: "cancelled"}
	if outcomesCode([]*Job{ok, cancelled, failed}) != 3 || outcomesCode([]*Job{ok, cancelled}) != 6 || outcomesCode([]*Job{ok}) != 0 {
		t.Error("combined outcome codes")
	}
	for err, want := range map[error]int{
		nil:                    0,
		errors.New("boom"):     1,
		usagef("bad"):          2,
		&APIError{Status: 401}: 4,
		&APIError{Status: 403}: 4,
		&APIError{Status: 400, Code: "LOGIN_BAD_CREDENTIALS"}: 4,
		&APIError{Status: 422}:                                1,
		fmt.Errorf("submit: %w", &APIError{Status: 401}):      4,
		withCode(ExitCancelled, nil):                          6,
		errors.New(`unknown flag: --nope`):                    2,
	} {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
	if !Silent(withCode(ExitFailed, nil)) || Silent(usagef("x")) {
		t.Error("Silent")
	}
}

func TestAPIErrorMessage(t *testing.T) {
	err := decodeError(422, []byte(`{"error":{"code":"unschedulable","message":"no provider can run this job",
		"details":{"reasons":{"runpod":["no offer of gpu_type H100"],"local":["no GPUs"]}}}}`))
	want := "no provider can run this job\n  local: no GPUs\n  runpod: no offer of gpu_type H100"
	if err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	err = decodeError(400, []byte(`{"error":{"code":"validation_failed","message":"invalid job","details":{"fields":{"gpu_count":"gpu_count must be between 0 and 8"}}}}`))
	if !strings.Contains(err.Error(), "gpu_count: gpu_count must be between 0 and 8") {
		t.Errorf("message %q", err.Error())
	}
	if err := decodeError(502, []byte("<html>bad gateway</html>")); err.Error() != "bad gateway" {
		t.Errorf("non-JSON answer: %q", err.Error())
	}
}

func TestBoard(t *testing.T) {
	p := &printer{format: formatText}
	b := newBoard(p)
	b.job(&Job{ID: "4887cbed-9c79-4ef9-83b2-302194ee1bb3", Name: "hello", Status: "queued", Spec: jobSpec{GPUCount: 0}})
	b.event(&Event{Type: "job.status", TaskID: "4887cbed-9c79-4ef9-83b2-302194ee1bb3", Status: "running", Provider: "local"})
	b.event(&Event{Type: "job.status", TaskID: "11111111-2222-3333-4444-555555555555", Status: "queued",
		Data: json.RawMessage(`{"reason":"waiting for capacity"}`)})
	var out strings.Builder
	b.draw(&out, 0)
	first := out.String()
	if strings.Count(first, "\n") != 3 || strings.Contains(first, "\x1b[3A") {
		t.Fatalf("first draw %q", first)
	}
	if !strings.Contains(first, "4887cbed  hello             running       local     cpu") ||
		!strings.Contains(first, "11111111  -                 queued        -         -           waiting for capacity") {
		t.Fatalf("rows %q", first)
	}
	out.Reset()
	b.event(&Event{Type: "job.status", TaskID: "4887cbed-9c79-4ef9-83b2-302194ee1bb3", Status: "succeeded"})
	b.draw(&out, 30)
	again := out.String()
	if !strings.HasPrefix(again, "\x1b[3A") || strings.Count(again, "\r\x1b[2K") != 3 {
		t.Fatalf("redraw %q: want the cursor up over the 3 lines, each cleared", again)
	}
	for _, l := range strings.Split(strings.TrimSuffix(again, "\n"), "\n") {
		l = strings.TrimPrefix(strings.TrimPrefix(l, "\x1b[3A"), "\r\x1b[2K")
		if len([]rune(l)) > 29 {
			t.Errorf("line %q is wider than the terminal", l)
		}
	}
	// Colour only when allowed, without moving the columns.
	p.color = true
	line := b.lines(0)[1]
	if !strings.Contains(line, "\x1b[32msucceeded\x1b[0m     local") {
		t.Errorf("coloured line %q", line)
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	lw := &lineWriter{emit: func(s string) error { lines = append(lines, s); return nil }}
	for _, chunk := range []string{"one\ntw", "o\r\n", "", "three"} {
		if _, err := lw.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.flush(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lines, []string{"one", "two", "three"}) {
		t.Errorf("lines %q", lines)
	}
}
