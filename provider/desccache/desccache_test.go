package desccache_test

import (
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/desccache"
)

func TestCache(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	c := desccache.New(time.Minute, func() time.Time { return now })
	running := gpuflow.Machine{ID: "r:a", State: gpuflow.MachineRunning, Tags: map[string]string{"k": "v"}}
	c.Put("a", running)
	c.Put("b", gpuflow.Machine{ID: "r:b", State: gpuflow.MachineStarting})
	if _, ok := c.Get("b"); ok || c.Len() != 1 {
		t.Fatalf("a machine not running was kept (%d entries)", c.Len())
	}
	m, ok := c.Get("a")
	if !ok || m.ID != "r:a" || m.Tags["k"] != "v" {
		t.Fatalf("Get(a) = %+v, %v", m, ok)
	}
	m.Tags["k"] = "changed" // a caller's copy
	if m, _ := c.Get("a"); m.Tags["k"] != "v" {
		t.Errorf("a caller changed the cached tags: %v", m.Tags)
	}
	// Lives 80–120 % of the refresh.
	now = now.Add(47 * time.Second)
	if _, ok := c.Get("a"); !ok {
		t.Error("expired before 80 % of its refresh")
	}
	now = now.Add(26 * time.Second)
	if _, ok := c.Get("a"); ok {
		t.Error("still fresh past 120 % of its refresh")
	}
	// A machine that stopped running is forgotten; expired entries go
	// with the next Put after a refresh.
	c.Put("a", running)
	c.Put("a", gpuflow.Machine{ID: "r:a", State: gpuflow.MachineFailed})
	if _, ok := c.Get("a"); ok {
		t.Error("a failed machine's running description was kept")
	}
	c.Put("c", running)
	c.Forget("c")
	if c.Len() != 0 {
		t.Errorf("%d entries after Forget", c.Len())
	}
	for _, id := range []string{"x", "y"} {
		c.Put(id, running)
	}
	now = now.Add(2 * time.Minute)
	c.Put("z", running)
	if c.Len() != 1 {
		t.Errorf("%d entries after the prune, want only the new one", c.Len())
	}
}
