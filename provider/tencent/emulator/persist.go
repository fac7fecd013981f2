package emulator

import (
	"slices"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Persisted state (Options.StateFile): what the cloud keeps about every
// instance, the ClientToken records, and each instance's emulated job,
// written after every call or clock step that changed them and before the
// call is answered.

// stateVersion is the layout of the state file.
const stateVersion = 1

type savedState struct {
	Version   int                 `json:"version"`
	Seq       int                 `json:"seq"`
	Instances []savedInstance     `json:"instances"`
	Tokens    map[string][]string `json:"tokens"`
	Creates   map[string]int      `json:"creates"`
}

type savedInstance struct {
	ID            string            `json:"id"`
	UUID          string            `json:"uuid"`
	Seq           int               `json:"seq"`
	Region        string            `json:"region"`
	Zone          string            `json:"zone"`
	Type          instanceType      `json:"type"`
	Charge        string            `json:"charge"`
	State         string            `json:"state"`
	Name          string            `json:"name"`
	ImageID       string            `json:"image_id"`
	DiskType      string            `json:"disk_type"`
	DiskGB        int64             `json:"disk_gb"`
	Tags          [][2]string       `json:"tags"`
	UserData      string            `json:"user_data"`
	PrivateIP     string            `json:"private_ip"`
	PublicIP      bool              `json:"public_ip"`
	Created       time.Time         `json:"created"`
	TimerAt       time.Time         `json:"timer_at"`
	TimerID       string            `json:"timer_id"`
	DropAt        time.Time         `json:"drop_at"`
	Reclaimed     bool              `json:"reclaimed"`
	LatestOp      string            `json:"latest_op"`
	LatestOpState string            `json:"latest_op_state"`
	LatestOpReq   string            `json:"latest_op_req"`
	ClientToken   string            `json:"client_token"`
	Job           *emulate.JobState `json:"job,omitempty"`
}

// flushLocked persists the state if it changed. Once Close began nothing
// is written: a closed emulator leaves its file as a killed one would.
func (e *Emulator) flushLocked() {
	if !e.dirty || e.stateFile == "" || e.closed {
		return
	}
	st := savedState{Version: stateVersion, Seq: e.seq, Tokens: e.tokens, Creates: e.creates}
	for _, in := range e.instances {
		si := savedInstance{
			ID: in.id, UUID: in.uuid, Seq: in.seq, Region: in.region, Zone: in.zone, Type: in.typ, Charge: in.charge,
			State: in.state, Name: in.name, ImageID: in.imageID, DiskType: in.diskType, DiskGB: in.diskGB,
			Tags: in.tags, UserData: in.userData, PrivateIP: in.privateIP, PublicIP: in.publicIP, Created: in.created,
			TimerAt: in.timerAt, TimerID: in.timerID, DropAt: in.dropAt, Reclaimed: in.reclaimed,
			LatestOp: in.latestOp, LatestOpState: in.latestOpState, LatestOpReq: in.latestOpReq,
			ClientToken: in.clientToken, Job: in.job,
		}
		st.Instances = append(st.Instances, si)
	}
	slices.SortFunc(st.Instances, func(a, b savedInstance) int { return a.Seq - b.Seq })
	if err := emulate.SaveJSON(e.stateFile, st); err != nil {
		e.log.Error("persisting the emulator state failed", "file", e.stateFile, "err", err)
		return
	}
	e.dirty = false
}

// restore loads the state file, if any: the instances come back with
// their ids and states, running jobs go on from their start time, and
// the clock catches up with what came due while the emulator was down.
func (e *Emulator) restore() {
	if e.stateFile == "" {
		return
	}
	var st savedState
	ok, err := emulate.LoadJSON(e.stateFile, &st)
	if err != nil {
		e.log.Error("the emulator state could not be read; starting empty", "file", e.stateFile, "err", err)
		return
	}
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq = st.Seq
	if st.Tokens != nil {
		e.tokens = st.Tokens
	}
	if st.Creates != nil {
		e.creates = st.Creates
	}
	for _, si := range st.Instances {
		in := &instance{
			id: si.ID, uuid: si.UUID, seq: si.Seq, region: si.Region, zone: si.Zone, typ: si.Type, charge: si.Charge,
			state: si.State, name: si.Name, imageID: si.ImageID, diskType: si.DiskType, diskGB: si.DiskGB,
			tags: si.Tags, userData: si.UserData, privateIP: si.PrivateIP, publicIP: si.PublicIP, created: si.Created,
			timerAt: si.TimerAt, timerID: si.TimerID, dropAt: si.DropAt, reclaimed: si.Reclaimed,
			latestOp: si.LatestOp, latestOpState: si.LatestOpState, latestOpReq: si.LatestOpReq,
			clientToken: si.ClientToken, job: si.Job,
		}
		e.instances[in.id] = in
		e.scheduleLocked(in)
	}
	e.catchUp = true
	for _, in := range e.instances {
		if in.state == StateRunning {
			e.playJobLocked(in, true)
		}
	}
	e.advanceLocked()
	e.catchUp = false
	e.log.Info("emulator state restored", "file", e.stateFile, "instances", len(e.instances))
	e.flushLocked()
}

// LiveReport is what GET /_emulator/live answers: the live instances
// (Live), with their names, states and tags, and the instances created
// per ClientToken.
func (e *Emulator) LiveReport() emulate.LiveReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flushLocked()
	e.advanceLocked()
	rep := emulate.LiveReport{Creates: make(map[string]int, len(e.creates))}
	for k, v := range e.creates {
		rep.Creates[k] = v
	}
	for _, in := range e.instances {
		if in.state == StateTerminating || in.state == StateShutdown {
			continue
		}
		m := emulate.LiveMachine{ID: in.id, Name: in.name, State: in.state, Created: in.created, Key: in.clientToken,
			Tags: map[string]string{}}
		for _, t := range in.tags {
			m.Tags[t[0]] = t[1]
		}
		m.JobID = m.Tags[gpuflow.TagJob]
		rep.Machines = append(rep.Machines, m)
	}
	slices.SortFunc(rep.Machines, func(a, b emulate.LiveMachine) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range rep.Machines {
		rep.Instances = append(rep.Instances, m.ID)
	}
	return rep
}

// JobAcked reports whether the API acknowledged the finished report of
// the job on instance machineID (which may carry a "<region>:" prefix).
func (e *Emulator) JobAcked(machineID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.instances[instanceID(machineID)]
	return in != nil && in.job != nil && in.job.Acked
}
