package vulndb

import (
	"os"
	"strings"
	"testing"
)

// testdata/govulncheck.json is a cut of a real `govulncheck -format json
// ./cmd/...` run on gpuflow: GO-2026-6605 (stdlib, called), GO-2026-6872
// (echo v4, called, no fix), and one vulnerability in a required module
// that nothing calls (GO-2026-5932).
func readSample(t *testing.T) []Finding {
	t.Helper()
	f, err := os.Open("testdata/govulncheck.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	called, notCalled, err := ReadFindings(f)
	if err != nil {
		t.Fatal(err)
	}
	if notCalled != 1 {
		t.Errorf("not called: %d, want 1", notCalled)
	}
	return called
}

func TestReadFindings(t *testing.T) {
	called := readSample(t)
	if len(called) != 2 {
		t.Fatalf("called findings %+v, want one each for GO-2026-6605 and GO-2026-6872", called)
	}
	std, echo := called[0], called[1]
	if std.ID != "GO-2026-6605" || std.Module != "stdlib" || std.Version != "v1.26.8" || std.Fixed != "v1.26.9" {
		t.Errorf("stdlib finding %+v", std)
	}
	if echo.ID != "GO-2026-6872" || echo.Module != "github.com/labstack/echo/v4" || echo.Fixed != "" ||
		!strings.Contains(echo.Summary, "Rate Limiter") {
		t.Errorf("echo finding %+v", echo)
	}
	// The trace names where gpuflow's code calls in, and the symbol.
	if !strings.HasPrefix(std.Trace, "github.com/gpuflow/gpuflow/") || !strings.Contains(std.Trace, "net/http.") {
		t.Errorf("trace %q", std.Trace)
	}
}

func TestReadFindingsRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":            "",
		"not JSON":         "{",
		"no config":        `{"osv":{"id":"GO-2026-0001"}}`,
		"module-level run": `{"config":{"scan_level":"module"}}`,
	} {
		if _, _, err := ReadFindings(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGate(t *testing.T) {
	called := readSample(t)
	allow, err := ParseAllow(strings.NewReader(`
# comment
GO-2026-6605 stdlib@v1.26.8 fixed in go1.26.9
GO-2026-6872 github.com/labstack/echo/v4 no echo RateLimiter in use
GO-2026-0001 example.com/gone upgraded since
`))
	if err != nil {
		t.Fatal(err)
	}
	allowed, failed, stale := Gate(called, allow)
	if len(allowed) != 2 || len(failed) != 0 {
		t.Errorf("allowed %v, failed %v", allowed, failed)
	}
	if len(stale) != 1 || stale[0].ID != "GO-2026-0001" || stale[0].Line != 5 {
		t.Errorf("stale %+v", stale)
	}
	if got := Reason(called[1], allow); got != "no echo RateLimiter in use" {
		t.Errorf("reason %q", got)
	}

	// An entry for another version, or for the same id in another module,
	// does not cover a finding.
	allow, _ = ParseAllow(strings.NewReader("GO-2026-6605 stdlib@v1.26.7 older toolchain\nGO-2026-6872 github.com/labstack/echo/v5 other major\n"))
	_, failed, stale = Gate(called, allow)
	if len(failed) != 2 || len(stale) != 2 {
		t.Errorf("failed %v, stale %v: want both findings failed and both entries stale", failed, stale)
	}
}

func TestParseAllowRefuses(t *testing.T) {
	for _, line := range []string{
		"GO-2026-6605 stdlib",          // no reason
		"CVE-2026-1 stdlib why",        // not a Go id
		"GO-2026-6605 @v1.26.8 reason", // no module
	} {
		if _, err := ParseAllow(strings.NewReader(line)); err == nil {
			t.Errorf("%q: accepted", line)
		}
	}
}

// TestAllowFile: the repository's allow list parses, and gives every
// entry a reason.
func TestAllowFile(t *testing.T) {
	f, err := os.Open("../../govulncheck.allow")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	allow, err := ParseAllow(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range allow {
		if len(a.Reason) < 20 {
			t.Errorf("line %d: reason %q says too little", a.Line, a.Reason)
		}
	}
}
