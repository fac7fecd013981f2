package tencent

import (
	"context"
	"math"
	"regexp"
	"strings"
	"time"

	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
)

// createGrace is how long a machine this process created is reported
// pending while DescribeInstances does not list it yet.
const createGrace = time.Minute

// pendingRetryAfter is the wait suggested when an instance is too young to
// be terminated.
const pendingRetryAfter = 5 * time.Second

// instancePattern matches CVM instance ids.
var instancePattern = regexp.MustCompile(`^ins-[a-z0-9]{8}$`)

// ReasonPreempted is the Reason of a spot machine Tencent Cloud reclaimed.
const ReasonPreempted = "spot instance preempted: reclaimed by Tencent Cloud"

// Describe returns the machine's state from DescribeInstances; an instance
// the API no longer lists is gone.
func (p *Provider) Describe(ctx context.Context, machineID string) (*gpuflow.Machine, error) {
	region, client, id, machineID, err := p.parseID(machineID)
	if err != nil {
		return nil, errorf(gpuflow.KindInvalidRequest, "%v", err)
	}
	if !instancePattern.MatchString(id) {
		p.log.Warn("describe: not an instance id; reporting it gone", "machine_id", machineID)
		return &gpuflow.Machine{ID: machineID, Provider: Name, State: gpuflow.MachineGone, Reason: "not a CVM instance id"}, nil
	}
	req := cvm.NewDescribeInstancesRequest()
	req.InstanceIds = []*string{ptr(id)}
	cctx, cancel := p.callContext(ctx)
	resp, err := client.DescribeInstancesWithContext(cctx, req)
	cancel()
	if err != nil {
		return nil, classify("describe instance "+id, err)
	}
	for _, inst := range resp.Response.InstanceSet {
		if inst != nil && deref(inst.InstanceId) == id {
			m := p.machine(region, inst)
			return &m, nil
		}
	}
	return p.absent(machineID), nil
}

// absent describes a machine DescribeInstances does not list.
func (p *Provider) absent(machineID string) *gpuflow.Machine {
	m := &gpuflow.Machine{ID: machineID, Provider: Name, State: gpuflow.MachineGone, Reason: "the instance no longer exists"}
	if _, ok := p.known(p.released, machineID); ok {
		m.Reason = "terminated"
		return m
	}
	if t, ok := p.known(p.created, machineID); ok && p.now().Sub(t) < createGrace {
		m.State, m.Reason = gpuflow.MachinePending, "created; not listed yet"
		return m
	}
	if _, ok := p.known(p.spot, machineID); ok {
		m.State, m.Reason = gpuflow.MachineFailed, ReasonPreempted
	}
	return m
}

// machine maps an instance to a gpuflow machine.
func (p *Provider) machine(region string, inst *cvm.Instance) gpuflow.Machine {
	id := p.machineID(region, deref(inst.InstanceId))
	spot := deref(inst.InstanceChargeType) == chargeSpot
	if spot {
		p.remember(p.spot, id)
	}
	_, released := p.known(p.released, id)
	m := gpuflow.Machine{ID: id, Provider: Name, Tags: map[string]string{}}
	if inst.Placement != nil {
		m.Region = deref(inst.Placement.Zone)
	}
	m.State, m.Reason = mapState(deref(inst.InstanceState), spot, released,
		deref(inst.LatestOperation), deref(inst.LatestOperationErrorMsg))
	for _, t := range inst.Tags {
		if t != nil && t.Key != nil {
			m.Tags[*t.Key] = deref(t.Value)
		}
	}
	if ts, err := time.Parse(time.RFC3339, deref(inst.CreatedTime)); err == nil {
		m.CreatedAt = ts
	}
	typ := deref(inst.InstanceType)
	family, _, _ := strings.Cut(typ, ".")
	if g := inst.GPUInfo; g != nil {
		m.GPUCount = int(math.Round(deref(g.GPUCount)))
		m.GPUType = gpuflow.NormalizeGPUType(deref(g.GPUType))
	}
	if m.GPUType == "" {
		m.GPUType = families[family].GPUType
	}
	if it, ok := p.cachedItem(m.Region, typ); ok {
		m.PricePerHour = round4(it.Price)
		if spot {
			m.PricePerHour = round4(it.SpotPrice)
		}
		if m.GPUCount == 0 {
			m.GPUCount = it.GPUCount
		}
	}
	return m
}

// mapState maps InstanceState to a gpuflow state and reason. released
// says this provider asked for the instance's termination; latestOp is the
// instance's last operation (TerminateInstances when the user, or the
// instance's ActionTimer, terminated it).
func mapState(state string, spot, released bool, latestOp, errMsg string) (gpuflow.MachineState, string) {
	switch state {
	case "PENDING":
		return gpuflow.MachinePending, ""
	case "STARTING", "REBOOTING":
		return gpuflow.MachineStarting, ""
	case "RUNNING", "ENTER_RESCUE_MODE", "RESCUE_MODE", "EXIT_RESCUE_MODE",
		"ENTER_SERVICE_LIVE_MIGRATE", "SERVICE_LIVE_MIGRATE", "EXIT_SERVICE_LIVE_MIGRATE":
		return gpuflow.MachineRunning, ""
	case "LAUNCH_FAILED":
		if released {
			// A failed launch holds nothing and cannot be terminated.
			return gpuflow.MachineGone, "launch failed; nothing to release"
		}
		reason := "launch failed"
		if errMsg != "" {
			reason += ": " + errMsg
		}
		return gpuflow.MachineFailed, reason
	case "STOPPING", "STOPPED", "SHUTDOWN", "TERMINATING":
		stopped := state == "STOPPING" || state == "STOPPED"
		switch {
		case released || latestOp == "TerminateInstances":
			return gpuflow.MachineStopping, "terminating (" + state + ")"
		case stopped && latestOp == "StopInstances":
			return gpuflow.MachineFailed, "instance stopped outside gpuflow (" + state + ")"
		case stopped:
			// Powered off from inside, as the job's agent does when its
			// end is not acknowledged (no StopInstances call: a reclaimed
			// spot instance is terminated, SHUTDOWN, never STOPPED).
			return gpuflow.MachineFailed, gpuflow.ReasonSelfStopped + " (" + state + ")"
		case spot:
			return gpuflow.MachineFailed, ReasonPreempted + " (" + state + ")"
		}
		return gpuflow.MachineStopping, "terminated outside gpuflow (" + state + ")"
	}
	return gpuflow.MachineStarting, "unknown instance state " + state
}

// Terminate destroys the instance with TerminateInstances. An instance that
// does not exist, is already terminating or never launched counts as gone;
// one still PENDING cannot be terminated yet: a transient error says so.
func (p *Provider) Terminate(ctx context.Context, machineID string) error {
	_, client, id, machineID, err := p.parseID(machineID)
	if err != nil {
		return errorf(gpuflow.KindInvalidRequest, "%v", err)
	}
	p.described.Forget(machineID)
	if !instancePattern.MatchString(id) {
		p.log.Warn("terminate: not an instance id; nothing to terminate", "machine_id", machineID)
		p.remember(p.released, machineID)
		return nil
	}
	req := cvm.NewTerminateInstancesRequest()
	req.InstanceIds = []*string{ptr(id)}
	cctx, cancel := p.callContext(ctx)
	_, err = client.TerminateInstancesWithContext(cctx, req)
	cancel()
	switch code := codeOf(err); {
	case err == nil:
		p.remember(p.released, machineID)
		p.log.Info("instance terminated", "machine_id", machineID)
		return nil
	case code == cvm.INVALIDINSTANCEID_NOTFOUND, code == cvm.INVALIDINSTANCEID_MALFORMED,
		code == cvm.UNSUPPORTEDOPERATION_INSTANCESTATETERMINATING, code == cvm.UNSUPPORTEDOPERATION_INSTANCESTATELAUNCHFAILED:
		p.remember(p.released, machineID)
		p.log.Info("instance already gone", "machine_id", machineID, "code", code)
		return nil
	case code == cvm.UNSUPPORTEDOPERATION_INSTANCESTATEPENDING:
		perr := classify("terminate instance "+id, err).(*gpuflow.ProviderError)
		perr.Kind, perr.RetryAfter = gpuflow.KindTransient, pendingRetryAfter
		return perr
	}
	return classify("terminate instance "+id, err)
}

// List returns the instances tagged gpuflow-managed=true in every region,
// 100 a call; a throttled call is repeated with backoff.
func (p *Provider) List(ctx context.Context) ([]gpuflow.Machine, error) {
	var out []gpuflow.Machine
	for _, region := range p.regions {
		for offset := int64(0); ; {
			req := cvm.NewDescribeInstancesRequest()
			req.Filters = []*cvm.Filter{{Name: ptr("tag:" + gpuflow.TagManaged), Values: []*string{ptr("true")}}}
			req.Offset, req.Limit = ptr(offset), ptr(int64(describeBatch))
			var resp *cvm.DescribeInstancesResponse
			err := p.retryThrottled(ctx, "list instances", func(ctx context.Context) (err error) {
				cctx, cancel := p.callContext(ctx)
				defer cancel()
				resp, err = p.clients[region].DescribeInstancesWithContext(cctx, req)
				return err
			})
			if err != nil {
				return nil, classify("list instances in "+region, err)
			}
			for _, inst := range resp.Response.InstanceSet {
				if inst != nil {
					out = append(out, p.machine(region, inst))
				}
			}
			offset += int64(len(resp.Response.InstanceSet))
			if len(resp.Response.InstanceSet) == 0 || offset >= deref(resp.Response.TotalCount) {
				break
			}
		}
	}
	return out, nil
}
