package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds what the client reads of an answer; maxListBody that of
// the account's pod listing (GET /v2/pods), which for 10,000 pods is
// tens of megabytes.
const (
	maxBody     = 16 << 20
	maxListBody = 512 << 20
)

// client is a small typed client of RunPod's REST v2 and GraphQL APIs. It
// never retries: the caller decides (Provision looks a pod up by name
// before a create is retried).
type client struct {
	base    string // REST base, without /v2
	gql     string // GraphQL endpoint
	key     string
	http    *http.Client
	timeout time.Duration
}

// Wire types of REST v2 (see RunPod's OpenAPI v2: CreatePodRequest, Pod,
// ListPodsResponse, ListGpuTypesResponse, ErrorResponse).

// createPodRequest is the body of POST /v2/pods. Only fields the v2 spec
// declares may appear: unknown fields are answered 422.
type createPodRequest struct {
	Name          string            `json:"name"`
	Image         string            `json:"image"`
	GPU           *gpuConfig        `json:"gpu,omitempty"`
	Cloud         string            `json:"cloud,omitempty"`
	DataCenterIDs []string          `json:"dataCenterIds,omitempty"`
	Disk          int               `json:"disk,omitempty"`
	Args          string            `json:"args,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Mounts        *podMounts        `json:"mounts,omitempty"`
}

type gpuConfig struct {
	ID    string `json:"id"`
	Count int    `json:"count,omitempty"`
}

// pod is the v2 Pod, the fields the adapter reads.
type pod struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Status       string          `json:"status"`
	Image        string          `json:"image"`
	Env          podEnvRead      `json:"env"`
	GPU          *gpuConfig      `json:"gpu"`
	Cloud        string          `json:"cloud"`
	DataCenterID *string         `json:"dataCenterId"`
	Cost         float64         `json:"cost"`
	Runtime      json.RawMessage `json:"runtime"`
	CreatedAt    string          `json:"createdAt"`
}

// podEnvRead is the part of a pod's env the provider reads back (the keys
// must match EnvTags, EnvSpot and agentscript.EnvJobID). A listing carries
// every pod's env, and each holds the runner script (about 6 KB):
// decoding it into a map allocated all of them on every sweep, while
// encoding/json skips the keys a struct does not name without allocating.
type podEnvRead struct {
	Tags  string `json:"GPUFLOW_TAGS"`
	Spot  string `json:"GPUFLOW_SPOT"`
	JobID string `json:"GPUFLOW_JOB_ID"`
}

// hasRuntime reports whether the pod's runtime block is present: RunPod
// reports RUNNING before the container is up, with runtime null.
func (p *pod) hasRuntime() bool {
	r := bytes.TrimSpace(p.Runtime)
	return len(r) > 0 && !bytes.Equal(r, []byte("null"))
}

type listPodsResponse struct {
	Pods []pod `json:"pods"`
}

type gpuType struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Memory       float64 `json:"memory"`
	Secure       bool    `json:"secure"`
	Community    bool    `json:"community"`
	Price        cloudF  `json:"price"`
	MaxCount     cloudI  `json:"maxCount"`
	Availability string  `json:"availability"`
	DataCenters  []struct {
		ID           string `json:"id"`
		Availability string `json:"availability"`
	} `json:"dataCenters"`
}

type cloudF struct {
	Secure    float64 `json:"secure"`
	Community float64 `json:"community"`
}

type cloudI struct {
	Secure    int `json:"secure"`
	Community int `json:"community"`
}

type listGPUTypesResponse struct {
	GPUs []gpuType `json:"gpus"`
}

// apiError is a non-2xx REST answer (RFC 9457 problem+json), or a GraphQL
// error.
type apiError struct {
	Status     int      `json:"status"`
	Title      string   `json:"title"`
	Detail     string   `json:"detail"`
	Errors     []string `json:"errors,omitempty"`
	RetryAfter time.Duration
	GraphQL    bool // from the GraphQL API
}

func (e *apiError) Error() string {
	var b strings.Builder
	if e.GraphQL {
		b.WriteString("graphql")
		if e.Status != http.StatusOK {
			fmt.Fprintf(&b, " HTTP %d", e.Status)
		}
	} else {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Title != "" {
			b.WriteString(" " + e.Title)
		}
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if len(e.Errors) > 0 {
		b.WriteString(" (" + strings.Join(e.Errors, "; ") + ")")
	}
	return b.String()
}

// noCapacity reports whether the error is RunPod's capacity refusal, which
// has no code of its own: only its text says so.
func (e *apiError) noCapacity() bool {
	if !e.GraphQL && e.Status != http.StatusBadRequest {
		return false
	}
	return isCapacityMessage(e.Detail)
}

func isCapacityMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "no longer any instances available") || strings.Contains(m, "not enough free gpus")
}

// transportError is a call that got no answer: a refused connection, a
// timeout, a cut-off body.
type transportError struct {
	Op      string
	Timeout bool
	Err     error
}

func (e *transportError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *transportError) Unwrap() error { return e.Err }

// do sends one REST request: in (if not nil) as the JSON body, out (if not
// nil) decoded from a 2xx answer. It returns *apiError for a non-2xx answer
// and *transportError when no answer came.
func (c *client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.doLimit(ctx, method, path, query, in, out, maxBody)
}

// doLimit is do reading at most limit bytes of the answer.
func (c *client) doLimit(ctx context.Context, method, path string, query url.Values, in, out any, limit int64) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	body, status, hdr, err := c.send(ctx, method, u, in, limit)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return problem(status, hdr, body)
	}
	if out == nil || status == http.StatusNoContent || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// send performs the request under the client's timeout and reads the
// answer.
func (c *client) send(ctx context.Context, method, u string, in any, limit int64) ([]byte, int, http.Header, error) {
	op := method + " " + trimQuery(u)
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("encode %s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("build %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, nil, &transportError{Op: op, Timeout: isTimeout(ctx, err), Err: stripURL(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, 0, nil, &transportError{Op: op, Timeout: isTimeout(ctx, err), Err: err}
	}
	return body, resp.StatusCode, resp.Header, nil
}

func trimQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// stripURL drops the URL that *url.Error repeats (the op says it already).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// problem decodes a non-2xx answer.
func problem(status int, hdr http.Header, body []byte) *apiError {
	e := &apiError{}
	if json.Unmarshal(body, e) != nil || (e.Title == "" && e.Detail == "") {
		e = &apiError{Detail: snippet(body)}
	}
	e.Status = status
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	e.RetryAfter = retryAfter(hdr)
	return e
}

// retryAfter reads Retry-After, integer seconds on RunPod's API (an HTTP
// date is accepted too).
func retryAfter(hdr http.Header) time.Duration {
	v := strings.TrimSpace(hdr.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// REST v2 calls.

func (c *client) createPod(ctx context.Context, in *createPodRequest) (*pod, error) {
	var p pod
	if err := c.do(ctx, http.MethodPost, "/v2/pods", nil, in, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (c *client) getPod(ctx context.Context, id string) (*pod, error) {
	var p pod
	if err := c.do(ctx, http.MethodGet, "/v2/pods/"+url.PathEscape(id), nil, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (c *client) listPods(ctx context.Context) ([]pod, error) {
	var r listPodsResponse
	if err := c.doLimit(ctx, http.MethodGet, "/v2/pods", nil, nil, &r, maxListBody); err != nil {
		return nil, err
	}
	return r.Pods, nil
}

func (c *client) deletePod(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v2/pods/"+url.PathEscape(id), nil, nil, nil)
}

func (c *client) listGPUTypes(ctx context.Context, cloud string) ([]gpuType, error) {
	q := url.Values{"include": {"AVAILABILITY"}, "product": {"POD"}, "cloud": {cloud}}
	var r listGPUTypesResponse
	if err := c.do(ctx, http.MethodGet, "/v2/catalog/gpus", q, nil, &r); err != nil {
		return nil, err
	}
	return r.GPUs, nil
}

// GraphQL.

type gqlRequest struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables,omitempty"`
}

type gqlError struct {
	Message string `json:"message"`
	Path    []any  `json:"path,omitempty"`
}

// graphql sends one query and decodes its data into out. Errors in a 200
// answer (GraphQL's convention) and non-200 answers both come back as
// *apiError with GraphQL set.
func (c *client) graphql(ctx context.Context, query string, vars map[string]any, out any) error {
	body, status, hdr, err := c.send(ctx, http.MethodPost, c.gql, gqlRequest{Query: query, Variables: vars}, maxBody)
	if err != nil {
		return err
	}
	var r struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	decodeErr := json.Unmarshal(body, &r)
	if status != http.StatusOK || len(r.Errors) > 0 {
		e := &apiError{Status: status, Title: http.StatusText(status), GraphQL: true, RetryAfter: retryAfter(hdr)}
		if len(r.Errors) > 0 {
			e.Detail = r.Errors[0].Message
			for _, x := range r.Errors[1:] {
				e.Errors = append(e.Errors, x.Message)
			}
		} else {
			e.Detail = snippet(body)
		}
		return e
	}
	if decodeErr != nil {
		return fmt.Errorf("decode graphql answer: %w", decodeErr)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			return fmt.Errorf("decode graphql data: %w", err)
		}
	}
	return nil
}

// envVar is GraphQL's EnvironmentVariableInput.
type envVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// rentInput is GraphQL's PodRentInterruptableInput, the fields the adapter
// sets. Unknown fields fail variable validation with HTTP 400.
type rentInput struct {
	BidPerGPU         float64  `json:"bidPerGpu"`
	GPUTypeID         string   `json:"gpuTypeId"`
	GPUCount          int      `json:"gpuCount"`
	CloudType         string   `json:"cloudType"`
	Name              string   `json:"name"`
	ImageName         string   `json:"imageName"`
	DockerArgs        string   `json:"dockerArgs"`
	ContainerDiskInGb int      `json:"containerDiskInGb"`
	VolumeInGb        int      `json:"volumeInGb"`
	VolumeMountPath   string   `json:"volumeMountPath,omitempty"`
	Env               []envVar `json:"env"`
	DataCenterID      string   `json:"dataCenterId,omitempty"`
	// TerminateAfter is a GraphQL DateTime (RFC 3339): RunPod removes the
	// pod then.
	TerminateAfter string `json:"terminateAfter,omitempty"`
}

// gqlPod is the selection the adapter asks of a created spot pod.
type gqlPod struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	DesiredStatus string  `json:"desiredStatus"`
	CostPerHr     float64 `json:"costPerHr"`
}

const rentMutation = `mutation rentInterruptable($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) { id name desiredStatus costPerHr }
}`

func (c *client) rentInterruptable(ctx context.Context, in *rentInput) (*gqlPod, error) {
	var data struct {
		Pod *gqlPod `json:"podRentInterruptable"`
	}
	if err := c.graphql(ctx, rentMutation, map[string]any{"input": in}, &data); err != nil {
		return nil, err
	}
	if data.Pod == nil || data.Pod.ID == "" {
		return nil, &apiError{Status: http.StatusOK, GraphQL: true, Detail: "podRentInterruptable returned no pod"}
	}
	return data.Pod, nil
}

// spotPrice is a GPU type's spot (interruptible) price per GPU-hour.
type spotPrice struct {
	ID                 string   `json:"id"`
	SecureSpotPrice    *float64 `json:"secureSpotPrice"`
	CommunitySpotPrice *float64 `json:"communitySpotPrice"`
}

const spotPricesQuery = `query gpuSpotPrices { gpuTypes { id secureSpotPrice communitySpotPrice } }`

func (c *client) spotPrices(ctx context.Context) ([]spotPrice, error) {
	var data struct {
		GPUTypes []spotPrice `json:"gpuTypes"`
	}
	if err := c.graphql(ctx, spotPricesQuery, nil, &data); err != nil {
		return nil, err
	}
	return data.GPUTypes, nil
}
