package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gpuflow/gpuflow/internal/app"
	"github.com/gpuflow/gpuflow/internal/devstack"
)

// wsEvent is the part of a feed message the test checks.
type wsEvent struct {
	Type   string `json:"type"`
	Seq    int64  `json:"seq"`
	TaskID string `json:"task_id"`
	Status string `json:"status"`
}

func dialFeed(t *testing.T, base, token, query string) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/api/gpu/ws?token=" + token + query
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", base, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readStatuses reads the job's status events until it reaches final.
func readStatuses(t *testing.T, conn *websocket.Conn, taskID, final string) ([]string, []int64) {
	t.Helper()
	var statuses []string
	var seqs []int64
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v (so far %v)", err, statuses)
		}
		var ev wsEvent
		if json.Unmarshal(msg, &ev) != nil || ev.TaskID != taskID {
			continue
		}
		if len(seqs) > 0 && ev.Seq <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d", ev.Seq, seqs[len(seqs)-1])
		}
		seqs = append(seqs, ev.Seq)
		if ev.Type == "job.status" && ev.Status != "" {
			statuses = append(statuses, ev.Status)
			if ev.Status == final {
				return statuses, seqs
			}
		}
	}
}

// TestFeedAcrossReplicas: two API servers on one database, a job run by the
// worker: clients of both receive every state change in order; a client
// that reconnects with since mid-job ends with the complete sequence, and
// another user's client receives nothing of it.
func TestFeedAcrossReplicas(t *testing.T) {
	cfg := testConfig(t)
	s := startStack(t, cfg, devstack.Options{InMemoryTemporal: true, NoUI: true, NoEmulators: true})
	// A second API replica: same database and Temporal, its own listener.
	second := app.NewAPI(s.Config, app.Deps{DB: s.DB, Temporal: s.Client, Providers: s.Providers, Logger: s.Logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = second.Serve(ln) }()
	t.Cleanup(func() { _ = second.Shutdown(t.Context()) })
	base2 := "http://" + ln.Addr().String()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get(base2 + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second API replica did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c := newAPI(t, s.APIURL())
	other := newAPI(t, s.APIURL())
	a1 := dialFeed(t, s.APIURL(), c.token, "")
	a2 := dialFeed(t, base2, c.token, "")
	spy := dialFeed(t, base2, other.token, "")
	time.Sleep(200 * time.Millisecond) // both listeners subscribed

	id := c.submit(map[string]any{"command": []string{"sh", "-c", "sleep 1; echo done"}, "gpu_count": 0})
	want := "scheduling,provisioning,running,succeeded"
	st1, seq1 := readStatuses(t, a1, id, "succeeded")
	st2, seq2 := readStatuses(t, a2, id, "succeeded")
	if strings.Join(st1, ",") != want || strings.Join(st2, ",") != want {
		t.Fatalf("replica 1 saw %v, replica 2 saw %v; want %s", st1, st2, want)
	}
	if len(seq1) != len(seq2) || seq1[len(seq1)-1] != seq2[len(seq2)-1] {
		t.Fatalf("the replicas delivered different events: %v vs %v", seq1, seq2)
	}

	// Reconnect with since= from the first event: the rest comes back.
	again := dialFeed(t, base2, c.token, "&since="+itoa(seq1[0]))
	st3, seq3 := readStatuses(t, again, id, "succeeded")
	if strings.Join(st3, ",") != strings.Join(st1[1:], ",") || len(seq3) != len(seq1)-1 {
		t.Fatalf("after since=%d: %v %v; first saw %v %v", seq1[0], st3, seq3, st1, seq1)
	}

	// The other user saw nothing of the job.
	_ = spy.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		_, msg, err := spy.ReadMessage()
		if err != nil {
			break
		}
		if strings.Contains(string(msg), id) {
			t.Fatalf("another user's client received %s", msg)
		}
	}
	if code, _ := other.do(http.MethodGet, "/api/gpu/tasks/"+id, nil); code != http.StatusNotFound {
		t.Fatalf("another user reads the job: %d", code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
