package emulator

import (
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
	Version  int                   `json:"version"`
	Seq      int64                 `json:"seq"`
	Machines []savedMachine        `json:"machines"` // in creation order
	Tokens   map[string]savedToken `json:"tokens"`
	Creates  map[string]int        `json:"creates"`
}

type savedToken struct {
	Fingerprint string   `json:"fingerprint"`
	IDs         []string `json:"ids"`
}

type savedMachine struct {
	ID                   string            `json:"id"`
	Name                 string            `json:"name"`
	HostName             string            `json:"host_name"`
	Description          string            `json:"description"`
	Region               string            `json:"region"`
	Zone                 string            `json:"zone"`
	Type                 InstanceType      `json:"type"`
	ImageID              string            `json:"image_id"`
	InstanceChargeType   string            `json:"instance_charge_type"`
	Spot                 bool              `json:"spot"`
	SpotStrategy         string            `json:"spot_strategy"`
	SpotPriceLimit       float64           `json:"spot_price_limit"`
	InterruptionBehavior string            `json:"interruption_behavior"`
	SecurityGroup        string            `json:"security_group"`
	VSwitch              string            `json:"vswitch"`
	KeyPair              string            `json:"key_pair"`
	BandwidthOut         int               `json:"bandwidth_out"`
	PrivateIP            string            `json:"private_ip"`
	PublicIP             string            `json:"public_ip"`
	Tags                 []tagJSON         `json:"tags"`
	Script               string            `json:"script"`
	Created              time.Time         `json:"created"`
	Started              time.Time         `json:"started"`
	AutoRelease          time.Time         `json:"auto_release"`
	Status               string            `json:"status"`
	StoppedMode          string            `json:"stopped_mode"`
	Locks                []lockReason      `json:"locks"`
	PreemptedAt          time.Time         `json:"preempted_at"`
	JobStarted           bool              `json:"job_started"`
	ClientToken          string            `json:"client_token"`
	Job                  *emulate.JobState `json:"job,omitempty"`
	Seq                  int64             `json:"seq"`
}

// flush persists the state if it changed. Once Close began nothing is
// written: a closed emulator leaves its file as a killed one would. The
// caller holds e.mu.
func (e *Emulator) flush() {
	if !e.dirty || e.opts.StateFile == "" || e.closed {
		return
	}
	st := savedState{Version: stateVersion, Seq: e.seq, Tokens: make(map[string]savedToken, len(e.tokens)), Creates: e.creates}
	for k, t := range e.tokens {
		st.Tokens[k] = savedToken{Fingerprint: t.fingerprint, IDs: t.ids}
	}
	for _, m := range e.inOrder() {
		st.Machines = append(st.Machines, savedMachine{
			ID: m.id, Name: m.name, HostName: m.hostName, Description: m.description, Region: m.region, Zone: m.zone,
			Type: m.typ, ImageID: m.imageID, InstanceChargeType: m.instanceChargeType, Spot: m.spot,
			SpotStrategy: m.spotStrategy, SpotPriceLimit: m.spotPriceLimit, InterruptionBehavior: m.interruptionBehavior,
			SecurityGroup: m.securityGroup, VSwitch: m.vswitch, KeyPair: m.keyPair, BandwidthOut: m.bandwidthOut,
			PrivateIP: m.privateIP, PublicIP: m.publicIP, Tags: m.tags, Script: m.script, Created: m.created,
			Started: m.started, AutoRelease: m.autoRelease, Status: m.status, StoppedMode: m.stoppedMode,
			Locks: m.locks, PreemptedAt: m.preemptedAt, JobStarted: m.jobStarted, ClientToken: m.clientToken,
			Job: m.job, Seq: m.seq,
		})
	}
	if err := emulate.SaveJSON(e.opts.StateFile, st); err != nil {
		e.log.Error("persisting the emulator state failed", "file", e.opts.StateFile, "err", err)
		return
	}
	e.dirty = false
}

// restore loads the state file, if any: the instances come back with
// their ids and states, running jobs go on from their start time, and
// the clock catches up with what came due while the emulator was down.
func (e *Emulator) restore() {
	if e.opts.StateFile == "" {
		return
	}
	var st savedState
	ok, err := emulate.LoadJSON(e.opts.StateFile, &st)
	if err != nil {
		e.log.Error("the emulator state could not be read; starting empty", "file", e.opts.StateFile, "err", err)
		return
	}
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq = st.Seq
	for k, t := range st.Tokens {
		e.tokens[k] = tokenUse{fingerprint: t.Fingerprint, ids: t.IDs}
	}
	if st.Creates != nil {
		e.creates = st.Creates
	}
	for _, sm := range st.Machines {
		m := &machine{
			id: sm.ID, name: sm.Name, hostName: sm.HostName, description: sm.Description, region: sm.Region, zone: sm.Zone,
			typ: sm.Type, imageID: sm.ImageID, instanceChargeType: sm.InstanceChargeType, spot: sm.Spot,
			spotStrategy: sm.SpotStrategy, spotPriceLimit: sm.SpotPriceLimit, interruptionBehavior: sm.InterruptionBehavior,
			securityGroup: sm.SecurityGroup, vswitch: sm.VSwitch, keyPair: sm.KeyPair, bandwidthOut: sm.BandwidthOut,
			privateIP: sm.PrivateIP, publicIP: sm.PublicIP, tags: sm.Tags, script: sm.Script, created: sm.Created,
			started: sm.Started, autoRelease: sm.AutoRelease, status: sm.Status, stoppedMode: sm.StoppedMode,
			locks: sm.Locks, preemptedAt: sm.PreemptedAt, jobStarted: sm.JobStarted, clientToken: sm.ClientToken,
			job: sm.Job, seq: sm.Seq,
		}
		e.machines[m.id] = m
		e.order = append(e.order, m.id)
		e.schedule(m)
	}
	e.catchUp = true
	for _, m := range e.inOrder() {
		if m.status == statusRunning && m.preemptedAt.IsZero() {
			e.playJob(m, true)
		}
	}
	e.advance()
	e.catchUp = false
	e.log.Info("emulator state restored", "file", e.opts.StateFile, "instances", len(e.machines))
	e.flush()
}

// LiveReport is what GET /_emulator/live answers: the live instances
// (Live), with their names, statuses and tags, and the instances created
// per ClientToken.
func (e *Emulator) LiveReport() emulate.LiveReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flush()
	e.advance()
	rep := emulate.LiveReport{Creates: make(map[string]int, len(e.creates))}
	for k, v := range e.creates {
		rep.Creates[k] = v
	}
	for _, m := range e.inOrder() {
		lm := emulate.LiveMachine{ID: m.id, Name: m.name, State: m.status, Created: m.created, Key: m.clientToken,
			Tags: map[string]string{}}
		for _, t := range m.tags {
			lm.Tags[t.TagKey] = t.TagValue
		}
		lm.JobID = lm.Tags[gpuflow.TagJob]
		rep.Machines = append(rep.Machines, lm)
		rep.Instances = append(rep.Instances, m.id)
	}
	return rep
}

// JobAcked reports whether the API acknowledged the finished report of
// the job on instance machineID (which may carry a "<region>:" prefix).
func (e *Emulator) JobAcked(machineID string) bool {
	id := machineID
	if i := strings.LastIndex(id, ":"); i >= 0 {
		id = id[i+1:]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.machines[id]
	return m != nil && m.job != nil && m.job.Acked
}
