package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// Limits ECS enforces on RunInstances.
const (
	maxUserData    = 32 << 10 // bytes, before base64
	maxClientToken = 64
	maxAmount      = 100
	maxTags        = 20
)

// Time layouts ECS uses: CreationTime has minutes, AutoReleaseTime may
// have seconds.
const (
	layoutMinutes = "2006-01-02T15:04Z"
	layoutSeconds = "2006-01-02T15:04:05Z"
)

// boolParam reads an API boolean ("true"/"false").
func boolParam(v url.Values, name string) bool {
	b, _ := strconv.ParseBool(v.Get(name))
	return b
}

// listParam reads a repeated list parameter Name.1 … Name.N.
func listParam(v url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		s, ok := v[name+"."+strconv.Itoa(i)]
		if !ok || len(s) == 0 {
			return out
		}
		out = append(out, s[0])
	}
}

// tagParams reads Tag.N.Key / Tag.N.Value.
func tagParams(v url.Values) []tagJSON {
	var out []tagJSON
	for i := 1; i <= 64; i++ {
		p := "Tag." + strconv.Itoa(i)
		k, ok := v[p+".Key"]
		if !ok {
			if _, hasValue := v[p+".Value"]; hasValue {
				out = append(out, tagJSON{TagValue: v.Get(p + ".Value")})
			}
			continue
		}
		out = append(out, tagJSON{TagKey: k[0], TagValue: v.Get(p + ".Value")})
	}
	return out
}

// fingerprint is the identity of a request for ClientToken idempotency:
// every API parameter except the token itself.
func fingerprint(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		if k != "ClientToken" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + strings.Join(v[k], ",") + "\n")
	}
	return b.String()
}

// price converts a USD figure into the emulator's currency.
func (e *Emulator) price(usd float64) float32 {
	if e.opts.Currency == "CNY" {
		return float32(usd * e.opts.CNYPerUSD)
	}
	return float32(usd)
}

func (e *Emulator) checkRegion(c *call) (int, any, bool) {
	if c.region == "" {
		s, a := c.missing("RegionId")
		return s, a, false
	}
	if _, ok := e.regions[c.region]; !ok {
		s, a := c.fail(http.StatusNotFound, "InvalidRegionId.NotFound", "The specified RegionId does not exist.")
		return s, a, false
	}
	return 0, nil, true
}

func (e *Emulator) runInstances(c *call) (int, any) {
	p := c.params
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	typeName := p.Get("InstanceType")
	if typeName == "" && p.Get("LaunchTemplateId") == "" {
		return c.missing("InstanceType")
	}
	typ, ok := e.types[typeName]
	if !ok {
		return c.fail(http.StatusBadRequest, "InvalidInstanceType.ValueNotSupported",
			"The specified InstanceType does not exist or beyond the permitted range.")
	}
	if p.Get("ImageId") == "" {
		return c.missing("ImageId")
	}
	token := p.Get("ClientToken")
	if len(token) > maxClientToken || strings.ContainsFunc(token, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return c.fail(http.StatusBadRequest, "InvalidClientToken.ValueNotSupported",
			"The ClientToken provided is invalid.")
	}
	chargeType := p.Get("InstanceChargeType")
	if chargeType == "" {
		chargeType = "PostPaid"
	}
	if chargeType != "PostPaid" && chargeType != "PrePaid" {
		return c.fail(http.StatusBadRequest, "InvalidInstanceChargeType.ValueNotSupported",
			"The specified InstanceChargeType is not valid.")
	}
	spotStrategy := p.Get("SpotStrategy")
	if spotStrategy == "" {
		spotStrategy = "NoSpot"
	}
	spot := spotStrategy != "NoSpot"
	switch {
	case !slices.Contains([]string{"NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"}, spotStrategy):
		return c.fail(http.StatusBadRequest, "InvalidSpotStrategy", "The specified SpotStrategy is not valid.")
	case spot && chargeType != "PostPaid":
		return c.fail(http.StatusBadRequest, "InvalidSpotStrategy", "The specified SpotStrategy is only valid for PostPaid instances.")
	case spot && p.Get("ZoneId") == "":
		return c.fail(http.StatusBadRequest, "InvalidSpotParam.EmptyZoneID", "The ZoneId is required when SpotStrategy is set.")
	case spot && typ.SpotPriceUSD <= 0:
		return c.fail(http.StatusBadRequest, "InvalidSpotAuthorized", "The specified instance type is not authorized to be sold as spot.")
	}
	var spotLimit float64
	if spotStrategy == "SpotWithPriceLimit" {
		v, err := strconv.ParseFloat(p.Get("SpotPriceLimit"), 64)
		if err != nil || v <= 0 {
			return c.fail(http.StatusBadRequest, "InvalidSpotPriceLimit", "The specified SpotPriceLimit is not valid.")
		}
		if float32(v) < e.price(typ.SpotPriceUSD) {
			return c.fail(http.StatusBadRequest, "InvalidSpotPriceLimit.LowerThanPublicPrice",
				"The specified SpotPriceLimit is lower than the current public price.")
		}
		spotLimit = v
	}
	behavior := p.Get("SpotInterruptionBehavior")
	if spot && behavior == "" {
		behavior = "Terminate"
	}
	if behavior != "" && behavior != "Terminate" && behavior != "Stop" {
		return c.fail(http.StatusBadRequest, "InvalidSpotInterruptionBehavior", "The specified SpotInterruptionBehavior is not valid.")
	}
	zones := e.zonesOf(c.region)
	zone := p.Get("ZoneId")
	if zone == "" {
		zone = zones[0]
	} else if !slices.Contains(zones, zone) {
		return c.fail(http.StatusNotFound, "InvalidZoneId.NotFound", "The specified zone does not exist.")
	}
	amount := 1
	if s := p.Get("Amount"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAmount {
			return c.fail(http.StatusBadRequest, "InvalidAmount.ValueNotSupported", "The specified Amount is not valid.")
		}
		amount = n
	}
	var script string
	if ud := p.Get("UserData"); ud != "" {
		raw, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return c.fail(http.StatusForbidden, "InvalidUserData.Base64FormatInvalid", "The specified UserData is not valid Base64.")
		}
		if len(raw) > maxUserData {
			return c.fail(http.StatusBadRequest, "InvalidUserData.SizeExceeded", "The specified UserData exceeds 32 KB.")
		}
		script = string(raw)
	}
	var autoRelease time.Time
	if s := p.Get("AutoReleaseTime"); s != "" {
		t, err := time.Parse(layoutSeconds, s)
		if err != nil {
			t, err = time.Parse(layoutMinutes, s)
		}
		if err != nil {
			return c.fail(http.StatusBadRequest, "InvalidAutoReleaseTime.Malformed", "The specified AutoReleaseTime is malformed.")
		}
		if !t.After(e.now()) {
			return c.fail(http.StatusBadRequest, "InvalidAutoReleaseTime.LessThanCurrentTime",
				"The specified AutoReleaseTime is earlier than the current time.")
		}
		autoRelease = t
	}
	tags := tagParams(p)
	if len(tags) > maxTags {
		return c.fail(http.StatusBadRequest, "InvalidTagCount", "The number of tags exceeds 20.")
	}
	for _, t := range tags {
		if t.TagKey == "" {
			return c.fail(http.StatusBadRequest, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid.")
		}
	}
	if boolParam(p, "DryRun") {
		return c.fail(http.StatusBadRequest, "DryRunOperation", "Request validation has been passed with DryRun flag set.")
	}

	fp := fingerprint(p)
	if token != "" {
		if used, ok := e.tokens[token]; ok {
			if used.fingerprint != fp {
				return c.fail(http.StatusBadRequest, "IdempotenceParamNotMatch",
					"Request uses a client token in a previous request but is not identical to that request.")
			}
			return e.runAnswer(c, used.ids, typ, spot, amount)
		}
	}
	if e.faults.Get().NoCapacity {
		return c.fail(http.StatusForbidden, "OperationDenied.NoStock",
			"The resource is out of stock in the specified zone. Please try other types, or choose other regions and zones.")
	}

	now := e.now()
	ids := make([]string, 0, amount)
	for range amount {
		id := newInstanceID()
		name := p.Get("InstanceName")
		if name == "" {
			name = id
		}
		m := &machine{
			id: id, name: name, hostName: p.Get("HostName"), description: p.Get("Description"),
			region: c.region, zone: zone, typ: typ, imageID: p.Get("ImageId"),
			spot: spot, spotStrategy: spotStrategy, spotPriceLimit: spotLimit, interruptionBehavior: behavior,
			securityGroup: p.Get("SecurityGroupId"), vswitch: p.Get("VSwitchId"), keyPair: p.Get("KeyPairName"),
			instanceChargeType: chargeType, tags: tags, script: script, clientToken: token,
			created: now, autoRelease: autoRelease, status: statusPending,
			privateIP: fmt.Sprintf("172.16.%d.%d", len(e.order)/250%250, len(e.order)%250+2),
		}
		m.bandwidthOut, _ = strconv.Atoi(p.Get("InternetMaxBandwidthOut"))
		if m.bandwidthOut > 0 {
			m.publicIP = fmt.Sprintf("47.96.%d.%d", len(e.order)/250%250, len(e.order)%250+2)
		}
		e.seq++
		m.seq = e.seq
		e.machines[id] = m
		e.order = append(e.order, id)
		e.schedule(m)
		ids = append(ids, id)
	}
	if token != "" {
		e.tokens[token] = tokenUse{fingerprint: fp, ids: ids}
		e.creates[token] += len(ids)
	}
	e.dirty = true
	e.log.Info("instances created", "region", c.region, "zone", zone, "instance_type", typ.Name, "ids", ids, "spot", spot)
	return e.runAnswer(c, ids, typ, spot, amount)
}

// runAnswer answers a RunInstances that made (or, for a repeated
// ClientToken, had made) ids, unless the CreateLost fault loses the answer.
func (e *Emulator) runAnswer(c *call, ids []string, typ InstanceType, spot bool, amount int) (int, any) {
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.CreateLost }) {
		return c.internalError()
	}
	var body runInstancesBody
	body.RequestID = c.requestID
	body.InstanceIDSets.InstanceIDSet = slices.Clone(ids)
	unit := typ.PriceUSD
	if spot {
		unit = typ.SpotPriceUSD
	}
	body.TradePrice = e.price(unit * float64(amount))
	return http.StatusOK, body
}

// view renders an instance as DescribeInstances does.
func (e *Emulator) view(m *machine) instanceJSON {
	v := instanceJSON{
		InstanceID: m.id, InstanceName: m.name, HostName: m.hostName, Description: m.description,
		Status: m.status, InstanceType: m.typ.Name, InstanceTypeFamily: m.typ.family(),
		RegionID: m.region, ZoneID: m.zone, ImageID: m.imageID,
		InstanceChargeType: m.instanceChargeType, InternetChargeType: "PayByTraffic",
		InternetMaxBandwidthOut: int32(m.bandwidthOut), InstanceNetworkType: "vpc",
		SpotStrategy: m.spotStrategy, SpotPriceLimit: float32(m.spotPriceLimit),
		SpotInterruptionBehavior: m.interruptionBehavior,
		GPUAmount:                int32(m.typ.GPUAmount), GPUSpec: m.typ.GPUSpec,
		CPU: int32(m.typ.CPU), Memory: int32(m.typ.MemoryMiB),
		CreationTime: m.created.UTC().Format(layoutMinutes),
		ExpiredTime:  "2099-12-31T15:59Z",
		StoppedMode:  "Not-applicable",
		KeyPairName:  m.keyPair,
		OSType:       "linux",
	}
	if !m.started.IsZero() {
		v.StartTime = m.started.UTC().Format(layoutMinutes)
	}
	if !m.autoRelease.IsZero() {
		v.AutoReleaseTime = m.autoRelease.UTC().Format(layoutSeconds)
	}
	if m.stoppedMode != "" {
		v.StoppedMode = m.stoppedMode
	}
	if m.publicIP != "" {
		v.PublicIPAddress.IPAddress = []string{m.publicIP}
	} else {
		v.PublicIPAddress.IPAddress = []string{}
	}
	v.VpcAttributes.VpcID = "vpc-emulator"
	v.VpcAttributes.VSwitchID = m.vswitch
	v.VpcAttributes.PrivateIPAddress.IPAddress = []string{m.privateIP}
	v.SecurityGroupIDs.SecurityGroupID = []string{}
	if m.securityGroup != "" {
		v.SecurityGroupIDs.SecurityGroupID = []string{m.securityGroup}
	}
	v.OperationLocks.LockReason = slices.Clone(m.locks)
	if v.OperationLocks.LockReason == nil {
		v.OperationLocks.LockReason = []lockReason{}
	}
	v.Tags.Tag = slices.Clone(m.tags)
	if v.Tags.Tag == nil {
		v.Tags.Tag = []tagJSON{}
	}
	return v
}

// matches reports whether m passes DescribeInstances' filters.
func matches(m *machine, p url.Values, ids []string, tags []tagJSON) bool {
	if ids != nil && !slices.Contains(ids, m.id) {
		return false
	}
	for _, f := range []struct{ param, value string }{
		{"Status", m.status}, {"ZoneId", m.zone}, {"InstanceType", m.typ.Name},
		{"InstanceName", m.name}, {"ImageId", m.imageID}, {"VSwitchId", m.vswitch},
		{"InstanceChargeType", m.instanceChargeType},
	} {
		if want := p.Get(f.param); want != "" && want != f.value {
			return false
		}
	}
	for _, t := range tags {
		found := false
		for _, have := range m.tags {
			if (t.TagKey == "" || have.TagKey == t.TagKey) && (t.TagValue == "" || have.TagValue == t.TagValue) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// page reads PageNumber/PageSize (or NextToken/MaxResults) and returns the
// slice bounds and the paging answer.
type paging struct {
	start, end       int
	number, size     int32
	nextToken        string
	tokenPaging      bool
	invalidParameter string
}

func readPaging(p url.Values, total int) paging {
	var pg paging
	if p.Has("NextToken") || p.Has("MaxResults") {
		pg.tokenPaging = true
		size := 10
		if s := p.Get("MaxResults"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 100 {
				pg.invalidParameter = "MaxResults"
				return pg
			}
			size = n
		}
		start := 0
		if s := p.Get("NextToken"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				pg.invalidParameter = "NextToken"
				return pg
			}
			start = n
		}
		pg.start, pg.end, pg.size = min(start, total), min(start+size, total), int32(size)
		if pg.end < total {
			pg.nextToken = strconv.Itoa(pg.end)
		}
		return pg
	}
	number, size := 1, 10
	if s := p.Get("PageNumber"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			pg.invalidParameter = "PageNumber"
			return pg
		}
		number = n
	}
	if s := p.Get("PageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			pg.invalidParameter = "PageSize"
			return pg
		}
		size = n
	}
	pg.number, pg.size = int32(number), int32(size)
	pg.start = min((number-1)*size, total)
	pg.end = min(pg.start+size, total)
	return pg
}

func (c *call) invalidParameter(name string) (int, any) {
	return c.fail(http.StatusBadRequest, "InvalidParameter", "The specified parameter "+name+" is not valid.")
}

// inRegion returns the region's instances in creation order.
func (e *Emulator) inRegion(region string) []*machine {
	var out []*machine
	for _, m := range e.inOrder() {
		if m.region == region {
			out = append(out, m)
		}
	}
	return out
}

func (e *Emulator) describeInstances(c *call) (int, any) {
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	p := c.params
	var ids []string
	if s := p.Get("InstanceIds"); s != "" {
		if err := json.Unmarshal([]byte(s), &ids); err != nil {
			return c.invalidParameter("InstanceIds")
		}
		if len(ids) > 100 {
			return c.invalidParameter("InstanceIds")
		}
		if ids == nil {
			ids = []string{}
		}
	}
	tags := tagParams(p)
	candidates := e.byIDs(c.region, ids)
	if ids == nil {
		candidates = e.inRegion(c.region)
	}
	var found []*machine
	for _, m := range candidates {
		if matches(m, p, nil, tags) {
			found = append(found, m)
		}
	}
	pg := readPaging(p, len(found))
	if pg.invalidParameter != "" {
		return c.invalidParameter(pg.invalidParameter)
	}
	var body describeInstancesBody
	body.RequestID = c.requestID
	body.TotalCount = int32(len(found))
	body.PageSize = pg.size
	if pg.tokenPaging {
		body.NextToken = pg.nextToken
	} else {
		body.PageNumber = pg.number
	}
	body.Instances.Instance = []instanceJSON{}
	for _, m := range found[pg.start:pg.end] {
		body.Instances.Instance = append(body.Instances.Instance, e.view(m))
	}
	return http.StatusOK, body
}

// maxStatusPageSize is DescribeInstanceStatus's largest PageSize.
const maxStatusPageSize = 50

func (e *Emulator) describeInstanceStatus(c *call) (int, any) {
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	ids := listParam(c.params, "InstanceId")
	candidates := e.byIDs(c.region, ids)
	if ids == nil {
		candidates = e.inRegion(c.region)
	}
	var found []*machine
	for _, m := range candidates {
		if c.params.Get("ZoneId") == "" || c.params.Get("ZoneId") == m.zone {
			found = append(found, m)
		}
	}
	pg := readPaging(c.params, len(found))
	// DescribeInstanceStatus pages by at most 50 (DescribeInstances: 100).
	if pg.invalidParameter != "" || pg.tokenPaging || pg.size > maxStatusPageSize {
		return c.invalidParameter("PageSize")
	}
	var body describeInstanceStatusBody
	body.RequestID = c.requestID
	body.TotalCount, body.PageNumber, body.PageSize = int32(len(found)), pg.number, pg.size
	body.InstanceStatuses.InstanceStatus = []instanceStatusJSON{}
	for _, m := range found[pg.start:pg.end] {
		body.InstanceStatuses.InstanceStatus = append(body.InstanceStatuses.InstanceStatus,
			instanceStatusJSON{InstanceID: m.id, Status: m.status})
	}
	return http.StatusOK, body
}

// deletable checks that the instances can be deleted, as ECS does: a
// Running (or booting) instance needs Force.
func (e *Emulator) deletable(c *call, ids []string, force bool) (int, any, bool) {
	for _, id := range ids {
		m, ok := e.machines[id]
		if !ok {
			s, a := c.fail(http.StatusNotFound, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
			return s, a, false
		}
		if c.region != "" && m.region != c.region {
			s, a := c.fail(http.StatusNotFound, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
			return s, a, false
		}
		if m.status != statusStopped && !force {
			s, a := c.fail(http.StatusForbidden, "IncorrectInstanceStatus",
				"The current status of the resource does not support this operation.")
			return s, a, false
		}
	}
	return 0, nil, true
}

func (e *Emulator) deleteInstance(c *call) (int, any) {
	id := c.params.Get("InstanceId")
	if id == "" {
		return c.missing("InstanceId")
	}
	return e.doDelete(c, []string{id})
}

func (e *Emulator) deleteInstances(c *call) (int, any) {
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	ids := listParam(c.params, "InstanceId")
	if len(ids) == 0 {
		return c.missing("InstanceId.1")
	}
	if len(ids) > 100 {
		return c.invalidParameter("InstanceId")
	}
	return e.doDelete(c, ids)
}

func (e *Emulator) doDelete(c *call, ids []string) (int, any) {
	if s, a, ok := e.deletable(c, ids, boolParam(c.params, "Force")); !ok {
		return s, a
	}
	if boolParam(c.params, "DryRun") {
		return c.fail(http.StatusBadRequest, "DRYRUN.SUCCESS", "This request is a dryrun request with successful result.")
	}
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.TerminateFailures }) {
		return c.internalError()
	}
	for _, id := range ids {
		e.release(id)
	}
	e.log.Info("instances deleted", "ids", ids)
	return http.StatusOK, requestIDBody{RequestID: c.requestID}
}

func (e *Emulator) describeAvailableResource(c *call) (int, any) {
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	p := c.params
	dest := p.Get("DestinationResource")
	if dest == "" {
		return c.missing("DestinationResource")
	}
	if dest != "Zone" && dest != "InstanceType" {
		return c.invalidParameter("DestinationResource")
	}
	spot := p.Get("SpotStrategy") != "" && p.Get("SpotStrategy") != "NoSpot"
	soldOut := e.faults.Get().NoCapacity
	var body describeAvailableResourceBody
	body.RequestID = c.requestID
	body.AvailableZones.AvailableZone = []availableZone{}
	for _, zone := range e.zonesOf(c.region) {
		if z := p.Get("ZoneId"); z != "" && z != zone {
			continue
		}
		az := availableZone{ZoneID: zone, RegionID: c.region, Status: "Available", StatusCategory: "WithStock"}
		if soldOut {
			az.Status, az.StatusCategory = "SoldOut", "WithoutStock"
		}
		res := availableResource{Type: dest}
		res.SupportedResources.SupportedResource = []supportedResource{}
		if dest == "Zone" {
			res.SupportedResources.SupportedResource = append(res.SupportedResources.SupportedResource,
				supportedResource{Value: zone, Status: az.Status, StatusCategory: az.StatusCategory})
		} else {
			for _, t := range e.typeList {
				if it := p.Get("InstanceType"); it != "" && it != t.Name {
					continue
				}
				if spot && t.SpotPriceUSD <= 0 {
					continue
				}
				sr := supportedResource{Value: t.Name, Status: "Available", StatusCategory: "WithStock"}
				if soldOut {
					sr.Status, sr.StatusCategory = "SoldOut", "WithoutStock"
				}
				res.SupportedResources.SupportedResource = append(res.SupportedResources.SupportedResource, sr)
			}
		}
		az.AvailableResources.AvailableResource = []availableResource{res}
		body.AvailableZones.AvailableZone = append(body.AvailableZones.AvailableZone, az)
	}
	return http.StatusOK, body
}

func (e *Emulator) describePrice(c *call) (int, any) {
	if s, a, ok := e.checkRegion(c); !ok {
		return s, a
	}
	p := c.params
	if rt := p.Get("ResourceType"); rt != "" && rt != "instance" {
		return c.invalidParameter("ResourceType")
	}
	name := p.Get("InstanceType")
	if name == "" {
		return c.missing("InstanceType")
	}
	typ, ok := e.types[name]
	if !ok {
		return c.fail(http.StatusBadRequest, "InvalidInstanceType.ValueNotSupported",
			"The specified InstanceType does not exist or beyond the permitted range.")
	}
	hours := 1.0
	switch p.Get("PriceUnit") {
	case "", "Hour":
	case "Week":
		hours = 24 * 7
	case "Month":
		hours = 730
	case "Year":
		hours = 8760
	default:
		return c.invalidParameter("PriceUnit")
	}
	period := 1
	if s := p.Get("Period"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c.invalidParameter("Period")
		}
		period = n
	}
	amount := 1
	if s := p.Get("Amount"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAmount {
			return c.invalidParameter("Amount")
		}
		amount = n
	}
	unit := typ.PriceUSD
	switch s := p.Get("SpotStrategy"); s {
	case "", "NoSpot":
	case "SpotAsPriceGo", "SpotWithPriceLimit":
		if typ.SpotPriceUSD <= 0 {
			return c.fail(http.StatusBadRequest, "InvalidSpotAuthorized",
				"The specified instance type is not authorized to be sold as spot.")
		}
		unit = typ.SpotPriceUSD
	default:
		return c.fail(http.StatusBadRequest, "InvalidSpotStrategy", "The specified SpotStrategy is not valid.")
	}
	total := e.price(unit * hours * float64(period*amount))
	var body describePriceBody
	body.RequestID = c.requestID
	pr := &body.PriceInfo.Price
	pr.Currency = e.opts.Currency
	pr.OriginalPrice, pr.DiscountPrice, pr.TradePrice = total, 0, total
	pr.DetailInfos.DetailInfo = []priceDetail{{Resource: "instanceType", OriginalPrice: total, TradePrice: total}}
	body.PriceInfo.Rules.Rule = []struct{}{}
	return http.StatusOK, body
}
