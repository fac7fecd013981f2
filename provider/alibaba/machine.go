package alibaba

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
)

// ECS instance statuses.
const (
	statusPending  = "Pending"
	statusStarting = "Starting"
	statusRunning  = "Running"
	statusStopping = "Stopping"
	statusStopped  = "Stopped"
)

// ReasonPreempted starts the Reason of a reclaimed spot instance.
const ReasonPreempted = "preempted"

// listPageSize is DescribeInstances' largest page.
const listPageSize = 100

// splitID splits a machine id "<region>:<instance id>". A bare instance id
// (no region) yields every configured region. ok is false for ids that
// cannot name an ECS instance.
func (p *Provider) splitID(machineID string) (regions []string, id string, ok bool) {
	region, id, found := strings.Cut(machineID, ":")
	if !found {
		region, id = "", machineID
	}
	if !strings.HasPrefix(id, "i-") || len(id) < 3 || strings.ContainsAny(id, ":/\"[] ") {
		return nil, "", false
	}
	if region == "" {
		return p.regions, id, true
	}
	for _, r := range p.regions {
		if r == region {
			return []string{r}, id, true
		}
	}
	return nil, "", false
}

// gone is the machine that no longer exists.
func gone(machineID string) *gpuflow.Machine {
	return &gpuflow.Machine{ID: machineID, Provider: Name, State: gpuflow.MachineGone}
}

// Describe returns the instance's state: Pending and Starting map to
// pending and starting, Running to running (the job's end is reported by
// its agent, the instance keeps running), Stopping to stopping, a
// Recycling operation lock (a spot instance being reclaimed) to failed
// with a reason starting "preempted", Stopped or otherwise locked to
// failed, and an instance ECS no longer lists to gone.
func (p *Provider) Describe(ctx context.Context, machineID string) (*gpuflow.Machine, error) {
	if p.clients == nil {
		return nil, errNoCredentials()
	}
	regions, id, ok := p.splitID(machineID)
	if !ok {
		return gone(machineID), nil
	}
	ids, _ := json.Marshal([]string{id})
	for _, region := range regions {
		c, err := p.client(region)
		if err != nil {
			return nil, err
		}
		resp, err := c.DescribeInstances(ctx, &ecs.DescribeInstancesRequest{
			RegionId:    tea.String(region),
			InstanceIds: tea.String(string(ids)),
		})
		if err != nil {
			err = p.classify(ctx, "describe instance "+id, err)
			if isNotFound(err) {
				continue
			}
			return nil, err
		}
		if resp.Body != nil && resp.Body.Instances != nil {
			for _, inst := range resp.Body.Instances.Instance {
				if inst != nil && tea.StringValue(inst.InstanceId) == id {
					return p.machine(region, inst), nil
				}
			}
		}
	}
	if p.justCreated(machineID) {
		// Created a moment ago: not listed yet.
		return &gpuflow.Machine{ID: machineID, Provider: Name, State: gpuflow.MachinePending,
			Reason: "created; not listed yet"}, nil
	}
	return gone(machineID), nil
}

// machine maps an ECS instance to a gpuflow machine.
func (p *Provider) machine(region string, inst *ecs.DescribeInstancesResponseBodyInstancesInstance) *gpuflow.Machine {
	m := &gpuflow.Machine{
		ID:       region + ":" + tea.StringValue(inst.InstanceId),
		Provider: Name,
		GPUCount: int(tea.Int32Value(inst.GPUAmount)),
		Region:   tea.StringValue(inst.ZoneId),
		Tags:     map[string]string{},
	}
	if m.Region == "" {
		m.Region = region
	}
	if spec := tea.StringValue(inst.GPUSpec); spec != "" {
		m.GPUType = gpuflow.NormalizeGPUType(spec)
	}
	if t, ok := p.catalog.byName(tea.StringValue(inst.InstanceType)); ok {
		if m.GPUType == "" {
			m.GPUType = t.GPUType
		}
		if m.GPUCount == 0 {
			m.GPUCount = t.GPUCount
		}
	}
	if inst.Tags != nil {
		for _, t := range inst.Tags.Tag {
			if t != nil {
				m.Tags[tea.StringValue(t.TagKey)] = tea.StringValue(t.TagValue)
			}
		}
	}
	m.CreatedAt = parseTime(tea.StringValue(inst.CreationTime))

	var locks []string
	if inst.OperationLocks != nil {
		for _, l := range inst.OperationLocks.LockReason {
			if l != nil && l.LockReason != nil {
				locks = append(locks, *l.LockReason)
			}
		}
	}
	status := tea.StringValue(inst.Status)
	for _, l := range locks {
		if strings.EqualFold(l, "recycling") {
			m.State = gpuflow.MachineFailed
			m.Reason = ReasonPreempted + ": the spot instance is being reclaimed by Alibaba Cloud"
			return m
		}
	}
	switch status {
	case statusPending:
		m.State = gpuflow.MachinePending
	case statusStarting:
		m.State = gpuflow.MachineStarting
	case statusRunning:
		m.State = gpuflow.MachineRunning
	case statusStopping:
		m.State = gpuflow.MachineStopping
	case statusStopped:
		m.State = gpuflow.MachineFailed
		// A guest power-off (the job's agent's, when its end is not
		// acknowledged) and a StopInstance call look alike.
		m.Reason = "the instance stopped: its agent powers it off when the job's end cannot be reported (the exit code is unknown), or it was stopped outside gpuflow"
		if mode := tea.StringValue(inst.StoppedMode); mode != "" && mode != "Not-applicable" {
			m.Reason += " (" + mode + ")"
		}
	default:
		m.State = gpuflow.MachinePending
		m.Reason = "instance status " + status
	}
	if len(locks) > 0 && m.State != gpuflow.MachineStopping {
		m.State = gpuflow.MachineFailed
		m.Reason = "the instance is locked: " + strings.Join(locks, ", ")
	}
	return m
}

// parseTime reads ECS times ("2026-11-26T16:52Z", with or without seconds).
func parseTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02T15:04Z", layoutRelease, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// Terminate releases the instance with DeleteInstance Force=true (a
// running instance is stopped first). An unknown instance is gone: nil.
// An instance in a status that cannot be deleted yet is a transient error.
func (p *Provider) Terminate(ctx context.Context, machineID string) error {
	if p.clients == nil {
		return errNoCredentials()
	}
	regions, id, ok := p.splitID(machineID)
	if !ok {
		return nil
	}
	for _, region := range regions {
		p.described.Forget(region + ":" + id)
		c, err := p.client(region)
		if err != nil {
			return err
		}
		_, err = c.DeleteInstance(ctx, &ecs.DeleteInstanceRequest{
			InstanceId: tea.String(id),
			Force:      tea.Bool(true),
		})
		if err == nil {
			p.forget(machineID)
			p.log.InfoContext(ctx, "instance deleted", "machine_id", machineID)
			return nil
		}
		err = p.classify(ctx, "delete instance "+id, err)
		if isNotFound(err) {
			continue
		}
		// IncorrectInstanceStatus (not deletable yet) classifies as
		// transient: the caller retries.
		return err
	}
	p.forget(machineID)
	return nil
}

// List returns the instances tagged gpuflow-managed=true in every
// configured region, 100 a call; a throttled call is repeated with
// backoff.
func (p *Provider) List(ctx context.Context) ([]gpuflow.Machine, error) {
	if p.clients == nil {
		return nil, errNoCredentials()
	}
	var out []gpuflow.Machine
	pace := &sweepPacer{}
	for _, region := range p.regions {
		c, err := p.client(region)
		if err != nil {
			return nil, err
		}
		for page := int32(1); ; page++ {
			var resp *ecs.DescribeInstancesResponse
			err := p.retryThrottled(ctx, "list instances", pace, func(ctx context.Context) (err error) {
				resp, err = c.DescribeInstances(ctx, &ecs.DescribeInstancesRequest{
					RegionId:   tea.String(region),
					Tag:        []*ecs.DescribeInstancesRequestTag{{Key: tea.String(gpuflow.TagManaged), Value: tea.String("true")}},
					PageNumber: tea.Int32(page),
					PageSize:   tea.Int32(listPageSize),
				})
				return err
			})
			if err != nil {
				return nil, p.classify(ctx, fmt.Sprintf("list instances in %s", region), err)
			}
			if resp.Body == nil || resp.Body.Instances == nil || len(resp.Body.Instances.Instance) == 0 {
				break
			}
			for _, inst := range resp.Body.Instances.Instance {
				if inst != nil {
					out = append(out, *p.machine(region, inst))
				}
			}
			if int(page)*listPageSize >= int(tea.Int32Value(resp.Body.TotalCount)) {
				break
			}
		}
	}
	return out, nil
}
