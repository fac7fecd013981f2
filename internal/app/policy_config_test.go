package app

import (
	"strings"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/api"
)

// TestConfigPolicy: production leaves registration, local jobs and the
// rate limits to the API's closed defaults; `make run` (WithDevDefaults)
// opens what the environment does not set.
func TestConfigPolicy(t *testing.T) {
	t.Parallel()
	c, err := configFrom(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Registration != "" || c.LocalUsers != nil || c.SubmitRate != nil || c.CancelRate != nil || c.LocalRunAs != "" {
		t.Errorf("unset: %+v", c)
	}
	dev := c.WithDevDefaults()
	if dev.Registration != gpuflow.RegistrationOpen || !dev.LocalUsers.Everyone ||
		dev.SubmitRate.Limit >= 0 || dev.CancelRate.Limit >= 0 {
		t.Errorf("dev defaults: registration %q, local %+v, rates %+v %+v", dev.Registration, dev.LocalUsers, dev.SubmitRate, dev.CancelRate)
	}

	c, err = configFrom(t, map[string]string{
		"GPUFLOW_REGISTRATION": "Invite",
		"GPUFLOW_LOCAL_USERS":  " Alice@Example.com, 6B7C1D5E-3F1A-4C2B-9A8E-1D2C3B4A5F60 ,",
		"GPUFLOW_LOCAL_RUN_AS": "gpuflow-jobs",
		"GPUFLOW_SUBMIT_RATE":  "30/1m",
		"GPUFLOW_CANCEL_RATE":  "5/s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Registration != gpuflow.RegistrationInvite || c.LocalRunAs != "gpuflow-jobs" ||
		strings.Join(c.LocalUsers.Users, " ") != "alice@example.com 6b7c1d5e-3f1a-4c2b-9a8e-1d2c3b4a5f60" || c.LocalUsers.Everyone ||
		*c.SubmitRate != (api.RateLimit{Limit: 30, Period: time.Minute}) || *c.CancelRate != (api.RateLimit{Limit: 5, Period: time.Second}) {
		t.Errorf("parsed: %+v %+v %+v %+v", c, c.LocalUsers, c.SubmitRate, c.CancelRate)
	}
	// What the environment sets, dev keeps.
	dev = c.WithDevDefaults()
	if dev.Registration != gpuflow.RegistrationInvite || dev.LocalUsers.Everyone || dev.SubmitRate.Limit != 30 {
		t.Errorf("dev overrode the environment: %+v", dev)
	}
	for v, want := range map[string]gpuflow.LocalPolicy{"*": {Everyone: true}, "none": {}} {
		c, err := configFrom(t, map[string]string{"GPUFLOW_LOCAL_USERS": v})
		if err != nil || c.LocalUsers == nil || c.LocalUsers.Everyone != want.Everyone || len(c.LocalUsers.Users) != 0 {
			t.Errorf("GPUFLOW_LOCAL_USERS=%s: %+v, %v", v, c.LocalUsers, err)
		}
	}
	if c, err := configFrom(t, map[string]string{"GPUFLOW_SUBMIT_RATE": "off"}); err != nil || c.SubmitRate.Limit >= 0 {
		t.Errorf("GPUFLOW_SUBMIT_RATE=off: %+v, %v", c.SubmitRate, err)
	}
	for k, vs := range map[string][]string{
		"GPUFLOW_REGISTRATION": {"yes", "public"},
		"GPUFLOW_LOCAL_USERS":  {"alice", "a@b@c", "'; DROP TABLE users"},
		"GPUFLOW_SUBMIT_RATE":  {"120", "0/1m", "-1/1m", "10/0s", "10/500ms", "10/48h", "x/1m", "10/forever"},
		"GPUFLOW_CANCEL_RATE":  {"lots"},
	} {
		for _, v := range vs {
			if _, err := configFrom(t, map[string]string{k: v}); err == nil || !strings.HasPrefix(err.Error(), k) {
				t.Errorf("%s=%s: err = %v", k, v, err)
			}
		}
	}
}
