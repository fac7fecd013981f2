package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Output formats.
const (
	formatText  = "text"
	formatJSON  = "json"
	formatJSONL = "jsonl"
)

// common are the flags every client command has.
type common struct {
	o      *Options
	output string
	server string
	token  string
}

// addCommon registers -o, --server and --token on cmd.
func addCommon(cmd *cobra.Command, o *Options) *common {
	c := &common{o: o}
	cmd.Flags().StringVarP(&c.output, "output", "o", formatText, "output format: text, json or jsonl")
	cmd.Flags().StringVar(&c.server, "server", "", "API server URL (default: $GPUFLOW_SERVER, then the config file)")
	cmd.Flags().StringVar(&c.token, "token", "", "API token (default: $GPUFLOW_TOKEN, then the config file)")
	return c
}

// check validates the flags shared by all commands.
func (c *common) check() error {
	switch c.output {
	case formatText, formatJSON, formatJSONL:
		return nil
	}
	return usagef("-o must be text, json or jsonl, not %q", c.output)
}

// client resolves the endpoint and returns a client with a valid token.
func (c *common) client() (*Client, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	ep, err := resolveEndpoint(c.o.Getenv, c.server, c.token)
	if err != nil {
		return nil, err
	}
	if err := ep.requireToken(); err != nil {
		return nil, err
	}
	return newClient(ep, c.o.Version), nil
}

// printer writes a command's data to stdout and its notes to stderr.
type printer struct {
	format string
	out    io.Writer
	err    io.Writer
	tty    bool // stdout is a terminal: live redraw allowed
	color  bool // colour allowed
}

func (c *common) printer() *printer {
	tty := isTerminal(c.o.Out)
	return &printer{format: c.output, out: c.o.Out, err: c.o.Err, tty: tty,
		color: tty && c.o.Getenv("NO_COLOR") == "" && c.o.Getenv("TERM") != "dumb"}
}

// json writes v as one indented JSON document (-o json).
func (p *printer) json(v any) error {
	b, err := marshal(v, true)
	if err != nil {
		return err
	}
	_, err = p.out.Write(append(b, '\n'))
	return err
}

// line writes v as one compact JSON line (-o jsonl).
func (p *printer) line(v any) error {
	b, err := marshal(v, false)
	if err != nil {
		return err
	}
	_, err = p.out.Write(append(b, '\n'))
	return err
}

// marshal encodes v; a json.RawMessage is re-indented or compacted.
func marshal(v any, indent bool) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		var err error
		if indent {
			err = json.Indent(&buf, raw, "", "  ")
		} else {
			err = json.Compact(&buf, raw)
		}
		return buf.Bytes(), err
	}
	if indent {
		return json.MarshalIndent(v, "", "  ")
	}
	return json.Marshal(v)
}

// data writes v in the JSON formats: a document for json; for jsonl each
// element of a list on its own line, anything else on one line.
func (p *printer) data(v any, list []json.RawMessage) error {
	if p.format == formatJSONL && list != nil {
		for _, r := range list {
			if err := p.line(r); err != nil {
				return err
			}
		}
		return nil
	}
	if p.format == formatJSONL {
		return p.line(v)
	}
	return p.json(v)
}

// notef writes a note (progress, a hint) to stderr.
func (p *printer) notef(format string, args ...any) {
	fmt.Fprintf(p.err, format+"\n", args...)
}

// table writes rows under a header, aligned, to stdout.
func (p *printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// ANSI colours of statuses.
var statusColor = map[string]string{
	"queued": "33", "scheduling": "36", "provisioning": "36", "running": "34",
	"succeeded": "32", "failed": "31", "cancelling": "35", "cancelled": "35",
}

// status is s, coloured when colour is allowed.
func (p *printer) status(s string) string {
	if c, ok := statusColor[s]; ok && p.color {
		return "\x1b[" + c + "m" + s + "\x1b[0m"
	}
	return s
}

// shortID is the first block of a UUID, as people read it.
func shortID(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

// money is dollars: to the tenth of a cent, or finer below a cent.
func money(v float64) string {
	if v > 0 && v < 0.01 {
		return fmt.Sprintf("$%.5f", v)
	}
	return fmt.Sprintf("$%.3f", v)
}

func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format(time.DateOnly)
}

func gpuLabel(s jobSpec) string {
	if s.GPUCount == 0 {
		return "cpu"
	}
	return fmt.Sprintf("%s:%d", s.GPUType, s.GPUCount)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func exitLabel(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}
