package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func loginCmd(o *Options) *cobra.Command {
	var email string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login --server URL --email EMAIL [--password-stdin]",
		Short: "log in to a gpuflow server and keep the token in the config file",
		Long: `Logs in with an email and password and keeps the server and the token in
the config file ($GPUFLOW_CONFIG, or gpuflow/config.json under the user's
config directory, readable by the user alone). The password is asked for on
the terminal without echo, or read from the first line of standard input
with --password-stdin; never from a flag. GPUFLOW_SERVER and GPUFLOW_TOKEN
override the file; --server and --token override both.`,
		Example: `  gpuflow login --server http://127.0.0.1:8080 --email me@example.com
  printf '%s\n' "$PASSWORD" | gpuflow login --server https://gpuflow.example.com --email me@example.com --password-stdin`,
		Args: noArgs,
	}
	c := addCommon(cmd, o)
	cmd.Flags().StringVar(&email, "email", "", "the account's email address (required)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := c.check(); err != nil {
			return err
		}
		if email == "" {
			return usagef("--email is required")
		}
		path, err := configPath(o.Getenv)
		if err != nil {
			return err
		}
		fc, err := loadConfig(path)
		if err != nil {
			return err
		}
		server := c.server
		if server == "" {
			server = o.Getenv(envServer)
		}
		if server == "" {
			server = fc.Server
		}
		if server == "" {
			return usagef("--server is required (no server in %s or %s)", envServer, path)
		}
		server, err = normalizeServer(server)
		if err != nil {
			return Usage(err)
		}
		password, err := readLoginPassword(withContext(cmd), o, passwordStdin)
		if err != nil {
			return err
		}
		cl := newClient(endpoint{Server: server}, o.Version)
		var tok struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int64  `json:"expires_in"`
		}
		form := url.Values{"username": {email}, "password": {password}}
		if err := cl.do(cmd.Context(), http.MethodPost, "/auth/jwt/login", form, &tok, nil); err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.Code == "LOGIN_BAD_CREDENTIALS" {
				return withCode(ExitAuth, errors.New("login refused: the email or password is wrong, or the account is inactive"))
			}
			return fmt.Errorf("login to %s: %w", server, err)
		}
		if tok.AccessToken == "" {
			return fmt.Errorf("login to %s: the answer has no access_token", server)
		}
		fc = fileConfig{Server: server, Email: email, Token: tok.AccessToken}
		if tok.ExpiresIn > 0 {
			fc.ExpiresAt = time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second).UTC().Truncate(time.Second)
		}
		if err := saveConfig(path, fc); err != nil {
			return err
		}
		p := c.printer()
		if p.format != formatText {
			return p.data(map[string]any{"server": server, "email": email, "config": path,
				"expires_at": fc.ExpiresAt}, nil)
		}
		fmt.Fprintf(p.out, "Logged in to %s as %s\n", server, email)
		if !fc.ExpiresAt.IsZero() {
			p.notef("The token is kept in %s until %s.", path, fc.ExpiresAt.Local().Format(time.DateTime))
		}
		return nil
	}
	return cmd
}

// readLoginPassword reads the password: from stdin's first line with
// --password-stdin, else asked on the terminal.
func readLoginPassword(ctx context.Context, o *Options, fromStdin bool) (string, error) {
	if !fromStdin {
		f, ok := o.In.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", usagef("no terminal to ask for the password on: pipe it in with --password-stdin")
		}
		fd := int(f.Fd())
		state, err := term.GetState(fd)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(o.Err, "Password: ")
		type answer struct {
			b   []byte
			err error
		}
		got := make(chan answer, 1)
		go func() {
			b, err := term.ReadPassword(fd)
			got <- answer{b, err}
		}()
		var a answer
		select {
		case a = <-got:
		case <-ctx.Done():
			// Ctrl-C while asking: give the terminal its echo back.
			_ = term.Restore(fd, state)
			fmt.Fprintln(o.Err)
			return "", ctx.Err()
		}
		fmt.Fprintln(o.Err)
		b, err := a.b, a.err
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if len(b) == 0 {
			return "", usagef("empty password")
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(io.LimitReader(o.In, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", usagef("no password on standard input")
	}
	return line, nil
}

func logoutCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "forget the token kept by login (the server stays)",
		Args:  noArgs,
	}
	c := addCommon(cmd, o)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := c.check(); err != nil {
			return err
		}
		path, err := configPath(o.Getenv)
		if err != nil {
			return err
		}
		fc, err := loadConfig(path)
		if err != nil {
			return err
		}
		had := fc.Token != ""
		fc.Token, fc.ExpiresAt = "", time.Time{}
		if had {
			if err := saveConfig(path, fc); err != nil {
				return err
			}
		}
		p := c.printer()
		if p.format != formatText {
			return p.data(map[string]any{"config": path, "logged_out": had}, nil)
		}
		if had {
			fmt.Fprintf(p.out, "Logged out of %s\n", fc.Server)
		} else {
			p.notef("not logged in")
		}
		return nil
	}
	return cmd
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// exactArgs wants n arguments.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

// withContext is ctx, or Background.
func withContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
