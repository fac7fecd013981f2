package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

type providerInfo struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name"`
	Mode        string   `json:"mode"`
	Healthy     bool     `json:"healthy"`
	HealthError string   `json:"health_error"`
	GPUTypes    []string `json:"gpu_types"`
}

func providersCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "list the providers: mode (live, emulated, unconfigured), health, GPU types",
		Args:  noArgs,
	}
	c := addCommon(cmd, o)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.do(withContext(cmd), http.MethodGet, "/api/gpu/providers", nil, &raw, nil); err != nil {
			return err
		}
		var out struct {
			Providers []json.RawMessage `json:"providers"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("providers: %w", err)
		}
		p := c.printer()
		if p.format != formatText {
			return p.data(raw, out.Providers)
		}
		rows := make([][]string, 0, len(out.Providers))
		for _, r := range out.Providers {
			var pi providerInfo
			if err := json.Unmarshal(r, &pi); err != nil {
				return fmt.Errorf("providers: %w", err)
			}
			health := "yes"
			if !pi.Healthy {
				health = "no"
				if pi.HealthError != "" {
					health += " (" + clip(pi.HealthError, 60) + ")"
				}
			}
			rows = append(rows, []string{pi.Name, orDash(pi.DisplayName), pi.Mode, health, orDash(strings.Join(pi.GPUTypes, ","))})
		}
		return p.table([]string{"NAME", "DISPLAY NAME", "MODE", "HEALTHY", "GPU TYPES"}, rows)
	}
	return cmd
}

type gpuOffer struct {
	GPUType          string  `json:"gpu_type"`
	GPUCount         int     `json:"gpu_count"`
	MemoryGB         float64 `json:"memory_gb"`
	VCPUs            int     `json:"vcpus"`
	PricePerHour     float64 `json:"price_per_hour"`
	SpotPricePerHour float64 `json:"spot_price_per_hour"`
	Region           string  `json:"region"`
	Available        bool    `json:"available"`
	Stock            int     `json:"stock"`
	Divisible        bool    `json:"divisible"` // 1 to GPUCount per job; else an instance of GPUCount, rented whole
}

func gpusCmd(o *Options) *cobra.Command {
	var gpuType string
	var available bool
	cmd := &cobra.Command{
		Use:   "gpus [PROVIDER...]",
		Short: "list the GPU offers of the providers (all, or those named): prices and stock",
		Long: `Lists the GPU offers of every configured provider, or of those named: GPU
type and count, memory, vCPUs, price and spot price per hour, region and
stock. -o json prints {"<provider>": [offers]}, -o jsonl an offer a line
with its provider.`,
		Args: cobra.ArbitraryArgs,
	}
	c := addCommon(cmd, o)
	cmd.Flags().StringVar(&gpuType, "gpu", "", "only this GPU type (case-insensitive)")
	cmd.Flags().BoolVar(&available, "available", false, "only offers available now")
	cmd.RunE = func(cmd *cobra.Command, names []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		ctx := withContext(cmd)
		if len(names) == 0 {
			var out struct {
				Providers []providerInfo `json:"providers"`
			}
			if err := cl.do(ctx, http.MethodGet, "/api/gpu/providers", nil, &out, nil); err != nil {
				return err
			}
			for _, pi := range out.Providers {
				if pi.Mode != "unconfigured" {
					names = append(names, pi.Name)
				}
			}
		}
		type offer struct {
			provider string
			raw      json.RawMessage
			gpuOffer
		}
		var offers []offer
		byProvider := map[string][]json.RawMessage{}
		for _, name := range names {
			var out struct {
				GPUs []json.RawMessage `json:"gpus"`
			}
			if err := cl.do(ctx, http.MethodGet, "/api/gpu/providers/"+url.PathEscape(name)+"/gpus", nil, &out, nil); err != nil {
				return fmt.Errorf("gpus of %s: %w", name, err)
			}
			byProvider[name] = []json.RawMessage{}
			for _, r := range out.GPUs {
				var g gpuOffer
				if err := json.Unmarshal(r, &g); err != nil {
					return fmt.Errorf("gpus of %s: %w", name, err)
				}
				if (gpuType != "" && !strings.EqualFold(g.GPUType, gpuType)) || (available && !g.Available) {
					continue
				}
				offers = append(offers, offer{name, r, g})
				byProvider[name] = append(byProvider[name], r)
			}
		}
		p := c.printer()
		switch p.format {
		case formatJSON:
			return p.json(byProvider)
		case formatJSONL:
			for _, of := range offers {
				if err := p.line(withField("provider", of.provider, of.raw)); err != nil {
					return err
				}
			}
			return nil
		}
		if len(offers) == 0 {
			p.notef("no offers")
			return nil
		}
		rows := make([][]string, 0, len(offers))
		for _, of := range offers {
			stock := "?"
			if of.Stock >= 0 {
				stock = strconv.Itoa(of.Stock)
			}
			spot := "-"
			if of.SpotPricePerHour > 0 {
				spot = money(of.SpotPricePerHour)
			}
			gpu := offerGPU(of.GPUType, of.GPUCount)
			if of.Divisible && of.GPUCount > 1 {
				gpu = fmt.Sprintf("%s:1-%d", of.GPUType, of.GPUCount)
			}
			rows = append(rows, []string{of.provider, gpu, fmt.Sprintf("%g", of.MemoryGB),
				strconv.Itoa(of.VCPUs), money(of.PricePerHour), spot, orDash(of.Region), map[bool]string{true: "yes", false: "no"}[of.Available], stock})
		}
		return p.table([]string{"PROVIDER", "GPU", "GPU MEM GB", "VCPUS", "PRICE/GPU-H", "SPOT/GPU-H", "REGION", "AVAILABLE", "STOCK"}, rows)
	}
	return cmd
}

// withField is the JSON object raw with one more field.
func withField(key string, value any, raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	v, _ := json.Marshal(value)
	m[key] = v
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

func recommendCmd(o *Options) *cobra.Command {
	var gpu string
	cmd := &cobra.Command{
		Use:   "recommend --gpu TYPE[:COUNT]",
		Short: "show where each strategy would run a job now, with prices and the runners-up",
		Long: `Shows, for each strategy (cost, performance, availability, balanced), the
offer the scheduler would choose now for a job of --gpu, its price, start
estimate and score, and the alternatives: the cost comparison of the
providers.`,
		Example: `  gpuflow recommend --gpu A100:1
  gpuflow recommend --gpu none -o json`,
		Args: noArgs,
	}
	c := addCommon(cmd, o)
	cmd.Flags().StringVar(&gpu, "gpu", "", "GPUs as TYPE[:COUNT], or none for a CPU-only job (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cl, err := c.client()
		if err != nil {
			return err
		}
		if gpu == "" {
			return usagef("--gpu is required: TYPE[:COUNT] such as A100:1, or none")
		}
		t, n, err := parseGPU(gpu)
		if err != nil {
			return usagef("--gpu: %v", err)
		}
		q := url.Values{"gpu_count": {strconv.Itoa(n)}}
		if t != "" {
			q.Set("gpu_type", t)
		}
		var raw json.RawMessage
		if err := cl.do(withContext(cmd), http.MethodGet, "/api/gpu/scheduling/recommendations?"+q.Encode(), nil, &raw, nil); err != nil {
			return err
		}
		p := c.printer()
		if p.format != formatText {
			return p.data(raw, nil)
		}
		var out struct {
			Recommendations map[string]*struct {
				offerChoice
				Alternatives []offerChoice `json:"alternatives"`
			} `json:"recommendations"`
			Reasons map[string][]string `json:"reasons"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("recommend: %w", err)
		}
		var rows [][]string
		for _, st := range []string{"cost", "performance", "availability", "balanced"} {
			r, ok := out.Recommendations[st]
			if !ok {
				continue
			}
			if r == nil {
				rows = append(rows, []string{st, "-", "none", "", "", "", "", ""})
				continue
			}
			alts := make([]string, 0, len(r.Alternatives))
			for _, a := range r.Alternatives {
				alts = append(alts, fmt.Sprintf("%s %s", a.Provider, money(a.PricePerHour)))
			}
			rows = append(rows, []string{st, r.Provider, offerGPU(r.GPUType, r.GPUCount), orDash(r.Region),
				money(r.PricePerHour), seconds(r.StartEstimate), fmt.Sprintf("%.2f", r.Score), orDash(strings.Join(alts, ", "))})
		}
		if err := p.table([]string{"STRATEGY", "PROVIDER", "GPU", "REGION", "PRICE/H", "START", "SCORE", "ALTERNATIVES"}, rows); err != nil {
			return err
		}
		// Why offers were left out: all of it when a strategy found
		// nothing, else a count (-o json has every reason).
		missing := false
		for _, r := range out.Recommendations {
			missing = missing || r == nil
		}
		rejected := 0
		for _, name := range sortedKeys(out.Reasons) {
			for _, r := range out.Reasons[name] {
				rejected++
				if missing {
					p.notef("%s: %s", orDash(name), r)
				}
			}
		}
		if !missing && rejected > 0 {
			p.notef("%d offers do not fit; -o json shows why", rejected)
		}
		return nil
	}
	return cmd
}
