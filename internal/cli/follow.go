package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// outcomeCode is the exit code that tells how a finished job ended.
func outcomeCode(j *Job) int {
	switch j.Status {
	case "succeeded":
		return ExitOK
	case "cancelled":
		return ExitCancelled
	case "failed":
		if strings.HasPrefix(str(j.Error), "max_duration_minutes") {
			return ExitTimeout
		}
		return ExitFailed
	}
	return ExitError
}

// outcomesCode combines several jobs' outcomes: a failure first, then a
// timeout, then a cancellation; 0 when all succeeded.
func outcomesCode(jobs []*Job) int {
	seen := map[int]bool{}
	for _, j := range jobs {
		seen[outcomeCode(j)] = true
	}
	for _, c := range []int{ExitError, ExitFailed, ExitTimeout, ExitCancelled} {
		if seen[c] {
			return c
		}
	}
	return ExitOK
}

// tracker follows a set of jobs over the feed until all have finished:
// their state, and the events already passed on per job (so that history
// read on a (re)connection and the live feed give each event once).
type tracker struct {
	c      *Client
	ids    []string
	jobs   map[string]*Job
	raw    map[string]json.RawMessage // the jobs as the API last showed them
	seen   map[string]int64           // per job, the seq of the last event passed on
	events bool                       // read and pass on each job's recorded history
	// onEvent is called with each new event of a followed job, in order.
	onEvent func(raw []byte, ev *Event) error
	// onJob is called with a job's state after each GET.
	onJob func(j *Job)
}

func newTracker(c *Client, ids []string) *tracker {
	return &tracker{c: c, ids: ids, jobs: map[string]*Job{}, raw: map[string]json.RawMessage{},
		seen: map[string]int64{}, onEvent: func([]byte, *Event) error { return nil }, onJob: func(*Job) {}}
}

// done reports whether every job has finished.
func (t *tracker) done() bool {
	for _, id := range t.ids {
		if j := t.jobs[id]; j == nil || !terminal(j.Status) {
			return false
		}
	}
	return true
}

// refresh GETs the job (and its history, when asked for), passing on the
// events not passed on yet.
func (t *tracker) refresh(ctx context.Context, id string) error {
	if t.events {
		raws, evs, err := t.c.events(ctx, id)
		if err != nil {
			return err
		}
		for i := range evs {
			if err := t.pass(raws[i], &evs[i]); err != nil {
				return err
			}
		}
	}
	var raw json.RawMessage
	j, err := t.c.job(ctx, id, &raw)
	if err != nil {
		return err
	}
	t.jobs[id], t.raw[id] = j, raw
	t.onJob(j)
	return nil
}

// pass hands ev on once.
func (t *tracker) pass(raw []byte, ev *Event) error {
	if ev.Seq <= t.seen[ev.TaskID] {
		return nil
	}
	t.seen[ev.TaskID] = ev.Seq
	return t.onEvent(raw, ev)
}

// follow follows the jobs until all have finished (nil), or ctx ends.
func (t *tracker) follow(ctx context.Context, notice io.Writer) error {
	f := &feed{c: t.c, since: -1, ids: t.ids, notice: notice}
	onConnect := func(bool) error {
		// The feed is live from here on: what happened before is read now.
		for _, id := range t.ids {
			if err := t.refresh(ctx, id); err != nil {
				return err
			}
		}
		if t.done() {
			return errStop
		}
		return nil
	}
	want := make(map[string]bool, len(t.ids))
	for _, id := range t.ids {
		want[id] = true
	}
	onEvent := func(raw []byte, ev *Event) error {
		if ev.Type == "error" && ev.Error != nil {
			if want[ev.TaskID] || ev.TaskID == "" {
				return fmt.Errorf("live feed: %s", ev.Error.Message)
			}
			return nil
		}
		if !ev.isJobEvent() || !want[ev.TaskID] || ev.Seq <= t.seen[ev.TaskID] {
			return nil
		}
		if err := t.pass(raw, ev); err != nil {
			return err
		}
		if ev.Type == "job.status" && ev.Status != "" {
			if terminal(ev.Status) {
				if err := t.refresh(ctx, ev.TaskID); err != nil {
					if refused(err) || ctx.Err() != nil {
						return err
					}
					return &lostError{err} // reconnect; the next connection reads the state again
				}
			} else if j := t.jobs[ev.TaskID]; j != nil {
				j.Status = ev.Status
				if ev.Provider != "" {
					p := ev.Provider
					j.Provider = &p
				}
			}
		}
		if t.done() {
			return errStop
		}
		return nil
	}
	return f.run(ctx, onConnect, onEvent)
}

// finals are the followed jobs in order.
func (t *tracker) finals() []*Job {
	out := make([]*Job, 0, len(t.ids))
	for _, id := range t.ids {
		if j := t.jobs[id]; j != nil {
			out = append(out, j)
		}
	}
	return out
}

// shownAsLine reports whether an event gets a line of text: a change of
// status, or progress.
func shownAsLine(ev *Event) bool {
	return ev.Type == "job.status" && ev.Status != "" || ev.Type == "job.progress"
}

// eventLine is an event as one line of text.
func eventLine(p *printer, ev *Event) string {
	var b strings.Builder
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	fmt.Fprintf(&b, "%s  %s  ", at.Local().Format(time.TimeOnly), shortID(ev.TaskID))
	switch ev.Type {
	case "job.status":
		b.WriteString(p.status(ev.Status))
		if ev.Provider != "" {
			fmt.Fprintf(&b, " on %s", ev.Provider)
		}
	case "job.progress":
		var d struct {
			Percent *float64 `json:"percent"`
			Message string   `json:"message"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		b.WriteString("progress")
		if d.Percent != nil {
			fmt.Fprintf(&b, " %.0f%%", *d.Percent)
		}
		if d.Message != "" {
			b.WriteString(" " + d.Message)
		}
		return b.String()
	default:
		b.WriteString(ev.Type)
	}
	var d struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(ev.Data, &d) == nil && d.Reason != "" {
		fmt.Fprintf(&b, " (%s)", d.Reason)
	}
	return b.String()
}

// followLogs copies the job's output to w until the job has finished and
// all of it is written, resuming from its offset when the stream is cut
// (a server restart).
func followLogs(ctx context.Context, c *Client, id string, w io.Writer) error {
	var offset int64
	var r retrier
	ended := false // the job had finished before the last stream began
	for {
		resp, err := c.stream(ctx, "/api/gpu/tasks/"+url.PathEscape(id)+"/logs?follow=1&offset="+strconv.FormatInt(offset, 10))
		if err == nil {
			r.reset()
			n, cerr := io.Copy(w, resp.Body)
			resp.Body.Close()
			offset += n
			err = cerr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if refused(err) {
			return err
		}
		if err == nil {
			// The server ends the stream once the job has finished and
			// every byte is sent, or when it shuts down: a stream begun
			// after the job finished has sent everything.
			if ended {
				return nil
			}
			j, jerr := c.job(ctx, id, nil)
			if jerr == nil && terminal(j.Status) {
				ended = true
				continue
			}
			if jerr != nil {
				err = jerr
			} else {
				err = errors.New("the output stream ended early")
			}
		}
		if !r.fail(ctx) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("logs of %s: %w", id, err)
		}
	}
}

// syncWriter serialises writes of several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
