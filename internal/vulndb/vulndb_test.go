package vulndb

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func r(events ...event) rangeT { return rangeT{Type: "SEMVER", Events: events} }
func in(v string) event        { return event{Introduced: v} }
func fx(v string) event        { return event{Fixed: v} }

func TestLatestFixed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []rangeT
		want   string
	}{
		{"one fix", []rangeT{r(in("0"), fx("1.2.3"))}, "1.2.3"},
		{"never fixed", []rangeT{r(in("0"))}, ""},
		{"two branches, latest fix wins", []rangeT{r(in("0"), fx("1.21.9"), in("1.22.0-0"), fx("1.22.2"))}, "1.22.2"},
		{"reintroduced after the fix", []rangeT{r(in("0"), fx("1.0.0"), in("2.0.0"))}, ""},
		// Upstream's generator gives 1.0.0 here, hiding 2.x: the ranges are
		// read in their written order.
		{"open range listed first", []rangeT{r(in("2.0.0")), r(in("0"), fx("1.0.0"))}, ""},
		{"events out of order", []rangeT{r(fx("1.5.0"), in("0"))}, "1.5.0"},
		{"fixed in a pseudo-version of v0.0.0", []rangeT{r(in("0"), fx("0.0.0-20240101000000-abcdefabcdef"))}, "0.0.0-20240101000000-abcdefabcdef"},
		{"fixes in two ranges", []rangeT{r(in("0"), fx("1.1.0")), r(in("1.5.0"), fx("1.6.0"))}, "1.6.0"},
		{"no ranges: every version", nil, ""},
		{"an empty range", []rangeT{{Type: "SEMVER"}}, ""},
		{"a range of another type", []rangeT{{Type: "GIT", Events: []event{in("abc"), fx("def")}}}, ""},
	} {
		if got := LatestFixed(tc.ranges); got != tc.want {
			t.Errorf("%s: LatestFixed = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// osvEntry is a minimal OSV entry in the vulndb module's form.
func osvEntry(id string, affected ...string) string {
	return `{"schema_version":"1.3.1","id":"` + id + `","modified":"0001-01-01T00:00:00Z","published":"0001-01-01T00:00:00Z",` +
		`"aliases":["CVE-2099-` + id[len(id)-4:] + `"],"summary":"s","affected":[` + strings.Join(affected, ",") + `]}`
}

func aff(module string, events string) string {
	return `{"package":{"name":"` + module + `","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[` + events + `]}]}`
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestBuild(t *testing.T) {
	files := map[string]string{
		"GO-2024-0001.json": osvEntry("GO-2024-0001", aff("example.com/a", `{"introduced":"0"},{"fixed":"1.2.0"}`)),
		// One module in two affected blocks (two package sets): indexed once,
		// with no fix since one block has none.
		"GO-2024-0002.json": osvEntry("GO-2024-0002",
			aff("example.com/a", `{"introduced":"0"},{"fixed":"1.3.0"}`),
			aff("example.com/a", `{"introduced":"2.0.0"}`),
			aff("stdlib", `{"introduced":"0"},{"fixed":"1.26.9"}`)),
		"GO-2024-0003.json": osvEntry("GO-2024-0003",
			aff("example.com/b", `{"introduced":"0"},{"fixed":"0.5.0"}`),
			aff("example.com/b", `{"introduced":"0.6.0"},{"fixed":"0.7.1"}`)),
		"README.txt": "not an entry",
	}
	src := writeDir(t, files)
	dst := filepath.Join(t.TempDir(), "sub", "db")
	when := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	st, err := Build(src, dst, when)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 3 || st.Modules != 3 || !st.Modified.Equal(when) {
		t.Fatalf("stats %+v", st)
	}

	var db dbMeta
	readJSON(t, filepath.Join(dst, "index", "db.json"), &db)
	if !db.Modified.Equal(when) {
		t.Errorf("db.json modified %v, want %v", db.Modified, when)
	}
	var mods []moduleMeta
	readJSON(t, filepath.Join(dst, "index", "modules.json"), &mods)
	got := map[string]string{}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
		for _, v := range m.Vulns {
			k := m.Path + " " + v.ID
			if _, dup := got[k]; dup {
				t.Errorf("%s listed twice", k)
			}
			got[k] = v.Fixed
		}
	}
	if strings.Join(paths, ",") != "example.com/a,example.com/b,stdlib" {
		t.Errorf("modules %v, want sorted a, b, stdlib", paths)
	}
	want := map[string]string{
		"example.com/a GO-2024-0001": "1.2.0",
		"example.com/a GO-2024-0002": "",
		"stdlib GO-2024-0002":        "1.26.9",
		"example.com/b GO-2024-0003": "0.7.1",
	}
	if len(got) != len(want) {
		t.Errorf("modules.json entries %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: fixed %q (listed %v), want %q", k, g, ok, v)
		}
	}
	var vulns []vulnMeta
	readJSON(t, filepath.Join(dst, "index", "vulns.json"), &vulns)
	if len(vulns) != 3 || vulns[0].ID != "GO-2024-0001" || len(vulns[0].Aliases) != 1 {
		t.Errorf("vulns.json %+v", vulns)
	}
	for name, body := range files {
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dst, "ID", name))
		if err != nil || string(b) != body {
			t.Errorf("ID/%s is not the entry as given (%v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "ID", "README.txt")); err == nil {
		t.Error("a non-JSON file was copied")
	}

	// A rebuild replaces the database: an entry gone from the source is
	// gone from it.
	if err := os.Remove(filepath.Join(src, "GO-2024-0003.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(src, dst, when); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "ID", "GO-2024-0003.json")); err == nil {
		t.Error("a rebuild kept an entry the source no longer has")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".db.tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// TestBuildRefuses: a source the indexes cannot be trusted from fails the
// build and leaves the previous database as it was.
func TestBuildRefuses(t *testing.T) {
	good := osvEntry("GO-2024-0001", aff("example.com/a", `{"introduced":"0"},{"fixed":"1.2.0"}`))
	dst := filepath.Join(t.TempDir(), "db")
	if _, err := Build(writeDir(t, map[string]string{"GO-2024-0001.json": good}), dst, time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string]map[string]string{
		"no entries":          {"x.txt": "x"},
		"not JSON":            {"GO-2024-0002.json": "{"},
		"misnamed file":       {"GO-2024-0009.json": good},
		"bad id":              {"../x.json": strings.Replace(good, "GO-2024-0001", "../x", 1)},
		"bad fixed version":   {"GO-2024-0001.json": osvEntry("GO-2024-0001", aff("example.com/a", `{"introduced":"0"},{"fixed":"one"}`))},
		"bad introduced":      {"GO-2024-0001.json": osvEntry("GO-2024-0001", aff("example.com/a", `{"introduced":"v1.0.0"}`))},
		"package has no name": {"GO-2024-0001.json": osvEntry("GO-2024-0001", aff("", `{"introduced":"0"}`))},
	} {
		src := t.TempDir()
		for f, body := range files {
			p := filepath.Join(src, filepath.Base(f))
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Build(src, dst, time.Now()); err == nil {
			t.Errorf("%s: built", name)
		}
		b, err := os.ReadFile(filepath.Join(dst, "ID", "GO-2024-0001.json"))
		if err != nil || string(b) != good {
			t.Fatalf("%s: the previous database was changed (%v)", name, err)
		}
	}
}
