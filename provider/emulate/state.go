package emulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gpuflow/gpuflow/provider/agentscript"
)

// Persisted state. An emulator given a state file (each emulator's
// Options.StateFile) writes everything the cloud would keep about its
// machines there on every change that matters, before it answers the call
// that made the change, and restores it when it starts: a process killed
// at any instant loses no create or terminate it acknowledged. The machines
// keep their ids and states and their jobs go on from their original start
// time.
//
// The modelling compromise: on a real cloud the machine's agent keeps
// running while the API frontend is down; here the emulated agent lives in
// the emulator's process, so its reports pause while the process is down
// and resume after the restart (a job whose end passed meanwhile ends at
// once and reports then). The real agent retries with backoff while the
// API is unreachable, so the API sees the same thing either way: late
// reports.

// SaveFile writes data to path durably: a temporary file beside it,
// fsynced, renamed over path, and the directory fsynced, so that a crash
// leaves either the old file or the new one.
func SaveFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	d, err := os.Open(dir) // #nosec G304 -- the directory of the emulator's own state file
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SaveJSON writes v as JSON to path with SaveFile.
func SaveJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return SaveFile(path, b)
}

// LoadJSON reads path into v; it reports false, and no error, when there
// is no file yet.
func LoadJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the emulator's own state file, named by its operator
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("emulator state %s: %w", path, err)
	}
	return true, nil
}

// JobState is an emulated job as an emulator persists it: its plan, when
// it began, whether its command ended and with what code, and whether the
// API acknowledged its finished report.
type JobState struct {
	Plan     JobPlan   `json:"plan"`
	Started  time.Time `json:"started"`
	Ended    bool      `json:"ended,omitempty"`
	ExitCode int       `json:"exit_code"`
	Acked    bool      `json:"acked,omitempty"`
}

// JobHooks tell an emulator when a job's state changes, so that it
// persists it. Nil hooks are skipped.
type JobHooks struct {
	// Ended: the job's command exited with code (its finished report is
	// still to be sent).
	Ended func(code int)
	// Acked: the API acknowledged the finished report.
	Acked func()
	// Halt: the job's end was not acknowledged within the report grace
	// (or was refused for good), so the agent stops its machine, as the
	// real agent powers its VM off or stops its pod.
	Halt func()
}

// PlayMachineJob starts, on wg, the job of a VM whose boot script (the
// user data gpuflow's agentscript wrote) is script: its agent reports where
// the script says, through client. st is the job as kept; elapsed is how
// long ago it began (0 for a job starting now). update applies a change of
// the job's state under the emulator's lock and persists it: the job's end
// and the API's acknowledgement go through it. powerOff is the guest
// powering the VM off: the agent does it when the job's end was not
// acknowledged within its report grace. The job stops when ctx ends;
// cancel is called when it is over.
func PlayMachineJob(ctx context.Context, cancel context.CancelFunc, wg *sync.WaitGroup, script string, client *http.Client,
	st JobState, elapsed time.Duration, update func(func(*JobState)), powerOff func()) {
	env := agentscript.Env(script)
	agent := AgentFromEnv(env, client)
	hooks := JobHooks{
		Ended: func(code int) { update(func(j *JobState) { j.Ended, j.ExitCode = true, code }) },
		Acked: func() { update(func(j *JobState) { j.Acked = true }) },
		Halt:  powerOff,
	}
	wg.Go(func() {
		defer cancel()
		ResumeJob(ctx, agent, st, env[agentscript.EnvJobID], elapsed, hooks)
	})
}

// ResumeJob plays job st, begun elapsed ago (0 for a job starting now),
// and reports it as RunJob does: a job that had not ended goes on from
// where its timeline is (one whose end has passed ends at once); one that
// ended reports its exit code unless that was acknowledged. Its output is
// the job's own, whole: the agent ships it again from offset 0, which the
// API stores once.
func ResumeJob(ctx context.Context, a Agent, st JobState, jobID string, elapsed time.Duration, h JobHooks) {
	if st.Acked {
		return
	}
	out := &Spool{}
	BeginJob(out, jobID)
	if st.Ended {
		EndJob(out, jobID, st.ExitCode)
	}
	r := StartReporter(ctx, a, out)
	code := st.ExitCode
	if !st.Ended {
		if !PlayJobFrom(ctx, st.Plan, jobID, out, r.Progress, elapsed) {
			r.Stop()
			return
		}
		code = st.Plan.ExitCode
		if h.Ended != nil {
			h.Ended(code)
		}
	}
	switch err := r.Finish(code); {
	case err == nil:
		if h.Acked != nil {
			h.Acked()
		}
	case ctx.Err() == nil && h.Halt != nil:
		h.Halt()
	}
}

// NewSpool returns a spool holding data, none of it acknowledged (a
// restored agent ships it again from offset 0).
func NewSpool(data []byte) *Spool {
	return &Spool{data: data}
}

// LiveMachine is one machine an emulator holds, as GET /_emulator/live
// lists it.
type LiveMachine struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	// JobID is the gpuflow job the machine runs (its tag, or its env on
	// RunPod); Key is the create's idempotency record: the ClientToken on
	// Tencent and Alibaba, the pod name on RunPod.
	JobID string            `json:"job_id,omitempty"`
	Key   string            `json:"key,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
}

// LiveReport is the answer of GET /_emulator/live: the ids of the live
// machines (not terminated or being released), the machines, and how many
// machines each idempotency key (LiveMachine.Key) has ever created,
// persisted with the machines: a create repeated with the same key that
// answers the first one's machine does not count, so a count above one
// means one attempt got two machines.
type LiveReport struct {
	Instances []string       `json:"instances"`
	Machines  []LiveMachine  `json:"machines"`
	Creates   map[string]int `json:"creates"`
}

// LiveHandler serves GET /_emulator/live from report.
func LiveHandler(report func() LiveReport) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		rep := report()
		if rep.Instances == nil {
			rep.Instances = []string{}
		}
		if rep.Machines == nil {
			rep.Machines = []LiveMachine{}
		}
		if rep.Creates == nil {
			rep.Creates = map[string]int{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}
