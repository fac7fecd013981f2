package vulndb

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// The gate: `make lint` runs govulncheck -format json and hands its output
// to Gate with the allow list, so that a finding fails the lint unless the
// list names it with a reason (a vulnerability with no fixed version, or
// one fixed only in a Go release newer than the toolchain, that
// docs/SECURITY-SUPPLY-CHAIN.md explains).

// Allow is one line of the allow list: a vulnerability in one module
// ("stdlib" for the standard library), optionally at one version only.
type Allow struct {
	ID      string
	Module  string
	Version string // "" for any version
	Reason  string
	Line    int
}

// ParseAllow reads the allow list: one entry a line,
//
//	GO-YYYY-NNNN MODULE[@VERSION] reason…
//
// blank lines and lines starting with # are skipped. A reason is required.
func ParseAllow(r io.Reader) ([]Allow, error) {
	var out []Allow
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("allow list line %d: want \"ID MODULE[@VERSION] reason\", got %q", n, line)
		}
		if !idPattern.MatchString(f[0]) {
			return nil, fmt.Errorf("allow list line %d: %q is not a Go vulnerability id", n, f[0])
		}
		mod, ver, _ := strings.Cut(f[1], "@")
		if mod == "" {
			return nil, fmt.Errorf("allow list line %d: no module", n)
		}
		out = append(out, Allow{ID: f[0], Module: mod, Version: ver, Line: n,
			Reason: strings.Join(f[2:], " ")})
	}
	return out, sc.Err()
}

// Finding is one vulnerability that the scanned code calls, in one module.
type Finding struct {
	ID      string
	Module  string
	Version string // the version in use
	Fixed   string // "" when no fixed version exists
	Summary string
	Trace   string // where the scanned code calls towards the symbol, and the symbol
}

func (f Finding) key() string { return f.ID + " " + f.Module }

// ReadFindings reads govulncheck's JSON stream and returns the findings at
// symbol level: those whose vulnerable function the code calls. Package-
// and module-level findings (imported or required, not called) are
// counted in notCalled.
func ReadFindings(r io.Reader) (called []Finding, notCalled int, err error) {
	dec := json.NewDecoder(r)
	summaries := map[string]string{}
	byKey := map[string]*Finding{}
	uncalled := map[string]bool{}
	sawConfig := false
	for {
		var m struct {
			Config *struct {
				ScanLevel string `json:"scan_level"`
			} `json:"config"`
			OSV *struct {
				ID      string `json:"id"`
				Summary string `json:"summary"`
			} `json:"osv"`
			Finding *struct {
				OSV          string `json:"osv"`
				FixedVersion string `json:"fixed_version"`
				Trace        []struct {
					Module   string `json:"module"`
					Version  string `json:"version"`
					Package  string `json:"package"`
					Function string `json:"function"`
					Receiver string `json:"receiver"`
					Position *struct {
						Filename string `json:"filename"`
						Line     int    `json:"line"`
					} `json:"position"`
				} `json:"trace"`
			} `json:"finding"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, 0, fmt.Errorf("reading govulncheck's JSON output: %w", err)
		}
		switch {
		case m.Config != nil:
			sawConfig = true
			if m.Config.ScanLevel != "" && m.Config.ScanLevel != "symbol" {
				return nil, 0, fmt.Errorf("govulncheck ran at scan level %q; the gate needs symbol", m.Config.ScanLevel)
			}
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			fr := m.Finding.Trace[0]
			if fr.Function == "" {
				uncalled[m.Finding.OSV+" "+fr.Module] = true
				continue
			}
			f := Finding{ID: m.Finding.OSV, Module: fr.Module, Version: fr.Version, Fixed: m.Finding.FixedVersion}
			if byKey[f.key()] != nil {
				continue // one trace is enough
			}
			// The trace runs from the vulnerable symbol to the entry point
			// in the scanned module: show the scanned module's frame
			// nearest to the symbol, and the symbol.
			tr := m.Finding.Trace
			frame := func(i int) string {
				t := tr[i]
				s := t.Function
				if t.Receiver != "" {
					s = t.Receiver + "." + s
				}
				s = t.Package + "." + s
				if t.Position != nil && t.Position.Filename != "" {
					s += fmt.Sprintf(" (%s:%d)", t.Position.Filename, t.Position.Line)
				}
				return s
			}
			own := tr[len(tr)-1].Module
			near := len(tr) - 1
			for i := 1; i < len(tr); i++ {
				if tr[i].Module == own {
					near = i
					break
				}
			}
			path := []string{frame(near)}
			if near > 1 {
				path = append(path, "…")
			}
			path = append(path, frame(0))
			f.Trace = strings.Join(path, " -> ")
			byKey[f.key()] = &f
		}
	}
	if !sawConfig {
		return nil, 0, errors.New("no govulncheck output (no config message)")
	}
	for _, f := range byKey {
		f.Summary = summaries[f.ID]
		called = append(called, *f)
		delete(uncalled, f.key())
	}
	sort.Slice(called, func(i, j int) bool { return called[i].key() < called[j].key() })
	return called, len(uncalled), nil
}

// Gate sorts findings into those the allow list covers and those it does
// not (which fail the lint), and returns the allow entries that matched no
// finding (stale: the dependency was upgraded, or the call removed).
func Gate(findings []Finding, allow []Allow) (allowed, failed []Finding, stale []Allow) {
	used := make([]bool, len(allow))
	for _, f := range findings {
		ok := false
		for i, a := range allow {
			if a.ID == f.ID && a.Module == f.Module && (a.Version == "" || a.Version == f.Version) {
				used[i], ok = true, true
			}
		}
		if ok {
			allowed = append(allowed, f)
		} else {
			failed = append(failed, f)
		}
	}
	for i, a := range allow {
		if !used[i] {
			stale = append(stale, a)
		}
	}
	return allowed, failed, stale
}

// Reason returns the allow list's reason for f.
func Reason(f Finding, allow []Allow) string {
	for _, a := range allow {
		if a.ID == f.ID && a.Module == f.Module && (a.Version == "" || a.Version == f.Version) {
			return a.Reason
		}
	}
	return ""
}
