package tencent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.BatchDescriber = (*Provider)(nil)

// describeBatch is the most InstanceIds DescribeInstances takes (and the
// largest Limit): one call describes up to 100 instances.
const describeBatch = 100

// Throttling: a sweep's request the API refused with RequestLimitExceeded
// is repeated up to throttleRetries times, after the error's RetryAfter
// growing by half each time (at most maxThrottleWait), with jitter, so
// that several sweepers sharing an account spread out.
const (
	throttleRetries = 6
	maxThrottleWait = 10 * time.Second
)

// DescribeMany returns the state of every machine in ids, keyed by the ids
// as given: DescribeInstances with up to 100 InstanceIds a call, per
// region, mapped as Describe maps one instance. An instance the API no
// longer lists is gone (or, as Describe says, pending for a minute after
// this process created it, failed/preempted for a spot instance seen
// before); an id that names no CVM instance is gone; one in a region not
// configured is failed with the reason (it cannot be looked at). A
// throttled call is repeated with backoff; any other failure fails the
// whole call: no state is known then.
//
// Machines described RUNNING by an earlier sweep are asked for their state
// only (DescribeInstancesStatus, 100 a call: an id and a state each, a
// fraction of a full description to send and decode); those still RUNNING
// keep their last description until its refresh (desccache). Any other
// state, a machine not seen before, and one due for its refresh are
// described in full, so every change of state and its reason reads as
// Describe reads it.
func (p *Provider) DescribeMany(ctx context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	out := make(map[string]gpuflow.Machine, len(ids))
	type target struct{ given, machineID string }
	byRegion := map[string]map[string][]target{} // region → instance id → the ids naming it
	var regions []string
	for _, given := range ids {
		if _, ok := out[given]; ok {
			continue
		}
		region, _, inst, machineID, err := p.parseID(given)
		switch {
		case err != nil:
			out[given] = gpuflow.Machine{ID: given, Provider: Name, State: gpuflow.MachineFailed, Reason: err.Error()}
			continue
		case !instancePattern.MatchString(inst):
			out[given] = gpuflow.Machine{ID: given, Provider: Name, State: gpuflow.MachineGone, Reason: "not a CVM instance id"}
			continue
		}
		if byRegion[region] == nil {
			byRegion[region] = map[string][]target{}
			regions = append(regions, region)
		}
		byRegion[region][inst] = append(byRegion[region][inst], target{given, machineID})
	}
	for _, region := range regions {
		insts := make([]string, 0, len(byRegion[region]))
		for inst := range byRegion[region] {
			insts = append(insts, inst)
		}
		insts, err := p.fromStatus(ctx, region, insts, func(inst string, m gpuflow.Machine) {
			for _, t := range byRegion[region][inst] {
				m.ID = t.given
				out[t.given] = m
			}
		})
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(insts); start += describeBatch {
			chunk := insts[start:min(start+describeBatch, len(insts))]
			req := cvm.NewDescribeInstancesRequest()
			req.InstanceIds = ptrs(chunk)
			req.Limit = ptr(int64(describeBatch))
			var resp *cvm.DescribeInstancesResponse
			err := p.retryThrottled(ctx, "describe instances", func(ctx context.Context) (err error) {
				cctx, cancel := p.callContext(ctx)
				defer cancel()
				resp, err = p.clients[region].DescribeInstancesWithContext(cctx, req)
				return err
			})
			if err != nil {
				return nil, classify("describe instances in "+region, err)
			}
			listed := map[string]gpuflow.Machine{}
			for _, inst := range resp.Response.InstanceSet {
				if inst != nil {
					m := p.machine(region, inst)
					p.described.Put(m.ID, m)
					listed[deref(inst.InstanceId)] = m
				}
			}
			for _, inst := range chunk {
				for _, t := range byRegion[region][inst] {
					m, ok := listed[inst]
					if !ok {
						m = *p.absent(t.machineID)
					}
					m.ID = t.given
					out[t.given] = m
				}
			}
		}
	}
	return out, nil
}

// fromStatus answers, through found, for the instances of insts whose
// last full description (RUNNING) is fresh and whose state
// DescribeInstancesStatus still reads RUNNING. It returns the others, to
// be described in full.
func (p *Provider) fromStatus(ctx context.Context, region string, insts []string, found func(inst string, m gpuflow.Machine)) ([]string, error) {
	key := func(inst string) string { return p.machineID(region, inst) }
	return p.described.FromStatus(insts, key, describeBatch, func(chunk []string) (map[string]bool, error) {
		req := cvm.NewDescribeInstancesStatusRequest()
		req.InstanceIds = ptrs(chunk)
		req.Limit = ptr(int64(describeBatch))
		var resp *cvm.DescribeInstancesStatusResponse
		err := p.retryThrottled(ctx, "describe instances status", func(ctx context.Context) (err error) {
			cctx, cancel := p.callContext(ctx)
			defer cancel()
			resp, err = p.clients[region].DescribeInstancesStatusWithContext(cctx, req)
			return err
		})
		if err != nil {
			return nil, classify("describe instances status in "+region, err)
		}
		running := map[string]bool{}
		for _, st := range resp.Response.InstanceStatusSet {
			if st != nil && deref(st.InstanceState) == "RUNNING" {
				running[deref(st.InstanceId)] = true
			}
		}
		return running, nil
	}, found)
}

// retryThrottled runs call, repeating it after RequestLimitExceeded with
// backoff while ctx allows.
func (p *Provider) retryThrottled(ctx context.Context, op string, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil || attempt >= throttleRetries || !isThrottle(err) {
			return err
		}
		wait := throttleWait(attempt, throttleRetryAfter)
		p.log.Debug("throttled; waiting", "op", op, "attempt", attempt+1, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// isThrottle reports whether err is the API's RequestLimitExceeded.
func isThrottle(err error) bool {
	var pe *gpuflow.ProviderError
	if errors.As(err, &pe) {
		return isThrottleCode(pe.Code)
	}
	return isThrottleCode(codeOf(err))
}

// throttleWait is the wait before the attempt+2nd try: base growing by
// half each attempt, at most maxThrottleWait, plus up to half again of
// jitter.
func throttleWait(attempt int, base time.Duration) time.Duration {
	d := float64(base)
	for range attempt {
		d *= 1.5
	}
	d = min(d, float64(maxThrottleWait))
	return time.Duration(d * (1 + rand.Float64()/2)) // #nosec G404 -- jitter of a retry wait, not a secret
}
