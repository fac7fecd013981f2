// Package cli is gpuflow's command-line client: login, submit, ls, status,
// logs, cancel, watch, providers, gpus and recommend, speaking the HTTP and
// WebSocket API (docs: /openapi.json, api-contract). It is a client only:
// it links nothing of the server.
//
// Every command takes -o text|json|jsonl. Data goes to stdout, progress and
// hints to stderr; colour and live redraw only when stdout is a terminal
// (and NO_COLOR is unset). Exit codes:
//
//	0 success
//	1 error (the server, the network, anything else)
//	2 usage (bad flags, arguments or job file)
//	3 the job failed
//	4 not logged in, or refused (401/403, bad credentials)
//	5 timed out (--timeout passed, or the job hit max_duration_minutes)
//	6 the job was cancelled
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitUsage     = 2
	ExitFailed    = 3
	ExitAuth      = 4
	ExitTimeout   = 5
	ExitCancelled = 6
)

// GroupClient is the help group of the client commands.
const GroupClient = "client"

// Options are what the commands read and write besides the network.
type Options struct {
	Version string
	In      io.Reader
	Out     io.Writer
	Err     io.Writer
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
}

func (o *Options) defaults() {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Version == "" {
		o.Version = "dev"
	}
}

// Commands returns the client's commands, to add to the program's root.
func Commands(o Options) []*cobra.Command {
	o.defaults()
	cmds := []*cobra.Command{
		loginCmd(&o), logoutCmd(&o), submitCmd(&o), lsCmd(&o), statusCmd(&o), logsCmd(&o),
		cancelCmd(&o), watchCmd(&o), providersCmd(&o), gpusCmd(&o), recommendCmd(&o),
	}
	for _, c := range cmds {
		c.GroupID = GroupClient
	}
	return cmds
}

// exitError carries an exit code with its error; a nil err prints nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// Usage marks err as a usage error (exit 2).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: ExitUsage, err: err}
}

// usagef is a usage error.
func usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// withCode gives err an exit code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Silent reports whether err should exit without a message (its code says
// it all: a job's outcome, already shown).
func Silent(err error) bool {
	var e *exitError
	return errors.As(err, &e) && e.err == nil
}

// ExitCode is the exit status for err, as documented in the package.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == 401 || ae.Status == 403 || ae.Code == "LOGIN_BAD_CREDENTIALS":
			return ExitAuth
		}
		return ExitError
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimeout
	}
	if isFlagError(err) {
		return ExitUsage
	}
	return ExitError
}

// isFlagError recognises cobra's own usage errors, which it returns as
// plain errors (an unknown command; flags of commands that parse their own).
func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command ", "unknown flag: ", "unknown shorthand flag: ",
		"flag needs an argument: ", "invalid argument "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Hint is a line for stderr that goes with err, or "".
func Hint(err error) string {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == 401 {
		return "hint: log in again with `gpuflow login --server URL --email EMAIL`"
	}
	if errors.Is(err, errNotLoggedIn) {
		return "hint: `gpuflow login --server URL --email EMAIL`, or set GPUFLOW_SERVER and GPUFLOW_TOKEN"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "hint: is the server running, and is --server (or GPUFLOW_SERVER) right?"
	}
	return ""
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth is w's width in columns, 0 when unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
