package emulator

import (
	"slices"
	"time"
)

// The emulator moves an instance on only when something is due for it (a
// phase ends, its auto-release time comes, a reclaimed spot instance is
// released): emulate.Wakeups holds each instance's next due moment.

// nextDue returns when the instance next changes by itself; zero for
// never.
func (e *Emulator) nextDue(m *machine) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earliest(m.autoRelease)
	t := e.opts.Timing
	switch {
	case !m.preemptedAt.IsZero():
		earliest(m.preemptedAt.Add(e.opts.RecycleAfter))
	case m.status == statusPending:
		earliest(m.created.Add(t.Pending))
	case m.status == statusStarting:
		earliest(m.created.Add(t.Pending + t.Starting))
	case m.status == statusRunning && !m.jobStarted:
		earliest(m.created)
	}
	return next
}

// schedule (re)queues the instance's next due moment. The caller holds
// e.mu.
func (e *Emulator) schedule(m *machine) {
	e.dirty = true
	at := e.nextDue(m)
	if at.IsZero() {
		m.wake = 0
		return
	}
	m.wake = e.wakeups.Schedule(m.id, at)
}

// inOrder returns the live instances in creation order. The caller holds
// e.mu.
func (e *Emulator) inOrder() []*machine {
	out := make([]*machine, 0, len(e.machines))
	for _, id := range e.order {
		if m, ok := e.machines[id]; ok {
			out = append(out, m)
		}
	}
	return out
}

// byIDs returns the region's instances among ids, in creation order:
// map lookups, not a scan. The caller holds e.mu.
func (e *Emulator) byIDs(region string, ids []string) []*machine {
	out := make([]*machine, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if m := e.machines[id]; m != nil && m.region == region && !seen[id] {
			seen[id] = true
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *machine) int { return int(a.seq - b.seq) })
	return out
}
