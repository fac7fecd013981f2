// Package vulndb builds a Go vulnerability database in the layout that
// govulncheck reads from a local directory (-db file:///dir) out of the
// OSV files that the golang.org/x/vulndb module ships (data/osv/*.json).
//
// The served layout, described at https://go.dev/security/vuln/database:
//
//	index/db.json       {"modified": time of the newest entry}
//	index/modules.json  [{"path": module, "vulns": [{"id", "modified", "fixed"}]}]
//	index/vulns.json    [{"id", "modified", "aliases"}]
//	ID/<id>.json        the OSV entry itself
//
// The module's files carry no modification times (the generator upstream
// takes them from git history), so the database time is given by the
// caller: the commit time in the module's pseudo-version. The "fixed"
// version in modules.json lets govulncheck skip entries fixed at or below
// the version in use, so it is computed as upstream does: the latest fix
// of any SEMVER range, or none when a range introduces the bug again after
// it. A wrong "fixed" would hide a vulnerability, so the code errs towards
// none: an entry without it is always read in full.
//
// This is a development tool for `make lint`; nothing in gpuflow's running
// system imports it.
package vulndb

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// entry is the part of an OSV entry that the indexes need.
type entry struct {
	ID        string     `json:"id"`
	Modified  time.Time  `json:"modified"`
	Withdrawn *time.Time `json:"withdrawn,omitempty"`
	Aliases   []string   `json:"aliases,omitempty"`
	Affected  []affected `json:"affected"`
}

type affected struct {
	Package struct {
		Name      string `json:"name"`
		Ecosystem string `json:"ecosystem"`
	} `json:"package"`
	Ranges []rangeT `json:"ranges"`
}

type rangeT struct {
	Type   string  `json:"type"`
	Events []event `json:"events"`
}

type event struct {
	Introduced string `json:"introduced,omitempty"`
	Fixed      string `json:"fixed,omitempty"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// Stats tells what Build wrote.
type Stats struct {
	Entries  int       // OSV entries (ID/*.json)
	Modules  int       // module paths in index/modules.json
	Modified time.Time // index/db.json's time
}

var idPattern = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,}$`)

// Build reads every *.json file in src (OSV entries named <id>.json) and
// writes the database into dst, replacing what was there. It writes into a
// sibling directory first and renames it into place, so an interrupted run
// leaves the previous database (or none), never half of one. modified is
// the database time when no entry carries a later one.
func Build(src, dst string, modified time.Time) (Stats, error) {
	names, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return Stats{}, err
	}
	if len(names) == 0 {
		return Stats{}, fmt.Errorf("no OSV entries (*.json) in %s", src)
	}
	sort.Strings(names)

	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return Stats{}, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return Stats{}, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.MkdirAll(filepath.Join(tmp, "ID"), 0o750); err != nil {
		return Stats{}, err
	}
	if err := os.MkdirAll(filepath.Join(tmp, "index"), 0o750); err != nil {
		return Stats{}, err
	}

	db := dbMeta{Modified: modified.UTC()}
	modules := map[string]*moduleMeta{}
	vulns := make([]vulnMeta, 0, len(names))
	seen := map[string]bool{}
	for _, name := range names {
		raw, err := os.ReadFile(name) // #nosec G304 -- the files of the directory the caller named
		if err != nil {
			return Stats{}, err
		}
		e, err := parseEntry(raw)
		if err != nil {
			return Stats{}, fmt.Errorf("%s: %w", filepath.Base(name), err)
		}
		if base := filepath.Base(name); base != e.ID+".json" {
			return Stats{}, fmt.Errorf("%s: holds entry %s: the file must be named <id>.json", base, e.ID)
		}
		if seen[e.ID] {
			return Stats{}, fmt.Errorf("entry %s appears twice", e.ID)
		}
		seen[e.ID] = true
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified.UTC()
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			fixed := LatestFixed(a.Ranges)
			// An entry may name a module in several "affected" blocks
			// (one per set of packages): the index holds it once, fixed
			// from the latest of their fixes, or not at all if one of
			// them has none.
			if n := len(m.Vulns); n > 0 && m.Vulns[n-1].ID == e.ID {
				if prev := m.Vulns[n-1].Fixed; prev == "" || fixed == "" {
					m.Vulns[n-1].Fixed = ""
				} else if less(prev, fixed) {
					m.Vulns[n-1].Fixed = fixed
				}
				continue
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: fixed})
		}
		// The entry itself is copied byte for byte: govulncheck decodes
		// the whole of it, and it is the upstream text.
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), raw, 0o644); err != nil { // #nosec G306 G703 -- public data, read by govulncheck; e.ID matched idPattern, so the name stays in ID/
			return Stats{}, err
		}
	}

	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.SliceStable(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	sort.Slice(vulns, func(i, j int) bool { return vulns[i].ID < vulns[j].ID })

	for file, v := range map[string]any{"db.json": db, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return Stats{}, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", file), b, 0o644); err != nil { // #nosec G306 -- public data, read by govulncheck
			return Stats{}, err
		}
	}

	if err := os.RemoveAll(dst); err != nil {
		return Stats{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Stats{}, err
	}
	return Stats{Entries: len(vulns), Modules: len(mods), Modified: db.Modified}, nil
}

// parseEntry decodes one OSV entry and checks what the indexes rely on:
// an ID of the Go database's form, a module path for each affected
// package, and valid versions in every SEMVER range.
func parseEntry(raw []byte) (entry, error) {
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return entry{}, fmt.Errorf("not an OSV entry: %w", err)
	}
	if !idPattern.MatchString(e.ID) {
		return entry{}, fmt.Errorf("id %q is not of the form GO-YYYY-NNNN", e.ID)
	}
	for _, a := range e.Affected {
		if a.Package.Name == "" {
			return entry{}, errors.New("an affected package has no name")
		}
		for _, r := range a.Ranges {
			if r.Type != "SEMVER" {
				continue
			}
			for _, ev := range r.Events {
				if ev.Introduced != "" && ev.Introduced != "0" && !semver.IsValid("v"+ev.Introduced) {
					return entry{}, fmt.Errorf("%s: introduced %q is not a semantic version", a.Package.Name, ev.Introduced)
				}
				if ev.Fixed != "" && !semver.IsValid("v"+ev.Fixed) {
					return entry{}, fmt.Errorf("%s: fixed %q is not a semantic version", a.Package.Name, ev.Fixed)
				}
			}
		}
	}
	return e, nil
}

// LatestFixed is the version from which no version of the package is
// affected by the ranges, or "" when there is none: the latest "fixed" of
// the SEMVER ranges, or "" when any range is left open (an "introduced"
// with no "fixed" after it), has no events, or is of another type that
// this code cannot order. Versions are OSV's, without the leading "v".
//
// Upstream's generator (x/vulndb internal/osvutils.LatestFixed) reads each
// range in the order it is written and so misses a range that reopens the
// bug before an earlier-listed fix; this one sorts the events first, so it
// can only answer "" where upstream gives a version, never the reverse.
func LatestFixed(ranges []rangeT) string {
	if len(ranges) == 0 {
		return ""
	}
	latest := ""
	for _, r := range ranges {
		if r.Type != "SEMVER" || len(r.Events) == 0 {
			return ""
		}
		evs := append([]event(nil), r.Events...)
		sort.SliceStable(evs, func(i, j int) bool { return less(eventVersion(evs[i]), eventVersion(evs[j])) })
		open := false
		for _, e := range evs {
			switch {
			case e.Introduced != "":
				open = true
			case e.Fixed != "":
				open = false
				if less(latest, e.Fixed) {
					latest = e.Fixed
				}
			}
		}
		if open {
			return ""
		}
	}
	return latest
}

func eventVersion(e event) string {
	if e.Introduced != "" {
		if e.Introduced == "0" {
			return "" // below every version, pseudo-versions of v0.0.0 included
		}
		return e.Introduced
	}
	return e.Fixed
}

// less compares OSV versions ("1.2.3", no "v"); "" is below every version.
func less(a, b string) bool {
	return semver.Compare(canon(a), canon(b)) < 0
}

func canon(v string) string {
	if v == "" {
		return ""
	}
	return "v" + strings.TrimPrefix(v, "v")
}
