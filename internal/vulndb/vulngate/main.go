// Command vulngate reads `govulncheck -format json` on stdin and fails
// (exit 1) on any vulnerability that the code calls unless the allow list
// names it with a reason. See package vulndb.
//
//	govulncheck -db file://$PWD/.tools/vulndb -format json ./cmd/... | go run ./internal/vulndb/vulngate -allow govulncheck.allow
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gpuflow/gpuflow/internal/vulndb"
)

func main() {
	allowFile := flag.String("allow", "", "the allow list (ID MODULE[@VERSION] reason, one a line)")
	flag.Parse()
	var allow []vulndb.Allow
	if *allowFile != "" {
		f, err := os.Open(*allowFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulngate:", err)
			os.Exit(2)
		}
		allow, err = vulndb.ParseAllow(f)
		_ = f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "vulngate: %s: %v\n", *allowFile, err)
			os.Exit(2)
		}
	}
	findings, notCalled, err := vulndb.ReadFindings(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	allowed, failed, stale := vulndb.Gate(findings, allow)
	for _, f := range allowed {
		fmt.Printf("allowed  %s in %s@%s (fixed: %s): %s\n", f.ID, f.Module, f.Version, orNone(f.Fixed), vulndb.Reason(f, allow))
	}
	for _, a := range stale {
		fmt.Printf("stale    %s:%d: %s %s matches no finding now; remove the line\n", *allowFile, a.Line, a.ID, a.Module)
	}
	for _, f := range failed {
		fmt.Printf("FOUND    %s in %s@%s (fixed: %s): %s\n         called: %s\n", f.ID, f.Module, f.Version, orNone(f.Fixed), f.Summary, f.Trace)
	}
	fmt.Printf("vulngate: %d called vulnerabilities (%d allowed, %d not), %d imported or required but not called\n",
		len(findings), len(allowed), len(failed), notCalled)
	if len(failed) > 0 {
		fmt.Println("vulngate: upgrade the module (go get MODULE@FIXED), or add \"ID MODULE reason\" to the allow list with the reason it does not reach gpuflow")
		os.Exit(1)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
