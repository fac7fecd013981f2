package app

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func configFrom(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	return ConfigFromEnv(func(k string) string { return env[k] })
}

func TestConfigAuth(t *testing.T) {
	t.Parallel()
	c, err := configFrom(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTLifetime != time.Hour || len(c.TrustedProxies) != 0 || c.JWTSecret != "" {
		t.Errorf("defaults: lifetime %s, proxies %v", c.JWTLifetime, c.TrustedProxies)
	}
	c, err = configFrom(t, map[string]string{"JWT_LIFETIME": "15m", "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	var proxies []string
	for _, n := range c.TrustedProxies {
		proxies = append(proxies, n.String())
	}
	if c.JWTLifetime != 15*time.Minute || strings.Join(proxies, " ") != "10.0.0.0/8 192.168.1.7/32 fd00::/8" {
		t.Errorf("lifetime %s, proxies %v", c.JWTLifetime, proxies)
	}
	for k, v := range map[string]string{
		"JWT_LIFETIME":    "forever",
		"TRUSTED_PROXIES": "10.0.0.0/33",
	} {
		if _, err := configFrom(t, map[string]string{k: v}); err == nil || !strings.HasPrefix(err.Error(), k) {
			t.Errorf("%s=%s: err = %v", k, v, err)
		}
	}
	for _, v := range []string{"30s", "721h", "-1h", "0"} {
		if _, err := configFrom(t, map[string]string{"JWT_LIFETIME": v}); err == nil {
			t.Errorf("JWT_LIFETIME=%s accepted", v)
		}
	}
	for _, v := range []string{"proxy.local", "1.2.3"} {
		if _, err := configFrom(t, map[string]string{"TRUSTED_PROXIES": v}); err == nil {
			t.Errorf("TRUSTED_PROXIES=%s accepted", v)
		}
	}
}

func TestCheckJWTSecret(t *testing.T) {
	t.Parallel()
	if err := (Config{}).CheckJWTSecret(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET is not set") {
		t.Errorf("unset: %v", err)
	}
	short := "s3cr3t-but-short"
	if err := (Config{JWTSecret: short}).CheckJWTSecret(); err == nil || strings.Contains(err.Error(), short) {
		t.Errorf("short: %v (must fail without showing the secret)", err)
	}
	if err := (Config{JWTSecret: strings.Repeat("k", 32)}).CheckJWTSecret(); err != nil {
		t.Errorf("32 bytes: %v", err)
	}
}

func TestDevJWTSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	secrets := make([]string, 8)
	errs := make([]error, 8)
	for i := range secrets {
		wg.Go(func() { secrets[i], errs[i] = DevJWTSecret(dir) })
	}
	wg.Wait()
	for i := range secrets {
		if errs[i] != nil || secrets[i] != secrets[0] {
			t.Fatalf("concurrent first uses: %q, %v; want all %q", secrets[i], errs[i], secrets[0])
		}
	}
	if len(secrets[0]) != 64 {
		t.Errorf("secret has %d characters, want 64 (32 random bytes, hex)", len(secrets[0]))
	}
	path := filepath.Join(dir, DevJWTSecretFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, %v", fi, err)
	}
	if again, err := DevJWTSecret(dir); err != nil || again != secrets[0] {
		t.Errorf("reuse: %q, %v", again, err)
	}
	if err := (Config{JWTSecret: secrets[0]}).CheckJWTSecret(); err != nil {
		t.Errorf("the generated secret fails the API's check: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".jwt-secret-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A secret others can read is refused, not silently used.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DevJWTSecret(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable secret: %v", err)
	}
	// As is a truncated one.
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DevJWTSecret(dir); err == nil || strings.Contains(err.Error(), "short\n") {
		t.Errorf("short secret: %v", err)
	}
}
