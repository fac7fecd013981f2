package gpuflow

import (
	"errors"
	"fmt"
)

// Error codes understood by every layer. The HTTP API maps them to statuses
// in exactly one place (api/error.go).
const (
	EINVALID       = "invalid"       // bad input: 400
	ETOOLARGE      = "too_large"     // body too large: 413
	EUNAUTHORIZED  = "unauthorized"  // no or bad credentials: 401
	EFORBIDDEN     = "forbidden"     // not allowed: 403
	ENOTFOUND      = "not_found"     // unknown, or not the caller's: 404
	ECONFLICT      = "conflict"      // state does not allow it: 409
	EUNSCHEDULABLE = "unschedulable" // no provider can serve the job: 422
	ERATELIMIT     = "rate_limited"  // too many requests: 429
	EUNAVAILABLE   = "unavailable"   // a dependency is down: 503
	EINTERNAL      = "internal"      // a bug or an unexpected failure: 500
)

// Error is the domain error: a stable code, a message safe to show a user and
// optional details (field-level messages, reasons per provider).
type Error struct {
	Code    string
	Message string
	Details map[string]any
	Err     error // cause, never shown to users
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns e with details attached.
func (e *Error) WithDetails(details map[string]any) *Error {
	e.Details = details
	return e
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err. Internal errors get
// a generic message so that causes never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// ErrorDetails returns the details of the first *Error in err's chain.
func ErrorDetails(err error) map[string]any {
	var e *Error
	if errors.As(err, &e) {
		return e.Details
	}
	return nil
}
