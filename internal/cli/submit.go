package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// submitAnswer is the part of the submit answer the client reads.
type submitAnswer struct {
	TaskID         string `json:"task_id"`
	Provider       string `json:"provider"`
	Status         string `json:"status"`
	Message        string `json:"message"`
	SchedulingInfo struct {
		Strategy      string  `json:"strategy"`
		ProviderScore float64 `json:"provider_score"`
		GPUType       string  `json:"offer_gpu_type"`
		GPUCount      int     `json:"offer_gpu_count"` // the GPUs rented: a whole machine's may be more than asked
		Region        string  `json:"region"`
		PricePerHour  float64 `json:"price_per_hour"`
		EstimatedCost float64 `json:"estimated_cost"`
		StartEstimate float64 `json:"start_estimate_s"`
		GPUSpec       struct {
			GPUType  string `json:"gpu_type"`
			GPUCount int    `json:"gpu_count"`
		} `json:"gpu_spec"`
		Alternatives []offerChoice `json:"alternatives"`
	} `json:"scheduling_info"`
}

// offerChoice is a ranked offer (a runner-up, a recommendation).
type offerChoice struct {
	Provider      string  `json:"provider"`
	Score         float64 `json:"score"`
	GPUType       string  `json:"gpu_type"`
	GPUCount      int     `json:"gpu_count"`
	Region        string  `json:"region"`
	PricePerHour  float64 `json:"price_per_hour"`
	EstimatedCost float64 `json:"estimated_cost"`
	StartEstimate float64 `json:"start_estimate_s"`
}

type submitFlags struct {
	file, name, image, gpu, strategy, idemKey string
	maxDuration, estimated                    string
	memory, maxPrice                          float64
	vcpus, disk, priority, maxRestarts        int
	env, providers                            []string
	spot, detach, noLogs                      bool
	timeout                                   time.Duration
}

func submitCmd(o *Options) *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:   "submit [flags] [--] [COMMAND [ARG...]]",
		Short: "submit a job, show its plan, and follow it to the end",
		Long: `Submits a job, from flags or a job file (-f job.yaml, - for stdin; flags
override the file), and prints the plan: the chosen provider and offer, its
price and score, and the alternatives. Then it follows the job over the
live feed, its status changes on stderr and its output on stdout, and exits
with a code that tells how the job ended: 0 succeeded, 3 failed, 5 timed
out (max_duration or --timeout), 6 cancelled. --detach returns at once.

-o json prints the submit answer with --detach, else {"submission","job"}
at the end (the answer and the finished job); -o jsonl prints the answer
as {"type":"submitted",...}, then every event of the job as the live feed
sends it, then {"type":"result","job":{...}}.

A job file:

  name: train
  image: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
  command: [python, train.py]      # or a string, run with sh -c
  env: {EPOCHS: "3"}
  resources:
    gpu: A100:1                    # TYPE[:COUNT]; none for CPU only
    memory: 32                     # GB
    vcpus: 8
    disk: 100                      # GB
    spot: true
    providers: [runpod, tencent]   # or provider: runpod
  strategy: cost                   # cost, performance, availability, balanced
  priority: 7                      # 0-10
  estimated_duration: 90m
  limits:
    max_price_per_hour: 2.5
    max_duration: 2h
    max_restarts: 2`,
		Example: `  gpuflow submit --gpu none -- echo hello
  gpuflow submit --gpu T4:1 --strategy cost --spot -- python train.py
  gpuflow submit -f job.yaml --detach -o json`,
		Args: cobra.ArbitraryArgs,
	}
	c := addCommon(cmd, o)
	fl := cmd.Flags()
	fl.SetInterspersed(false) // flags after the command belong to it
	fl.StringVarP(&f.file, "file", "f", "", "job file (YAML); - reads stdin")
	fl.StringVar(&f.name, "name", "", "job name")
	fl.StringVar(&f.image, "image", "", "container image")
	fl.StringVar(&f.gpu, "gpu", "", "GPUs as TYPE[:COUNT], e.g. A100:1; none for a CPU-only job")
	fl.Float64Var(&f.memory, "memory", 0, "host memory, GB")
	fl.IntVar(&f.vcpus, "vcpus", 0, "vCPUs")
	fl.IntVar(&f.disk, "disk", 0, "disk, GB")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&f.strategy, "strategy", "", "scheduling strategy: cost, performance, availability or balanced (default balanced)")
	fl.StringSliceVar(&f.providers, "provider", nil, "allowed provider (repeatable, or comma-separated)")
	fl.BoolVar(&f.spot, "spot", false, "use spot (preemptible) machines")
	fl.IntVar(&f.priority, "priority", 5, "priority, 0-10 (higher starts first)")
	fl.Float64Var(&f.maxPrice, "max-price", 0, "maximum price per hour, dollars")
	fl.StringVar(&f.maxDuration, "max-duration", "", "maximum run time (minutes, or a duration such as 2h)")
	fl.StringVar(&f.estimated, "estimated-duration", "", "expected run time, for the estimates (minutes or a duration)")
	fl.IntVar(&f.maxRestarts, "max-restarts", 0, "how often a preempted spot job is restarted")
	fl.StringVar(&f.idemKey, "idempotency-key", "", "a key that makes a repeated submission return the first job")
	fl.BoolVarP(&f.detach, "detach", "d", false, "submit and return; do not follow the job")
	fl.BoolVar(&f.noLogs, "no-logs", false, "do not show the job's output while following (text output)")
	fl.DurationVar(&f.timeout, "timeout", 0, "stop following after this long (exit 5; the job goes on)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		body, err := f.body(cmd, args, o.In)
		if err != nil {
			return err
		}
		ctx := withContext(cmd)
		var header http.Header
		if f.idemKey != "" {
			header = http.Header{"Idempotency-Key": {f.idemKey}}
		}
		var raw json.RawMessage
		if err := cl.do(ctx, http.MethodPost, "/api/gpu/jobs/submit", body, &raw, header); err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		var ans submitAnswer
		if err := json.Unmarshal(raw, &ans); err != nil || ans.TaskID == "" {
			return fmt.Errorf("submit: the answer has no task_id: %s", raw)
		}
		p := c.printer()
		switch p.format {
		case formatText:
			printPlan(p, &ans)
		case formatJSON:
			if f.detach {
				return p.json(raw)
			}
		case formatJSONL:
			if err := p.line(withType("submitted", raw)); err != nil {
				return err
			}
		}
		if f.detach {
			if p.format == formatText {
				p.notef("follow it with: gpuflow watch %s", ans.TaskID)
			}
			return nil
		}
		jobs, err := followAndReport(ctx, cl, p, []string{ans.TaskID}, f.timeout, !f.noLogs)
		if err != nil {
			return err
		}
		if p.format == formatJSON {
			if err := p.json(map[string]any{"submission": raw, "job": jobs.raw[ans.TaskID]}); err != nil {
				return err
			}
		}
		return exitFor(jobs.finals())
	}
	return cmd
}

// body builds the submission from the job file and the flags.
func (f *submitFlags) body(cmd *cobra.Command, args []string, stdin io.Reader) (submitBody, error) {
	var b submitBody
	var err error
	switch f.file {
	case "":
	case "-":
		b, err = parseJobFile(stdin, "stdin")
	default:
		r, oerr := os.Open(f.file)
		if oerr != nil {
			return b, Usage(fmt.Errorf("job file: %w", oerr))
		}
		b, err = parseJobFile(r, f.file)
		r.Close()
	}
	if err != nil {
		return b, err
	}
	set := cmd.Flags().Changed
	if len(args) > 0 {
		b.Command = args
	}
	if set("name") {
		b.Name = f.name
	}
	if set("image") {
		b.Image = f.image
	}
	if set("gpu") {
		t, n, err := parseGPU(f.gpu)
		if err != nil {
			return b, usagef("--gpu: %v", err)
		}
		b.GPUType, b.GPUCount = t, &n
	}
	if set("memory") {
		b.MemoryGB = f.memory
	}
	if set("vcpus") {
		b.VCPUs = f.vcpus
	}
	if set("disk") {
		b.DiskGB = f.disk
	}
	if set("env") {
		env, err := parseEnv(f.env)
		if err != nil {
			return b, err
		}
		if b.Env == nil {
			b.Env = map[string]string{}
		}
		for k, v := range env {
			b.Env[k] = v
		}
	}
	if set("strategy") {
		b.Strategy = f.strategy
	}
	if set("provider") {
		b.Providers = f.providers
	}
	if set("spot") {
		b.Spot = f.spot
	}
	if set("priority") {
		b.Priority = &f.priority
	}
	if set("max-price") {
		b.MaxPricePerHour = &f.maxPrice
	}
	if set("max-duration") {
		m, err := parseMinutes(f.maxDuration)
		if err != nil {
			return b, usagef("--max-duration: %v", err)
		}
		b.MaxDurationMinutes = &m
	}
	if set("estimated-duration") {
		m, err := parseMinutes(f.estimated)
		if err != nil {
			return b, usagef("--estimated-duration: %v", err)
		}
		b.EstimatedDuration = &m
	}
	if set("max-restarts") {
		b.MaxRestarts = f.maxRestarts
	}
	if f.timeout < 0 {
		return b, usagef("--timeout must not be negative")
	}
	if len(b.Command) == 0 && b.Image == "" {
		return b, usagef("nothing to run: give a command (after --), --image, or -f job.yaml")
	}
	if b.GPUCount == nil {
		return b, usagef("--gpu is required: TYPE[:COUNT] such as A100:1, or none for a CPU-only job")
	}
	return b, nil
}

// printPlan shows the submission's plan: the chosen offer, then the
// runners-up.
func printPlan(p *printer, a *submitAnswer) {
	si := a.SchedulingInfo
	gpu := "cpu"
	if si.GPUSpec.GPUCount > 0 {
		t := si.GPUType
		if t == "" {
			t = si.GPUSpec.GPUType
		}
		gpu = fmt.Sprintf("%s:%d", t, max(si.GPUCount, si.GPUSpec.GPUCount))
		if si.GPUCount > si.GPUSpec.GPUCount {
			gpu += fmt.Sprintf(" (a whole machine for the %d asked)", si.GPUSpec.GPUCount)
		}
	}
	fmt.Fprintf(p.out, "Job %s submitted (%s)\n", a.TaskID, a.Status)
	fmt.Fprintf(p.out, "Plan (%s): %s %s", si.Strategy, a.Provider, gpu)
	if si.Region != "" {
		fmt.Fprintf(p.out, " in %s", si.Region)
	}
	fmt.Fprintf(p.out, ", %s/h, about %s for the run, start in ~%s, score %.2f\n",
		money(si.PricePerHour), money(si.EstimatedCost), seconds(si.StartEstimate), si.ProviderScore)
	if len(si.Alternatives) == 0 {
		fmt.Fprintln(p.out, "Alternatives: none")
		return
	}
	fmt.Fprintln(p.out, "Alternatives:")
	rows := make([][]string, 0, len(si.Alternatives))
	for _, alt := range si.Alternatives {
		rows = append(rows, []string{"  " + alt.Provider, offerGPU(alt.GPUType, alt.GPUCount), orDash(alt.Region),
			money(alt.PricePerHour), fmt.Sprintf("%.2f", alt.Score)})
	}
	_ = p.table([]string{"  PROVIDER", "GPU", "REGION", "PRICE/H", "SCORE"}, rows)
}

func offerGPU(t string, n int) string {
	if n == 0 || t == "" || strings.EqualFold(t, "cpu") {
		return "cpu"
	}
	return fmt.Sprintf("%s:%d", t, n)
}

func seconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.1fs", s)
	}
	return (time.Duration(s) * time.Second).String()
}

// withType is the JSON object raw with a "type" field added in front.
func withType(typ string, raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	t, _ := json.Marshal(typ)
	m["type"] = t
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

// followAndReport follows the jobs to their end, showing events (status
// changes on stderr as text; every event on stdout with jsonl) and, in
// text with logs, the output of a single job on stdout.
func followAndReport(ctx context.Context, cl *Client, p *printer, ids []string, timeout time.Duration, logs bool) (*tracker, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	t := newTracker(cl, ids)
	out := &syncWriter{w: p.out}
	errw := &syncWriter{w: p.err}
	switch p.format {
	case formatJSONL:
		t.events = true
		t.onEvent = func(raw []byte, _ *Event) error {
			_, err := out.Write(append(compact(raw), '\n'))
			return err
		}
	case formatText:
		t.events = true
		t.onEvent = func(_ []byte, ev *Event) error {
			if shownAsLine(ev) {
				fmt.Fprintln(errw, eventLine(p, ev))
			}
			return nil
		}
	}
	logsDone := make(chan error, 1)
	logCtx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	if logs && p.format == formatText && len(ids) == 1 {
		go func() { logsDone <- followLogs(logCtx, cl, ids[0], out) }()
	} else {
		logsDone <- nil
	}
	err := t.follow(ctx, errw)
	if err == nil {
		// The job has ended; its output stream ends once all is sent.
		if lerr := <-logsDone; lerr != nil && ctx.Err() == nil {
			p.notef("gpuflow: the job's output could not be read to the end: %v", lerr)
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) && timeout > 0:
		return nil, withCode(ExitTimeout, fmt.Errorf("gave up waiting after %s; the job goes on (gpuflow watch %s)",
			timeout, strings.Join(ids, " ")))
	case errors.Is(err, context.Canceled):
		return nil, fmt.Errorf("interrupted; the job goes on (gpuflow watch %s, gpuflow cancel ID)", strings.Join(ids, " "))
	default:
		return nil, err
	}
	if p.format == formatJSONL {
		for _, id := range ids {
			if err := p.line(map[string]any{"type": "result", "job": t.raw[id]}); err != nil {
				return nil, err
			}
		}
	}
	if p.format == formatText {
		for _, j := range t.finals() {
			p.notef("%s", resultLine(j))
		}
	}
	return t, nil
}

// resultLine tells how a job ended.
func resultLine(j *Job) string {
	s := fmt.Sprintf("job %s %s", j.ID, j.Status)
	if j.ExitCode != nil {
		s += fmt.Sprintf(" (exit code %d)", *j.ExitCode)
	}
	if j.StartedAt != nil && j.FinishedAt != nil {
		s += fmt.Sprintf(" after %s", j.FinishedAt.Sub(*j.StartedAt).Round(10*time.Millisecond))
	}
	if e := str(j.Error); e != "" && j.Status != "succeeded" {
		s += ": " + e
	}
	if j.CostSoFar > 0 {
		s += ", cost " + money(j.CostSoFar)
	}
	return s
}

// exitFor is the silent exit that tells how the jobs ended.
func exitFor(jobs []*Job) error {
	if code := outcomesCode(jobs); code != ExitOK {
		return withCode(code, nil)
	}
	return nil
}

func compact(raw []byte) []byte {
	b, err := marshal(json.RawMessage(raw), false)
	if err != nil {
		return raw
	}
	return b
}
