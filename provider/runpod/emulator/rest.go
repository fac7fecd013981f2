package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// RunPod's capacity refusals, verbatim (providers.md A.3 and A.5).
const (
	NoCapacityDetail     = "There are no longer any instances available with the requested specifications. Please refresh and try again."
	NoCapacitySpotDetail = "There are no longer any instances available with the request specifications. Please try again later."
)

// problem answers an RFC 9457 problem, as REST v2 does.
func problem(w http.ResponseWriter, status int, detail string, errs []string) {
	body := map[string]any{"title": http.StatusText(status), "status": status, "detail": detail}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// rest routes REST v2.
func (e *Emulator) rest(w http.ResponseWriter, r *http.Request, body []byte) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	allow := func(methods ...string) bool {
		if slices.Contains(methods, r.Method) {
			return true
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		problem(w, http.StatusMethodNotAllowed, "method not allowed", nil)
		return false
	}
	switch {
	case path == "/v2/pods":
		if !allow(http.MethodGet, http.MethodPost) {
			return
		}
		if r.Method == http.MethodGet {
			e.listPods(w)
		} else {
			e.createPod(w, body)
		}
	case path == "/v2/catalog/gpus":
		if allow(http.MethodGet) {
			e.listGPUs(w, r)
		}
	case strings.HasPrefix(path, "/v2/pods/"):
		id, action, _ := strings.Cut(strings.TrimPrefix(path, "/v2/pods/"), "/")
		switch {
		case action == "action":
			if allow(http.MethodPost) {
				e.podAction(w, id, body)
			}
		case action != "":
			problem(w, http.StatusNotFound, "resource not found", nil)
		case allow(http.MethodGet, http.MethodDelete):
			if r.Method == http.MethodGet {
				e.getPod(w, id)
			} else {
				e.deletePod(w, id)
			}
		}
	default:
		problem(w, http.StatusNotFound, "resource not found", nil)
	}
}

func (e *Emulator) listPods(w http.ResponseWriter) {
	e.mu.Lock()
	pods := []podView{}
	for _, p := range e.sortedPods() {
		pods = append(pods, e.view(p))
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"pods": pods})
}

func (e *Emulator) getPod(w http.ResponseWriter, id string) {
	e.mu.Lock()
	p := e.pods[id]
	var v podView
	if p != nil {
		v = e.view(p)
	}
	e.mu.Unlock()
	if p == nil {
		problem(w, http.StatusNotFound, "pod not found", nil)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (e *Emulator) takeTerminateFailure() bool {
	return e.faults.Take(func(f *emulate.Faults) *int { return &f.TerminateFailures })
}

func (e *Emulator) deletePod(w http.ResponseWriter, id string) {
	e.mu.Lock()
	p := e.pods[id]
	e.mu.Unlock()
	if p == nil {
		problem(w, http.StatusNotFound, "pod not found", nil)
		return
	}
	if e.takeTerminateFailure() {
		problem(w, http.StatusInternalServerError, "failed to terminate pod, please try again", nil)
		return
	}
	e.mu.Lock()
	e.remove(p)
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) podAction(w http.ResponseWriter, id string, body []byte) {
	var in map[string]any
	if err := decode(body, &in); err != nil {
		problem(w, http.StatusBadRequest, "request body is not valid JSON", nil)
		return
	}
	var errs []string
	for k := range in {
		if k != "action" {
			errs = append(errs, fmt.Sprintf("$: additional properties '%s' not allowed", k))
		}
	}
	action, ok := in["action"].(string)
	switch {
	case in["action"] == nil:
		errs = append(errs, "$: missing property 'action'")
	case !ok || !slices.Contains([]string{"start", "stop", "restart", "terminate"}, action):
		errs = append(errs, "$.action: value must be one of 'start', 'stop', 'restart', 'terminate'")
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		problem(w, http.StatusUnprocessableEntity, "Request validation failed.", errs)
		return
	}
	e.mu.Lock()
	p := e.pods[id]
	if p == nil {
		e.mu.Unlock()
		problem(w, http.StatusNotFound, "pod not found", nil)
		return
	}
	status, _ := p.phase(e.now(), e.timing)
	valid := map[string][]string{
		statusRunning:      {"stop", "restart", "terminate"},
		statusExited:       {"start", "terminate"},
		statusProvisioning: {"stop", "terminate"},
		statusStarting:     {"stop", "terminate"},
	}
	if !slices.Contains(valid[status], action) {
		e.mu.Unlock()
		problem(w, http.StatusConflict, fmt.Sprintf("action %q is not valid for a pod in status %s", action, status), nil)
		return
	}
	switch action {
	case "terminate":
		e.mu.Unlock()
		if e.takeTerminateFailure() {
			problem(w, http.StatusInternalServerError, "failed to terminate pod, please try again", nil)
			return
		}
		e.mu.Lock()
		e.remove(p)
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case "stop":
		e.stop(p)
	case "start":
		e.start(p)
	case "restart":
		e.restartContainer(p)
	}
	v := e.view(p)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// decode reads JSON keeping numbers exact, so integers can be told apart.
func decode(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// createPod answers POST /v2/pods: 422 for a body the schema refuses, 400
// for broken cross-field rules and no capacity, 201 with the pod.
func (e *Emulator) createPod(w http.ResponseWriter, body []byte) {
	var in map[string]any
	if err := decode(body, &in); err != nil || in == nil {
		problem(w, http.StatusBadRequest, "request body is not a JSON object", nil)
		return
	}
	if errs := validateCreate(in); len(errs) > 0 {
		problem(w, http.StatusUnprocessableEntity, "Request validation failed.", errs)
		return
	}
	if _, ok := in["templateId"]; ok {
		problem(w, http.StatusNotFound, "template not found", nil)
		return
	}
	gpu, hasGPU := in["gpu"].(map[string]any)
	cpu, hasCPU := in["cpu"].(map[string]any)
	if hasGPU == hasCPU {
		problem(w, http.StatusBadRequest, "exactly one of gpu or cpu must be set", nil)
		return
	}
	cloud := "SECURE"
	if c, ok := in["cloud"].(string); ok {
		cloud = c
	}
	p := &pod{
		id: newID(), name: in["name"].(string), cloud: cloud, disk: 50,
		env: map[string]string{},
	}
	p.image, _ = in["image"].(string)
	p.args, _ = in["args"].(string)
	if d, ok := intOf(in["disk"]); ok {
		p.disk = d
	}
	if env, ok := in["env"].(map[string]any); ok {
		for k, v := range env {
			p.env[k] = v.(string)
		}
	}
	if ports, ok := in["ports"].([]any); ok {
		for _, v := range ports {
			p.ports = append(p.ports, v.(string))
		}
	}
	if m, ok := in["mounts"].(map[string]any); ok {
		if pm, ok := m["persistent"].(map[string]any); ok {
			p.volumePath, _ = pm["path"].(string)
			p.volumeSize, _ = intOf(pm["size"])
		}
	}
	if hasGPU {
		p.gpuID = gpu["id"].(string)
		p.gpuCount = 1
		if n, ok := intOf(gpu["count"]); ok {
			p.gpuCount = n
		}
		g, ok := e.gpu(p.gpuID)
		if !ok {
			problem(w, http.StatusBadRequest, fmt.Sprintf("gpu type %q does not exist", p.gpuID), nil)
			return
		}
		price, most := g.SecurePrice, g.MaxCount
		if cloud == "COMMUNITY" {
			price = g.CommunityPrice
		}
		if price <= 0 {
			problem(w, http.StatusBadRequest, fmt.Sprintf("gpu type %q is not offered in the %s cloud", p.gpuID, cloud), nil)
			return
		}
		if p.gpuCount > most {
			problem(w, http.StatusBadRequest, fmt.Sprintf("gpu count %d exceeds the maximum of %d for %q", p.gpuCount, most, p.gpuID), nil)
			return
		}
		p.cost = price * float64(p.gpuCount)
	} else {
		p.cpuID = cpu["id"].(string)
		p.vcpus, _ = intOf(cpu["vcpuCount"])
		p.cost = 0.03 * float64(p.vcpus)
	}
	if e.faults.Get().NoCapacity {
		problem(w, http.StatusBadRequest, NoCapacityDetail, nil)
		return
	}
	p.dataCenter = e.opts.DataCenters[0]
	if dcs, ok := in["dataCenterIds"].([]any); ok && len(dcs) > 0 {
		p.dataCenter = dcs[0].(string)
	}
	e.mu.Lock()
	p.created, p.boot = e.now(), e.now()
	e.addPod(p)
	v := e.view(p)
	e.mu.Unlock()
	e.log.Info("runpod emulator: pod created", "pod_id", p.id, "gpu", p.gpuID, "count", p.gpuCount)
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.CreateLost }) {
		problem(w, http.StatusInternalServerError, "internal server error", nil)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func intOf(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return int(i), err == nil
}

var cudaVersion = regexp.MustCompile(`^\d+\.\d+$`)

// validateCreate checks a create body against the v2 CreatePodRequest
// schema (the subset RunPod enforces with 422), with the spec's messages.
func validateCreate(in map[string]any) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	known := []string{"name", "image", "args", "disk", "env", "ports", "registry", "cloud", "cpu",
		"dataCenterIds", "globalNetworking", "gpu", "mounts", "startJupyter", "startSsh", "templateId"}
	for k := range in {
		if !slices.Contains(known, k) {
			bad("$: additional properties '%s' not allowed", k)
		}
	}
	str := func(k string, minLen int) {
		if v, ok := in[k]; ok {
			if s, ok := v.(string); !ok {
				bad("$.%s: got %s, want string", k, kind(v))
			} else if len(s) < minLen {
				bad("$.%s: minLength: got %d, want %d", k, len(s), minLen)
			}
		}
	}
	boolean := func(k string) {
		if v, ok := in[k]; ok {
			if _, ok := v.(bool); !ok {
				bad("$.%s: got %s, want boolean", k, kind(v))
			}
		}
	}
	stringArray := func(path string, v any) {
		a, ok := v.([]any)
		if !ok {
			bad("%s: got %s, want array", path, kind(v))
			return
		}
		for i, x := range a {
			if _, ok := x.(string); !ok {
				bad("%s/%d: got %s, want string", path, i, kind(x))
			}
		}
	}
	if _, ok := in["name"]; !ok {
		bad("$: missing property 'name'")
	}
	str("name", 1)
	_, hasTemplate := in["templateId"]
	if _, ok := in["image"]; !ok && !hasTemplate {
		bad("$: missing property 'image'")
	}
	str("image", 0)
	str("args", 0)
	str("templateId", 1)
	boolean("globalNetworking")
	boolean("startJupyter")
	boolean("startSsh")
	if v, ok := in["registry"]; ok && v != nil {
		if _, ok := v.(string); !ok {
			bad("$.registry: got %s, want string or null", kind(v))
		}
	}
	if v, ok := in["disk"]; ok {
		if n, ok := intOf(v); !ok {
			bad("$.disk: got %s, want integer", kind(v))
		} else if n < 1 {
			bad("$.disk: minimum: got %d, want 1", n)
		}
	}
	if v, ok := in["cloud"]; ok && v != "SECURE" && v != "COMMUNITY" {
		bad("$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
	}
	if v, ok := in["env"]; ok {
		if m, ok := v.(map[string]any); !ok {
			bad("$.env: got %s, want object", kind(v))
		} else {
			for k, x := range m {
				if _, ok := x.(string); !ok {
					bad("$.env.%s: got %s, want string", k, kind(x))
				}
			}
		}
	}
	if v, ok := in["ports"]; ok {
		stringArray("$.ports", v)
	}
	if v, ok := in["dataCenterIds"]; ok {
		stringArray("$.dataCenterIds", v)
	}
	if v, ok := in["mounts"]; ok {
		if m, ok := v.(map[string]any); !ok {
			bad("$.mounts: got %s, want object", kind(v))
		} else {
			for k := range m {
				if k != "persistent" && k != "network" {
					bad("$.mounts: additional properties '%s' not allowed", k)
				}
			}
		}
	}
	if v, ok := in["gpu"]; ok {
		g, ok := v.(map[string]any)
		if !ok {
			bad("$.gpu: got %s, want object", kind(v))
		} else {
			for k := range g {
				if !slices.Contains([]string{"id", "count", "allowedCudaVersions", "minCudaVersion"}, k) {
					bad("$.gpu: additional properties '%s' not allowed", k)
				}
			}
			if id, ok := g["id"].(string); !ok {
				bad("$.gpu: missing property 'id'")
			} else if id == "" {
				bad("$.gpu.id: must not be empty")
			}
			if c, ok := g["count"]; ok {
				if n, ok := intOf(c); !ok {
					bad("$.gpu.count: got %s, want integer", kind(c))
				} else if n < 1 {
					bad("$.gpu.count: minimum: got %d, want 1", n)
				}
			}
			if c, ok := g["minCudaVersion"]; ok {
				if s, ok := c.(string); !ok || !cudaVersion.MatchString(s) {
					bad("$.gpu.minCudaVersion: does not match pattern '^\\d+\\.\\d+$'")
				}
			}
			if c, ok := g["allowedCudaVersions"]; ok {
				stringArray("$.gpu.allowedCudaVersions", c)
			}
		}
	}
	if v, ok := in["cpu"]; ok {
		c, ok := v.(map[string]any)
		if !ok {
			bad("$.cpu: got %s, want object", kind(v))
		} else {
			for k := range c {
				if k != "id" && k != "vcpuCount" {
					bad("$.cpu: additional properties '%s' not allowed", k)
				}
			}
			if id, ok := c["id"].(string); !ok || id == "" {
				bad("$.cpu: missing property 'id'")
			}
			if n, ok := intOf(c["vcpuCount"]); !ok {
				bad("$.cpu: missing property 'vcpuCount'")
			} else if n < 2 {
				bad("$.cpu.vcpuCount: minimum: got %d, want 2", n)
			}
		}
	}
	slices.Sort(errs)
	return errs
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// listGPUs answers GET /v2/catalog/gpus, with availability when asked
// (include=AVAILABILITY, which needs product).
func (e *Emulator) listGPUs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	include, product := q.Get("include"), q.Get("product")
	switch {
	case include != "" && include != "AVAILABILITY":
		problem(w, http.StatusUnprocessableEntity, "Request validation failed.", []string{"include: value must be one of 'AVAILABILITY'"})
		return
	case include != "" && product == "":
		problem(w, http.StatusBadRequest, "product is required with include=AVAILABILITY", nil)
		return
	case include == "" && (product != "" || q.Has("cloud") || q.Has("count")):
		problem(w, http.StatusBadRequest, "product, cloud and count are valid only with include=AVAILABILITY", nil)
		return
	}
	cloud := q.Get("cloud")
	if cloud != "" && cloud != "SECURE" && cloud != "COMMUNITY" {
		problem(w, http.StatusUnprocessableEntity, "Request validation failed.", []string{"cloud: value must be one of 'SECURE', 'COMMUNITY'"})
		return
	}
	level := "HIGH"
	if e.faults.Get().NoCapacity {
		level = "NONE"
	}
	gpus := []map[string]any{}
	for _, g := range e.opts.GPUs {
		v := map[string]any{
			"id": g.ID, "name": g.Name, "pool": nil, "manufacturer": "NVIDIA", "memory": g.MemoryGB,
			"secure": g.SecurePrice > 0, "community": g.CommunityPrice > 0,
			"price":    map[string]any{"secure": g.SecurePrice, "community": g.CommunityPrice},
			"maxCount": map[string]any{"secure": maxIf(g.SecurePrice, g.MaxCount), "community": maxIf(g.CommunityPrice, g.MaxCount)},
		}
		if include != "" {
			offered := g.SecurePrice > 0
			if cloud == "COMMUNITY" {
				offered = g.CommunityPrice > 0
			}
			lvl := level
			if !offered {
				lvl = "NONE"
			}
			v["availability"] = lvl
			if lvl != "NONE" {
				var dcs []map[string]any
				for _, dc := range e.opts.DataCenters {
					dcs = append(dcs, map[string]any{"id": dc, "name": dc, "availability": lvl})
				}
				v["dataCenters"] = dcs
			}
		}
		gpus = append(gpus, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"gpus": gpus})
}

func maxIf(price float64, n int) int {
	if price > 0 {
		return n
	}
	return 0
}
