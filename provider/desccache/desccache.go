// Package desccache keeps the last full description of machines seen
// running, so that a provider's batched sweep can ask the cloud only for
// their status (Tencent DescribeInstancesStatus, Alibaba
// DescribeInstanceStatus: an id and a state each) and describe in full only
// the machines whose state changed, that it has not seen, or whose entry is
// due for its refresh. A running machine's description (tags, type, price,
// zone) does not change while it runs; the refresh bounds how late anything
// the status call cannot show (an Alibaba lock) is seen.
package desccache

import (
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow"
)

// DefaultRefresh is how often an entry is described in full again, on
// average: each entry's life is drawn from 80–120 % of it, so the full
// describes of machines that started together spread over the sweeps.
const DefaultRefresh = 5 * time.Minute

// Cache holds full descriptions by machine id. The zero value is not
// ready: use New.
type Cache struct {
	refresh time.Duration
	now     func() time.Time

	mu     sync.Mutex
	m      map[string]entry
	pruned time.Time
}

type entry struct {
	m     gpuflow.Machine
	until time.Time
}

// New returns a cache whose entries live about refresh (DefaultRefresh
// when zero), on the clock now (time.Now when nil).
func New(refresh time.Duration, now func() time.Time) *Cache {
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{refresh: refresh, now: now, m: map[string]entry{}}
}

// Get returns id's description while it is fresh.
func (c *Cache) Get(id string) (gpuflow.Machine, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || !now.Before(e.until) {
		return gpuflow.Machine{}, false
	}
	m := e.m
	m.Tags = maps.Clone(m.Tags)
	return m, true
}

// Put keeps m, a full description of a running machine, under id; a
// machine in any other state is forgotten (its next status is described in
// full). Expired entries are dropped now and then, so machines no sweep
// asks about any more do not stay.
func (c *Cache) Put(id string, m gpuflow.Machine) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.State != gpuflow.MachineRunning {
		delete(c.m, id)
		return
	}
	life := time.Duration(float64(c.refresh) * (0.8 + 0.4*rand.Float64())) // #nosec G404 -- spreads refreshes, not a secret
	c.m[id] = entry{m: m, until: now.Add(life)}
	if now.Sub(c.pruned) < c.refresh && !now.Before(c.pruned) {
		return
	}
	c.pruned = now
	for k, e := range c.m {
		if !now.Before(e.until) {
			delete(c.m, k)
		}
	}
}

// Forget drops id (the machine is being terminated, or its state is no
// longer what was kept).
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// Len is how many entries the cache holds, fresh or not.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// FromStatus answers, through found, for the ids whose fresh description
// is kept (under key(id)) and that running, one status call for up to
// batch ids, still reads running. It returns the other ids, to be
// described in full, or running's error.
func (c *Cache) FromStatus(ids []string, key func(string) string, batch int,
	running func(chunk []string) (map[string]bool, error), found func(id string, m gpuflow.Machine)) ([]string, error) {
	var cached, rest []string
	kept := map[string]gpuflow.Machine{}
	for _, id := range ids {
		if m, ok := c.Get(key(id)); ok {
			cached = append(cached, id)
			kept[id] = m
		} else {
			rest = append(rest, id)
		}
	}
	for start := 0; start < len(cached); start += batch {
		chunk := cached[start:min(start+batch, len(cached))]
		up, err := running(chunk)
		if err != nil {
			return nil, err
		}
		for _, id := range chunk {
			if up[id] {
				found(id, kept[id])
			} else {
				// No longer running (or gone): until its full describe
				// says otherwise, nothing kept stands for it.
				c.Forget(key(id))
				rest = append(rest, id)
			}
		}
	}
	return rest, nil
}
