package runpod

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gpuflow/gpuflow"
)

// Name is the provider's name.
const Name = "runpod"

// classify turns an error of the client into a *gpuflow.ProviderError; op
// says what was being done ("create pod", "get pod x"). create marks a pod
// creation, where 403 means the account cannot use the pool: another offer
// may still work.
//
// REST v2 answers (the spec's table for POST /v2/pods): 400 is no capacity
// when the detail says so (capacity has no code of its own) and an invalid
// request otherwise; 401, 402 (insufficient balance) and 403 are auth,
// except 403 on create (no capacity for us in that pool); 404 not found;
// 409 and 422 invalid requests; 429 and 5xx transient, 429 with
// Retry-After. GraphQL answers errors in a 200: those are classified by
// their message.
func classify(op string, err error, create bool) error {
	if err == nil {
		return nil
	}
	pe := &gpuflow.ProviderError{Provider: Name, Kind: gpuflow.KindTransient, Message: op, Err: err}
	var ae *apiError
	var te *transportError
	switch {
	case errors.As(err, &ae):
		pe.Code = strconv.Itoa(ae.Status)
		pe.RetryAfter = ae.RetryAfter
		if ae.GraphQL {
			pe.Code = "graphql"
			if ae.Status != http.StatusOK {
				pe.Code += "-" + strconv.Itoa(ae.Status)
			}
		}
		pe.Kind = kindOf(ae, create)
	case errors.As(err, &te) && te.Timeout:
		pe.Code = "timeout"
	}
	// anything else (no answer, an undecodable one) is transient
	return pe
}

func kindOf(ae *apiError, create bool) gpuflow.ProviderErrorKind {
	if ae.noCapacity() {
		return gpuflow.KindNoCapacity
	}
	switch s := ae.Status; {
	case s == http.StatusTooManyRequests || s >= 500:
		return gpuflow.KindTransient
	case s == http.StatusUnauthorized || s == http.StatusPaymentRequired:
		return gpuflow.KindAuth
	case s == http.StatusForbidden && create && !ae.GraphQL:
		return gpuflow.KindNoCapacity // "your account cannot access the requested pool": skip it
	case s == http.StatusForbidden:
		return gpuflow.KindAuth
	case s == http.StatusNotFound:
		return gpuflow.KindNotFound
	case s == http.StatusBadRequest && ae.GraphQL:
		return gpuflow.KindInvalidRequest // variable validation
	case s >= 400 && s < 500:
		return gpuflow.KindInvalidRequest
	}
	// a GraphQL error in a 200: only the message tells
	m := strings.ToLower(ae.Detail)
	switch {
	case strings.Contains(m, "not found") || strings.Contains(m, "does not exist"):
		return gpuflow.KindNotFound
	case strings.Contains(m, "unauthorized") || strings.Contains(m, "api key") || strings.Contains(m, "permission"):
		return gpuflow.KindAuth
	case strings.Contains(m, "try again") || strings.Contains(m, "internal") || strings.Contains(m, "timeout") ||
		strings.Contains(m, "something went wrong") || strings.Contains(m, "rate limit"):
		return gpuflow.KindTransient
	}
	return gpuflow.KindInvalidRequest
}

// isLostCreate reports whether a create may have happened although it
// failed: the answer was a 5xx, or none came.
func isLostCreate(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var te *transportError
	return errors.As(err, &te)
}
