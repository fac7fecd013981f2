package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

func mustEvents(t *testing.T, db *DB, jobID string) []gpuflow.Event {
	t.Helper()
	evs, err := db.Events(testCtx(t), jobID)
	if err != nil {
		t.Fatalf("Events(%s): %v", jobID, err)
	}
	return evs
}

func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

func TestApplyUpdate(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	owner := newID()
	j := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = owner }))
	t0 := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

	// seq 1: scheduled on a provider.
	ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{
		JobID: j.ID, Seq: 1, Type: gpuflow.EventStatus, Status: gpuflow.StatusProvisioning,
		Provider: ptr("runpod"), Price: ptr(1.5),
		Attempts: []gpuflow.Attempt{{Provider: "runpod", StartedAt: t0}},
		Data:     json.RawMessage(`{"reason": "cheapest"}`), At: t0,
	})
	if err != nil {
		t.Fatalf("ApplyUpdate seq 1: %v", err)
	}
	if ev == nil || ev.ID <= 0 || ev.JobID != j.ID || ev.JobSeq != 1 || ev.Type != gpuflow.EventStatus ||
		ev.Status != gpuflow.StatusProvisioning || ev.Provider != "runpod" || ev.OwnerID != owner ||
		!ev.At.Equal(t0) || !jsonEqual(ev.Data, []byte(`{"reason":"cheapest"}`)) {
		t.Fatalf("event = %+v", ev)
	}
	got := mustJob(t, db, j.ID)
	if got.Status != gpuflow.StatusProvisioning || got.Provider != "runpod" || got.PricePerHour != 1.5 ||
		got.LastSeq != 1 || !got.UpdatedAt.Equal(t0) || len(got.Attempts) != 1 || got.StartedAt != nil || got.FinishedAt != nil {
		t.Fatalf("job after seq 1 = %+v", got)
	}
	evs := mustEvents(t, db, j.ID)
	if len(evs) != 1 || evs[0].ID != ev.ID || evs[0].OwnerID != owner || evs[0].Provider != "runpod" {
		t.Fatalf("Events = %+v, want the one event %+v", evs, ev)
	}

	t.Run("SameSeqIsNoop", func(t *testing.T) {
		before := mustJob(t, db, j.ID)
		// The same change (type, status, data), made at another time.
		again, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 1, Type: gpuflow.EventStatus,
			Status: gpuflow.StatusProvisioning, Provider: ptr("other"), Data: json.RawMessage(`{"reason":"cheapest"}`), At: t0.Add(time.Hour)})
		if err != nil || again != nil {
			t.Fatalf("replayed seq 1 = %+v, %v; want nil, nil", again, err)
		}
		if after := mustJob(t, db, j.ID); after.Status != before.Status || after.Provider != before.Provider ||
			!after.UpdatedAt.Equal(before.UpdatedAt) || after.LastSeq != 1 {
			t.Errorf("replay changed the job: %+v", after)
		}
		if n := len(mustEvents(t, db, j.ID)); n != 1 {
			t.Errorf("%d events after replay, want 1", n)
		}
	})

	// seq 2: running; seq 3 a progress event that changes no field.
	t1 := t0.Add(time.Minute)
	if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 2, Type: gpuflow.EventStatus,
		Status: gpuflow.StatusRunning, MachineID: ptr("pod-7"), Started: true, At: t1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 3, Type: gpuflow.EventProgress,
		Started: true, Data: json.RawMessage(`{"pct":50}`), At: t1.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got = mustJob(t, db, j.ID)
	if got.Status != gpuflow.StatusRunning || got.MachineID != "pod-7" || got.StartedAt == nil || !got.StartedAt.Equal(t1) ||
		got.Provider != "runpod" || got.LastSeq != 3 {
		t.Fatalf("job after seq 3 = %+v", got)
	}

	t.Run("LowerSeqIsNoop", func(t *testing.T) {
		ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 2, Type: gpuflow.EventStatus, Status: gpuflow.StatusRunning})
		if err != nil || ev != nil {
			t.Fatalf("seq 2 after 3 = %+v, %v; want nil, nil", ev, err)
		}
		if s := mustJob(t, db, j.ID).Status; s != gpuflow.StatusRunning {
			t.Errorf("status moved back to %s", s)
		}
	})

	// Another change under a seq the job holds (a lost workflow task
	// wrote the held one): ECONFLICT with the last seq, nothing changed.
	t.Run("TakenSeqConflicts", func(t *testing.T) {
		for name, u := range map[string]gpuflow.JobUpdate{
			"status": {JobID: j.ID, Seq: 2, Type: gpuflow.EventStatus, Status: gpuflow.StatusQueued},
			"type":   {JobID: j.ID, Seq: 2, Type: gpuflow.EventProgress, Status: gpuflow.StatusRunning},
			"data":   {JobID: j.ID, Seq: 3, Type: gpuflow.EventProgress, Data: json.RawMessage(`{"pct":51}`)},
			"nodata": {JobID: j.ID, Seq: 3, Type: gpuflow.EventProgress},
		} {
			ev, err := db.ApplyUpdate(ctx, u)
			var taken *gpuflow.SeqTaken
			if ev != nil || gpuflow.ErrorCode(err) != gpuflow.ECONFLICT || !errors.As(err, &taken) ||
				taken.Seq != u.Seq || taken.LastSeq != 3 || taken.JobID != j.ID {
				t.Fatalf("%s: ApplyUpdate = %+v, %v; want ECONFLICT by SeqTaken{seq %d, last 3}", name, ev, err, u.Seq)
			}
		}
		// The same data, written otherwise, is the same change.
		if ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 3, Type: gpuflow.EventProgress,
			Data: json.RawMessage(`{ "pct": 50 }`)}); err != nil || ev != nil {
			t.Fatalf("seq 3 replayed = %+v, %v", ev, err)
		}
		if got := mustJob(t, db, j.ID); got.Status != gpuflow.StatusRunning || got.LastSeq != 3 {
			t.Errorf("a refused change moved the job: %+v", got)
		}
		if n := len(mustEvents(t, db, j.ID)); n != 3 {
			t.Errorf("%d events, want 3", n)
		}
	})

	// seq 4: terminal.
	t2 := t1.Add(time.Hour)
	if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 4, Type: gpuflow.EventStatus,
		Status: gpuflow.StatusFailed, ExitCode: ptr(137), Error: ptr("killed"), Provider: ptr(""), At: t2}); err != nil {
		t.Fatal(err)
	}
	got = mustJob(t, db, j.ID)
	if got.Status != gpuflow.StatusFailed || got.FinishedAt == nil || !got.FinishedAt.Equal(t2) ||
		got.ExitCode == nil || *got.ExitCode != 137 || got.Error != "killed" || got.Provider != "" {
		t.Fatalf("job after terminal seq 4 = %+v", got)
	}
	// A later terminal update keeps the first finish time.
	if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 5, Type: gpuflow.EventStatus,
		Status: gpuflow.StatusFailed, At: t2.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := mustJob(t, db, j.ID); !got.FinishedAt.Equal(t2) {
		t.Errorf("finished_at moved to %v", got.FinishedAt)
	}

	evs = mustEvents(t, db, j.ID)
	var seqs []int
	for _, e := range evs {
		seqs = append(seqs, e.JobSeq)
	}
	if !slices.Equal(seqs, []int{1, 2, 3, 4, 5}) || evs[2].Status != "" || !jsonEqual(evs[2].Data, []byte(`{"pct":50}`)) {
		t.Errorf("events = %+v", evs)
	}

	t.Run("ZeroAtIsNow", func(t *testing.T) {
		now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		db := *db
		db.Now = func() time.Time { return now }
		ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: 6, Type: gpuflow.EventLog})
		if err != nil || ev == nil || !ev.At.Equal(now) {
			t.Fatalf("ApplyUpdate = %+v, %v; want At %v", ev, err, now)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []string{newID(), "nope"} {
			_, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: id, Seq: 1, Type: gpuflow.EventStatus})
			wantCode(t, "job "+id, err, gpuflow.ENOTFOUND)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		for name, u := range map[string]gpuflow.JobUpdate{
			"seq 0":     {JobID: j.ID, Seq: 0, Type: gpuflow.EventStatus},
			"no type":   {JobID: j.ID, Seq: 10},
			"status":    {JobID: j.ID, Seq: 10, Type: gpuflow.EventStatus, Status: "paused"},
			"data":      {JobID: j.ID, Seq: 10, Type: gpuflow.EventStatus, Data: json.RawMessage(`{`)},
			"neg price": {JobID: j.ID, Seq: 10, Type: gpuflow.EventStatus, Price: ptr(-1.0)},
		} {
			_, err := db.ApplyUpdate(ctx, u)
			wantCode(t, name, err, gpuflow.EINVALID)
		}
		if got := mustJob(t, db, j.ID); got.LastSeq != 6 {
			t.Errorf("rejected updates moved last_seq to %d", got.LastSeq)
		}
	})
}

// Updates of one job racing, each seq sent twice: each seq applies at most
// once, the highest always, and events stay in seq order.
func TestApplyUpdateConcurrent(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	j := mustCreate(t, db, newJob())
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []int
	)
	for seq := 1; seq <= n; seq++ {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: j.ID, Seq: seq, Type: gpuflow.EventProgress,
					Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq))})
				if err != nil {
					t.Errorf("ApplyUpdate seq %d: %v", seq, err)
					return
				}
				if ev != nil {
					mu.Lock()
					applied = append(applied, seq)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()

	evs := mustEvents(t, db, j.ID)
	if len(evs) != len(applied) {
		t.Errorf("%d events stored, %d updates reported applied", len(evs), len(applied))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].JobSeq <= evs[i-1].JobSeq || evs[i].ID <= evs[i-1].ID {
			t.Errorf("events out of order: %+v then %+v", evs[i-1], evs[i])
		}
	}
	if len(evs) == 0 || evs[len(evs)-1].JobSeq != n {
		t.Errorf("seq %d not applied; events %+v", n, evs)
	}
	if got := mustJob(t, db, j.ID); got.LastSeq != n {
		t.Errorf("last_seq = %d, want %d", got.LastSeq, n)
	}
}

// A reader that follows the feed by the last id it saw, while writers add
// events to many jobs, ends up with every event exactly once.
func TestEventsAfterFollowerMissesNone(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	const writers, updates = 4, 25
	jobs := make([]string, writers)
	for i := range jobs {
		jobs[i] = mustCreate(t, db, newJob()).ID
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= updates; seq++ {
				if _, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: id, Seq: seq, Type: gpuflow.EventProgress}); err != nil {
					t.Errorf("ApplyUpdate: %v", err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	seen := map[int64]int{}
	var last int64
	follow := func() {
		evs, err := db.EventsAfter(ctx, last, "", 7)
		if err != nil {
			t.Fatalf("EventsAfter: %v", err)
		}
		for _, e := range evs {
			seen[e.ID]++
			last = e.ID
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	for before := -1; before != len(seen); {
		before = len(seen)
		follow()
	}
	all, err := db.EventsAfter(ctx, 0, "", MaxEventsLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*updates || len(seen) != len(all) {
		t.Errorf("follower saw %d events, feed has %d, want %d", len(seen), len(all), writers*updates)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d seen %d times", id, n)
		}
	}
}

func TestEventsAfter(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := testCtx(t)
	alice, bob := newID(), newID()
	ja := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = alice })).ID
	jb := mustCreate(t, db, newJob(func(j *gpuflow.Job) { j.OwnerID = bob })).ID
	var all []int64
	for seq := 1; seq <= 3; seq++ {
		for _, id := range []string{ja, jb} {
			ev, err := db.ApplyUpdate(ctx, gpuflow.JobUpdate{JobID: id, Seq: seq, Type: gpuflow.EventStatus})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, ev.ID)
		}
	}
	eventIDs := func(evs []gpuflow.Event) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}

	got, err := db.EventsAfter(ctx, 0, "", 0)
	if err != nil || !slices.Equal(eventIDs(got), all) {
		t.Errorf("EventsAfter(0) = %v, %v; want %v", eventIDs(got), err, all)
	}
	got, err = db.EventsAfter(ctx, all[1], "", 2)
	if err != nil || !slices.Equal(eventIDs(got), all[2:4]) {
		t.Errorf("EventsAfter(%d, limit 2) = %v, %v; want %v", all[1], eventIDs(got), err, all[2:4])
	}
	got, err = db.EventsAfter(ctx, all[0], alice, 0)
	if err != nil || !slices.Equal(eventIDs(got), []int64{all[2], all[4]}) {
		t.Errorf("EventsAfter(alice) = %v, %v", eventIDs(got), err)
	}
	for _, e := range got {
		if e.OwnerID != alice || e.JobID != ja {
			t.Errorf("alice's feed has %+v", e)
		}
	}
	if got, err := db.EventsAfter(ctx, all[5], "", 0); err != nil || len(got) != 0 {
		t.Errorf("EventsAfter(last) = %v, %v; want none", got, err)
	}
	_, err = db.EventsAfter(ctx, 0, "alice", 0)
	wantCode(t, "bad owner", err, gpuflow.EINVALID)

	ev, err := db.EventByID(ctx, all[3])
	if err != nil || ev.JobID != jb || ev.JobSeq != 2 || ev.OwnerID != bob {
		t.Errorf("EventByID = %+v, %v", ev, err)
	}
	_, err = db.EventByID(ctx, all[5]+100)
	wantCode(t, "EventByID(unknown)", err, gpuflow.ENOTFOUND)

	t.Run("EventsOfJob", func(t *testing.T) {
		empty := mustCreate(t, db, newJob()).ID
		if evs := mustEvents(t, db, empty); evs == nil || len(evs) != 0 {
			t.Errorf("Events of a job without events = %#v, want empty", evs)
		}
		for _, id := range []string{newID(), "nope"} {
			_, err := db.Events(ctx, id)
			wantCode(t, "Events("+id+")", err, gpuflow.ENOTFOUND)
		}
	})
}
