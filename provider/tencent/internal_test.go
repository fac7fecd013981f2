package tencent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"

	"github.com/gpuflow/gpuflow"
)

func TestKindOf(t *testing.T) {
	for code, want := range map[string]gpuflow.ProviderErrorKind{
		"ResourceInsufficient.SpecifiedInstanceType":           gpuflow.KindNoCapacity,
		"ResourcesSoldOut.SpecifiedInstanceType":               gpuflow.KindNoCapacity,
		"ResourceInsufficient.ZoneSoldOutForSpecifiedInstance": gpuflow.KindNoCapacity,
		"ResourceInsufficient.AvailabilityZoneSoldOut":         gpuflow.KindNoCapacity,
		"ResourcesSoldOut.AvailableZone":                       gpuflow.KindNoCapacity,
		"ResourceUnavailable.InstanceType":                     gpuflow.KindNoCapacity,
		"ResourceNotFound.InvalidZoneInstanceType":             gpuflow.KindNoCapacity,
		"ResourceInsufficient.InsufficientOfferingMinimum":     gpuflow.KindNoCapacity,
		"InvalidParameterValue.InsufficientOffering":           gpuflow.KindNoCapacity,
		"InvalidParameterValue.InsufficientPrice":              gpuflow.KindNoCapacity,
		"ResourcesSoldOut.EipInsufficient":                     gpuflow.KindNoCapacity,
		"ResourceInsufficient.CloudDiskSoldOut":                gpuflow.KindNoCapacity,
		"UnsupportedOperation.NoInstanceTypeSupportSpot":       gpuflow.KindNoCapacity,
		"UnsupportedOperation.SpotUnsupportedRegion":           gpuflow.KindNoCapacity,
		"LimitExceeded.InstanceQuota":                          gpuflow.KindNoCapacity,
		"LimitExceeded.CvmInstanceQuota":                       gpuflow.KindNoCapacity,
		"LimitExceeded.SpotQuota":                              gpuflow.KindNoCapacity,
		"LimitExceeded.UserSpotQuota":                          gpuflow.KindNoCapacity,
		"InstancesQuotaLimitExceeded":                          gpuflow.KindNoCapacity,
		"InvalidAccount.InsufficientBalance":                   gpuflow.KindNoCapacity,
		"AuthFailure.SignatureFailure":                         gpuflow.KindAuth,
		"AuthFailure.SecretIdNotFound":                         gpuflow.KindAuth,
		"AuthFailure.SignatureExpire":                          gpuflow.KindAuth,
		"UnauthorizedOperation":                                gpuflow.KindAuth,
		"AccountQualificationRestrictions":                     gpuflow.KindAuth,
		"InvalidParameterValue.InstanceTypeNotFound":           gpuflow.KindInvalidRequest,
		"InvalidInstanceType.Malformed":                        gpuflow.KindInvalidRequest,
		"InvalidImageId.NotFound":                              gpuflow.KindInvalidRequest,
		"InvalidParameterValue.InvalidUserDataFormat":          gpuflow.KindInvalidRequest,
		"InvalidZone.MismatchRegion":                           gpuflow.KindInvalidRequest,
		"InvalidClientToken.TooLong":                           gpuflow.KindInvalidRequest,
		"MissingParameter":                                     gpuflow.KindInvalidRequest,
		"InvalidParameterCombination":                          gpuflow.KindInvalidRequest,
		"InvalidAction":                                        gpuflow.KindInvalidRequest,
		"RequestLimitExceeded":                                 gpuflow.KindTransient,
		"RequestLimitExceeded.UinLimitExceeded":                gpuflow.KindTransient,
		"InternalError":                                        gpuflow.KindTransient,
		"ClientError.NetworkError":                             gpuflow.KindTransient,
		"ClientError.HttpStatusCodeError":                      gpuflow.KindTransient,
		"UnsupportedOperation.InstanceStatePending":            gpuflow.KindTransient,
		"MutexOperation.TaskRunning":                           gpuflow.KindTransient,
		"OperationDenied.InstanceOperationInProgress":          gpuflow.KindTransient,
		"LimitExceeded.UserReturnQuota":                        gpuflow.KindTransient,
		"InvalidInstanceId.NotFound":                           gpuflow.KindNotFound,
		"SomethingNew":                                         gpuflow.KindTransient,
	} {
		if got := kindOf(code); got != want {
			t.Errorf("kindOf(%s) = %s, want %s", code, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	err := classify("run", fmt.Errorf("wrapped: %w", tcerr.NewTencentCloudSDKError("RequestLimitExceeded", "slow down", "req-1")))
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) || pe.Kind != gpuflow.KindTransient || pe.RetryAfter <= 0 || pe.Code != "RequestLimitExceeded" ||
		!strings.Contains(pe.Error(), "slow down") || !strings.Contains(pe.Error(), "req-1") {
		t.Errorf("classify throttling = %#v", err)
	}
	if classify("x", nil) != nil {
		t.Error("classify(nil) != nil")
	}
	if again := classify("y", err); again != err {
		t.Error("a ProviderError was classified twice")
	}
	if k := gpuflow.ProviderErrorKindOf(classify("z", context.Canceled)); k != gpuflow.KindTransient {
		t.Errorf("context error kind %s", k)
	}
}

func TestMapState(t *testing.T) {
	type in struct {
		state           string
		spot, released  bool
		latestOp, error string
	}
	for _, c := range []struct {
		in     in
		want   gpuflow.MachineState
		reason string
	}{
		{in{state: "PENDING"}, gpuflow.MachinePending, ""},
		{in{state: "STARTING"}, gpuflow.MachineStarting, ""},
		{in{state: "REBOOTING"}, gpuflow.MachineStarting, ""},
		{in{state: "RUNNING"}, gpuflow.MachineRunning, ""},
		{in{state: "SERVICE_LIVE_MIGRATE"}, gpuflow.MachineRunning, ""},
		{in{state: "RESCUE_MODE"}, gpuflow.MachineRunning, ""},
		{in{state: "LAUNCH_FAILED", error: "no host"}, gpuflow.MachineFailed, "no host"},
		{in{state: "LAUNCH_FAILED", released: true}, gpuflow.MachineGone, "launch failed"},
		{in{state: "TERMINATING", released: true}, gpuflow.MachineStopping, "terminating"},
		{in{state: "SHUTDOWN", latestOp: "TerminateInstances"}, gpuflow.MachineStopping, "terminating"},
		{in{state: "SHUTDOWN", spot: true}, gpuflow.MachineFailed, "preempted"},
		{in{state: "TERMINATING", spot: true}, gpuflow.MachineFailed, "preempted"},
		{in{state: "STOPPED", spot: true}, gpuflow.MachineFailed, "stopped itself"},
		{in{state: "SHUTDOWN", spot: true, latestOp: "TerminateInstances"}, gpuflow.MachineStopping, ""},
		{in{state: "STOPPED", latestOp: "StopInstances"}, gpuflow.MachineFailed, "stopped outside gpuflow"},
		{in{state: "STOPPED", latestOp: "RunInstances"}, gpuflow.MachineFailed, "stopped itself"},
		{in{state: "STOPPING", released: true}, gpuflow.MachineStopping, ""},
		{in{state: "TERMINATING"}, gpuflow.MachineStopping, "outside gpuflow"},
		{in{state: "SOMETHING_NEW"}, gpuflow.MachineStarting, "SOMETHING_NEW"},
	} {
		got, reason := mapState(c.in.state, c.in.spot, c.in.released, c.in.latestOp, c.in.error)
		if got != c.want || !strings.Contains(reason, c.reason) {
			t.Errorf("mapState(%+v) = %s %q, want %s containing %q", c.in, got, reason, c.want, c.reason)
		}
	}
}

func TestClientToken(t *testing.T) {
	if got := clientToken("job-1-attempt-2"); got != "job-1-attempt-2" {
		t.Errorf("short key changed: %q", got)
	}
	for _, key := range []string{strings.Repeat("x", 65), "has space", "ünïcode"} {
		tok := clientToken(key)
		if len(tok) > 64 || !tokenPattern.MatchString(tok) || tok != clientToken(key) {
			t.Errorf("clientToken(%q) = %q", key, tok)
		}
	}
	if clientToken(strings.Repeat("a", 70)) == clientToken(strings.Repeat("a", 71)) {
		t.Error("two keys, one token")
	}
}

func TestBuiltinCatalog(t *testing.T) {
	c, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if c.Source == "" || c.Date == "" || c.Currency == "" || len(c.InstanceTypes) == 0 {
		t.Fatalf("catalogue header incomplete: %+v", c)
	}
	for _, it := range c.InstanceTypes {
		if it.Source == "" || it.Date == "" || it.GPUCount < 1 || it.PricePerHour <= 0 || len(it.Zones) == 0 ||
			gpuflow.NormalizeGPUType(it.GPUType) != families[it.Family].GPUType {
			t.Errorf("catalogue entry %+v", it)
		}
	}
}
