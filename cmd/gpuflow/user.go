package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/cli"
)

// userCmd is "gpuflow user": it parses its own flags (Go's flag package,
// as before the command tree moved to cobra, so -email and --email both
// work).
func userCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "user create --email E [--superuser] [--local] [--password-stdin]",
		Short:              "manage accounts: user create --email E [--superuser] [--local] [--password-stdin]",
		GroupID:            groupServer,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := app.ConfigFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			return runUser(cmd.Context(), cfg, args)
		},
	}
}

const userUsage = `usage: gpuflow user create --email EMAIL [--superuser] [--local] [--password-stdin]

Creates an account and prints its id. The password is read from standard
input (one line), never from a flag, which anyone could read in ps; on a
terminal it is asked for twice without echo. Run gpuflow migrate first.`

// runUser runs "gpuflow user <subcommand>".
func runUser(ctx context.Context, cfg app.Config, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(os.Stderr, userUsage)
		if len(args) == 0 {
			return cli.Usage(errors.New("user: missing subcommand"))
		}
		return cli.Usage(fmt.Errorf("user: unknown subcommand %q", args[0]))
	}
	opts, err := parseUserCreate(args[1:], os.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	password, err := readPassword(os.Stdin, os.Stderr, !opts.passwordStdin && term.IsTerminal(int(os.Stdin.Fd())),
		func() ([]byte, error) { return term.ReadPassword(int(os.Stdin.Fd())) })
	if err != nil {
		return err
	}
	logger := cfg.NewLogger()
	db, err := app.OpenDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := createUser(ctx, db, &auth.Hasher{}, opts.email, password, opts.superuser, opts.local)
	if err != nil {
		return err
	}
	logger.Info("user created", "user_id", u.ID, "superuser", u.IsSuperuser, "can_run_local", u.CanRunLocal)
	fmt.Println(u.ID)
	return nil
}

// userCreateOptions are the flags of "user create".
type userCreateOptions struct {
	email         string
	superuser     bool
	local         bool
	passwordStdin bool
}

func parseUserCreate(args []string, stderr io.Writer) (userCreateOptions, error) {
	var o userCreateOptions
	fs := flag.NewFlagSet("gpuflow user create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, userUsage) }
	fs.StringVar(&o.email, "email", "", "the account's email address (required)")
	fs.BoolVar(&o.superuser, "superuser", false, "make the account a superuser, who sees every job")
	fs.BoolVar(&o.local, "local", false, "let the account run jobs on the worker's own host (superusers always may)")
	fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input even on a terminal")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("user create: %w", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("user create: unexpected arguments %q (the password is read from stdin, never an argument)", fs.Args())
	}
	if o.email == "" {
		return o, errors.New("user create: --email is required")
	}
	return o, nil
}

// readPassword reads the password: on a terminal (prompting on prompt and
// reading with readSecret, which does not echo) twice, which must agree;
// otherwise the first line of in, without its line ending.
func readPassword(in io.Reader, prompt io.Writer, terminal bool, readSecret func() ([]byte, error)) (string, error) {
	if terminal {
		fmt.Fprint(prompt, "Password: ")
		first, err := readSecret()
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Repeat password: ")
		second, err := readSecret()
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the passwords differ")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on stdin: pipe it in, e.g. printf '%s\\n' \"$PASSWORD\" | gpuflow user create")
	}
	return line, nil
}

// createUser checks email and password as registration does and creates
// an active, verified account (an operator vouches for it), a superuser
// or one allowed to run local jobs when asked.
func createUser(ctx context.Context, users gpuflow.UserStore, h *auth.Hasher, email, password string, superuser, local bool) (*gpuflow.User, error) {
	email, err := gpuflow.NormalizeEmail(email)
	if err != nil {
		return nil, fmt.Errorf("user create: %s", gpuflow.ErrorMessage(err))
	}
	if err := auth.CheckPassword(password, email); err != nil {
		return nil, fmt.Errorf("user create: %w", err)
	}
	hash, err := h.Hash(password)
	if err != nil {
		return nil, err
	}
	u := &gpuflow.User{Email: email, HashedPassword: hash, IsActive: true, IsSuperuser: superuser, IsVerified: true,
		CanRunLocal: local}
	if err := users.CreateUser(ctx, u); err != nil {
		switch gpuflow.ErrorCode(err) {
		case gpuflow.ECONFLICT:
			return nil, fmt.Errorf("user create: a user with email %s already exists", email)
		case gpuflow.EINTERNAL:
			return nil, fmt.Errorf("user create: %w (has `gpuflow migrate` been run?)", err)
		}
		return nil, fmt.Errorf("user create: %w", err)
	}
	return u, nil
}
