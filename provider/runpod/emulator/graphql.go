package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// gqlFail answers a GraphQL error outside a 200 (auth, throttling,
// validation, server errors).
func gqlFail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{"message": msg}}})
}

// gqlError answers a resolver's error the GraphQL way: 200, the field
// null, the message in errors with the field's path.
func gqlError(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusOK, map[string]any{
		"data":   map[string]any{field: nil},
		"errors": []map[string]any{{"message": msg, "path": []string{field}}},
	})
}

func gqlData(w http.ResponseWriter, field string, v any) {
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{field: v}})
}

// Input fields of the pod-creating mutations, as runpodctl, runpod-python,
// SkyPilot and dstack send them. Unknown fields fail variable validation.
var deployFields = []string{
	"aiApiId", "allowedCudaVersions", "cloudType", "containerDiskInGb", "containerRegistryAuthId",
	"countryCode", "cudaVersion", "dataCenterId", "deployCost", "dockerArgs", "env", "gpuCount",
	"gpuTypeId", "gpuTypeIdList", "imageName", "minCudaVersion", "minDisk", "minDownload",
	"minMemoryInGb", "minUpload", "minVcpuCount", "name", "networkVolumeId", "port", "ports",
	"savingsPlan", "startJupyter", "startSsh", "stopAfter", "supportPublicIp", "templateId",
	"terminateAfter", "volumeInGb", "volumeKey", "volumeMountPath",
}

var rentFields = append(slices.DeleteFunc(slices.Clone(deployFields), func(s string) bool { return s == "savingsPlan" }), "bidPerGpu")

// graphql routes a GraphQL request on the field it asks for.
func (e *Emulator) graphql(w http.ResponseWriter, body []byte) {
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := decode(body, &req); err != nil {
		gqlFail(w, http.StatusBadRequest, "POST body sent invalid JSON.")
		return
	}
	q := req.Query
	input, _ := req.Variables["input"].(map[string]any)
	switch {
	case strings.Contains(q, "podRentInterruptable"):
		e.gqlDeploy(w, "podRentInterruptable", "PodRentInterruptableInput", rentFields, input, true)
	case strings.Contains(q, "podFindAndDeployOnDemand"):
		e.gqlDeploy(w, "podFindAndDeployOnDemand", "PodFindAndDeployOnDemandInput", deployFields, input, false)
	case strings.Contains(q, "podTerminate"):
		e.gqlTerminate(w, input)
	case strings.Contains(q, "podStop"):
		e.gqlStop(w, input)
	case strings.Contains(q, "gpuTypes"):
		e.gqlGPUTypes(w)
	case strings.Contains(q, "myself"):
		e.gqlMyself(w)
	case strings.Contains(q, "pod(") || strings.Contains(q, "pod (") || strings.Contains(q, "pod{"):
		e.gqlPod(w, input)
	case strings.TrimSpace(q) == "":
		gqlFail(w, http.StatusBadRequest, "Must provide query string.")
	default:
		gqlFail(w, http.StatusBadRequest, "Cannot query the requested field: the emulator knows podRentInterruptable, podFindAndDeployOnDemand, podTerminate, podStop, pod, gpuTypes and myself.")
	}
}

// invalidInput answers a variable validation failure, HTTP 400 as GraphQL
// servers do.
func invalidInput(w http.ResponseWriter, detail string) {
	gqlFail(w, http.StatusBadRequest, `Variable "$input" got invalid value; `+detail)
}

// gqlDeploy creates a pod from podRentInterruptable (spot) or
// podFindAndDeployOnDemand.
func (e *Emulator) gqlDeploy(w http.ResponseWriter, field, typ string, allowed []string, in map[string]any, spot bool) {
	if in == nil {
		gqlFail(w, http.StatusBadRequest, fmt.Sprintf(`Variable "$input" of required type "%s!" was not provided.`, typ))
		return
	}
	var unknown []string
	for k := range in {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		invalidInput(w, fmt.Sprintf(`Field "%s" is not defined by type "%s".`, unknown[0], typ))
		return
	}
	gpuID, _ := in["gpuTypeId"].(string)
	count, ok := intOf(in["gpuCount"])
	switch {
	case gpuID == "":
		invalidInput(w, `Field "gpuTypeId" of required type "String!" was not provided.`)
		return
	case !ok || count < 1:
		invalidInput(w, `Field "gpuCount" of required type "Int!" was not provided.`)
		return
	}
	var bid float64
	if spot {
		n, ok := in["bidPerGpu"].(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || f <= 0 {
			invalidInput(w, `Field "bidPerGpu" of required type "Float!" was not provided.`)
			return
		}
		bid = f
	}
	var terminateAfter time.Time
	if v, ok := in["terminateAfter"]; ok && v != nil {
		s, _ := v.(string)
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			invalidInput(w, `Expected type "DateTime" at value.terminateAfter.`)
			return
		}
		terminateAfter = t
	}
	cloud := "SECURE"
	if c, ok := in["cloudType"].(string); ok && c != "ALL" {
		cloud = c
	}
	if cloud != "SECURE" && cloud != "COMMUNITY" {
		invalidInput(w, `Value at "cloudType" does not exist in "CloudTypeEnum" enum.`)
		return
	}
	p := &pod{id: newID(), gpuID: gpuID, gpuCount: count, cloud: cloud, spot: spot, disk: 50,
		env: map[string]string{}, terminateAfter: terminateAfter}
	p.name, _ = in["name"].(string)
	p.image, _ = in["imageName"].(string)
	p.args, _ = in["dockerArgs"].(string)
	if d, ok := intOf(in["containerDiskInGb"]); ok {
		p.disk = d
	}
	if v, ok := intOf(in["volumeInGb"]); ok && v > 0 {
		p.volumeSize, p.volumePath = v, "/workspace"
		if mp, ok := in["volumeMountPath"].(string); ok && mp != "" {
			p.volumePath = mp
		}
	}
	if env, ok := in["env"].([]any); ok {
		for _, x := range env {
			kv, _ := x.(map[string]any)
			k, kok := kv["key"].(string)
			v, vok := kv["value"].(string)
			if !kok || !vok {
				invalidInput(w, `Expected type "EnvironmentVariableInput" at value.env.`)
				return
			}
			p.env[k] = v
		}
	}
	if ports, ok := in["ports"].(string); ok && ports != "" {
		p.ports = strings.Split(ports, ",")
	}
	g, ok := e.gpu(gpuID)
	price, spotPrice := g.SecurePrice, g.SecureSpotPrice
	if cloud == "COMMUNITY" {
		price, spotPrice = g.CommunityPrice, g.CommunitySpotPrice
	}
	switch {
	case !ok:
		gqlError(w, field, fmt.Sprintf("Invalid GPU type id %q.", gpuID))
		return
	case count > g.MaxCount:
		gqlError(w, field, fmt.Sprintf("gpuCount %d is above the maximum of %d for %s.", count, g.MaxCount, gpuID))
		return
	case e.faults.Get().NoCapacity && spot:
		gqlError(w, field, NoCapacitySpotDetail)
		return
	case e.faults.Get().NoCapacity, price <= 0, spot && spotPrice <= 0:
		gqlError(w, field, NoCapacityDetail)
		return
	}
	p.cost = price * float64(count)
	if spot {
		p.cost = bid * float64(count)
	}
	p.dataCenter = e.opts.DataCenters[0]
	if dc, ok := in["dataCenterId"].(string); ok && dc != "" {
		p.dataCenter = dc
	}
	e.mu.Lock()
	p.created, p.boot = e.now(), e.now()
	e.addPod(p)
	v := e.gqlView(p)
	e.mu.Unlock()
	e.log.Info("runpod emulator: pod created", "pod_id", p.id, "gpu", p.gpuID, "count", p.gpuCount, "spot", spot)
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.CreateLost }) {
		gqlFail(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	gqlData(w, field, v)
}

func podID(in map[string]any) string {
	id, _ := in["podId"].(string)
	return id
}

func (e *Emulator) gqlTerminate(w http.ResponseWriter, in map[string]any) {
	e.mu.Lock()
	p := e.pods[podID(in)]
	e.mu.Unlock()
	if p == nil {
		gqlError(w, "podTerminate", "Pod not found.")
		return
	}
	if e.takeTerminateFailure() {
		gqlFail(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	e.mu.Lock()
	e.remove(p)
	e.mu.Unlock()
	gqlData(w, "podTerminate", nil)
}

func (e *Emulator) gqlStop(w http.ResponseWriter, in map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pods[podID(in)]
	if p == nil {
		gqlError(w, "podStop", "Pod not found.")
		return
	}
	e.stop(p)
	gqlData(w, "podStop", map[string]any{"id": p.id, "desiredStatus": statusExited})
}

func (e *Emulator) gqlPod(w http.ResponseWriter, in map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pods[podID(in)]
	if p == nil {
		gqlData(w, "pod", nil)
		return
	}
	gqlData(w, "pod", e.gqlView(p))
}

func (e *Emulator) gqlMyself(w http.ResponseWriter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pods := []map[string]any{}
	for _, p := range e.sortedPods() {
		pods = append(pods, e.gqlView(p))
	}
	gqlData(w, "myself", map[string]any{"id": "user_emulated", "pods": pods})
}

func (e *Emulator) gqlGPUTypes(w http.ResponseWriter) {
	types := []map[string]any{}
	for _, g := range e.opts.GPUs {
		types = append(types, map[string]any{
			"id": g.ID, "displayName": g.Name, "memoryInGb": g.MemoryGB,
			"secureCloud": g.SecurePrice > 0, "communityCloud": g.CommunityPrice > 0, "maxGpuCount": g.MaxCount,
			"securePrice": g.SecurePrice, "communityPrice": g.CommunityPrice,
			"secureSpotPrice": g.SecureSpotPrice, "communitySpotPrice": g.CommunitySpotPrice,
		})
	}
	gqlData(w, "gpuTypes", types)
}
