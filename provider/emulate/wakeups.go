package emulate

import (
	"container/heap"
	"time"
)

// Wakeups is a queue of the moments an emulator's machines are next due to
// change by themselves (a phase ends, a timer fires, a released one
// vanishes), earliest first, so that a tick or a request costs what is
// due, not a look at every machine: with 10,000 machines that is the
// difference between nothing and 10,000 checks a tick.
//
// A machine has at most one live entry: Schedule returns the entry's
// ticket, the machine keeps the latest, and an entry whose ticket is no
// longer its machine's was superseded. The zero value is an empty queue.
// It is not safe for concurrent use: the emulator's lock guards it.
type Wakeups struct {
	q   wakeupHeap
	seq uint64
}

// Schedule queues id's next due moment and returns its ticket (never 0).
func (w *Wakeups) Schedule(id string, at time.Time) uint64 {
	w.seq++
	heap.Push(&w.q, wakeup{at: at, id: id, seq: w.seq})
	return w.seq
}

// Due takes every entry due at now off the queue, earliest first, and
// calls f with its machine and ticket; f may Schedule again.
func (w *Wakeups) Due(now time.Time, f func(id string, ticket uint64)) {
	for len(w.q) > 0 && !now.Before(w.q[0].at) {
		e := heap.Pop(&w.q).(wakeup)
		f(e.id, e.seq)
	}
}

type wakeup struct {
	at  time.Time
	id  string
	seq uint64
}

type wakeupHeap []wakeup

func (q wakeupHeap) Len() int           { return len(q) }
func (q wakeupHeap) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q wakeupHeap) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *wakeupHeap) Push(x any)        { *q = append(*q, x.(wakeup)) }
func (q *wakeupHeap) Pop() any {
	old := *q
	w := old[len(old)-1]
	*q = old[:len(old)-1]
	return w
}
