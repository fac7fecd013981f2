package app

import (
	"slices"
	"testing"
)

func TestConfigWorkflowCache(t *testing.T) {
	t.Parallel()
	c, err := configFrom(t, map[string]string{})
	if err != nil || c.WorkflowCache != DefaultWorkflowCache {
		t.Fatalf("default: %d %v, want %d", c.WorkflowCache, err, DefaultWorkflowCache)
	}
	if c, err = configFrom(t, map[string]string{"GPUFLOW_WORKFLOW_CACHE": "500"}); err != nil || c.WorkflowCache != 500 {
		t.Fatalf("500: %d %v", c.WorkflowCache, err)
	}
	for _, bad := range []string{"0", "-1", "lots", "1.5"} {
		if _, err := configFrom(t, map[string]string{"GPUFLOW_WORKFLOW_CACHE": bad}); err == nil {
			t.Errorf("GPUFLOW_WORKFLOW_CACHE=%s accepted", bad)
		}
	}
	if !slices.Contains(EnvVars, "GPUFLOW_WORKFLOW_CACHE") {
		t.Error("EnvVars lacks GPUFLOW_WORKFLOW_CACHE")
	}
}
