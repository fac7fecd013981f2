package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// validStatuses are the job statuses, for --status.
var validStatuses = []string{"queued", "scheduling", "provisioning", "running", "succeeded", "failed", "cancelling", "cancelled"}

func lsCmd(o *Options) *cobra.Command {
	var status, provider string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list your jobs, newest first",
		Long: `Lists your jobs, newest first: --limit of them (20), or --all. -o json
prints an array of jobs as GET /api/gpu/tasks/{id} shows them, -o jsonl one
job a line.`,
		Example: `  gpuflow ls --status running
  gpuflow ls --provider runpod --all -o jsonl`,
		Args: noArgs,
	}
	c := addCommon(cmd, o)
	cmd.Flags().StringVar(&status, "status", "", "only jobs with this status ("+strings.Join(validStatuses, ", ")+")")
	cmd.Flags().StringVar(&provider, "provider", "", "only jobs on this provider")
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "how many jobs (1-100 a page)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "every job, page after page")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		if status != "" && !contains(validStatuses, status) {
			return usagef("--status must be one of %s", strings.Join(validStatuses, ", "))
		}
		if limit < 1 {
			return usagef("--limit must be at least 1")
		}
		q := url.Values{}
		if status != "" {
			q.Set("status", status)
		}
		if provider != "" {
			q.Set("provider", provider)
		}
		var raws []json.RawMessage
		var jobs []Job
		cursor := ""
		for {
			page := min(limit-len(raws), 100)
			if all {
				page = 100
			}
			q.Set("limit", strconv.Itoa(page))
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var out struct {
				Tasks      []json.RawMessage `json:"tasks"`
				NextCursor *string           `json:"next_cursor"`
			}
			if err := cl.do(withContext(cmd), http.MethodGet, "/api/gpu/tasks?"+q.Encode(), nil, &out, nil); err != nil {
				return err
			}
			for _, r := range out.Tasks {
				var j Job
				if err := json.Unmarshal(r, &j); err != nil {
					return fmt.Errorf("list: %w", err)
				}
				raws, jobs = append(raws, r), append(jobs, j)
			}
			if out.NextCursor == nil || *out.NextCursor == "" || (!all && len(raws) >= limit) {
				break
			}
			cursor = *out.NextCursor
		}
		p := c.printer()
		if p.format != formatText {
			if raws == nil {
				raws = []json.RawMessage{}
			}
			return p.data(raws, raws)
		}
		if len(jobs) == 0 {
			p.notef("no jobs")
			return nil
		}
		now := time.Now()
		rows := make([][]string, 0, len(jobs))
		for _, j := range jobs {
			rows = append(rows, []string{j.ID, orDash(j.Name), p.status(j.Status), orDash(str(j.Provider)),
				gpuLabel(j.Spec), ago(j.CreatedAt, now), exitLabel(j.ExitCode)})
		}
		return p.table([]string{"ID", "NAME", "STATUS", "PROVIDER", "GPU", "CREATED", "EXIT"}, rows)
	}
	return cmd
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func statusCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "show a job: status, plan, attempts, queue position, cost",
		Args:  exactArgs(1, "a job id"),
	}
	c := addCommon(cmd, o)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		j, err := cl.job(withContext(cmd), args[0], &raw)
		if err != nil {
			return err
		}
		p := c.printer()
		if p.format != formatText {
			return p.data(raw, nil)
		}
		printJob(p, j)
		return nil
	}
	return cmd
}

// printJob shows a job as text.
func printJob(p *printer, j *Job) {
	tw := func(k, v string) { fmt.Fprintf(p.out, "%-12s %s\n", k+":", v) }
	tw("ID", j.ID)
	if j.Name != "" {
		tw("Name", j.Name)
	}
	tw("Status", p.status(j.Status))
	if j.Queue != nil {
		tw("Queue", fmt.Sprintf("position %d: %s", j.Queue.Position, j.Queue.Reason))
	}
	tw("Provider", orDash(str(j.Provider)))
	if id := str(j.InstanceID); id != "" {
		tw("Machine", id)
	}
	tw("GPU", gpuLabel(j.Spec))
	if j.Spec.Image != "" {
		tw("Image", j.Spec.Image)
	}
	if len(j.Spec.Command) > 0 {
		tw("Command", strings.Join(j.Spec.Command, " "))
	}
	tw("Strategy", fmt.Sprintf("%s, priority %d%s", j.Spec.Strategy, j.Spec.Priority, map[bool]string{true: ", spot"}[j.Spec.Spot]))
	tw("Created", j.CreatedAt.Local().Format(time.DateTime))
	if j.StartedAt != nil {
		tw("Started", j.StartedAt.Local().Format(time.DateTime))
	}
	if j.FinishedAt != nil {
		tw("Finished", j.FinishedAt.Local().Format(time.DateTime))
	}
	if j.ExitCode != nil {
		tw("Exit code", fmt.Sprint(*j.ExitCode))
	}
	if e := str(j.Error); e != "" {
		tw("Error", e)
	}
	if j.PricePerHour > 0 || j.CostSoFar > 0 {
		sofar := " so far"
		if terminal(j.Status) {
			sofar = ""
		}
		tw("Cost", fmt.Sprintf("%s%s at %s/h", money(j.CostSoFar), sofar, money(j.PricePerHour)))
	}
	if u := str(j.TemporalURL); u != "" {
		tw("Temporal", u)
	}
	if len(j.Attempts) > 0 {
		fmt.Fprintln(p.out, "Attempts:")
		rows := make([][]string, 0, len(j.Attempts))
		for _, a := range j.Attempts {
			rows = append(rows, []string{"  " + a.Provider, orDash(a.GPUType), orDash(a.Region), orDash(a.MachineID), orDash(a.Outcome)})
		}
		_ = p.table([]string{"  PROVIDER", "GPU", "REGION", "MACHINE", "OUTCOME"}, rows)
	}
}

func logsCmd(o *Options) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID [-f]",
		Short: "print a job's output; -f follows it until the job ends",
		Long: `Prints a job's output. With -f it follows the output live until the job
has finished and all of it is printed, resuming after a lost connection.
-o json prints {"task_id","logs"}; -o jsonl one {"task_id","line"} a line.`,
		Args: exactArgs(1, "a job id"),
	}
	c := addCommon(cmd, o)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output until the job ends")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		ctx := withContext(cmd)
		id := args[0]
		p := c.printer()
		if p.format == formatText && follow {
			if _, err := cl.job(ctx, id, nil); err != nil {
				return err
			}
			return followLogs(ctx, cl, id, p.out)
		}
		var text strings.Builder
		if follow {
			lw := &lineWriter{emit: func(line string) error {
				if p.format == formatJSONL {
					return p.line(map[string]string{"task_id": id, "line": line})
				}
				text.WriteString(line + "\n")
				return nil
			}}
			if err := followLogs(ctx, cl, id, lw); err != nil {
				return err
			}
			if err := lw.flush(); err != nil {
				return err
			}
		} else {
			var offset int64
			for {
				var page struct {
					Logs       string `json:"logs"`
					NextOffset int64  `json:"next_offset"`
				}
				path := "/api/gpu/tasks/" + url.PathEscape(id) + "/logs?offset=" + strconv.FormatInt(offset, 10)
				if err := cl.do(ctx, http.MethodGet, path, nil, &page, nil); err != nil {
					return err
				}
				if page.Logs == "" || page.NextOffset <= offset {
					break
				}
				text.WriteString(page.Logs)
				offset = page.NextOffset
			}
		}
		switch p.format {
		case formatText:
			_, err := fmt.Fprint(p.out, text.String())
			return err
		case formatJSON:
			return p.json(map[string]string{"task_id": id, "logs": text.String()})
		}
		if follow {
			return nil // written line by line
		}
		lw := &lineWriter{emit: func(line string) error { return p.line(map[string]string{"task_id": id, "line": line}) }}
		if _, err := lw.Write([]byte(text.String())); err != nil {
			return err
		}
		return lw.flush()
	}
	return cmd
}

// lineWriter calls emit with each complete line written to it.
type lineWriter struct {
	buf  []byte
	emit func(string) error
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		line := strings.TrimSuffix(string(l.buf[:i]), "\r")
		l.buf = l.buf[i+1:]
		if err := l.emit(line); err != nil {
			return 0, err
		}
	}
}

// flush emits a last line without its newline.
func (l *lineWriter) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	line := string(l.buf)
	l.buf = nil
	return l.emit(line)
}

func cancelCmd(o *Options) *cobra.Command {
	var reason string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "cancel a job (its machine is torn down)",
		Long: `Asks the job's workflow to cancel: the machine is torn down and the job
ends cancelled. --wait waits for that and exits as submit does (6 when it
ended cancelled). A job that has already finished is an error (1).`,
		Args: exactArgs(1, "a job id"),
	}
	c := addCommon(cmd, o)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the job)")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "wait until the job has ended")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, stop waiting after this long (exit 5)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		ctx := withContext(cmd)
		id := args[0]
		var body any
		if reason != "" {
			body = map[string]string{"reason": reason}
		}
		var raw json.RawMessage
		if err := cl.do(ctx, http.MethodPost, "/api/gpu/tasks/"+url.PathEscape(id)+"/cancel", body, &raw, nil); err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
		p := c.printer()
		if !wait {
			if p.format != formatText {
				return p.data(raw, nil)
			}
			fmt.Fprintf(p.out, "Cancel requested for job %s\n", id)
			return nil
		}
		if p.format == formatText {
			p.notef("cancel requested; waiting for job %s to end", id)
		}
		t, err := followAndReport(ctx, cl, p, []string{id}, timeout, false)
		if err != nil {
			return err
		}
		if p.format == formatJSON {
			if err := p.json(t.raw[id]); err != nil {
				return err
			}
		}
		return exitFor(t.finals())
	}
	return cmd
}
