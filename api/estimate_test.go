package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// needsCommand refuses a job with neither a command nor an image, as the
// local provider does.
type needsCommand struct{ *fakeProvider }

func (p *needsCommand) Check(spec gpuflow.JobSpec) error {
	if len(spec.Command) == 0 && spec.Image == "" {
		return gpuflow.Errorf(gpuflow.EINVALID, "a command (or an image) is required")
	}
	return nil
}

// TestRecommendationsForCPUJobs: recommendations rank offers for a job of
// a shape, so a provider that checks what a job runs still answers (the
// dashboard's cost comparison of a CPU job), and the start estimate says
// it is not measured yet.
func TestRecommendationsForCPUJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	local := &needsCommand{&fakeProvider{
		info:   gpuflow.ProviderInfo{Name: "local", DisplayName: "Local", Mode: gpuflow.ModeLocal},
		offers: []gpuflow.Offer{{Provider: "local", GPUType: gpuflow.CPUOnly, MemoryGB: 8, VCPUs: 4, Region: "local", Available: 2}},
	}}
	srv := New(Config{Jobs: b.store, Temporal: b.temporal, Providers: gpuflow.Providers{local}, Now: func() time.Time { return testNow },
		Auth: AuthConfig{Users: b.users, Secret: testSecret, PasswordCost: auth.MinCost, Local: gpuflow.LocalPolicy{Everyone: true}}})
	req := httptest.NewRequest(http.MethodGet, "/api/gpu/scheduling/recommendations?gpu_count=0", nil)
	req.Header.Set("Authorization", "Bearer "+b.tokens[aliceID])
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got struct {
		Recommendations map[string]*recommendation `json:"recommendations"`
		Reasons         map[string][]string        `json:"reasons"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, st := range gpuflow.Strategies {
		r := got.Recommendations[st]
		if r == nil || r.Provider != "local" {
			t.Fatalf("%s: %+v, reasons %v: want the local machine", st, r, got.Reasons)
		}
		if r.StartMeasured || r.StartEstimate <= 0 {
			t.Errorf("%s: start %v s, measured %v: want the priors' guess, marked unmeasured", st, r.StartEstimate, r.StartMeasured)
		}
	}
}
