package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// requestTimeout bounds one ordinary request (not a stream).
const requestTimeout = 60 * time.Second

// maxAnswer is the largest answer read into memory.
const maxAnswer = 32 << 20

// APIError is an error answer of the API:
// {"error":{"code","message","details"}}.
type APIError struct {
	Status  int
	Code    string
	Message string
	Details map[string]any
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	var b strings.Builder
	b.WriteString(msg)
	if fields, ok := e.Details["fields"].(map[string]any); ok {
		for _, k := range sortedKeys(fields) {
			if m := fmt.Sprint(fields[k]); !strings.Contains(msg, m) {
				fmt.Fprintf(&b, "\n  %s: %s", k, m)
			}
		}
	}
	if reasons, ok := e.Details["reasons"].(map[string]any); ok {
		for _, p := range sortedKeys(reasons) {
			rs, _ := reasons[p].([]any)
			for _, r := range rs {
				name := p
				if name == "" {
					name = "(all)"
				}
				fmt.Fprintf(&b, "\n  %s: %v", name, r)
			}
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Client speaks the API at Server with Token.
type Client struct {
	Server    string
	Token     string
	UserAgent string
	HTTP      *http.Client
}

func newClient(ep endpoint, version string) *Client {
	return &Client{Server: ep.Server, Token: ep.Token, UserAgent: "gpuflow-cli/" + version,
		HTTP: &http.Client{}}
}

// request builds a request to path (with its query) on the server.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Server+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// do sends a request and decodes a 2xx JSON answer into out (when not
// nil); any other answer is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, in any, out any, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var body io.Reader
	ct := ""
	switch v := in.(type) {
	case nil:
	case url.Values:
		body, ct = strings.NewReader(v.Encode()), "application/x-www-form-urlencoded"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	req, err := c.request(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return decodeError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the expected JSON: %w", method, path, err)
	}
	return nil
}

// decodeError turns an error answer into an *APIError.
func decodeError(status int, data []byte) error {
	var body struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
		Detail any `json:"detail"`
	}
	e := &APIError{Status: status}
	if json.Unmarshal(data, &body) == nil {
		e.Code, e.Message, e.Details = body.Error.Code, body.Error.Message, body.Error.Details
		if e.Code == "" {
			if s, ok := body.Detail.(string); ok {
				e.Code = s
			}
		}
	}
	if e.Message == "" && e.Code != "" {
		e.Message = e.Code
	}
	return e
}

// stream GETs path and returns the open answer, whose body the caller
// reads to the end and closes; an error answer is an *APIError.
func (c *Client) stream(ctx context.Context, path string) (*http.Response, error) {
	req, err := c.request(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain, application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return nil, decodeError(resp.StatusCode, data)
	}
	return resp, nil
}

// The API's shapes the client reads. Fields it only passes on stay raw in
// the JSON output.

// Job is a job as GET /api/gpu/tasks/{id} shows it.
type Job struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Status       string     `json:"status"`
	Provider     *string    `json:"provider"`
	InstanceID   *string    `json:"instance_id"`
	Spec         jobSpec    `json:"spec"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	StartedAt    *time.Time `json:"started_at"`
	FinishedAt   *time.Time `json:"finished_at"`
	ExitCode     *int       `json:"exit_code"`
	Error        *string    `json:"error"`
	Attempts     []attempt  `json:"attempts"`
	PricePerHour float64    `json:"price_per_hour"`
	CostSoFar    float64    `json:"cost_so_far"`
	WorkflowID   string     `json:"workflow_id"`
	TemporalURL  *string    `json:"temporal_ui_url"`
	Queue        *struct {
		Position int    `json:"position"`
		Reason   string `json:"reason"`
	} `json:"queue"`
}

type jobSpec struct {
	Image    string   `json:"image"`
	Command  []string `json:"command"`
	GPUType  string   `json:"gpu_type"`
	GPUCount int      `json:"gpu_count"`
	Strategy string   `json:"strategy"`
	Priority int      `json:"priority"`
	Spot     bool     `json:"spot"`
}

type attempt struct {
	Provider  string     `json:"provider"`
	GPUType   string     `json:"gpu_type"`
	Region    string     `json:"region"`
	MachineID string     `json:"machine_id"`
	Outcome   string     `json:"outcome"`
	StartedAt *time.Time `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
}

// terminal reports whether a status is final.
func terminal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "cancelled"
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Event is one message of the WebSocket feed.
type Event struct {
	Type     string          `json:"type"`
	Seq      int64           `json:"seq"`
	TaskID   string          `json:"task_id"`
	JobSeq   int             `json:"job_seq"`
	Status   string          `json:"status"`
	Provider string          `json:"provider"`
	At       time.Time       `json:"at"`
	Data     json.RawMessage `json:"data"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// isJobEvent reports whether e is a recorded event of a job (not an
// acknowledgement, pong or error).
func (e *Event) isJobEvent() bool {
	return strings.HasPrefix(e.Type, "job.") && e.TaskID != "" && e.Seq > 0
}

// job GETs a job; raw, when not nil, receives the answer as sent.
func (c *Client) job(ctx context.Context, id string, raw *json.RawMessage) (*Job, error) {
	var r json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/api/gpu/tasks/"+url.PathEscape(id), nil, &r, nil); err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(r, &j); err != nil {
		return nil, fmt.Errorf("job %s: the answer is not a job: %w", id, err)
	}
	if raw != nil {
		*raw = r
	}
	return &j, nil
}

// events GETs a job's recorded events.
func (c *Client) events(ctx context.Context, id string) ([]json.RawMessage, []Event, error) {
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/gpu/tasks/"+url.PathEscape(id)+"/events", nil, &out, nil); err != nil {
		return nil, nil, err
	}
	evs := make([]Event, len(out.Events))
	for i, r := range out.Events {
		if err := json.Unmarshal(r, &evs[i]); err != nil {
			return nil, nil, fmt.Errorf("events of %s: %w", id, err)
		}
	}
	return out.Events, evs, nil
}
