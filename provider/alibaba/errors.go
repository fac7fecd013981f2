package alibaba

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/alibabacloud-go/tea/tea"

	"github.com/gpuflow/gpuflow"
)

// ECS error codes the adapter acts on.
const (
	codeNotFound         = "InvalidInstanceId.NotFound"
	codeIncorrectStatus  = "IncorrectInstanceStatus"
	codeParamNotMatch    = "IdempotenceParamNotMatch"
	codeLastTokenPending = "LastTokenProcessing"
)

// noCapacityCodes mean "not here, not now": try another offer.
var noCapacityCodes = []string{
	"OperationDenied.NoStock",
	"OperationDenied", // "The specified InstanceType or Zone is not available or not authorized."
	"InvalidResourceType.NotSupported",
	"Zone.NotOnSale",
	"Zone.NotOpen",
	"InvalidInstanceType.ZoneNotSupported",
	"InstanceType.Offline",
	"OperationDenied.ResourceControl",
	"InvalidSpotPriceLimit.LowerThanPublicPrice",
	"QuotaExceed.AfterpayInstance",
}

// noCapacityPhrases are stock problems reported under other codes.
var noCapacityPhrases = []string{"out of stock", "sold out", "out of usage", "no stock", "insufficient inventory"}

// authCodes mean the credentials or the account cannot be used.
var authCodes = []string{
	"InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "InvalidAccessKeyId",
	"SignatureDoesNotMatch", "IncompleteSignature", "InvalidCredentials", "NoPermission",
	"Forbidden.RAM", "Forbidden.RiskControl", "Forbidden.AccessKeyDisabled",
	"Account.Arrearage", "RealNameAuthenticationError", "InvalidSecurityToken.Expired",
	"InvalidSecurityToken.Malformed", "InvalidSecurityToken.MismatchWithAccessKey",
	"InvalidAccountStatus.NotEnoughBalance", "InvalidAccountStatus.SnapshotServiceUnavailable",
}

// transientCodes are worth repeating as they are.
var transientCodes = []string{
	"InternalError", "ServiceUnavailable", "UnknownError", codeLastTokenPending,
	"OperationConflict", codeIncorrectStatus, "ServiceBusy",
}

// apiError is what the SDK's ClientError, ServerError and ThrottlingError
// have in common.
type apiError interface {
	error
	GetStatusCode() *int
	GetCode() *string
	GetMessage() *string
	GetRequestId() *string
	GetData() map[string]any
}

// sdkFailure is an API error answer, read from the SDK's error.
type sdkFailure struct {
	status     int
	code       string
	message    string
	requestID  string
	retryAfter time.Duration
}

// readSDKError extracts the API's answer from an SDK error; ok is false for
// transport and context errors.
func readSDKError(err error) (f sdkFailure, ok bool) {
	var ae apiError
	if errors.As(err, &ae) {
		f.status = tea.IntValue(ae.GetStatusCode())
		f.code = tea.StringValue(ae.GetCode())
		f.requestID = tea.StringValue(ae.GetRequestId())
		if m, ok := ae.GetData()["Message"].(string); ok {
			f.message = m
		} else {
			f.message = tea.StringValue(ae.GetMessage())
		}
		var ra interface{ GetRetryAfter() *int64 }
		if errors.As(err, &ra) {
			f.retryAfter = time.Duration(tea.Int64Value(ra.GetRetryAfter())) * time.Millisecond
		}
		return f, true
	}
	var se *tea.SDKError
	if errors.As(err, &se) && se.StatusCode != nil {
		f.status = tea.IntValue(se.StatusCode)
		f.code = tea.StringValue(se.Code)
		f.message = tea.StringValue(se.Message)
		return f, true
	}
	return f, false
}

// kindOf classifies an API error answer.
func kindOf(f sdkFailure) gpuflow.ProviderErrorKind {
	lower := strings.ToLower(f.message)
	switch {
	case f.code == codeNotFound || f.code == "InvalidInstanceId.NotExist":
		return gpuflow.KindNotFound
	case slices.Contains(noCapacityCodes, f.code) || strings.HasPrefix(f.code, "QuotaExceed"):
		return gpuflow.KindNoCapacity
	case slices.ContainsFunc(noCapacityPhrases, func(s string) bool { return strings.Contains(lower, s) }):
		return gpuflow.KindNoCapacity
	case slices.Contains(authCodes, f.code) || strings.HasPrefix(f.code, "InvalidAccessKeyId") ||
		strings.HasPrefix(f.code, "InvalidSecurityToken"):
		return gpuflow.KindAuth
	case strings.HasPrefix(f.code, "Throttling") || slices.Contains(transientCodes, f.code):
		return gpuflow.KindTransient
	case f.status >= 500 || f.status == 429 || f.status == 408:
		return gpuflow.KindTransient
	case f.status == 401:
		return gpuflow.KindAuth
	}
	return gpuflow.KindInvalidRequest
}

// minThrottleWait is the retry-after of a throttled call that did not say.
const minThrottleWait = time.Second

// classify turns an SDK error into a *gpuflow.ProviderError. Messages are
// the API's own, with anything that could echo the request (signature
// strings to sign, URLs with the user data) removed.
func (p *Provider) classify(ctx context.Context, op string, err error) error {
	f, ok := readSDKError(err)
	if !ok {
		pe := &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient, Message: op, Err: sanitize(err)}
		if ctxErr := ctx.Err(); ctxErr != nil {
			pe.Err = fmt.Errorf("%w: %w", ctxErr, pe.Err)
		}
		return pe
	}
	pe := &gpuflow.ProviderError{
		Provider: Name,
		Kind:     kindOf(f),
		Code:     f.code,
		Message:  fmt.Sprintf("%s: %s (HTTP %d, request id %s)", op, redactText(f.message), f.status, f.requestID),
	}
	if isThrottleCode(f.code) {
		// Jitter, so that processes sharing the account do not come
		// back in step.
		pe.RetryAfter = max(f.retryAfter, minThrottleWait) + rand.N(minThrottleWait/2) // #nosec G404 -- jitter of a retry wait, not a secret
	}
	return pe
}

// isThrottleCode reports whether code is one of ECS's flow-control
// refusals (Throttling, Throttling.User, Throttling.Api).
func isThrottleCode(code string) bool { return strings.HasPrefix(code, "Throttling") }

// redactedError keeps a transport error's cause (a timeout stays a
// timeout) while its text leaves out the request URL.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// sanitize drops the request URL from transport errors: the query string
// holds the user data, and with it the job's agent token.
func sanitize(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		where := "ECS endpoint"
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
			where = u.Scheme + "://" + u.Host
		}
		return &redactedError{msg: fmt.Sprintf("%s %s: %s", ue.Op, where, redactText(ue.Err.Error())), err: ue.Err}
	}
	return &redactedError{msg: redactText(err.Error()), err: errors.Unwrap(err)}
}

// redactText cuts what could carry request parameters out of a message:
// ECS echoes the string to sign on signature errors, and URLs carry the
// query.
func redactText(s string) string {
	lower := strings.ToLower(s)
	for _, marker := range []string{"string to sign", "stringtosign", "canonical"} {
		if i := strings.Index(lower, marker); i >= 0 {
			s, lower = strings.TrimSpace(s[:i])+" [redacted]", lower[:i]
		}
	}
	if i := strings.Index(s, "?"); i >= 0 && strings.Contains(s[:i], "://") {
		end := strings.IndexAny(s[i:], " \"'")
		if end < 0 {
			s = s[:i] + "?[redacted]"
		} else {
			s = s[:i] + "?[redacted]" + s[i+end:]
		}
	}
	return s
}

// isNotFound reports whether err is ECS's unknown-instance answer.
func isNotFound(err error) bool {
	return gpuflow.ProviderErrorKindOf(err) == gpuflow.KindNotFound
}

// hasCode reports whether err is a classified API error with code.
func hasCode(err error, code string) bool {
	var pe *gpuflow.ProviderError
	return errors.As(err, &pe) && pe.Code == code
}

// lostAnswer reports whether a create's answer may have been lost after
// the instance was made: a 5xx, a timeout or a broken connection (not a
// refusal such as throttling).
func lostAnswer(err error) bool {
	var pe *gpuflow.ProviderError
	if !errors.As(err, &pe) || pe.Kind != gpuflow.KindTransient {
		return false
	}
	return !strings.HasPrefix(pe.Code, "Throttling")
}
