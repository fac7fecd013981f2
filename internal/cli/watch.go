package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func watchCmd(o *Options) *cobra.Command {
	var since int64
	var timeout time.Duration
	var seed int
	cmd := &cobra.Command{
		Use:   "watch [ID...]",
		Short: "watch jobs live over the WebSocket feed",
		Long: `Watches jobs live over the WebSocket feed, with no polling. On a terminal
it shows a line per job that updates in place; otherwise (or with -o text
piped) a line per event; -o jsonl one JSON object per event, as the feed
sends it. It reconnects after a lost connection without missing an event.

Given ids, it first shows what has happened to them, ends when all have
ended and exits as submit does: 0 all succeeded, 3 one failed, 5 one timed
out, 6 one was cancelled. -o json then prints the jobs at the end.
Without ids it shows all your jobs until interrupted; --since SEQ replays
the feed after that event first (the seq of the last event you saw).`,
		Example: `  gpuflow watch
  gpuflow watch 4887cbed-9c79-4ef9-83b2-302194ee1bb3 -o jsonl
  gpuflow watch -o jsonl --since 42 | jq -c 'select(.type=="job.status")'`,
		Args: cobra.ArbitraryArgs,
	}
	c := addCommon(cmd, o)
	cmd.Flags().Int64Var(&since, "since", -1, "without ids: replay the events after this seq first")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with ids, stop after this long (exit 5; the jobs go on)")
	cmd.Flags().IntVar(&seed, "recent", 10, "without ids, on a terminal: how many recent jobs to show at the start")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		p := c.printer()
		ctx := withContext(cmd)
		if len(ids) == 0 {
			if p.format == formatJSON {
				return usagef("watch without ids runs until interrupted: use -o jsonl (an object per event) or text")
			}
			return watchAll(ctx, cl, p, since, seed)
		}
		if cmd.Flags().Changed("since") {
			return usagef("--since goes with watch without ids (given ids, their whole history is shown)")
		}
		return watchJobs(ctx, cl, p, ids, timeout)
	}
	return cmd
}

// watchJobs follows the given jobs to their end.
func watchJobs(ctx context.Context, cl *Client, p *printer, ids []string, timeout time.Duration) error {
	if timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	t := newTracker(cl, ids)
	live := p.format == formatText && p.tty
	board := newBoard(p)
	switch {
	case p.format == formatJSONL:
		t.events = true
		t.onEvent = func(raw []byte, _ *Event) error { return p.line(json.RawMessage(raw)) }
	case live:
		t.onEvent = func(_ []byte, ev *Event) error { board.event(ev); board.render(); return nil }
		t.onJob = func(j *Job) { board.job(j); board.render() }
	case p.format == formatText:
		t.events = true
		t.onEvent = func(_ []byte, ev *Event) error {
			if shownAsLine(ev) {
				_, err := fmt.Fprintln(p.out, eventLine(p, ev))
				return err
			}
			return nil
		}
	}
	err := t.follow(ctx, p.err)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		return withCode(ExitTimeout, fmt.Errorf("gave up waiting after %s; the jobs go on", timeout))
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	default:
		return err
	}
	switch p.format {
	case formatJSON:
		list := make([]json.RawMessage, 0, len(ids))
		for _, id := range ids {
			list = append(list, t.raw[id])
		}
		if err := p.json(list); err != nil {
			return err
		}
	case formatText:
		if !live {
			for _, j := range t.finals() {
				p.notef("%s", resultLine(j))
			}
		}
	}
	return exitFor(t.finals())
}

// watchAll shows every event of the caller's jobs until ctx ends.
func watchAll(ctx context.Context, cl *Client, p *printer, since int64, seed int) error {
	f := &feed{c: cl, since: since, notice: p.err}
	live := p.format == formatText && p.tty
	board := newBoard(p)
	known := map[string]bool{}
	onConnect := func(first bool) error {
		if !live || !first || seed <= 0 {
			return nil
		}
		var out struct {
			Tasks []Job `json:"tasks"`
		}
		if err := cl.do(ctx, http.MethodGet, fmt.Sprintf("/api/gpu/tasks?limit=%d", min(seed, 100)), nil, &out, nil); err != nil {
			return err
		}
		for i := len(out.Tasks) - 1; i >= 0; i-- { // oldest first
			j := out.Tasks[i]
			known[j.ID] = true
			board.job(&j)
		}
		board.render()
		if len(out.Tasks) == 0 {
			p.notef("waiting for events of your jobs (Ctrl-C stops)")
		}
		return nil
	}
	onEvent := func(raw []byte, ev *Event) error {
		if ev.Type == "error" && ev.Error != nil {
			p.notef("gpuflow: live feed: %s", ev.Error.Message)
			return nil
		}
		if !ev.isJobEvent() {
			return nil
		}
		switch {
		case p.format == formatJSONL:
			return p.line(json.RawMessage(raw))
		case live:
			if !known[ev.TaskID] {
				known[ev.TaskID] = true
				if j, err := cl.job(ctx, ev.TaskID, nil); err == nil {
					board.job(j)
				}
			}
			board.event(ev)
			board.render()
		default:
			if shownAsLine(ev) {
				_, err := fmt.Fprintln(p.out, eventLine(p, ev))
				return err
			}
		}
		return nil
	}
	err := f.run(ctx, onConnect, onEvent)
	if errors.Is(err, context.Canceled) {
		return nil // interrupted: the way a watch of everything ends
	}
	return err
}

// board is the live view on a terminal: a line per job, redrawn in place.
type board struct {
	p     *printer
	order []string
	rows  map[string]*boardRow
	drawn int // lines drawn last time
}

type boardRow struct {
	id, name, status, provider, gpu, info string
}

func newBoard(p *printer) *board { return &board{p: p, rows: map[string]*boardRow{}} }

func (b *board) row(id string) *boardRow {
	r := b.rows[id]
	if r == nil {
		r = &boardRow{id: id}
		b.rows[id] = r
		b.order = append(b.order, id)
	}
	return r
}

// job sets a row from a job's state.
func (b *board) job(j *Job) {
	r := b.row(j.ID)
	r.name, r.status, r.provider, r.gpu = j.Name, j.Status, str(j.Provider), gpuLabel(j.Spec)
	r.info = ""
	switch {
	case j.Queue != nil:
		r.info = fmt.Sprintf("#%d %s", j.Queue.Position, j.Queue.Reason)
	case terminal(j.Status) && str(j.Error) != "":
		r.info = str(j.Error)
	case terminal(j.Status) && j.ExitCode != nil:
		r.info = fmt.Sprintf("exit %d", *j.ExitCode)
	}
}

// event updates a row from an event.
func (b *board) event(ev *Event) {
	r := b.row(ev.TaskID)
	switch ev.Type {
	case "job.status":
		if ev.Status != "" {
			r.status = ev.Status
		}
		if ev.Provider != "" {
			r.provider = ev.Provider
		}
		var d struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		r.info = d.Reason
	case "job.progress":
		var d struct {
			Percent *float64 `json:"percent"`
			Message string   `json:"message"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		r.info = strings.TrimSpace(fmt.Sprintf("%s %s", percent(d.Percent), d.Message))
	}
}

func percent(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%.0f%%", *p)
}

// lines are the board's lines, each at most width columns (0: no limit).
func (b *board) lines(width int) []string {
	out := make([]string, 0, len(b.order)+1)
	out = append(out, fit(fmt.Sprintf("%-8s  %-16s  %-12s  %-8s  %-10s  %s", "ID", "NAME", "STATUS", "PROVIDER", "GPU", "INFO"), width))
	for _, id := range b.order {
		r := b.rows[id]
		plain := fmt.Sprintf("%-8s  %-16s  ", shortID(r.id), clip(orDash(r.name), 16))
		rest := fmt.Sprintf("  %-8s  %-10s  %s", clip(orDash(r.provider), 8), clip(orDash(r.gpu), 10), r.info)
		status := fmt.Sprintf("%-12s", orDash(r.status))
		line := strings.TrimRight(fit(plain+status+rest, width), " ")
		if b.p.color && strings.HasPrefix(line, plain+status) {
			// Colour the status word, keeping the columns.
			word := orDash(r.status)
			line = strings.TrimRight(plain+b.p.status(word)+status[len(word):]+line[len(plain)+len(status):], " ")
		}
		out = append(out, line)
	}
	return out
}

// render redraws the board in place: up over the lines drawn before, then
// each line cleared and written again.
func (b *board) render() {
	b.draw(b.p.out, terminalWidth(b.p.out))
}

func (b *board) draw(w io.Writer, width int) {
	var sb strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", b.drawn)
	}
	lines := b.lines(max(width-1, 0))
	for _, l := range lines {
		sb.WriteString("\r\x1b[2K" + l + "\n")
	}
	b.drawn = len(lines)
	_, _ = io.WriteString(w, sb.String())
}

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// fit cuts s to width runes (0: no limit).
func fit(s string, width int) string {
	if width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	return string(r[:width])
}
