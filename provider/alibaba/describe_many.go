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
// is repeated up to throttleRetries times, after the time ECS's
// x-ratelimit header says is left (a second when it says nothing) growing
// by half each time (at most maxThrottleWait), with jitter.
const (
	throttleRetries = 6
	maxThrottleWait = 10 * time.Second
	minHeaderWait   = 50 * time.Millisecond
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
//
// On-demand machines described Running by an earlier sweep are asked for
// their status only (DescribeInstanceStatus, 50 a call: an id and a status
// each, a fraction of a full description to send and decode); those still
// Running keep their last description until its refresh (desccache). Any
// other status, a machine not seen before, one due for its refresh and
// every spot instance (its reclamation shows only as a lock on a Running
// instance, which the status call does not carry) are described in full.
// A lock on a Running on-demand instance is seen at its refresh.
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
	pace := &sweepPacer{}
	for _, region := range p.regions {
		c, err := p.client(region)
		if err != nil {
			return nil, err
		}
		insts := make([]string, 0, len(byRegion[region]))
		for inst := range byRegion[region] {
			insts = append(insts, inst)
		}
		insts, err = p.fromStatus(ctx, c, region, insts, pace, func(inst string, m gpuflow.Machine) {
			for _, given := range byRegion[region][inst] {
				if !found[given] {
					m.ID = given
					out[given] = m
					found[given] = true
				}
			}
		})
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(insts); start += describeBatch {
			chunk := insts[start:min(start+describeBatch, len(insts))]
			idsJSON, _ := json.Marshal(chunk)
			var resp *ecs.DescribeInstancesResponse
			err := p.retryThrottled(ctx, "describe instances", pace, func(ctx context.Context) (err error) {
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
					if tea.StringValue(inst.SpotStrategy) == "" || tea.StringValue(inst.SpotStrategy) == "NoSpot" {
						p.described.Put(m.ID, *m)
					}
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

// statusBatch is DescribeInstanceStatus's largest PageSize: one call
// answers for up to 50 instances.
const statusBatch = 50

// fromStatus answers, through found, for the instances of insts whose
// last full description (Running, on demand) is fresh and whose status
// DescribeInstanceStatus still reads Running. It returns the others, to be
// described in full.
func (p *Provider) fromStatus(ctx context.Context, c *regionAPI, region string, insts []string, pace *sweepPacer,
	found func(inst string, m gpuflow.Machine)) ([]string, error) {
	key := func(inst string) string { return region + ":" + inst }
	return p.described.FromStatus(insts, key, statusBatch, func(chunk []string) (map[string]bool, error) {
		var resp *ecs.DescribeInstanceStatusResponse
		err := p.retryThrottled(ctx, "describe instance status", pace, func(ctx context.Context) (err error) {
			resp, err = c.DescribeInstanceStatus(ctx, &ecs.DescribeInstanceStatusRequest{
				RegionId:   tea.String(region),
				InstanceId: tea.StringSlice(chunk),
				PageSize:   tea.Int32(statusBatch),
			})
			return err
		})
		running := map[string]bool{}
		if err != nil {
			if err = p.classify(ctx, "describe instance status in "+region, err); !isNotFound(err) {
				return nil, err
			}
			return running, nil // none of them there: described in full
		}
		if resp.Body != nil && resp.Body.InstanceStatuses != nil {
			for _, st := range resp.Body.InstanceStatuses.InstanceStatus {
				if st != nil && tea.StringValue(st.Status) == statusRunning {
					running[tea.StringValue(st.InstanceId)] = true
				}
			}
		}
		return running, nil
	}, found)
}

// retryThrottled runs call, repeating it after a throttling answer with
// backoff while ctx allows. pace, when not nil, spaces the calls of one
// sweep once ECS has throttled one of them: the time ECS says is left is
// then about what each further call needs, and waiting it beforehand
// saves a refused call each time.
func (p *Provider) retryThrottled(ctx context.Context, op string, pace *sweepPacer, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		if err := pace.before(ctx); err != nil {
			return err
		}
		err := call(ctx)
		pace.after()
		if err == nil || attempt >= throttleRetries {
			return err
		}
		f, ok := readSDKError(err)
		if !ok || !isThrottleCode(f.code) {
			return err
		}
		// ECS says how long is left (x-ratelimit-user-api TimeLeft): wait
		// that, or a second when it does not say.
		base := f.retryAfter
		if base <= 0 {
			base = minThrottleWait
		} else {
			pace.set(base)
		}
		wait := throttleWait(attempt, max(base, minHeaderWait))
		p.log.DebugContext(ctx, "throttled; waiting", "op", op, "attempt", attempt+1, "wait", wait)
		if sleep(ctx, wait) != nil {
			return err // the throttling answer, not just "deadline"
		}
	}
}

// sweepPacer spaces one sweep's calls (nil: no spacing).
type sweepPacer struct {
	gap  time.Duration
	next time.Time
}

// set spaces the sweep's further calls by gap (and a tenth), never less
// than it already does: a TimeLeft caught just before a refill is short.
func (s *sweepPacer) set(gap time.Duration) {
	if s != nil {
		s.gap = max(s.gap, min(gap+gap/10, maxThrottleWait))
	}
}

func (s *sweepPacer) before(ctx context.Context) error {
	if s == nil || s.gap == 0 {
		return nil
	}
	return sleep(ctx, time.Until(s.next))
}

func (s *sweepPacer) after() {
	if s != nil && s.gap > 0 {
		s.next = time.Now().Add(s.gap)
	}
}

// sleep waits d, or less when ctx ends first (then returns its error).
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
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
	return time.Duration(d * (1 + rand.Float64()/2)) // #nosec G404 -- jitter of a retry wait, not a secret
}
