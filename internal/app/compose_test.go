package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the test checks.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   map[string]any    `yaml:"depends_on"`
	} `yaml:"services"`
}

// TestComposeTopology checks docker-compose.yml (no Docker engine runs
// here): its services, pinned images, ports, and that the environment it
// gives gpuflow's binaries is what they read.
func TestComposeTopology(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	for _, s := range []string{"postgres", "temporal", "temporal-setup", "temporal-ui", "migrate", "api", "worker"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("service %s missing", s)
		}
	}
	pinned := regexp.MustCompile(`^[a-z0-9./_-]+:[0-9][A-Za-z0-9._-]*$`)
	for name, s := range c.Services {
		if s.Build != nil {
			continue // our own image, built from the Dockerfile
		}
		if !pinned.MatchString(s.Image) {
			t.Errorf("service %s: image %q is not pinned to a version tag", name, s.Image)
		}
	}
	for name, cmd := range map[string]string{"migrate": "migrate", "api": "api", "worker": "worker"} {
		s := c.Services[name]
		if s.Build == nil || !slices.Equal(s.Command, []string{cmd}) {
			t.Errorf("service %s: want our image with command [%s], got build=%v command=%v", name, cmd, s.Build, s.Command)
		}
		for k := range s.Environment {
			if !slices.Contains(EnvVars, k) {
				t.Errorf("service %s sets %s, which gpuflow does not read", name, k)
			}
		}
		for _, k := range []string{"DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} {
			if s.Environment[k] == "" {
				t.Errorf("service %s does not set %s", name, k)
			}
		}
		if _, err := ConfigFromEnv(func(k string) string { return interpolate(s.Environment[k]) }); err != nil {
			t.Errorf("service %s: its environment does not configure gpuflow: %v", name, err)
		}
	}
	api := c.Services["api"]
	if !slices.Contains(api.Ports, "8080:8080") || api.Environment["HTTP_ADDR"] != "0.0.0.0:8080" {
		t.Errorf("api: ports %v, HTTP_ADDR %q", api.Ports, api.Environment["HTTP_ADDR"])
	}
	if s := api.Environment["JWT_SECRET"]; !strings.HasPrefix(s, "${JWT_SECRET") {
		t.Errorf("api: JWT_SECRET must come from the environment, not %q", s)
	}
	if !slices.Contains(c.Services["temporal-ui"].Ports, "8233:8080") {
		t.Errorf("temporal-ui ports %v", c.Services["temporal-ui"].Ports)
	}
}

// TestDockerfile checks the image is multi-stage, pinned and non-root.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	user := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "FROM" {
			froms = append(froms, f[1])
		}
		if len(f) >= 2 && f[0] == "USER" {
			user = f[1]
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	for _, img := range froms {
		if !regexp.MustCompile(`:[0-9]`).MatchString(img) {
			t.Errorf("base image %s is not pinned to a version", img)
		}
	}
	if user == "" || user == "root" || user == "0" {
		t.Errorf("the image runs as %q; want a non-root user", user)
	}
}

// interpolate resolves compose's ${NAME:-default} and ${NAME:?message} as
// compose would with NAME unset (the latter stands for a required value).
func interpolate(v string) string {
	return regexp.MustCompile(`\$\{[A-Z_]+(:-([^}]*)|:\?[^}]*)\}`).ReplaceAllStringFunc(v, func(m string) string {
		if i := strings.Index(m, ":-"); i >= 0 {
			return m[i+2 : len(m)-1]
		}
		return "required-value"
	})
}
