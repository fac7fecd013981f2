package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DevJWTSecretFile is the file under the data dir where the dev stack
// keeps the JWT secret it generated.
const DevJWTSecretFile = "jwt-secret"

// DevJWTSecret returns the dev stack's JWT secret: the one in
// <dataDir>/jwt-secret, or, on first use, 32 random bytes (hex-encoded)
// written there with mode 0600 so that tokens survive restarts. Concurrent
// first uses agree on one secret. It is for `gpuflow dev` only: production
// takes JWT_SECRET from its environment.
func DevJWTSecret(dataDir string) (string, error) {
	path := filepath.Join(dataDir, DevJWTSecretFile)
	if s, err := readSecret(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate jwt secret: %w", err)
	}
	secret := hex.EncodeToString(b[:])
	// Write a temporary file, then link it into place: the link fails if
	// another process got there first, and no reader ever sees half a file.
	tmp, err := os.CreateTemp(dataDir, ".jwt-secret-*")
	if err != nil {
		return "", fmt.Errorf("write jwt secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write jwt secret: %w", err)
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write jwt secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write jwt secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path)
		}
		return "", fmt.Errorf("write jwt secret: %w", err)
	}
	return secret, nil
}

// readSecret reads a secret file, refusing one that others can read or
// that is too short.
func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it or delete it to generate a new one",
			path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the secret file the operator configured
	if err != nil {
		return "", fmt.Errorf("read jwt secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinJWTSecretLen {
		return "", fmt.Errorf("%s holds a secret shorter than %d bytes: delete it to generate a new one",
			path, MinJWTSecretLen)
	}
	return s, nil
}
