// Command mkvulndb builds the local Go vulnerability database that
// `make lint` hands to govulncheck (-db file://…): it downloads the
// golang.org/x/vulndb module at the version given (through the module
// proxy, like any module; nothing is fetched at scan time), reads its OSV
// files (data/osv) and writes the served layout (index/*.json, ID/*.json).
// See package vulndb.
//
//	go run ./internal/vulndb/mkvulndb -version v0.0.0-20261105234957-e22db6528018 -out .tools/vulndb
//
// -src DIR reads the OSV files from DIR instead of the module.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/mod/module"

	"github.com/gpuflow/gpuflow/internal/vulndb"
)

const modulePath = "golang.org/x/vulndb"

func main() {
	version := flag.String("version", "", "the golang.org/x/vulndb pseudo-version; its commit time is the database time")
	out := flag.String("out", "", "directory to write the database into (replaced)")
	src := flag.String("src", "", "directory of OSV entries (default: the module's data/osv)")
	flag.Parse()
	if *out == "" || *version == "" {
		fmt.Fprintln(os.Stderr, "usage: mkvulndb -version PSEUDO-VERSION -out DIR [-src DIR]")
		os.Exit(2)
	}
	modified, err := module.PseudoVersionTime(*version)
	if err != nil {
		fail(2, fmt.Errorf("-version %q: %w", *version, err))
	}
	if *src == "" {
		dir, err := download(modulePath + "@" + *version)
		if err != nil {
			fail(1, err)
		}
		*src = filepath.Join(dir, "data", "osv")
	}
	st, err := vulndb.Build(*src, *out, modified)
	if err != nil {
		fail(1, err)
	}
	fmt.Printf("mkvulndb: %s@%s: %d entries, %d modules, database time %s, in %s\n",
		modulePath, *version, st.Entries, st.Modules, st.Modified.Format(time.RFC3339), *out)
}

// download fetches the module into the module cache (a no-op when it is
// there) and returns its directory.
func download(mod string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", mod) // #nosec G204 -- the go command, downloading the module at the version the Makefile pins
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil && runErr == nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	if runErr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", mod, runErr, info.Error, bytes.TrimSpace(stderr.Bytes()))
	}
	return info.Dir, nil
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "mkvulndb:", err)
	os.Exit(code)
}
