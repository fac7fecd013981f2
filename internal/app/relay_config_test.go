package app

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuflow/gpuflow/relay"
)

func TestConfigProgressInterval(t *testing.T) {
	t.Parallel()
	c, err := configFrom(t, map[string]string{})
	if err != nil || c.ProgressInterval != 5*time.Second {
		t.Fatalf("default: %v %v, want 5s", c.ProgressInterval, err)
	}
	if c, err = configFrom(t, map[string]string{"GPUFLOW_PROGRESS_INTERVAL": "750ms"}); err != nil || c.ProgressInterval != 750*time.Millisecond {
		t.Fatalf("750ms: %v %v", c.ProgressInterval, err)
	}
	for _, bad := range []string{"0", "-1s", "5", "soon"} {
		if _, err := configFrom(t, map[string]string{"GPUFLOW_PROGRESS_INTERVAL": bad}); err == nil {
			t.Errorf("GPUFLOW_PROGRESS_INTERVAL=%s accepted", bad)
		}
	}
	if !slices.Contains(EnvVars, "GPUFLOW_PROGRESS_INTERVAL") {
		t.Error("EnvVars lacks GPUFLOW_PROGRESS_INTERVAL")
	}
}

func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if err := registerRelayMetrics(reg, relay.New(nil, nil, relay.Options{})); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"gpuflow_agent_reports_delivered_total", "gpuflow_agent_reports_dropped_total", "gpuflow_agent_report_retries_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("metrics %v lack %s", names, want)
		}
	}
}
