package alibaba

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
)

var _ gpuflow.BatchDescriber = (*Provider)(nil)

// describeBatch is the most InstanceIds DescribeInstances takes, and its
// largest PageSize: one call describes up to 100 instances.
const describeBatch = 100

// Throttling: a sweep's request ECS refused with Throttling(.User, .Api)
// is repeated up to throttleRetries times, after the error's RetryAfter
// (what ECS's x-ratelimit headers say, at least a second) growing by half
// each time (at most maxThrottleWait), with jitter.
const (
	throttleRetries = 6
	maxThrottleWait = 10 * time.Second
)

// DescribeMany returns the state of every machine in ids, keyed by the ids
// as given: DescribeInstances with up to 100 InstanceIds (and PageSize
// 100, so all come back) a call, per region, mapped as Describe maps one
// instance. An instance ECS does not list is gone (pending for a minute
// after this process created it); an id that cannot name an ECS instance,
// or names a region not configured, is gone, as Describe says. A bare
// instance id (no region) is looked for in every configured region. A
// throttled call is repeated with backoff; any other failure fails the
// whole call: no state is known then.
func (p *Provider) DescribeMany(ctx context.Context, ids []string) (map[string]gpuflow.Machine, error) {
	out := make(map[string]gpuflow.Machine, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if p.clients == nil {
		return nil, errNoCredentials()
	}
	byRegion := map[string]map[string][]string{} // region → instance id → the ids naming it
	for _, given := range ids {
		if _, ok := out[given]; ok {
			continue
		}
		regions, inst, ok := p.splitID(given)
		if !ok {
			out[given] = *gone(given)
			continue
		}
		out[given] = gpuflow.Machine{} // placeholder: decided below
		for _, r := range regions {
			if byRegion[r] == nil {
				byRegion[r] = map[string][]string{}
			}
			byRegion[r][inst] = append(byRegion[r][inst], given)
		}
	}
	found := map[string]bool{}
	for _, region := range p.regions {
		c, err := p.client(region)
		if err != nil {
			return nil, err
		}
		insts := make([]string, 0, len(byRegion[region]))
		for inst := range byRegion[region] {
			insts = append(insts, inst)
		}
		for start := 0; start < len(insts); start += describeBatch {
			chunk := insts[start:min(start+describeBatch, len(insts))]
			idsJSON, _ := json.Marshal(chunk)
			var resp *ecs.DescribeInstancesResponse
			err := p.retryThrottled(ctx, "describe instances", func(ctx context.Context) (err error) {
				resp, err = c.DescribeInstances(ctx, &ecs.DescribeInstancesRequest{
					RegionId:    tea.String(region),
					InstanceIds: tea.String(string(idsJSON)),
					PageSize:    tea.Int32(describeBatch),
				})
				return err
			})
			if err != nil {
				err = p.classify(ctx, "describe instances in "+region, err)
				if isNotFound(err) {
					continue // none of them there
				}
				return nil, err
			}
			if resp.Body == nil || resp.Body.Instances == nil {
				continue
			}
			for _, inst := range resp.Body.Instances.Instance {
				if inst == nil {
					continue
				}
				for _, given := range byRegion[region][tea.StringValue(inst.InstanceId)] {
					if found[given] {
						continue
					}
					m := p.machine(region, inst)
					m.ID = given
					out[given] = *m
					found[given] = true
				}
			}
		}
	}
	for given, m := range out {
		if m.ID != "" || found[given] {
			continue
		}
		if p.justCreated(given) {
			out[given] = gpuflow.Machine{ID: given, Provider: Name, State: gpuflow.MachinePending, Reason: "created; not listed yet"}
		} else {
			out[given] = *gone(given)
		}
	}
	return out, nil
}

// retryThrottled runs call, repeating it after a throttling answer with
// backoff while ctx allows.
func (p *Provider) retryThrottled(ctx context.Context, op string, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil || attempt >= throttleRetries {
			return err
		}
		f, ok := readSDKError(err)
		if !ok || !isThrottleCode(f.code) {
			return err
		}
		wait := throttleWait(attempt, max(f.retryAfter, minThrottleWait))
		p.log.DebugContext(ctx, "throttled; waiting", "op", op, "attempt", attempt+1, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
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
	return time.Duration(d * (1 + rand.Float64()/2))
}
