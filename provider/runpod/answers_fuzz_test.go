package runpod

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gpuflow/gpuflow"
)

// Fuzz targets for what RunPod answers: the adapter decodes REST v2 and
// GraphQL bodies from the network (and a compromised or broken endpoint
// may send anything). Whatever the status and body, the adapter never
// panics, a failure is a classified gpuflow error, and what it returns
// keeps its own invariants. The server below answers every request with
// the status and body of the current input.

type fuzzRunPod struct {
	mu     sync.Mutex
	status int
	body   []byte
	gql    []byte // the GraphQL answer (status 200)
}

func (s *fuzzRunPod) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	status, body, gql := s.status, s.body, s.gql
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/graphql" {
		_, _ = w.Write(gql)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *fuzzRunPod) set(status int, body, gql []byte) {
	s.mu.Lock()
	s.status, s.body, s.gql = status, body, gql
	s.mu.Unlock()
}

const fuzzKey = "rpa_FUZZKEY_0123456789abcdef"

func newFuzzProvider(f *testing.F) (*Provider, *fuzzRunPod) {
	srv := &fuzzRunPod{status: 200}
	hs := httptest.NewServer(srv)
	f.Cleanup(hs.Close)
	p, err := New(Config{APIKey: fuzzKey, BaseURL: hs.URL, GraphQLURL: hs.URL + "/graphql", HTTPClient: hs.Client()})
	if err != nil {
		f.Fatal(err)
	}
	return p, srv
}

// fuzzStatus maps the fuzzer's number onto the statuses RunPod answers.
func fuzzStatus(n uint8) int {
	return []int{200, 200, 200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503}[int(n)%15]
}

func wantClassified(t *testing.T, what string, err error, status int, body []byte) {
	t.Helper()
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) || pe.Provider != Name || !providerKinds[pe.Kind] {
		t.Fatalf("%s: status %d body %q: error %v (%T) is not a classified provider error", what, status, body, err, err)
	}
	if strings.Contains(err.Error(), fuzzKey) {
		t.Fatalf("%s: the error carries the API key: %v", what, err)
	}
}

var providerKinds = map[gpuflow.ProviderErrorKind]bool{
	gpuflow.KindNoCapacity: true, gpuflow.KindInvalidRequest: true, gpuflow.KindAuth: true,
	gpuflow.KindTransient: true, gpuflow.KindNotFound: true,
}

var machineStates = map[gpuflow.MachineState]bool{
	gpuflow.MachinePending: true, gpuflow.MachineStarting: true, gpuflow.MachineRunning: true,
	gpuflow.MachineExited: true, gpuflow.MachineFailed: true, gpuflow.MachineGone: true,
}

// FuzzDescribeAnswer: GET /v2/pods/{id} answered with anything.
func FuzzDescribeAnswer(f *testing.F) {
	for _, seed := range []struct {
		status uint8
		body   string
	}{
		{0, `{"id":"p1","name":"gpuflow-x","status":"RUNNING","runtime":{"uptimeInSeconds":3},"gpu":{"id":"NVIDIA A100","count":2},"cost":3.2,"dataCenterId":"US-1","createdAt":"2025-09-06T14:35:41Z","env":{"GPUFLOW_TAGS":"{\"a\":\"b\"}"}}`},
		{0, `{"id":"p1","status":"EXITED","env":{"GPUFLOW_SPOT":"true"}}`},
		{0, `{"id":"p1","status":"TERMINATED","runtime":null}`},
		{0, `{"id":"p1","status":"WEIRD","gpu":{"count":-5},"cost":-1}`},
		{0, `{"env":{"GPUFLOW_TAGS":"[1,2]"}}`}, {0, `{"gpu":null,"dataCenterId":null}`}, {0, `[]`}, {0, `null`},
		{0, `{"cost":1e400}`}, {0, ``}, {0, `{`}, {4, ``},
		{8, `{"status":404,"title":"Not Found","detail":"pod not found"}`}, {11, `{"title":"Too Many Requests"}`},
		{5, `{"status":400,"detail":"There are no longer any instances available"}`}, {12, `<html>oops</html>`},
		{6, `{"title":"Unauthorized"}`},
	} {
		f.Add(seed.status, []byte(seed.body))
	}
	p, srv := newFuzzProvider(f)
	f.Fuzz(func(t *testing.T, n uint8, body []byte) {
		status := fuzzStatus(n)
		srv.set(status, body, nil)
		m, err := p.Describe(context.Background(), "p1")
		if err != nil {
			wantClassified(t, "Describe", err, status, body)
			return
		}
		if m == nil || m.Provider != Name || !machineStates[m.State] {
			t.Fatalf("status %d body %q: machine %+v", status, body, m)
		}
		if status == http.StatusNotFound && m.State != gpuflow.MachineGone {
			t.Fatalf("a 404 gave state %s", m.State)
		}
		if m.GPUCount < 0 || m.PricePerHour < 0 {
			t.Fatalf("status %d body %q: machine %+v", status, body, m)
		}
		if (m.State == gpuflow.MachineFailed) != (m.Reason == ReasonPreempted || m.Reason == ReasonError) {
			t.Fatalf("state %s with reason %q", m.State, m.Reason)
		}
	})
}

// FuzzOffersAnswer: the GPU catalogue (REST) and spot prices (GraphQL)
// answered with anything. A catalogue RunPod cannot give falls back to the
// built-in one; every offer is RunPod's, priced, for at least one GPU.
func FuzzOffersAnswer(f *testing.F) {
	for _, seed := range []struct {
		status    uint8
		body, gql string
	}{
		{0, `{"gpus":[{"id":"NVIDIA A100 80GB PCIe","memory":80,"secure":true,"price":{"secure":1.99},"maxCount":{"secure":8},"availability":"HIGH"}]}`,
			`{"data":{"gpuTypes":[{"id":"NVIDIA A100 80GB PCIe","secureSpotPrice":0.99}]}}`},
		{0, `{"gpus":[{"id":"x","secure":true,"price":{"secure":-1},"maxCount":{"secure":8}}]}`, `{"data":null}`},
		{0, `{"gpus":[{"id":"x","secure":true,"price":{"secure":1},"maxCount":{"secure":-3}}]}`, `{"errors":[{"message":"boom"}]}`},
		{0, `{"gpus":null}`, `{"data":{"gpuTypes":[{"id":"x","secureSpotPrice":-2}]}}`},
		{0, `{"gpus":[{"id":"x","secure":true,"price":{"secure":1},"maxCount":{"secure":1},"availability":"weird","dataCenters":[{"id":"US","availability":"LOW"}]}]}`, `[]`},
		{0, `{`, `{`}, {12, `oops`, ``}, {11, `{"title":"Too Many Requests"}`, ``}, {0, `[]`, `null`},
	} {
		f.Add(seed.status, []byte(seed.body), []byte(seed.gql))
	}
	p, srv := newFuzzProvider(f)
	f.Fuzz(func(t *testing.T, n uint8, body, gql []byte) {
		status := fuzzStatus(n)
		srv.set(status, body, gql)
		p.offerMu.Lock()
		p.offersAt = p.offersAt.AddDate(-1, 0, 0) // every input is read anew
		p.offerMu.Unlock()
		offers, err := p.Offers(context.Background())
		if err != nil {
			wantClassified(t, "Offers", err, status, body)
			return
		}
		for _, o := range offers {
			if o.Provider != Name || o.GPUType == "" || o.GPUCount < 1 || !(o.PricePerHour > 0) ||
				o.SpotPricePerHour < 0 || o.Available < -1 {
				t.Fatalf("status %d body %q gql %q: offer %+v", status, body, gql, o)
			}
			if strings.ContainsAny(o.GPUType, "\x00") {
				t.Fatalf("offer GPU type %s", strconv.Quote(o.GPUType))
			}
		}
	})
}
