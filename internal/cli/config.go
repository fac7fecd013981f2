package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Environment variables of the client.
const (
	envServer = "GPUFLOW_SERVER"
	envToken  = "GPUFLOW_TOKEN"  // #nosec G101 -- the name of an environment variable, not a credential
	envConfig = "GPUFLOW_CONFIG" // the config file's path, instead of <config dir>/gpuflow/config.json
)

// errNotLoggedIn is returned when no token is known.
var errNotLoggedIn = errors.New("not logged in")

// fileConfig is the config file: what `gpuflow login` keeps.
type fileConfig struct {
	Server    string    `json:"server"`
	Email     string    `json:"email,omitempty"`
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// configPath is where the config file lives: $GPUFLOW_CONFIG, else
// gpuflow/config.json under the user's config directory
// ($XDG_CONFIG_HOME or ~/.config on Linux).
func configPath(getenv func(string) string) (string, error) {
	if p := getenv(envConfig); p != "" {
		return p, nil
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		d, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("find the config directory: %w (set %s)", err, envConfig)
		}
		dir = d
	}
	return filepath.Join(dir, "gpuflow", "config.json"), nil
}

// loadConfig reads the config file; a missing one is empty.
func loadConfig(path string) (fileConfig, error) {
	var c fileConfig
	b, err := os.ReadFile(path) // #nosec G304 -- the CLI's own config file, at the path its user set
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("config file %s is not valid JSON: %w", path, err)
	}
	return c, nil
}

// saveConfig writes c to path atomically, readable by the user alone (it
// holds a token).
func saveConfig(path string, c fileConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// endpoint is where a command talks to, and as whom.
type endpoint struct {
	Server    string
	Token     string
	ExpiresAt time.Time // zero when unknown (a token from the environment or a flag)
}

// resolveEndpoint picks the server and token: flags over the environment
// over the config file.
func resolveEndpoint(getenv func(string) string, flagServer, flagToken string) (endpoint, error) {
	path, err := configPath(getenv)
	if err != nil {
		return endpoint{}, err
	}
	fc, err := loadConfig(path)
	if err != nil {
		return endpoint{}, err
	}
	ep := endpoint{Server: fc.Server, Token: fc.Token, ExpiresAt: fc.ExpiresAt}
	if v := getenv(envServer); v != "" {
		ep.Server = v
	}
	if v := getenv(envToken); v != "" {
		ep.Token, ep.ExpiresAt = v, time.Time{}
	}
	if flagServer != "" {
		ep.Server = flagServer
	}
	if flagToken != "" {
		ep.Token, ep.ExpiresAt = flagToken, time.Time{}
	}
	if ep.Server == "" {
		return ep, withCode(ExitAuth, fmt.Errorf("%w: no server (use --server, %s or `gpuflow login`)", errNotLoggedIn, envServer))
	}
	ep.Server, err = normalizeServer(ep.Server)
	if err != nil {
		return ep, Usage(err)
	}
	return ep, nil
}

// requireToken checks that ep has a token that has not expired.
func (ep endpoint) requireToken() error {
	if ep.Token == "" {
		return withCode(ExitAuth, fmt.Errorf("%w to %s", errNotLoggedIn, ep.Server))
	}
	if !ep.ExpiresAt.IsZero() && time.Now().After(ep.ExpiresAt) {
		return withCode(ExitAuth, fmt.Errorf("%w: the token from `gpuflow login` expired at %s",
			errNotLoggedIn, ep.ExpiresAt.Local().Format(time.DateTime)))
	}
	return nil
}

// normalizeServer checks a server URL and drops a trailing slash; a bare
// host:port gets http://.
func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("server %q is not an http:// or https:// URL", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("server %q must be a plain URL (no user, query or fragment)", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}
