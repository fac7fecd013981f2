package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client speaks to the API replicas as one user. Every call goes to a
// random replica and, when that replica is down (refused, reset, 502–504)
// or busy (429), to another after a pause: a real client behind a load
// balancer sees the same.
type client struct {
	bases []string
	email string
	token string
	http  *http.Client

	mu  sync.Mutex
	rng *rand.Rand
}

// answer is one API answer.
type answer struct {
	code int
	body map[string]any
	raw  []byte
	// retryAfter is the answer's Retry-After.
	retryAfter time.Duration
}

// errDown is a replica that did not answer.
var errDown = errors.New("no answer")

func newClient(bases []string, email string, seed uint64) *client {
	return &client{
		bases: bases, email: email,
		http: &http.Client{Timeout: 20 * time.Second},
		rng:  rand.New(rand.NewPCG(seed, 0x636861)),
	}
}

func (c *client) pick() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.rng.IntN(len(c.bases))]
}

// once sends one request to base.
func (c *client) once(ctx context.Context, base, method, path string, body any, header http.Header) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%w: %v", errDown, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%w: reading the answer: %v", errDown, err)
	}
	a := answer{code: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			a.retryAfter = time.Duration(n) * time.Second
		}
	}
	return a, nil
}

// transient reports whether an answer (or its absence) says "try again":
// the replica is down, overloaded, or a dependency is (503 names it and
// changes nothing).
//
// A 500 is retried too, as a client with an Idempotency-Key may (the key
// makes it safe), but it is a defect — a dependency down must answer 503
// naming it — so the suite counts 500s apart and reports them.
func transient(a answer, err error) bool {
	if err != nil {
		return true
	}
	switch a.code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// do sends the request until it gets an answer that is not transient, or
// ctx ends. It returns the last answer and how many transient ones came
// before it, by status ("down" for no answer).
func (c *client) do(ctx context.Context, method, path string, body any, header http.Header) (answer, map[string]int, error) {
	seen := map[string]int{}
	wait := 100 * time.Millisecond
	for {
		a, err := c.once(ctx, c.pick(), method, path, body, header)
		if !transient(a, err) {
			return a, seen, nil
		}
		if err != nil {
			seen["down"]++
		} else {
			seen[strconv.Itoa(a.code)]++
		}
		pause := wait
		if a.retryAfter > 0 {
			pause = min(a.retryAfter, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("last answer %d %s", a.code, strings.TrimSpace(string(a.raw)))
			}
			return a, seen, fmt.Errorf("%s %s: gave up: %w (transient answers %v)", method, path, err, seen)
		case <-time.After(pause):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// register creates the account (open registration) and logs in.
func (c *client) register(ctx context.Context) error {
	a, _, err := c.do(ctx, http.MethodPost, "/auth/register", map[string]any{"email": c.email, "password": "chaos-password"}, nil)
	if err != nil {
		return err
	}
	if a.code != http.StatusCreated && a.code != http.StatusBadRequest {
		return fmt.Errorf("register %s: %d %s", c.email, a.code, a.raw)
	}
	return c.login(ctx)
}

func (c *client) login(ctx context.Context) error {
	a, _, err := c.do(ctx, http.MethodPost, "/auth/jwt/login", map[string]any{"username": c.email, "password": "chaos-password"}, nil)
	if err != nil {
		return err
	}
	tok, _ := a.body["access_token"].(string)
	if a.code != http.StatusOK || tok == "" {
		return fmt.Errorf("login %s: %d %s", c.email, a.code, a.raw)
	}
	c.token = tok
	return nil
}

// job reads a job; ok is false when the API says 404.
func (c *client) job(ctx context.Context, id string) (map[string]any, bool, error) {
	a, _, err := c.do(ctx, http.MethodGet, "/api/gpu/tasks/"+id, nil, nil)
	if err != nil {
		return nil, false, err
	}
	switch a.code {
	case http.StatusOK:
		return a.body, true, nil
	case http.StatusNotFound:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("GET task %s: %d %s", id, a.code, a.raw)
}

// listIDs lists every job of the user, following the cursor.
func (c *client) listIDs(ctx context.Context) ([]string, error) {
	var ids []string
	cursor := ""
	for {
		path := "/api/gpu/tasks?limit=100"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		a, _, err := c.do(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			return nil, err
		}
		if a.code != http.StatusOK {
			return nil, fmt.Errorf("list tasks: %d %s", a.code, a.raw)
		}
		tasks, _ := a.body["tasks"].([]any)
		for _, t := range tasks {
			if m, ok := t.(map[string]any); ok {
				id, _ := m["id"].(string)
				ids = append(ids, id)
			}
		}
		next, _ := a.body["next_cursor"].(string)
		if next == "" {
			return ids, nil
		}
		cursor = next
	}
}

// events returns the job's recorded events' seqs, in order.
func (c *client) events(ctx context.Context, id string) ([]int64, error) {
	a, _, err := c.do(ctx, http.MethodGet, "/api/gpu/tasks/"+id+"/events", nil, nil)
	if err != nil {
		return nil, err
	}
	if a.code != http.StatusOK {
		return nil, fmt.Errorf("events of %s: %d %s", id, a.code, a.raw)
	}
	var out struct {
		Events []struct {
			Seq int64 `json:"seq"`
		} `json:"events"`
	}
	if err := json.Unmarshal(a.raw, &out); err != nil {
		return nil, err
	}
	seqs := make([]int64, len(out.Events))
	for i, e := range out.Events {
		seqs[i] = e.Seq
	}
	return seqs, nil
}
