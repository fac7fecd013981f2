package alibaba

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
)

// TagClientToken carries an instance's ClientToken, so that a create
// whose answer was lost can be found again by tag.
const TagClientToken = "gpuflow-client-token" // #nosec G101 -- the name of an instance tag, not a credential

// Limits of RunInstances.
const (
	maxUserData    = 32 << 10
	maxClientToken = 64
	maxTags        = 20
	maxTagLen      = 128
	maxSystemDisk  = 2048
	minSystemDisk  = 20
)

// layoutRelease is AutoReleaseTime's format (ISO 8601, UTC).
const layoutRelease = "2006-01-02T15:04:05Z"

// createGrace is how long after creating an instance Describe treats "not
// listed" as "not listed yet".
const createGrace = time.Minute

var errEmptyAnswer = errors.New("empty answer")

func invalid(format string, args ...any) error {
	return &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// ClientToken derives the RunInstances ClientToken from an idempotency
// key: the key itself when it is at most 64 printable ASCII characters
// without spaces, else "gpuflow-" and 56 hex digits of its SHA-256.
func ClientToken(key string) string {
	ok := len(key) <= maxClientToken && !strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e })
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "gpuflow-" + hex.EncodeToString(sum[:])[:56]
}

// placement splits an offer's Region, a zone ("cn-hangzhou-i",
// "ap-southeast-1a") or a region, into the configured region and the zone
// ("" for a region).
func (p *Provider) placement(where string) (region, zone string, err error) {
	if slices.Contains(p.regions, where) {
		return where, "", nil
	}
	for _, r := range p.regions {
		rest, ok := strings.CutPrefix(where, r)
		if !ok {
			continue
		}
		rest = strings.TrimPrefix(rest, "-")
		if len(rest) == 1 && rest[0] >= 'a' && rest[0] <= 'z' {
			return r, where, nil
		}
	}
	return "", "", fmt.Errorf("%q: %w", where, errNotConfigured)
}

// releaseTime is the instance's AutoReleaseTime: the start of the current
// hour plus the job's maximum duration, the margin and an hour, so at
// least maxDuration+margin from now, and the same for every retry within
// the hour (ClientToken idempotency compares the parameters).
func (p *Provider) releaseTime(req gpuflow.ProvisionRequest) time.Time {
	d := req.MaxDuration
	if d <= 0 {
		d = req.Spec.MaxDuration()
	}
	if d <= 0 {
		d = DefaultMaxDuration
	}
	return p.now().UTC().Truncate(time.Hour).Add(d + p.cfg.ReleaseMargin + time.Hour)
}

// tags are the instance's tags, sorted by key (the order is part of the
// request ClientToken idempotency compares).
func tags(req gpuflow.ProvisionRequest, token string) []*ecs.RunInstancesRequestTag {
	all := map[string]string{}
	for k, v := range req.Tags {
		lk := strings.ToLower(k)
		if k == "" || strings.HasPrefix(lk, "aliyun") || strings.HasPrefix(lk, "acs:") {
			continue
		}
		all[truncate(k, maxTagLen)] = truncate(v, maxTagLen)
	}
	all[gpuflow.TagManaged] = "true"
	all[gpuflow.TagJob] = truncate(req.JobID, maxTagLen)
	all[TagClientToken] = token
	keys := slices.Sorted(maps.Keys(all))
	// The gpuflow tags are kept if there are too many.
	for len(keys) > maxTags {
		i := slices.IndexFunc(keys, func(k string) bool {
			return k != gpuflow.TagManaged && k != gpuflow.TagJob && k != TagClientToken
		})
		keys = slices.Delete(keys, i, i+1)
	}
	out := make([]*ecs.RunInstancesRequestTag, 0, len(keys))
	for _, k := range keys {
		out = append(out, &ecs.RunInstancesRequestTag{Key: tea.String(k), Value: tea.String(all[k])})
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// instanceName is a valid ECS instance name for the job: 2–128
// characters, starting with a letter, of letters, digits and ".-_:".
func instanceName(jobID string) string {
	var b strings.Builder
	b.WriteString("gpuflow-")
	for _, r := range jobID {
		if r < 0x80 && (r == '.' || r == '-' || r == '_' || r == ':' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return truncate(b.String(), 128)
}

// Provision starts a pay-as-you-go ECS instance of the offer's type in the
// offer's zone (or region) whose user data runs the job and reports to
// req.Agent. It is idempotent: the ClientToken comes from
// req.IdempotencyKey, a create whose answer is lost to a 5xx or a timeout
// is repeated with the same token, and a token ECS refuses as reused with
// other parameters (a retry in a later hour) is resolved by finding the
// instance by its token tag.
func (p *Provider) Provision(ctx context.Context, req gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	if req.Agent == nil {
		return nil, invalid("an agent endpoint is required: ECS instances report through it")
	}
	if req.IdempotencyKey == "" {
		return nil, invalid("an idempotency key is required")
	}
	region, zone, err := p.placement(req.Offer.Region)
	if err != nil {
		return nil, invalid("offer region %v", err)
	}
	c, err := p.client(region)
	if err != nil {
		return nil, err
	}
	typ, ok := p.catalog.forOffer(req.Offer)
	if !ok {
		return nil, invalid("no ECS instance type with %d× %s", req.Offer.GPUCount, req.Offer.GPUType)
	}
	script, err := agentscript.Script(req)
	if err != nil {
		return nil, invalid("boot script: %v", err)
	}
	if len(script) > maxUserData {
		return nil, invalid("boot script is %d bytes; ECS user data holds at most %d", len(script), maxUserData)
	}
	spot := req.Spec.Spot
	if zone == "" && (spot || len(p.cfg.VSwitchIDs) > 0) {
		// Spot needs a zone, and a vSwitch pins one: take one with stock.
		if zone, err = p.pickZone(ctx, c, region, typ.Name, spot); err != nil {
			return nil, err
		}
	}
	token := ClientToken(req.IdempotencyKey)
	rr := p.runRequest(req, region, zone, typ, script, token)
	id, err := p.create(ctx, c, rr)
	if hasCode(err, codeParamNotMatch) {
		// The token was used before with other parameters (an earlier
		// attempt's release time): that attempt's instance is ours.
		var found string
		found, err = p.findByToken(ctx, c, region, token)
		if err == nil && found == "" {
			err = &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient, Code: codeParamNotMatch,
				Message: "client token used before, but its instance is not listed yet"}
		}
		id = found
	}
	if err != nil {
		return nil, err
	}
	machineID := region + ":" + id
	p.remember(machineID)
	where := zone
	if where == "" {
		where = region
	}
	price := req.Offer.PricePerHour
	if spot && req.Offer.SpotPricePerHour > 0 {
		price = req.Offer.SpotPricePerHour
	}
	m := &gpuflow.Machine{
		ID: machineID, Provider: Name, State: gpuflow.MachinePending,
		GPUType: typ.GPUType, GPUCount: typ.GPUCount, Region: where, PricePerHour: price,
		Tags: map[string]string{}, CreatedAt: p.now(),
	}
	for _, t := range rr.Tag {
		m.Tags[tea.StringValue(t.Key)] = tea.StringValue(t.Value)
	}
	p.log.InfoContext(ctx, "instance created", "job_id", req.JobID, "machine_id", machineID,
		"instance_type", typ.Name, "zone", zone, "spot", spot, "auto_release", tea.StringValue(rr.AutoReleaseTime))
	return m, nil
}

// runRequest builds the RunInstances request. Everything in it is
// deterministic for a given request and hour, so a repeated create is the
// same request.
func (p *Provider) runRequest(req gpuflow.ProvisionRequest, region, zone string, typ instanceType, script, token string) *ecs.RunInstancesRequest {
	disk := min(max(p.cfg.SystemDiskGB, req.Spec.DiskGB, minSystemDisk), maxSystemDisk)
	rr := &ecs.RunInstancesRequest{
		RegionId:           tea.String(region),
		InstanceType:       tea.String(typ.Name),
		ImageId:            tea.String(p.cfg.ImageID),
		InstanceChargeType: tea.String("PostPaid"),
		Amount:             tea.Int32(1),
		ClientToken:        tea.String(token),
		InstanceName:       tea.String(instanceName(req.JobID)),
		Description:        tea.String(truncate("gpuflow job "+req.JobID, 256)),
		UserData:           tea.String(base64.StdEncoding.EncodeToString([]byte(script))),
		SystemDisk: &ecs.RunInstancesRequestSystemDisk{
			Category: tea.String(p.cfg.SystemDiskCategory),
			Size:     tea.String(strconv.Itoa(disk)),
		},
		Tag:             tags(req, token),
		AutoReleaseTime: tea.String(p.releaseTime(req).Format(layoutRelease)),
	}
	if zone != "" {
		rr.ZoneId = tea.String(zone)
		if vs := p.cfg.VSwitchIDs[zone]; vs != "" {
			rr.VSwitchId = tea.String(vs)
		}
	}
	if sg := p.cfg.SecurityGroupIDs[region]; sg != "" {
		rr.SecurityGroupId = tea.String(sg)
	}
	if p.cfg.KeyPairName != "" {
		rr.KeyPairName = tea.String(p.cfg.KeyPairName)
	}
	if p.cfg.BandwidthOut > 0 {
		rr.InternetChargeType = tea.String("PayByTraffic")
		rr.InternetMaxBandwidthOut = tea.Int32(int32(p.cfg.BandwidthOut)) // #nosec G115 -- New checks BandwidthOut fits an int32
	}
	if req.Spec.Spot {
		rr.SpotStrategy = tea.String(spotStrategy)
		rr.SpotInterruptionBehavior = tea.String("Terminate")
	}
	return rr
}

// create calls RunInstances, repeating it (same request, same token) when
// the answer may have been lost after the instance was made.
func (p *Provider) create(ctx context.Context, c *regionAPI, rr *ecs.RunInstancesRequest) (string, error) {
	wait := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := c.RunInstances(ctx, rr)
		if err == nil {
			if resp.Body == nil || resp.Body.InstanceIdSets == nil || len(resp.Body.InstanceIdSets.InstanceIdSet) == 0 {
				return "", p.classify(ctx, "run instances", errEmptyAnswer)
			}
			return tea.StringValue(resp.Body.InstanceIdSets.InstanceIdSet[0]), nil
		}
		err = p.classify(ctx, "run instances", err)
		if !lostAnswer(err) || attempt >= p.cfg.CreateRetries || ctx.Err() != nil {
			return "", err
		}
		p.log.WarnContext(ctx, "create answer lost; repeating it with the same client token",
			"attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return "", p.classify(ctx, "run instances", ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// findByToken finds the instance created with a ClientToken by its tag.
func (p *Provider) findByToken(ctx context.Context, c *regionAPI, region, token string) (string, error) {
	resp, err := c.DescribeInstances(ctx, &ecs.DescribeInstancesRequest{
		RegionId: tea.String(region),
		Tag:      []*ecs.DescribeInstancesRequestTag{{Key: tea.String(TagClientToken), Value: tea.String(token)}},
		PageSize: tea.Int32(10),
	})
	if err != nil {
		return "", p.classify(ctx, "find instance by client token", err)
	}
	if resp.Body == nil || resp.Body.Instances == nil {
		return "", nil
	}
	for _, inst := range resp.Body.Instances.Instance {
		if inst != nil && inst.InstanceId != nil {
			return *inst.InstanceId, nil
		}
	}
	return "", nil
}

// pickZone returns a zone of the region where the instance type is in
// stock (as spot when spot is set).
func (p *Provider) pickZone(ctx context.Context, c *regionAPI, region, instanceType string, spot bool) (string, error) {
	stock, err := p.stock(ctx, c, region, instanceType, spot)
	if err != nil {
		return "", err
	}
	for _, s := range stock {
		if s.instanceType == instanceType && s.available {
			return s.zone, nil
		}
	}
	return "", &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindNoCapacity, Code: "OperationDenied.NoStock",
		Message: fmt.Sprintf("no zone of %s has %s in stock", region, instanceType)}
}

// remember notes a machine just created (see createGrace).
func (p *Provider) remember(machineID string) {
	p.createdMu.Lock()
	defer p.createdMu.Unlock()
	now := p.now()
	for id, at := range p.created {
		if now.Sub(at) > createGrace {
			delete(p.created, id)
		}
	}
	p.created[machineID] = now
}

// forget drops a machine from the just-created set.
func (p *Provider) forget(machineID string) {
	p.createdMu.Lock()
	delete(p.created, machineID)
	p.createdMu.Unlock()
}

// justCreated reports whether this process created the machine within
// createGrace.
func (p *Provider) justCreated(machineID string) bool {
	p.createdMu.Lock()
	defer p.createdMu.Unlock()
	at, ok := p.created[machineID]
	return ok && p.now().Sub(at) <= createGrace
}
