package runpod_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

// RunPod's published OpenAPI v2 spec is read at test time from the shared
// reference folder beside the repository; it is RunPod's text and is not
// copied into the repository.
const specRel = "shared/reference/runpod-openapi-v2.json"

// specURL names the spec for the schema compiler (nothing is fetched).
const specURL = "https://api.runpod.io/v2/openapi.json"

type spec struct {
	path    string
	schemas map[string]*jsonschema.Schema // by components/schemas name
}

var (
	specOnce sync.Once
	specVal  *spec
	specErr  error
)

// findSpec walks up from the working directory looking for specRel.
func findSpec() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(specRel))
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// loadSpec compiles the spec's schemas the tests check against, or returns
// nil when the spec is not there.
func loadSpec(t *testing.T) *spec {
	t.Helper()
	specOnce.Do(func() {
		path := findSpec()
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			specErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			specErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1's dialect
		if err := c.AddResource(specURL, doc); err != nil {
			specErr = err
			return
		}
		s := &spec{path: path, schemas: map[string]*jsonschema.Schema{}}
		for _, name := range []string{"CreatePodRequest", "PodActionRequest", "Pod", "ListPodsResponse", "ListGpuTypesResponse", "ErrorResponse"} {
			sch, err := c.Compile(specURL + "#/components/schemas/" + name)
			if err != nil {
				specErr = err
				return
			}
			s.schemas[name] = sch
		}
		specVal = s
	})
	if specErr != nil {
		t.Fatalf("load RunPod's spec: %v", specErr)
	}
	return specVal
}

func (s *spec) validate(name string, body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.schemas[name].Validate(v)
}

// checkRequests validates the REST requests the client sent, and the
// emulator's answers, against the spec's schemas.
// Request bodies in invalid are refused on purpose by the test, and not
// checked.
func (s *spec) checkRequests(t *testing.T, reqs []emulator.Request, invalid ...string) (checked int) {
	t.Helper()
	check := func(what, name string, body []byte) {
		t.Helper()
		checked++
		if err := s.validate(name, body); err != nil {
			t.Errorf("%s does not match the spec's %s: %v\nbody: %s", what, name, err, redactBody(body))
		}
	}
	for _, r := range reqs {
		what := r.Method + " " + r.Path
		switch {
		case slices.Contains(invalid, string(r.Body)):
		case r.Path == "/v2/pods" && r.Method == "POST":
			check("request "+what, "CreatePodRequest", r.Body)
		case strings.HasSuffix(r.Path, "/action") && r.Method == "POST":
			check("request "+what, "PodActionRequest", r.Body)
		}
		if !strings.HasPrefix(r.Path, "/v2/") || len(r.Response) == 0 {
			continue
		}
		switch {
		case r.Status >= 400:
			if r.ContentType != "application/problem+json" {
				t.Errorf("answer to %s: content type %q, want application/problem+json", what, r.ContentType)
			}
			check("answer to "+what, "ErrorResponse", r.Response)
		case r.Path == "/v2/pods" && r.Method == "GET":
			check("answer to "+what, "ListPodsResponse", r.Response)
		case r.Path == "/v2/catalog/gpus":
			check("answer to "+what, "ListGpuTypesResponse", r.Response)
		case strings.HasPrefix(r.Path, "/v2/pods"):
			check("answer to "+what, "Pod", r.Response)
		}
	}
	return checked
}

// redactBody keeps failure messages free of the test's agent token.
func redactBody(b []byte) string {
	return strings.ReplaceAll(string(b), agentToken, "[agent token]")
}
