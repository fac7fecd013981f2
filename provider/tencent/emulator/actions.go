package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow/provider/emulate"
)

// maxBody bounds a request body, as the API's RequestSizeLimitExceeded.
const maxBody = 1 << 20

// maxUserData is the most base64 user data RunInstances accepts (16 KB).
const maxUserData = 16 << 10

// apiError is an error answer: HTTP 200 with Response.Error.
type apiError struct{ Code, Message string }

func errorf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	requestID := newUUID()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, requestID, errorf(cvm.INTERNALERROR, "reading the request failed"))
		return
	}
	if slow := e.faults.Get().Slow; slow > 0 {
		t := time.NewTimer(slow)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	action := r.Header.Get("X-TC-Action")
	resp, aerr := e.handle(r, action, body, requestID)
	if aerr != nil {
		e.log.Debug("api error", "action", action, "code", aerr.Code, "request_id", requestID)
		writeError(w, requestID, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"Response": resp})
}

func writeError(w http.ResponseWriter, requestID string, aerr *apiError) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"Response": map[string]any{
		"Error":     map[string]string{"Code": aerr.Code, "Message": aerr.Message},
		"RequestId": requestID,
	}})
}

// handle checks the request and runs the action. It answers like the API:
// the transport and signature first, then throttling, then the action.
func (e *Emulator) handle(r *http.Request, action string, body []byte, requestID string) (any, *apiError) {
	if len(body) > maxBody {
		return nil, errorf(codeRequestSizeLimit, "The request body exceeds %d bytes.", maxBody)
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return nil, errorf(cvm.INVALIDPARAMETER, "The emulator accepts POST with a JSON body (Content-Type: application/json) only.")
	}
	if action == "" {
		return nil, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `Action`.")
	}
	if aerr := e.authenticate(r, body); aerr != nil {
		return nil, aerr
	}
	if v := r.Header.Get("X-TC-Version"); v != APIVersion {
		return nil, errorf(codeNoSuchVersion, "The API version `%s` does not exist for cvm.", v)
	}
	region := r.Header.Get("X-TC-Region")
	if region == "" {
		return nil, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `Region`.")
	}
	if !regionPattern.MatchString(region) {
		return nil, errorf(codeUnsupportedRegion, "The region `%s` is not supported.", region)
	}
	if e.faults.Get().Throttle {
		return nil, errorf(codeRequestLimitExceeded, "Your current request times exceeds the limit, please try again later.")
	}
	if ok, _ := e.limits.Allow(action, secretIDOf(r)); !ok {
		return nil, errorf(codeRequestLimitExceeded, "The number of requests exceeds the frequency limit of %s.", action)
	}
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.ServerErrors }) {
		return nil, errorf(cvm.INTERNALERROR, "An internal error has occurred. Retry your request, but if the problem persists, contact us.")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.flushLocked() // persisted before the answer goes
	e.advanceLocked()
	switch action {
	case "RunInstances":
		return e.runInstances(region, requestID, body)
	case "DescribeInstances":
		return e.describeInstances(region, requestID, body)
	case "DescribeInstancesStatus":
		return e.describeInstancesStatus(region, requestID, body)
	case "TerminateInstances":
		return e.terminateInstances(region, requestID, body)
	case "DescribeZoneInstanceConfigInfos":
		return e.describeZoneInstanceConfigInfos(region, requestID, body)
	case "InquiryPriceRunInstances":
		return e.inquiryPriceRunInstances(region, requestID, body)
	}
	return nil, errorf(codeInvalidAction, "The action `%s` is not supported by the emulator.", action)
}

func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(cvm.INVALIDPARAMETER, "The request body is not valid: %v.", err)
	}
	return nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

// placement checks a request's zone and instance type.
func placement(region string, pl *cvm.Placement, typeName *string) (zone string, t instanceType, aerr *apiError) {
	if pl == nil || pl.Zone == nil || *pl.Zone == "" {
		return "", t, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `Placement.Zone`.")
	}
	zone = *pl.Zone
	if !strings.HasPrefix(zone, region+"-") {
		return "", t, errorf(cvm.INVALIDZONE_MISMATCHREGION, "The zone `%s` does not belong to the region `%s`.", zone, region)
	}
	if !slices.Contains(zonesOf(region), zone) {
		return "", t, errorf(cvm.INVALIDPARAMETERVALUE_ZONENOTSUPPORTED, "The zone `%s` is not supported.", zone)
	}
	if typeName == nil || *typeName == "" {
		return "", t, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `InstanceType`.")
	}
	t, ok := lookupType(*typeName)
	if !ok {
		return "", t, errorf(cvm.INVALIDPARAMETERVALUE_INSTANCETYPENOTFOUND, "The instance type `%s` is not found.", *typeName)
	}
	return zone, t, nil
}

func chargeType(p *string) (string, *apiError) {
	c := deref(p, ChargePostpaid)
	if c != ChargePostpaid && c != ChargeSpot {
		return "", errorf(cvm.INVALIDPARAMETERVALUE, "InstanceChargeType `%s` is not supported by the emulator (POSTPAID_BY_HOUR, SPOTPAID).", c)
	}
	return c, nil
}

func (e *Emulator) runInstances(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.RunInstancesRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	charge, aerr := chargeType(p.InstanceChargeType)
	if aerr != nil {
		return nil, aerr
	}
	zone, t, aerr := placement(region, p.Placement, p.InstanceType)
	if aerr != nil {
		return nil, aerr
	}
	image := deref(p.ImageId, "")
	if image == "" {
		return nil, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `ImageId`.")
	}
	if !imagePattern.MatchString(image) {
		return nil, errorf(cvm.INVALIDIMAGEID_MALFORMED, "The image id `%s` is malformed.", image)
	}
	count := deref(p.InstanceCount, 1)
	if count < 1 || count > 100 {
		return nil, errorf(cvm.INVALIDPARAMETERVALUE_LIMITEXCEEDED, "InstanceCount must be between 1 and 100.")
	}
	token := deref(p.ClientToken, "")
	if len(token) > 64 {
		return nil, errorf(cvm.INVALIDCLIENTTOKEN_TOOLONG, "ClientToken must be at most 64 characters.")
	}
	for _, c := range []byte(token) {
		if c < 0x20 || c > 0x7e {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE, "ClientToken must be ASCII.")
		}
	}
	var userData string
	if p.UserData != nil {
		if len(*p.UserData) > maxUserData {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE_INVALIDUSERDATAFORMAT, "UserData must be at most 16 KB of base64.")
		}
		b, err := base64.StdEncoding.DecodeString(*p.UserData)
		if err != nil {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE_INVALIDUSERDATAFORMAT, "UserData is not valid base64.")
		}
		userData = string(b)
	}
	var tags [][2]string
	for _, spec := range p.TagSpecification {
		if spec == nil {
			continue
		}
		if deref(spec.ResourceType, "") != "instance" {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE, "TagSpecification.ResourceType must be `instance`.")
		}
		for _, tag := range spec.Tags {
			k, v := deref(tag.Key, ""), deref(tag.Value, "")
			switch {
			case k == "" || len(k) > 127 || len(v) > 255:
				return nil, errorf(cvm.FAILEDOPERATION_ILLEGALTAGKEY, "Tag keys must be 1 to 127 characters and values at most 255.")
			case strings.HasPrefix(k, "qcloud") || strings.HasPrefix(k, "tencent") || strings.HasPrefix(k, "project"):
				return nil, errorf(cvm.FAILEDOPERATION_TAGKEYRESERVED, "The tag key `%s` is reserved.", k)
			case slices.ContainsFunc(tags, func(t [2]string) bool { return t[0] == k }):
				return nil, errorf(cvm.INVALIDPARAMETERVALUE_DUPLICATETAGS, "The tag key `%s` is given twice.", k)
			}
			tags = append(tags, [2]string{k, v})
		}
	}
	now := e.now()
	var timerAt time.Time
	if at := p.ActionTimer; at != nil {
		if deref(at.TimerAction, "") != "TerminateInstances" {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE, "ActionTimer.TimerAction must be `TerminateInstances`.")
		}
		ts, err := time.Parse("2006-01-02T15:04:05Z", deref(at.ActionTime, ""))
		if err != nil {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE_INVALIDTIMEFORMAT, "ActionTimer.ActionTime must be YYYY-MM-DDThh:mm:ssZ (UTC).")
		}
		if ts.Before(now.Add(5 * time.Minute)) {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE, "ActionTimer.ActionTime must be at least 5 minutes from now.")
		}
		timerAt = ts
	}
	if mo := p.InstanceMarketOptions; mo != nil {
		if charge != ChargeSpot {
			return nil, errorf(cvm.INVALIDPARAMETERCOMBINATION, "InstanceMarketOptions needs InstanceChargeType SPOTPAID.")
		}
		if deref(mo.MarketType, "") != "spot" {
			return nil, errorf(cvm.INVALIDPARAMETERVALUE, "InstanceMarketOptions.MarketType must be `spot`.")
		}
		if so := mo.SpotOptions; so != nil && so.MaxPrice != nil {
			bid, err := strconv.ParseFloat(*so.MaxPrice, 64)
			if err != nil {
				return nil, errorf(cvm.INVALIDPARAMETERVALUE, "SpotOptions.MaxPrice `%s` is not a number.", *so.MaxPrice)
			}
			if t.SpotPrice > 0 && bid < t.SpotPrice {
				return nil, errorf(cvm.INVALIDPARAMETERVALUE_INSUFFICIENTPRICE, "The bid %.4f is below the current spot price %.4f.", bid, t.SpotPrice)
			}
		}
	}
	if charge == ChargeSpot && t.SpotPrice == 0 {
		return nil, errorf(cvm.UNSUPPORTEDOPERATION_NOINSTANCETYPESUPPORTSPOT, "The instance type `%s` is not sold as spot.", t.Name)
	}

	tokenKey := region + "\x00" + token
	if ids, ok := e.tokens[tokenKey]; ok && token != "" {
		return &cvm.RunInstancesResponseParams{InstanceIdSet: ptrs(ids), RequestId: &requestID}, nil
	}
	if e.faults.Get().NoCapacity {
		return nil, errorf(cvm.RESOURCEINSUFFICIENT_SPECIFIEDINSTANCETYPE, "The specified instance type `%s` is out of stock in `%s`.", t.Name, zone)
	}
	if stockOf(t, zone) == "WithoutStock" {
		return nil, errorf(cvm.RESOURCESSOLDOUT_SPECIFIEDINSTANCETYPE, "The specified instance type `%s` is sold out in `%s`.", t.Name, zone)
	}
	if deref(p.DryRun, false) {
		return &cvm.RunInstancesResponseParams{RequestId: &requestID}, nil
	}

	ids := make([]string, 0, count)
	for i := range count {
		id := newID("ins-", 8)
		for e.instances[id] != nil {
			id = newID("ins-", 8)
		}
		name := deref(p.InstanceName, "Unnamed")
		if count > 1 {
			name += strconv.FormatInt(i+1, 10)
		}
		e.seq++
		in := &instance{
			id: id, uuid: newUUID(), seq: e.seq, region: region, zone: zone, typ: t, charge: charge,
			state: StatePending, name: name, imageID: image, tags: tags, userData: userData,
			privateIP: fmt.Sprintf("10.%d.%d.%d", e.seq/65536%256, e.seq/256%256, e.seq%256),
			created:   now, timerAt: timerAt,
			latestOp: "RunInstances", latestOpState: "OPERATING", latestOpReq: requestID,
			diskType: "CLOUD_PREMIUM", diskGB: 50, clientToken: token,
		}
		if d := p.SystemDisk; d != nil {
			in.diskType = deref(d.DiskType, in.diskType)
			in.diskGB = deref(d.DiskSize, in.diskGB)
		}
		if ia := p.InternetAccessible; ia != nil {
			in.publicIP = deref(ia.PublicIpAssigned, deref(ia.InternetMaxBandwidthOut, 0) > 0)
		}
		if !timerAt.IsZero() {
			in.timerID = newID("tm-", 8)
		}
		e.instances[id] = in
		e.scheduleLocked(in)
		ids = append(ids, id)
	}
	if token != "" {
		e.tokens[tokenKey] = ids
		e.creates[token] += len(ids)
	}
	e.dirty = true
	e.log.Info("instances created", "instance_ids", ids, "zone", zone, "instance_type", t.Name, "charge", charge)
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.CreateLost }) {
		return nil, errorf(cvm.INTERNALERROR, "An internal error has occurred. Retry your request, but if the problem persists, contact us.")
	}
	e.advanceLocked() // a zero Timing makes instances run at once
	return &cvm.RunInstancesResponseParams{InstanceIdSet: ptrs(ids), RequestId: &requestID}, nil
}

func ptrs(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

func vals(ps []*string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// checkIDs validates instance ids as the API does.
func checkIDs(ids []*string) ([]string, *apiError) {
	if len(ids) > 100 {
		return nil, errorf(cvm.INVALIDPARAMETERVALUE_LIMITEXCEEDED, "At most 100 instance ids may be given.")
	}
	out := vals(ids)
	for _, id := range out {
		if !idPattern.MatchString(id) {
			return nil, errorf(cvm.INVALIDINSTANCEID_MALFORMED, "The instance id `%s` is malformed.", id)
		}
	}
	return out, nil
}

// page checks Offset and Limit (default 20, at most 100).
func page(offset, limit *int64) (int, int, *apiError) {
	o, l := deref(offset, 0), deref(limit, 20)
	if o < 0 || l < 1 || l > 100 {
		return 0, 0, errorf(cvm.INVALIDPARAMETERVALUE_LIMITEXCEEDED, "Offset must not be negative and Limit must be between 1 and 100.")
	}
	return int(o), int(l), nil
}

// regionInstances returns the instances of region, newest first.
func (e *Emulator) regionInstances(region string) []*instance {
	var out []*instance
	for _, in := range e.instances {
		if in.region == region {
			out = append(out, in)
		}
	}
	sortNewestFirst(out)
	return out
}

// byIDs returns the instances of region among ids (unknown ones left
// out, as the API does), newest first: map lookups, not a scan.
func (e *Emulator) byIDs(region string, ids []string) []*instance {
	out := make([]*instance, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if in := e.instances[id]; in != nil && in.region == region && !seen[id] {
			seen[id] = true
			out = append(out, in)
		}
	}
	sortNewestFirst(out)
	return out
}

func sortNewestFirst(ins []*instance) {
	slices.SortFunc(ins, func(a, b *instance) int {
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
}

// instanceFilter matches one DescribeInstances filter.
type instanceFilter struct {
	name   string
	values []string
}

var instanceFilterNames = []string{"instance-id", "instance-name", "instance-state", "instance-charge-type", "zone", "tag-key", "tag-value"}

func (f instanceFilter) match(in *instance) bool {
	anyTag := func(ok func(k, v string) bool) bool {
		return slices.ContainsFunc(in.tags, func(t [2]string) bool { return ok(t[0], t[1]) })
	}
	switch f.name {
	case "instance-id":
		return slices.Contains(f.values, in.id)
	case "instance-name":
		return slices.Contains(f.values, in.name)
	case "instance-state":
		return slices.Contains(f.values, in.state)
	case "instance-charge-type":
		return slices.Contains(f.values, in.charge)
	case "zone":
		return slices.Contains(f.values, in.zone)
	case "tag-key":
		return anyTag(func(k, _ string) bool { return slices.Contains(f.values, k) })
	case "tag-value":
		return anyTag(func(_, v string) bool { return slices.Contains(f.values, v) })
	}
	key := strings.TrimPrefix(f.name, "tag:")
	return anyTag(func(k, v string) bool { return k == key && slices.Contains(f.values, v) })
}

func checkFilters(fs []*cvm.Filter, known []string, prefixed bool) ([]instanceFilter, *apiError) {
	if len(fs) > 10 {
		return nil, errorf(cvm.INVALIDPARAMETERVALUE_LIMITEXCEEDED, "At most 10 filters may be given.")
	}
	out := make([]instanceFilter, 0, len(fs))
	for _, f := range fs {
		if f == nil || f.Name == nil {
			return nil, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `Filters.Name`.")
		}
		name := *f.Name
		if !slices.Contains(known, name) && !(prefixed && strings.HasPrefix(name, "tag:") && len(name) > 4) {
			return nil, errorf(cvm.INVALIDFILTER, "The filter `%s` is not supported.", name)
		}
		out = append(out, instanceFilter{name: name, values: vals(f.Values)})
	}
	return out, nil
}

func (e *Emulator) describeInstances(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.DescribeInstancesRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	if len(p.InstanceIds) > 0 && len(p.Filters) > 0 {
		return nil, errorf(cvm.INVALIDPARAMETERCOMBINATION, "InstanceIds and Filters cannot be given together.")
	}
	ids, aerr := checkIDs(p.InstanceIds)
	if aerr != nil {
		return nil, aerr
	}
	filters, aerr := checkFilters(p.Filters, instanceFilterNames, true)
	if aerr != nil {
		return nil, aerr
	}
	for _, f := range filters {
		if len(f.values) > 5 {
			return nil, errorf(cvm.INVALIDFILTERVALUE_LIMITEXCEEDED, "A filter takes at most 5 values.")
		}
	}
	offset, limit, aerr := page(p.Offset, p.Limit)
	if aerr != nil {
		return nil, aerr
	}
	var matched []*instance
	if len(ids) > 0 {
		matched = e.byIDs(region, ids) // InstanceIds and Filters exclude each other
	} else {
		for _, in := range e.regionInstances(region) {
			if !slices.ContainsFunc(filters, func(f instanceFilter) bool { return !f.match(in) }) {
				matched = append(matched, in)
			}
		}
	}
	set := []*cvm.Instance{}
	for _, in := range window(matched, offset, limit) {
		set = append(set, e.view(in))
	}
	return &cvm.DescribeInstancesResponseParams{TotalCount: ptr(int64(len(matched))), InstanceSet: set, RequestId: &requestID}, nil
}

func window[T any](s []T, offset, limit int) []T {
	if offset >= len(s) {
		return nil
	}
	return s[offset:min(offset+limit, len(s))]
}

// view renders an instance as DescribeInstances does.
func (e *Emulator) view(in *instance) *cvm.Instance {
	tags := make([]*cvm.Tag, 0, len(in.tags))
	for _, t := range in.tags {
		tags = append(tags, &cvm.Tag{Key: ptr(t[0]), Value: ptr(t[1])})
	}
	v := &cvm.Instance{
		Placement:                &cvm.Placement{Zone: ptr(in.zone), ProjectId: ptr(int64(0))},
		InstanceId:               ptr(in.id),
		Uuid:                     ptr(in.uuid),
		InstanceType:             ptr(in.typ.Name),
		CPU:                      ptr(in.typ.CPU),
		Memory:                   ptr(in.typ.MemoryGB),
		RestrictState:            ptr("NORMAL"),
		InstanceName:             ptr(in.name),
		InstanceChargeType:       ptr(in.charge),
		SystemDisk:               &cvm.SystemDisk{DiskType: ptr(in.diskType), DiskSize: ptr(in.diskGB), DiskId: ptr("disk-" + in.id[4:])},
		PrivateIpAddresses:       []*string{ptr(in.privateIP)},
		ImageId:                  ptr(in.imageID),
		OsName:                   ptr("Ubuntu Server 22.04 LTS 64bit"),
		CreatedTime:              ptr(in.created.UTC().Format("2006-01-02T15:04:05Z")),
		InstanceState:            ptr(in.state),
		Tags:                     tags,
		StopChargingMode:         ptr("NOT_APPLICABLE"),
		LatestOperation:          ptr(in.latestOp),
		LatestOperationState:     ptr(in.latestOpState),
		LatestOperationRequestId: ptr(in.latestOpReq),
		IsolatedSource:           ptr("NOTISOLATED"),
		GPUInfo:                  &cvm.GPUInfo{GPUCount: ptr(float64(in.typ.GPUs)), GPUType: ptr(in.typ.GPUModel)},
		DisableApiTermination:    ptr(false),
		DefaultLoginUser:         ptr("ubuntu"),
		DefaultLoginPort:         ptr(int64(22)),
		LicenseType:              ptr("TencentCloud"),
	}
	if in.publicIP && in.state == StateRunning {
		v.PublicIpAddresses = []*string{ptr(fmt.Sprintf("203.0.113.%d", in.seq%254+1))}
	}
	return v
}

func (e *Emulator) describeInstancesStatus(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.DescribeInstancesStatusRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	ids, aerr := checkIDs(p.InstanceIds)
	if aerr != nil {
		return nil, aerr
	}
	offset, limit, aerr := page(p.Offset, p.Limit)
	if aerr != nil {
		return nil, aerr
	}
	matched := e.byIDs(region, ids)
	if len(ids) == 0 {
		matched = e.regionInstances(region)
	}
	set := []*cvm.InstanceStatus{}
	for _, in := range window(matched, offset, limit) {
		set = append(set, &cvm.InstanceStatus{InstanceId: ptr(in.id), InstanceState: ptr(in.state)})
	}
	return &cvm.DescribeInstancesStatusResponseParams{TotalCount: ptr(int64(len(matched))), InstanceStatusSet: set, RequestId: &requestID}, nil
}

func (e *Emulator) terminateInstances(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.TerminateInstancesRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	if len(p.InstanceIds) == 0 {
		return nil, errorf(cvm.MISSINGPARAMETER, "The request is missing a required parameter `InstanceIds`.")
	}
	ids, aerr := checkIDs(p.InstanceIds)
	if aerr != nil {
		return nil, aerr
	}
	targets := make([]*instance, 0, len(ids))
	for _, id := range ids {
		in := e.instances[id]
		if in == nil || in.region != region {
			return nil, errorf(cvm.INVALIDINSTANCEID_NOTFOUND, "The instance `%s` is not found.", id)
		}
		targets = append(targets, in)
	}
	if e.faults.Take(func(f *emulate.Faults) *int { return &f.TerminateFailures }) {
		return nil, errorf(cvm.MUTEXOPERATION_TASKRUNNING, "Another task is running on the instance `%s`; try again later.", ids[0])
	}
	for _, in := range targets {
		switch in.state {
		case StatePending:
			return nil, errorf(cvm.UNSUPPORTEDOPERATION_INSTANCESTATEPENDING, "The instance `%s` is PENDING and cannot be terminated yet.", in.id)
		case StateTerminating:
			return nil, errorf(cvm.UNSUPPORTEDOPERATION_INSTANCESTATETERMINATING, "The instance `%s` is already being terminated.", in.id)
		}
	}
	for _, in := range targets {
		e.terminateLocked(in, requestID)
		e.log.Info("instance terminated", "instance_id", in.id)
	}
	return &cvm.TerminateInstancesResponseParams{RequestId: &requestID}, nil
}

var zoneConfigFilterNames = []string{"zone", "instance-family", "instance-type", "instance-charge-type", "sort-keys"}

func (e *Emulator) describeZoneInstanceConfigInfos(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.DescribeZoneInstanceConfigInfosRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	filters, aerr := checkFilters(p.Filters, zoneConfigFilterNames, false)
	if aerr != nil {
		return nil, aerr
	}
	want := func(name, value string) bool {
		for _, f := range filters {
			if f.name == name && !slices.Contains(f.values, value) {
				return false
			}
		}
		return true
	}
	noCapacity := e.faults.Get().NoCapacity
	set := []*cvm.InstanceTypeQuotaItem{}
	for _, zone := range zonesOf(region) {
		for _, t := range catalog {
			for _, charge := range []string{ChargePostpaid, ChargeSpot} {
				price := t.Price
				if charge == ChargeSpot {
					price = t.SpotPrice
				}
				if price == 0 || !want("zone", zone) || !want("instance-family", t.Family) ||
					!want("instance-type", t.Name) || !want("instance-charge-type", charge) {
					continue
				}
				stock := stockOf(t, zone)
				if noCapacity {
					stock = "WithoutStock"
				}
				row := &cvm.InstanceTypeQuotaItem{
					Zone: ptr(zone), InstanceType: ptr(t.Name), InstanceChargeType: ptr(charge),
					NetworkCard: ptr(int64(25)), Cpu: ptr(t.CPU), Memory: ptr(t.MemoryGB),
					InstanceFamily: ptr(t.Family), TypeName: ptr(t.TypeName), Status: ptr("SELL"),
					Price: &cvm.ItemPrice{UnitPrice: ptr(price), UnitPriceDiscount: ptr(price), ChargeUnit: ptr("HOUR"), Discount: ptr(100.0)},
					Gpu:   ptr(t.GPUs), GpuCount: ptr(float64(t.GPUs)), Fpga: ptr(int64(0)),
					CpuType: ptr("Intel Xeon"), Frequency: ptr("2.5/3.1GHz"), StatusCategory: ptr(stock),
					InstanceBandwidth: ptr(10.0), InstancePps: ptr(int64(100)), Remark: ptr(""),
				}
				if stock == "WithoutStock" {
					row.Status = ptr("SOLD_OUT")
					row.SoldOutReason = ptr("Insufficient stock")
				}
				set = append(set, row)
			}
		}
	}
	return &cvm.DescribeZoneInstanceConfigInfosResponseParams{InstanceTypeQuotaSet: set, RequestId: &requestID}, nil
}

func (e *Emulator) inquiryPriceRunInstances(region, requestID string, body []byte) (any, *apiError) {
	var p cvm.InquiryPriceRunInstancesRequestParams
	if aerr := decode(body, &p); aerr != nil {
		return nil, aerr
	}
	charge, aerr := chargeType(p.InstanceChargeType)
	if aerr != nil {
		return nil, aerr
	}
	_, t, aerr := placement(region, p.Placement, p.InstanceType)
	if aerr != nil {
		return nil, aerr
	}
	price := t.Price
	if charge == ChargeSpot {
		if t.SpotPrice == 0 {
			return nil, errorf(cvm.UNSUPPORTEDOPERATION_NOINSTANCETYPESUPPORTSPOT, "The instance type `%s` is not sold as spot.", t.Name)
		}
		price = t.SpotPrice
	}
	n := float64(deref(p.InstanceCount, 1))
	return &cvm.InquiryPriceRunInstancesResponseParams{
		Price: &cvm.Price{
			InstancePrice:  &cvm.ItemPrice{UnitPrice: ptr(price * n), UnitPriceDiscount: ptr(price * n), ChargeUnit: ptr("HOUR"), Discount: ptr(100.0)},
			BandwidthPrice: &cvm.ItemPrice{UnitPrice: ptr(0.12), UnitPriceDiscount: ptr(0.12), ChargeUnit: ptr("GB"), Discount: ptr(100.0)},
		},
		RequestId: &requestID,
	}, nil
}
