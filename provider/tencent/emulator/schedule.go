package emulator

import "time"

// The emulator moves an instance on only when something is due for it (a
// phase ends, its ActionTimer fires, a terminated one vanishes):
// emulate.Wakeups holds each instance's next due moment.

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
	in.wake = e.wakeups.Schedule(in.id, at)
}

// advanceLocked moves on every instance something is due for.
func (e *Emulator) advanceLocked() {
	now := e.now()
	e.wakeups.Due(now, func(id string, ticket uint64) {
		in := e.instances[id]
		if in == nil || in.wake != ticket {
			return // gone, or rescheduled since
		}
		in.wake = 0
		e.advanceOneLocked(in, now)
		if e.instances[id] != nil {
			e.scheduleLocked(in)
		}
	})
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
