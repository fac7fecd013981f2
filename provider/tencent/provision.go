package tencent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"time"

	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/provider/agentscript"
)

// maxUserData is the most base64 user data RunInstances accepts.
const maxUserData = 16 << 10

// tokenPattern matches keys usable as a ClientToken as they are: at most 64
// printable ASCII characters.
var tokenPattern = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)

// clientToken derives RunInstances' ClientToken from an idempotency key:
// the key itself when the API takes it, else "gpuflow-" and 56 hex digits
// of its SHA-256.
func clientToken(key string) string {
	if tokenPattern.MatchString(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "gpuflow-" + hex.EncodeToString(sum[:])[:56]
}

// instanceName names a job's instance (at most 60 characters).
func instanceName(jobID string) string {
	n := "gpuflow-" + jobID
	if len(n) > 60 {
		n = n[:60]
	}
	return n
}

// Provision starts a GPU instance for the job with RunInstances. The
// ClientToken derived from req.IdempotencyKey makes a repeated call (a
// retried activity, or this method's own retry after a lost answer) return
// the instance the first call created.
func (p *Provider) Provision(ctx context.Context, req gpuflow.ProvisionRequest) (*gpuflow.Machine, error) {
	if req.IdempotencyKey == "" {
		return nil, errorf(gpuflow.KindInvalidRequest, "an idempotency key is required")
	}
	gpuCount := cmp.Or(req.Offer.GPUCount, req.Spec.GPUCount)
	if gpuCount <= 0 {
		return nil, errorf(gpuflow.KindInvalidRequest, "Tencent Cloud offers GPU instances only; the job asks for no GPU")
	}
	it, err := p.chooseItem(ctx, req, gpuCount)
	if err != nil {
		return nil, err
	}
	region := regionOf(it.Zone)
	client := p.clients[region]
	image := p.imageFor(region)
	if client == nil || image == "" {
		return nil, errorf(gpuflow.KindInvalidRequest, "region %s has no client or no image configured", region)
	}
	script, err := agentscript.Script(req)
	if err != nil {
		return nil, errorf(gpuflow.KindInvalidRequest, "boot script: %v", err)
	}
	userData := base64.StdEncoding.EncodeToString([]byte(script))
	if len(userData) > maxUserData {
		return nil, errorf(gpuflow.KindInvalidRequest, "the boot script is %d bytes of base64; Tencent Cloud takes at most %d", len(userData), maxUserData)
	}
	tags := maps.Clone(req.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[gpuflow.TagManaged] = "true"
	tags[gpuflow.TagJob] = req.JobID
	maxDur := cmp.Or(req.MaxDuration, req.Spec.MaxDuration(), DefaultMaxDuration)
	timerAt := p.now().Add(maxDur + p.cfg.TimerMargin).UTC().Truncate(time.Second)
	token := clientToken(req.IdempotencyKey)
	spot := req.Spec.Spot

	build := func() *cvm.RunInstancesRequest {
		r := cvm.NewRunInstancesRequest()
		r.InstanceChargeType = ptr(chargePostpaid)
		r.Placement = &cvm.Placement{Zone: ptr(it.Zone)}
		r.InstanceType = ptr(it.InstanceType)
		r.ImageId = ptr(image)
		r.SystemDisk = &cvm.SystemDisk{DiskType: ptr(p.cfg.DiskType), DiskSize: ptr(int64(max(p.cfg.DiskGB, req.Spec.DiskGB)))}
		if s, ok := p.cfg.Subnets[it.Zone]; ok {
			r.VirtualPrivateCloud = &cvm.VirtualPrivateCloud{VpcId: ptr(s.VpcID), SubnetId: ptr(s.SubnetID)}
		}
		r.InternetAccessible = &cvm.InternetAccessible{
			InternetChargeType:      ptr("TRAFFIC_POSTPAID_BY_HOUR"),
			InternetMaxBandwidthOut: ptr(int64(p.cfg.BandwidthOutMbps)),
			PublicIpAssigned:        ptr(true),
		}
		r.InstanceCount = ptr(int64(1))
		r.InstanceName = ptr(instanceName(req.JobID))
		if len(p.cfg.SecurityGroupIDs) > 0 {
			r.SecurityGroupIds = ptrs(p.cfg.SecurityGroupIDs)
		}
		if len(p.cfg.KeyIDs) > 0 {
			r.LoginSettings = &cvm.LoginSettings{KeyIds: ptrs(p.cfg.KeyIDs)}
		}
		r.ClientToken = ptr(token)
		r.ActionTimer = &cvm.ActionTimer{
			TimerAction: ptr("TerminateInstances"),
			ActionTime:  ptr(timerAt.Format("2006-01-02T15:04:05Z")),
			Externals:   &cvm.Externals{ReleaseAddress: ptr(true)},
		}
		var tagList []*cvm.Tag
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			if k != "" {
				tagList = append(tagList, &cvm.Tag{Key: ptr(k), Value: ptr(tags[k])})
			}
		}
		r.TagSpecification = []*cvm.TagSpecification{{ResourceType: ptr("instance"), Tags: tagList}}
		if spot {
			r.InstanceChargeType = ptr(chargeSpot)
			if m := req.Spec.MaxPricePerHour; m != nil {
				bid := *m
				if p.cfg.Currency == CurrencyCNY {
					bid *= p.cfg.CNYPerUSD
				}
				r.InstanceMarketOptions = &cvm.InstanceMarketOptionsRequest{
					MarketType:  ptr("spot"),
					SpotOptions: &cvm.SpotMarketOptions{MaxPrice: ptr(strconv.FormatFloat(bid, 'f', 4, 64)), SpotInstanceType: ptr("one-time")},
				}
			}
		}
		r.UserData = ptr(userData)
		return r
	}

	log := p.log.With("job_id", req.JobID, "zone", it.Zone, "instance_type", it.InstanceType, "spot", spot)
	var resp *cvm.RunInstancesResponse
	for attempt := 0; ; attempt++ {
		cctx, cancel := p.callContext(ctx)
		resp, err = client.RunInstancesWithContext(cctx, build())
		cancel()
		if err == nil {
			break
		}
		perr := classify("run instances in "+it.Zone, err)
		if gpuflow.ProviderErrorKindOf(perr) != gpuflow.KindTransient || attempt >= p.cfg.Retries || ctx.Err() != nil {
			log.Warn("create failed", "err", perr)
			return nil, perr
		}
		wait := min(250*time.Millisecond<<attempt, 4*time.Second)
		var pe *gpuflow.ProviderError
		if errors.As(perr, &pe) && pe.RetryAfter > 0 {
			wait = pe.RetryAfter
		}
		log.Warn("create failed; retrying with the same client token", "attempt", attempt+1, "wait", wait, "err", perr)
		select {
		case <-ctx.Done():
			return nil, classify("run instances in "+it.Zone, ctx.Err())
		case <-time.After(wait):
		}
	}
	ids := resp.Response.InstanceIdSet
	if len(ids) == 0 || ids[0] == nil {
		return nil, errorf(gpuflow.KindTransient, "RunInstances answered no instance id (RequestId %s)", deref(resp.Response.RequestId))
	}
	id := p.machineID(region, *ids[0])
	p.remember(p.created, id)
	if spot {
		p.remember(p.spot, id)
	}
	price := it.Price
	if spot {
		price = it.SpotPrice
	}
	log.Info("instance created", "machine_id", id, "action_time", timerAt)
	return &gpuflow.Machine{
		ID: id, Provider: Name, State: gpuflow.MachinePending,
		GPUType: it.GPUType, GPUCount: it.GPUCount, Region: it.Zone,
		PricePerHour: round4(price), Tags: tags, CreatedAt: p.now(),
	}, nil
}

// chooseItem picks the instance type for the request: the offer's GPU type
// and count in the offer's zone (or region), big enough for the job,
// preferring the offer's exact shape, then stock, then price.
func (p *Provider) chooseItem(ctx context.Context, req gpuflow.ProvisionRequest, gpuCount int) (item, error) {
	items, err := p.catalogue(ctx)
	if err != nil {
		return item{}, err
	}
	o, spec := req.Offer, req.Spec
	gpuType := cmp.Or(o.GPUType, spec.GPUType)
	var cands []item
	for _, it := range items {
		switch {
		case !gpuflow.SameGPUType(it.GPUType, gpuType), it.GPUCount != gpuCount,
			o.Region != "" && it.Zone != o.Region && regionOf(it.Zone) != o.Region,
			spec.VCPUs > it.VCPUs, spec.MemoryGB > it.MemoryGB,
			spec.Spot && it.SpotPrice <= 0:
			continue
		}
		cands = append(cands, it)
	}
	if len(cands) == 0 {
		where := cmp.Or(o.Region, fmt.Sprint(p.regions))
		kind := "on-demand"
		if spec.Spot {
			kind = "spot"
		}
		return item{}, errorf(gpuflow.KindNoCapacity, "no %s instance type with %d x %s in %s fits the job", kind, gpuCount, gpuType, where)
	}
	price := func(it item) float64 {
		if spec.Spot {
			return it.SpotPrice
		}
		return it.Price
	}
	exact := func(it item) int {
		if it.VCPUs == o.VCPUs && it.MemoryGB == o.MemoryGB {
			return 0
		}
		return 1
	}
	inStock := func(it item) int {
		if it.Available == 0 {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(cands, func(a, b item) int {
		return cmp.Or(cmp.Compare(exact(a), exact(b)), cmp.Compare(inStock(a), inStock(b)), cmp.Compare(price(a), price(b)))
	})
	return cands[0], nil
}
