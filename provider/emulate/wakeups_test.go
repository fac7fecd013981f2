package emulate

import (
	"slices"
	"testing"
	"time"
)

func TestWakeups(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var w Wakeups
	live := map[string]uint64{}
	live["b"] = w.Schedule("b", t0.Add(2*time.Second))
	live["a"] = w.Schedule("a", t0.Add(time.Second))
	live["c"] = w.Schedule("c", t0.Add(time.Second))   // superseded below
	live["c"] = w.Schedule("c", t0.Add(5*time.Second)) // its live entry
	live["d"] = w.Schedule("d", t0.Add(time.Hour))

	var got []string
	take := func(now time.Time) {
		w.Due(now, func(id string, ticket uint64) {
			if live[id] != ticket {
				return
			}
			got = append(got, id)
			if id == "a" && len(got) == 1 { // a machine that moves on and is due again before c
				live["a"] = w.Schedule("a", t0.Add(3*time.Second))
				delete(live, "b") // b was released meanwhile
			}
		})
	}
	take(t0)
	if len(got) != 0 {
		t.Fatalf("nothing is due yet, got %v", got)
	}
	take(t0.Add(5 * time.Second))
	if want := []string{"a", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("due at +5s: %v, want %v (earliest first; superseded and released entries skipped; a rescheduled one taken again)", got, want)
	}
	if live["a"] == 0 || live["a"] == live["c"] {
		t.Fatalf("tickets should be distinct and non-zero: %v", live)
	}
}
