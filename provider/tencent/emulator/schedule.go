package emulator

import (
	"container/heap"
	"time"
)

// The emulator moves an instance on only when something is due for it (a
// phase ends, its ActionTimer fires, a terminated one vanishes): each
// instance has at most one live entry in a queue ordered by time, so a
// tick or a request costs what is due, not a look at every instance. With
// 10,000 instances that is the difference between nothing and 10,000
// checks per tick.

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
func (e *Emulator) nextDue(in *instance) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	switch in.state {
	case StateTerminating, StateShutdown:
		earliest(in.dropAt)
		return next
	case StatePending:
		earliest(in.created.Add(e.timing.Pending))
	case StateStarting:
		earliest(in.created.Add(e.timing.Pending + e.timing.Starting))
	}
	earliest(in.timerAt)
	return next
}

// scheduleLocked (re)queues the instance's next due moment.
func (e *Emulator) scheduleLocked(in *instance) {
	e.dirty = true
	at := e.nextDue(in)
	if at.IsZero() {
		in.wake = 0
		return
	}
	e.wakeSeq++
	in.wake = e.wakeSeq
	heap.Push(&e.wakeups, wakeup{at: at, id: in.id, seq: in.wake})
}

// advanceLocked moves on every instance something is due for.
func (e *Emulator) advanceLocked() {
	now := e.now()
	for len(e.wakeups) > 0 && !now.Before(e.wakeups[0].at) {
		w := heap.Pop(&e.wakeups).(wakeup)
		in := e.instances[w.id]
		if in == nil || in.wake != w.seq {
			continue // gone, or rescheduled since
		}
		in.wake = 0
		e.advanceOneLocked(in, now)
		if e.instances[w.id] != nil {
			e.scheduleLocked(in)
		}
	}
}

// advanceOneLocked moves one instance on to where the clock says it is.
func (e *Emulator) advanceOneLocked(in *instance, now time.Time) {
	if !in.timerAt.IsZero() && !now.Before(in.timerAt) && in.state != StateTerminating && in.state != StateShutdown {
		e.log.Info("action timer fired", "instance_id", in.id)
		in.timerAt = time.Time{}
		e.terminateLocked(in, "")
	}
	for {
		switch in.state {
		case StatePending:
			if at := in.created.Add(e.timing.Pending); !now.Before(at) {
				in.state = StateStarting
				continue
			}
		case StateStarting:
			if at := in.created.Add(e.timing.Pending + e.timing.Starting); !now.Before(at) {
				in.state = StateRunning
				in.latestOpState = "SUCCESS"
				e.startJobLocked(in)
				continue
			}
		case StateTerminating, StateShutdown:
			if !in.dropAt.IsZero() && !now.Before(in.dropAt) {
				delete(e.instances, in.id)
				e.dirty = true
			}
		}
		return
	}
}
