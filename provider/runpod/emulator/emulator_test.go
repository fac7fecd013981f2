package emulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
	"github.com/gpuflow/gpuflow/provider/emulate"
	"github.com/gpuflow/gpuflow/provider/runpod/emulator"
)

const key = "rpa_EMULATOR_TEST_KEY"

var timing = emulate.Timing{Pending: 100 * time.Millisecond, Starting: 160 * time.Millisecond, Run: 200 * time.Millisecond}

type fixture struct {
	t   *testing.T
	em  *emulator.Emulator
	srv *httptest.Server
}

func start(t *testing.T) *fixture {
	t.Helper()
	em := emulator.New(emulator.Options{APIKey: key, Timing: timing, RateLimits: map[string]emulate.Rate{}}) // tests poll fast: no rate limit
	srv := httptest.NewServer(em)
	t.Cleanup(func() {
		if live := em.Live(); len(live) > 0 {
			t.Errorf("pods left: %v", live)
		}
		em.Close()
		srv.Close()
	})
	return &fixture{t: t, em: em, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d %s: %v", a.status, a.body, err)
	}
	return m
}

// call sends a request with auth ("" sends none).
func (f *fixture) call(method, path, auth, body string) answer {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func (f *fixture) do(method, path, body string) answer {
	f.t.Helper()
	return f.call(method, path, key, body)
}

func (f *fixture) gql(query string, vars any) answer {
	f.t.Helper()
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return f.do("POST", "/graphql", string(b))
}

const createBody = `{"name":"gpuflow-t1","image":"busybox","gpu":{"id":"NVIDIA GeForce RTX 4090","count":2},"env":{"A":"b"},"args":"sleep 1"}`

func (f *fixture) create(body string) map[string]any {
	f.t.Helper()
	a := f.do("POST", "/v2/pods", body)
	if a.status != http.StatusCreated {
		f.t.Fatalf("create: %d %s", a.status, a.body)
	}
	return a.json(f.t)
}

func (f *fixture) status(id string) (string, bool) {
	f.t.Helper()
	a := f.do("GET", "/v2/pods/"+id, "")
	if a.status != http.StatusOK {
		f.t.Fatalf("get %s: %d %s", id, a.status, a.body)
	}
	p := a.json(f.t)
	return p["status"].(string), p["runtime"] != nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuth(t *testing.T) {
	f := start(t)
	a := f.call("GET", "/v2/pods", "", "")
	if a.status != 401 || a.header.Get("Content-Type") != "application/problem+json" || a.json(t)["detail"] != "missing bearer token" {
		t.Errorf("no token: %d %s %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	if a := f.call("GET", "/v2/pods", "wrong", ""); a.status != 401 {
		t.Errorf("wrong token: %d", a.status)
	}
	if a := f.call("POST", "/graphql", "", `{"query":"query { gpuTypes { id } }"}`); a.status != 401 || !strings.Contains(string(a.body), `"errors"`) {
		t.Errorf("graphql without token: %d %s", a.status, a.body)
	}
	if a := f.call("POST", "/graphql?api_key="+key, "", `{"query":"query { gpuTypes { id } }"}`); a.status != 200 {
		t.Errorf("graphql with api_key: %d %s", a.status, a.body)
	}
}

func TestCreateValidation(t *testing.T) {
	f := start(t)
	a := f.do("POST", "/v2/pods", `{"name":"x","image":"i","gpu":{"id":"NVIDIA GeForce RTX 4090","extra":1},"bogus":true,"disk":0}`)
	if a.status != 422 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	m := a.json(t)
	errs := fmt.Sprint(m["errors"])
	for _, want := range []string{"$: additional properties 'bogus' not allowed", "$.gpu: additional properties 'extra' not allowed", "$.disk: minimum"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors %s lack %q", errs, want)
		}
	}
	if m["title"] != "Unprocessable Entity" || m["detail"] != "Request validation failed." {
		t.Errorf("problem %v", m)
	}
	for body, want := range map[string]int{
		`{"image":"i","gpu":{"id":"NVIDIA GeForce RTX 4090"}}`:                                               422, // no name
		`{"name":"x","gpu":{"id":"NVIDIA GeForce RTX 4090"}}`:                                                422, // no image
		`{"name":"x","image":"i"}`:                                                                           400, // neither gpu nor cpu
		`{"name":"x","image":"i","gpu":{"id":"NVIDIA GeForce RTX 4090"},"cpu":{"id":"cpu3c","vcpuCount":2}}`: 400,
		`{"name":"x","image":"i","gpu":{"id":"NVIDIA Imaginary"}}`:                                           400,
		`{"name":"x","image":"i","gpu":{"id":"NVIDIA GeForce RTX 4090","count":9}}`:                          400,
		`{"name":"x","image":"i","env":[{"key":"A","value":"b"}],"gpu":{"id":"NVIDIA GeForce RTX 4090"}}`:    422,
		`not json`: 400,
	} {
		if a := f.do("POST", "/v2/pods", body); a.status != want {
			t.Errorf("%s: %d %s, want %d", body, a.status, a.body, want)
		}
	}
}

func TestPodLifecycle(t *testing.T) {
	f := start(t)
	p := f.create(createBody)
	id := p["id"].(string)
	if !regexp.MustCompile(`^[a-z0-9]{14}$`).MatchString(id) {
		t.Errorf("id %q", id)
	}
	if p["status"] != "PROVISIONING" || p["runtime"] != nil || p["cost"].(float64) != 0.88 {
		t.Errorf("created %v", p)
	}
	var seen []string
	eventually(t, "running with a runtime", func() bool {
		s, up := f.status(id)
		if up {
			s += "+runtime"
		}
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return up
	})
	if want := []string{"PROVISIONING", "STARTING", "RUNNING", "RUNNING+runtime"}; !slices.Equal(seen, want) {
		t.Errorf("states %v, want %v", seen, want)
	}
	list := f.do("GET", "/v2/pods", "").json(t)["pods"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Errorf("list %v", list)
	}

	// actions
	if a := f.do("POST", "/v2/pods/"+id+"/action", `{"action":"start"}`); a.status != 409 {
		t.Errorf("start a running pod: %d", a.status)
	}
	a := f.do("POST", "/v2/pods/"+id+"/action", `{"action":"stop"}`)
	if a.status != 200 || a.json(t)["status"] != "EXITED" || a.json(t)["cost"].(float64) != 0 {
		t.Errorf("stop: %d %s", a.status, a.body)
	}
	if a := f.do("POST", "/v2/pods/"+id+"/action", `{"action":"start"}`); a.status != 200 || a.json(t)["status"] != "PROVISIONING" {
		t.Errorf("start: %d %s", a.status, a.body)
	}
	if a := f.do("POST", "/v2/pods/"+id+"/action", `{"action":"fly"}`); a.status != 422 {
		t.Errorf("bad action: %d", a.status)
	}
	if a := f.do("DELETE", "/v2/pods/"+id, ""); a.status != 204 || len(a.body) != 0 {
		t.Errorf("delete: %d %s", a.status, a.body)
	}
	if a := f.do("GET", "/v2/pods/"+id, ""); a.status != 404 || a.json(t)["status"].(float64) != 404 {
		t.Errorf("get deleted: %d %s", a.status, a.body)
	}
	if a := f.do("DELETE", "/v2/pods/"+id, ""); a.status != 404 {
		t.Errorf("delete again: %d", a.status)
	}
	p2 := f.create(createBody)
	if a := f.do("POST", "/v2/pods/"+p2["id"].(string)+"/action", `{"action":"terminate"}`); a.status != 204 {
		t.Errorf("terminate action: %d %s", a.status, a.body)
	}
}

// agentLog is an agent endpoint that keeps every report it acknowledged.
type agentLog struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string
}

func newAgentLog(t *testing.T) *agentLog {
	a := &agentLog{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(b))
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// count returns how many reports contain s.
func (a *agentLog) count(s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if strings.Contains(c, s) {
			n++
		}
	}
	return n
}

// podBody is a create body for a pod running job's argv as gpuflow's
// provider does (the runner as the command, its state on the volume)
// when runner is set, or as the bare command otherwise.
func podBody(t *testing.T, agentURL, job, run string, runner bool) string {
	env := map[string]string{"GPUFLOW_AGENT_URL": agentURL + "/jobs/" + job, "GPUFLOW_AGENT_TOKEN": "tok", "GPUFLOW_JOB_ID": job,
		emulate.EnvExitCode: "7", emulate.EnvRunSeconds: run}
	body := map[string]any{"name": "gpuflow-" + job, "image": "i", "gpu": map[string]any{"id": "NVIDIA GeForce RTX 4090"}, "env": env,
		"args": "python train.py"}
	if runner {
		env[agentscript.EnvRunner] = agentscript.Runner()
		env[agentscript.EnvStateDir] = "/gpuflow/job"
		body["args"] = `sh -c 'eval "$GPUFLOW_RUNNER"' gpuflow python train.py`
		body["mounts"] = map[string]any{"persistent": map[string]any{"size": 10, "path": "/gpuflow"}}
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJob: gpuflow's runner reports to the agent endpoint from the pod's
// env, and stops when the pod goes.
func TestJob(t *testing.T) {
	f := start(t)
	agent := newAgentLog(t)
	quick := f.create(podBody(t, agent.srv.URL, "quick", "0.1", true))
	slow := f.create(podBody(t, agent.srv.URL, "slow", "60", true))
	eventually(t, "the quick job's exit code", func() bool { return agent.count(`/jobs/quick/finished Bearer tok {"exit_code":7}`) == 1 })
	eventually(t, "the slow job's start", func() bool { return agent.count(`/jobs/slow/progress Bearer tok`) > 0 })
	if m := f.do("GET", "/v2/pods/"+quick["id"].(string), "").json(t)["mounts"]; fmt.Sprint(m) != "map[persistent:map[path:/gpuflow size:10]]" {
		t.Errorf("mounts %v", m)
	}
	f.do("DELETE", "/v2/pods/"+quick["id"].(string), "")
	f.do("DELETE", "/v2/pods/"+slow["id"].(string), "")
	if agent.count("/jobs/slow/finished") > 0 {
		t.Error("a deleted pod's job finished")
	}
}

// TestContainerRestarts: RunPod restarts a container whose command ends.
// A bare command (what gpuflow gave pods before its runner) therefore runs
// again and again and never reports; the runner runs the job once however
// often its container restarts, and reports once.
func TestContainerRestarts(t *testing.T) {
	f := start(t)
	agent := newAgentLog(t)
	bare := f.create(podBody(t, agent.srv.URL, "bare", "0.02", false))["id"].(string)
	eventually(t, "three runs of the bare command", func() bool { return f.em.CommandRuns(bare) >= 3 })
	if st, _ := f.status(bare); st != "RUNNING" || agent.count("/jobs/bare/") != 0 || f.em.ContainerStarts(bare) < 3 {
		t.Errorf("bare command: status %s, %d reports, %d starts", st, agent.count("/jobs/bare/"), f.em.ContainerStarts(bare))
	}
	f.do("DELETE", "/v2/pods/"+bare, "")

	run := f.create(podBody(t, agent.srv.URL, "run", "0.02", true))["id"].(string)
	eventually(t, "the runner's report", func() bool { return agent.count("/jobs/run/finished") == 1 })
	for range 3 {
		if a := f.do("POST", "/v2/pods/"+run+"/action", `{"action":"restart"}`); a.status != http.StatusOK {
			t.Fatalf("restart: %d %s", a.status, a.body)
		}
	}
	// A stop and a start wipe the container disk too; the volume stays.
	f.do("POST", "/v2/pods/"+run+"/action", `{"action":"stop"}`)
	f.do("POST", "/v2/pods/"+run+"/action", `{"action":"start"}`)
	eventually(t, "the container's fifth start", func() bool { return f.em.ContainerStarts(run) == 5 })
	if n := f.em.CommandRuns(run); n != 1 || agent.count(`/jobs/run/finished Bearer tok {"exit_code":7}`) != 1 {
		t.Errorf("runner: the command ran %d times, %d finished reports; want once and once", n, agent.count("/jobs/run/finished"))
	}
	f.do("DELETE", "/v2/pods/"+run, "")
	// The counts outlive the pod, so a test can count a job's runs after
	// gpuflow deleted its pod.
	if n, starts := f.em.CommandRuns(run), f.em.ContainerStarts(run); n != 1 || starts != 5 {
		t.Errorf("after the delete: %d runs, %d starts; want 1 and 5", n, starts)
	}
	if n := f.em.CommandRuns(bare); n < 3 {
		t.Errorf("the deleted bare pod's runs: %d, want at least 3", n)
	}
}

func TestFaults(t *testing.T) {
	f := start(t)
	f.em.Faults().Set(emulate.Faults{NoCapacity: true})
	a := f.do("POST", "/v2/pods", createBody)
	if a.status != 400 || a.json(t)["detail"] != emulator.NoCapacityDetail {
		t.Errorf("no capacity: %d %s", a.status, a.body)
	}
	f.em.Faults().Set(emulate.Faults{Throttle: true})
	if a := f.do("GET", "/v2/pods", ""); a.status != 429 || a.header.Get("Retry-After") != "1" {
		t.Errorf("throttle: %d %v", a.status, a.header)
	}
	f.em.Faults().Set(emulate.Faults{ServerErrors: 2})
	for i := range 3 {
		a := f.do("GET", "/v2/pods", "")
		if (i < 2) != (a.status == 500) {
			t.Errorf("call %d: %d", i, a.status)
		}
	}
	f.em.Faults().Set(emulate.Faults{CreateLost: 1})
	if a := f.do("POST", "/v2/pods", createBody); a.status != 500 {
		t.Errorf("create lost: %d", a.status)
	}
	live := f.em.Live()
	if len(live) != 1 {
		t.Fatalf("the lost create left %v", live)
	}
	f.em.Faults().Set(emulate.Faults{TerminateFailures: 1})
	if a := f.do("DELETE", "/v2/pods/"+live[0], ""); a.status != 500 {
		t.Errorf("terminate failure: %d", a.status)
	}
	if a := f.do("DELETE", "/v2/pods/"+live[0], ""); a.status != 204 {
		t.Errorf("terminate after the failure: %d", a.status)
	}
	f.em.Faults().Set(emulate.Faults{Slow: 50 * time.Millisecond})
	t0 := time.Now()
	f.do("GET", "/v2/pods", "")
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("slow answer came after %v", d)
	}
}

func TestGraphQL(t *testing.T) {
	f := start(t)
	in := map[string]any{"bidPerGpu": 0.3, "gpuTypeId": "NVIDIA GeForce RTX 4090", "gpuCount": 1, "cloudType": "SECURE",
		"name": "gpuflow-spot", "imageName": "i", "dockerArgs": "", "containerDiskInGb": 20, "volumeInGb": 0,
		"env": []map[string]string{{"key": "A", "value": "b"}}, "terminateAfter": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	const rent = `mutation r($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id desiredStatus } }`
	a := f.gql(rent, map[string]any{"input": in})
	if a.status != 200 {
		t.Fatalf("rent: %d %s", a.status, a.body)
	}
	pod := a.json(t)["data"].(map[string]any)["podRentInterruptable"].(map[string]any)
	id := pod["id"].(string)
	if rest := f.do("GET", "/v2/pods/"+id, "").json(t); rest["name"] != "gpuflow-spot" || rest["cost"].(float64) != 0.3 || rest["env"].(map[string]any)["A"] != "b" {
		t.Errorf("spot pod over REST %v", rest)
	}

	bad := map[string]any{"interruptible": true}
	for k, v := range in {
		bad[k] = v
	}
	if a := f.gql(rent, map[string]any{"input": bad}); a.status != 400 || !strings.Contains(string(a.body), `Field \"interruptible\" is not defined`) {
		t.Errorf("unknown field: %d %s", a.status, a.body)
	}
	if a := f.gql(rent, nil); a.status != 400 {
		t.Errorf("no input: %d", a.status)
	}
	f.em.Faults().Set(emulate.Faults{NoCapacity: true})
	a = f.gql(rent, map[string]any{"input": in})
	f.em.Faults().Set(emulate.Faults{})
	m := a.json(t)
	if a.status != 200 || m["data"].(map[string]any)["podRentInterruptable"] != nil ||
		!strings.Contains(fmt.Sprint(m["errors"]), emulator.NoCapacitySpotDetail) {
		t.Errorf("no capacity: %d %s", a.status, a.body)
	}

	types := f.gql(`query { gpuTypes { id secureSpotPrice } }`, nil).json(t)["data"].(map[string]any)["gpuTypes"].([]any)
	if len(types) != len(emulator.DefaultGPUs) {
		t.Errorf("gpu types %v", types)
	}
	got := f.gql(`query p($input: PodFilter) { pod(input: $input) { id desiredStatus } }`, map[string]any{"input": map[string]any{"podId": id}}).json(t)
	if got["data"].(map[string]any)["pod"].(map[string]any)["id"] != id {
		t.Errorf("pod query %v", got)
	}
	if a := f.gql(`mutation s($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }`, map[string]any{"input": map[string]any{"podId": id}}); !strings.Contains(string(a.body), `"EXITED"`) {
		t.Errorf("stop %s", a.body)
	}
	term := `mutation t($input: PodTerminateInput!) { podTerminate(input: $input) }`
	if a := f.gql(term, map[string]any{"input": map[string]any{"podId": id}}); a.status != 200 || strings.Contains(string(a.body), "errors") {
		t.Errorf("terminate %d %s", a.status, a.body)
	}
	if a := f.gql(term, map[string]any{"input": map[string]any{"podId": id}}); !strings.Contains(string(a.body), "errors") {
		t.Errorf("terminate again %s", a.body)
	}
}

func TestSafetyTimer(t *testing.T) {
	f := start(t)
	in := map[string]any{"bidPerGpu": 0.3, "gpuTypeId": "NVIDIA GeForce RTX 4090", "gpuCount": 1, "name": "gpuflow-timer", "imageName": "i",
		"terminateAfter": time.Now().Add(-time.Second).UTC().Format(time.RFC3339)}
	a := f.gql(`mutation r($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id } }`, map[string]any{"input": in})
	if a.status != 200 {
		t.Fatalf("rent: %d %s", a.status, a.body)
	}
	eventually(t, "terminateAfter", func() bool { return len(f.em.Live()) == 0 })
}

func TestPreemptAndAdmin(t *testing.T) {
	f := start(t)
	onDemand := f.create(createBody)["id"].(string)
	a := f.gql(`mutation r($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id } }`,
		map[string]any{"input": map[string]any{"bidPerGpu": 0.3, "gpuTypeId": "NVIDIA GeForce RTX 4090", "gpuCount": 1, "name": "s", "imageName": "i"}})
	spot := a.json(t)["data"].(map[string]any)["podRentInterruptable"].(map[string]any)["id"].(string)

	if a := f.call("POST", "/_emulator/preempt/"+onDemand, "", ""); a.status != 409 {
		t.Errorf("preempt on-demand: %d", a.status)
	}
	if a := f.call("POST", "/_emulator/preempt/nope", "", ""); a.status != 404 {
		t.Errorf("preempt unknown: %d", a.status)
	}
	if a := f.call("POST", "/_emulator/preempt/"+spot, "", ""); a.status != 204 {
		t.Errorf("preempt spot: %d %s", a.status, a.body)
	}
	if s, _ := f.status(spot); s != "EXITED" {
		t.Errorf("preempted pod %s", s)
	}
	if err := f.em.Preempt(spot); err == nil {
		t.Error("preempted twice")
	}

	if a := f.call("PUT", "/_emulator/faults", "", `{"no_capacity":true,"server_errors":2}`); a.status != 200 {
		t.Errorf("set faults: %d %s", a.status, a.body)
	}
	if got := f.em.Faults().Get(); !got.NoCapacity || got.ServerErrors != 2 {
		t.Errorf("faults %+v", got)
	}
	f.em.Faults().Set(emulate.Faults{})
	for _, id := range []string{onDemand, spot} {
		f.do("DELETE", "/v2/pods/"+id, "")
	}
	for _, r := range f.em.Requests() {
		if strings.HasPrefix(r.Path, "/_emulator") {
			t.Errorf("admin call recorded: %s", r.Path)
		}
	}
}

func TestCatalog(t *testing.T) {
	f := start(t)
	if a := f.do("GET", "/v2/catalog/gpus?include=AVAILABILITY", ""); a.status != 400 {
		t.Errorf("include without product: %d", a.status)
	}
	a := f.do("GET", "/v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud=SECURE", "")
	gpus := a.json(t)["gpus"].([]any)
	g := gpus[0].(map[string]any)
	if g["id"] != "NVIDIA GeForce RTX 4090" || g["availability"] != "HIGH" || g["price"].(map[string]any)["secure"].(float64) != 0.44 || len(g["dataCenters"].([]any)) == 0 {
		t.Errorf("catalogue %v", g)
	}
	if plain := f.do("GET", "/v2/catalog/gpus", "").json(t)["gpus"].([]any)[0].(map[string]any); plain["availability"] != nil {
		t.Errorf("availability without include: %v", plain)
	}
}

func TestCloseStopsJobs(t *testing.T) {
	em := emulator.New(emulator.Options{Timing: timing})
	srv := httptest.NewServer(em)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v2/pods", strings.NewReader(createBody))
	req.Header.Set("Authorization", "Bearer any-key-works")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create with any key: %d", resp.StatusCode)
	}
	time.Sleep(timing.Pending + timing.Starting + 20*time.Millisecond) // let the job start
	em.Close()                                                         // returns only once the job has stopped
	if len(em.Live()) != 1 {
		t.Errorf("live %v", em.Live())
	}
}

// The requests kept for Requests stay within MaxRecorded and
// MaxRecordedBytes however many are answered (a scale run lists thousands
// of pods every sweep: an unbounded record held a gigabyte).
func TestRecordedRequestsBounded(t *testing.T) {
	const maxBytes = 64 << 10
	em := emulator.New(emulator.Options{APIKey: key, Timing: timing, RateLimits: map[string]emulate.Rate{},
		MaxRecorded: 50, MaxRecordedBytes: maxBytes})
	srv := httptest.NewServer(em)
	f := &fixture{t: t, em: em, srv: srv}
	defer func() { em.Close(); srv.Close() }()
	var ids []string
	for range 20 {
		ids = append(ids, f.create(createBody)["id"].(string))
	}
	for i := range 300 {
		if a := f.do("GET", "/v2/pods", ""); a.status != 200 {
			t.Fatalf("list %d: %d", i, a.status)
		}
		kept := em.Requests()
		size := 0
		for _, r := range kept {
			size += len(r.Body) + len(r.Response)
		}
		if len(kept) > 50 || (len(kept) > 1 && size > maxBytes) {
			t.Fatalf("after %d listings: %d requests, %d bytes kept (bounds 50, %d)", i+1, len(kept), size, maxBytes)
		}
		if last := kept[len(kept)-1]; last.Path != "/v2/pods" || last.Method != "GET" || len(last.Response) == 0 {
			t.Fatalf("newest request not kept: %+v", last)
		}
	}
	for _, id := range ids {
		f.do("DELETE", "/v2/pods/"+id, "")
	}
}
