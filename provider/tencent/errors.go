package tencent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	cvm "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cvm/v20170312"

	"github.com/gpuflow/gpuflow"
)

// throttleRetryAfter is the wait suggested after RequestLimitExceeded: the
// API's limits are per second and it does not say more. Callers add jitter
// (classify's RetryAfter carries up to half a second), so that processes
// sharing an account do not come back in step.
const throttleRetryAfter = time.Second

// isThrottleCode reports whether code is one of the API's rate-limit
// refusals (RequestLimitExceeded and its .UinLimitExceeded,
// .IPLimitExceeded, ... variants).
func isThrottleCode(code string) bool { return strings.HasPrefix(code, "RequestLimitExceeded") }

// capacityCodes are refusals for want of stock, quota or spot supply: the
// job may go to another offer or wait.
var capacityCodes = []string{
	cvm.RESOURCENOTFOUND_INVALIDZONEINSTANCETYPE,
	cvm.INVALIDPARAMETERVALUE_INSUFFICIENTOFFERING,
	cvm.INVALIDPARAMETERVALUE_INSUFFICIENTPRICE,
	cvm.UNSUPPORTEDOPERATION_NOINSTANCETYPESUPPORTSPOT,
	cvm.UNSUPPORTEDOPERATION_SPOTUNSUPPORTEDREGION,
	cvm.INSTANCESQUOTALIMITEXCEEDED,
	cvm.OVERQUOTA,
	cvm.INVALIDACCOUNT_INSUFFICIENTBALANCE,
	cvm.INVALIDACCOUNT_UNPAIDORDER,
	cvm.INVALIDPARAMETER_INVALIDCLOUDDISKSOLDOUT,
	cvm.INVALIDPARAMETERVALUE_EXTERNALIPQUOTALIMITED,
}

// transientCodes are worth retrying as they are.
var transientCodes = []string{
	cvm.MUTEXOPERATION_TASKRUNNING,
	cvm.OPERATIONDENIED_INSTANCEOPERATIONINPROGRESS,
	cvm.UNSUPPORTEDOPERATION_INSTANCESTATEPENDING,
	cvm.LIMITEXCEEDED_USERRETURNQUOTA,
	"ResourceInUse",
	"ServiceUnavailable",
}

// kindOf classifies a Tencent Cloud error code.
func kindOf(code string) gpuflow.ProviderErrorKind {
	has := func(prefixes ...string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(code, p) })
	}
	switch {
	case code == cvm.INVALIDINSTANCEID_NOTFOUND:
		return gpuflow.KindNotFound
	case slices.Contains(capacityCodes, code),
		has("ResourceInsufficient", "ResourcesSoldOut", "ResourceUnavailable"),
		strings.HasPrefix(code, "LimitExceeded.") && strings.HasSuffix(code, "Quota") && code != cvm.LIMITEXCEEDED_USERRETURNQUOTA:
		return gpuflow.KindNoCapacity
	case slices.Contains(transientCodes, code),
		has("RequestLimitExceeded", "InternalError", "ClientError", "MutexOperation"):
		return gpuflow.KindTransient
	case has("AuthFailure", "UnauthorizedOperation", "InvalidAccount", "AccountQualificationRestrictions"):
		return gpuflow.KindAuth
	case has("Invalid", "MissingParameter", "UnknownParameter", "NoSuchVersion", "NoSuchProduct",
		"UnsupportedRegion", "UnsupportedProtocol", "RequestSizeLimitExceeded", "UnsupportedOperation",
		"FailedOperation.IllegalTag", "FailedOperation.TagKeyReserved"):
		return gpuflow.KindInvalidRequest
	}
	return gpuflow.KindTransient
}

// classify turns an error of the SDK (or of the call's context) into a
// *gpuflow.ProviderError. op says what was being done. The SDK's errors
// carry the code, the message and the request id, never the credentials.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *gpuflow.ProviderError
	if errors.As(err, &pe) {
		return err
	}
	perr := &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient}
	var se *tcerr.TencentCloudSDKError
	if errors.As(err, &se) {
		perr.Code = se.Code
		perr.Kind = kindOf(se.Code)
		perr.Message = op + ": " + se.Message
		if se.RequestId != "" {
			perr.Message += " (RequestId " + se.RequestId + ")"
		}
		perr.Err = se.Unwrap() // a network failure's cause
		if isThrottleCode(se.Code) {
			perr.RetryAfter = throttleRetryAfter + rand.N(throttleRetryAfter/2) // #nosec G404 -- jitter of a retry wait, not a secret
		}
		if errors.Is(perr.Err, context.DeadlineExceeded) {
			perr.Message = op + ": timed out"
		}
		return perr
	}
	perr.Message = op
	perr.Err = err
	return perr
}

// errorf returns a ProviderError of kind with a formatted message.
func errorf(kind gpuflow.ProviderErrorKind, format string, args ...any) *gpuflow.ProviderError {
	return &gpuflow.ProviderError{Provider: Name, Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// codeOf returns the Tencent Cloud error code in err's chain, or "".
func codeOf(err error) string {
	var pe *gpuflow.ProviderError
	if errors.As(err, &pe) {
		return pe.Code
	}
	var se *tcerr.TencentCloudSDKError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}
