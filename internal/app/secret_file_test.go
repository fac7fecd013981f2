package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := map[string]string{
		"RUNPOD_API_KEY_FILE":          write("runpod", "rp-key\n"),
		"TENCENTCLOUD_SECRET_ID":       "AKIDdirect",
		"TENCENTCLOUD_SECRET_KEY_FILE": write("tc", "tc-key"),
		"JWT_SECRET_FILE":              write("jwt", strings.Repeat("s", 40)+"\n"),
	}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Clouds.RunPodAPIKey != "rp-key" || c.Clouds.TencentSecretKey != "tc-key" || c.Clouds.TencentSecretID != "AKIDdirect" ||
		c.JWTSecret != strings.Repeat("s", 40) || !c.Clouds.Live(CloudRunPod) || !c.Clouds.Live(CloudTencent) {
		t.Fatalf("config %+v", c.Clouds)
	}
	env["ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE"] = filepath.Join(dir, "missing")
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE") {
		t.Fatalf("missing secret file: %v", err)
	}
	for _, k := range []string{"RUNPOD_API_KEY_FILE", "JWT_SECRET_FILE", "ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE"} {
		found := false
		for _, v := range EnvVars {
			found = found || v == k
		}
		if !found {
			t.Errorf("%s not in EnvVars", k)
		}
	}
}
