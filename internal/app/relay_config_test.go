package app

import (
	"slices"
	"testing"
	"time"
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
