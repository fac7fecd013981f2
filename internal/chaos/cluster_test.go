package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// cluster is what the suite needs of the topology under test.
type cluster interface {
	// APIs are the API replicas' base URLs.
	APIs() []string
	// Components are the processes the suite may kill.
	Components() []string
	// Kill sends SIGKILL to a component's process; Restart starts it again.
	Kill(name string) error
	Restart(name string) error
	// RestartPostgres stops PostgreSQL at once (immediate mode: no
	// checkpoint, as a crash) and starts it again.
	RestartPostgres(ctx context.Context) error
	// CutTemporal and CutPostgres make the dependency unreachable to every
	// gpuflow process (new connections refused, open ones dropped) until
	// the matching Restore.
	CutTemporal()
	RestoreTemporal()
	CutPostgres()
	RestorePostgres()
	// ReconcileSweep is how long one reconciler sweep takes to come round.
	ReconcileSweep() time.Duration
	// EmulatorURLs are the cloud emulators' base URLs, by cloud.
	EmulatorURLs() map[string]string
	// Machines returns what the emulators and the local host say: machines
	// created more than once for one attempt, and machines alive now.
	Machines(t *testing.T) (twice, alive []string)
	// KeepLogs copies the processes' logs out of the test's temporary
	// directory and returns where they are.
	KeepLogs(t *testing.T) string
}

// setFaults turns faults on in every emulator: a few lost creates, server
// errors and failing terminates, each a counter that runs down.
func setFaults(t *testing.T, cl cluster) {
	for cloud, f := range map[string]emulate.Faults{
		"runpod":  {CreateLost: 2, ServerErrors: 3, TerminateFailures: 2},
		"tencent": {CreateLost: 2, ServerErrors: 5, TerminateFailures: 2},
		"alibaba": {CreateLost: 2, ServerErrors: 5, TerminateFailures: 2},
	} {
		putFaults(t, cl, cloud, f)
	}
}

func clearFaults(t *testing.T, cl cluster) {
	for cloud := range cl.EmulatorURLs() {
		putFaults(t, cl, cloud, emulate.Faults{})
	}
}

func putFaults(t *testing.T, cl cluster, cloud string, f emulate.Faults) {
	base := cl.EmulatorURLs()[cloud]
	if base == "" {
		t.Fatalf("no emulator for %s", cloud)
	}
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/_emulator/faults", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if ctx.Err() != nil {
			t.Fatalf("faults of %s: %v", cloud, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// emulatorMachines reads an emulator's GET /_emulator/live: the keys
// (ClientToken, pod name) that made more than one machine, and the
// machines alive.
func emulatorMachines(base string) (twice, alive []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rep emulate.LiveReport
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_emulator/live", nil)
		resp, derr := http.DefaultClient.Do(req)
		if derr == nil {
			derr = json.NewDecoder(resp.Body).Decode(&rep)
			resp.Body.Close()
			if derr == nil {
				break
			}
		}
		if ctx.Err() != nil {
			return nil, nil, derr
		}
		time.Sleep(500 * time.Millisecond)
	}
	for key, n := range rep.Creates {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("key %s made %d machines", key, n))
		}
	}
	for _, m := range rep.Machines {
		alive = append(alive, fmt.Sprintf("%s (%s, job %s, created %s)", m.ID, m.State, m.JobID, m.Created.Format(time.TimeOnly)))
	}
	return twice, alive, nil
}
