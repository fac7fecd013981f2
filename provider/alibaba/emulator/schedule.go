package emulator

import (
	"container/heap"
	"slices"
	"time"
)

// The emulator moves an instance on only when something is due for it (a
// phase ends, its auto-release time comes, a reclaimed spot instance is
// released): each instance has at most one live entry in a queue ordered
// by time, so a tick or a request costs what is due, not a look at every
// instance.

// wakeup is an instance's next due moment; seq tells a live entry from
// one superseded by a later schedule.
type wakeup struct {
	at  time.Time
	id  string
	seq uint64
}

type wakeups []wakeup

func (q wakeups) Len() int           { return len(q) }
func (q wakeups) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q wakeups) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *wakeups) Push(x any)        { *q = append(*q, x.(wakeup)) }
func (q *wakeups) Pop() any {
	old := *q
	w := old[len(old)-1]
	*q = old[:len(old)-1]
	return w
}

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
	e.wakeSeq++
	m.wake = e.wakeSeq
	heap.Push(&e.wakeups, wakeup{at: at, id: m.id, seq: m.wake})
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
