package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// errorBody is the one error shape of the API:
// {"error":{"code":"…","message":"…","details":{…}}}. Errors of the account
// routes also carry fastapi-users' code as a top-level "detail", which that
// library's clients read: {"error":{"code":"LOGIN_BAD_CREDENTIALS",…},
// "detail":"LOGIN_BAD_CREDENTIALS"}.
type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
	// detail is fastapi-users' code, sent as the top-level "detail" (see
	// errorBody.MarshalJSON); empty for every other error.
	detail string
}

// MarshalJSON writes the body, with "detail" beside "error" when the error
// has a fastapi-users code.
func (b errorBody) MarshalJSON() ([]byte, error) {
	if b.Error.detail == "" {
		type plain errorBody // without this method
		return json.Marshal(plain(b))
	}
	return json.Marshal(struct {
		Error  errorPayload `json:"error"`
		Detail string       `json:"detail"`
	}{b.Error, b.Error.detail})
}

// wireError is an error that exists only at the HTTP layer (malformed JSON,
// a wrong media type): it names its status and wire code itself.
type wireError struct {
	Status  int
	Code    string
	Message string
	Details map[string]any
}

func (e *wireError) Error() string { return e.Code + ": " + e.Message }

// Wire codes that are not gpuflow codes.
const (
	codeInvalidJSON          = "invalid_json"
	codeUnsupportedMediaType = "unsupported_media_type"

	// fastapi-users' codes, which the earlier system's clients know.
	codeRegisterUserAlreadyExists = "REGISTER_USER_ALREADY_EXISTS"
	codeRegisterInvalidPassword   = "REGISTER_INVALID_PASSWORD"
	codeLoginBadCredentials       = "LOGIN_BAD_CREDENTIALS" // #nosec G101 -- an error code, not a credential

	// Ours, in the same style: registration refused by the server's mode,
	// and an invitation code that cannot be used.
	codeRegisterDisabled      = "REGISTER_DISABLED"
	codeRegisterBadInvitation = "REGISTER_INVALID_INVITATION"
)

// codedError is a domain error answered with its own wire code instead of
// its code's, also sent as the top-level "detail". The status, message and
// details are the domain error's.
type codedError struct {
	code string
	err  *gpuflow.Error
}

func (e *codedError) Error() string { return e.code + ": " + e.err.Error() }

func (e *codedError) Unwrap() error { return e.err }

// withWireCode returns err answered with the wire code code.
func withWireCode(code string, err *gpuflow.Error) error { return &codedError{code: code, err: err} }

// domainStatus maps gpuflow error codes to an HTTP status and a wire code.
// It is the only such map in the project.
var domainStatus = map[string]struct {
	status int
	code   string
}{
	gpuflow.EINVALID:       {http.StatusBadRequest, "validation_failed"},
	gpuflow.ETOOLARGE:      {http.StatusRequestEntityTooLarge, "payload_too_large"},
	gpuflow.EUNAUTHORIZED:  {http.StatusUnauthorized, "unauthorized"},
	gpuflow.EFORBIDDEN:     {http.StatusForbidden, "forbidden"},
	gpuflow.ENOTFOUND:      {http.StatusNotFound, "not_found"},
	gpuflow.ECONFLICT:      {http.StatusConflict, "conflict"},
	gpuflow.EUNSCHEDULABLE: {http.StatusUnprocessableEntity, "unschedulable"},
	gpuflow.ERATELIMIT:     {http.StatusTooManyRequests, "rate_limited"},
	gpuflow.EUNAVAILABLE:   {http.StatusServiceUnavailable, "unavailable"},
	gpuflow.EINTERNAL:      {http.StatusInternalServerError, "internal"},
}

// statusCode maps the statuses of Echo's own errors (unknown route, wrong
// method, …) to wire codes.
var statusCode = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestEntityTooLarge: "payload_too_large",
	http.StatusUnsupportedMediaType:  codeUnsupportedMediaType,
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusInternalServerError:   "internal",
}

// errorResponse turns any error into a status and the error body. Internal
// errors get a generic message; the caller logs their cause.
func errorResponse(err error) (int, errorBody) {
	var we *wireError
	if errors.As(err, &we) {
		return we.Status, errorBody{errorPayload{Code: we.Code, Message: we.Message, Details: we.Details}}
	}
	var ce *codedError
	if errors.As(err, &ce) {
		status, body := errorResponse(ce.err)
		body.Error.Code, body.Error.detail = ce.code, ce.code
		return status, body
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := statusCode[he.Code]
		if !ok {
			code = strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_")
		}
		msg := strings.ToLower(http.StatusText(he.Code))
		switch he.Code {
		case http.StatusNotFound:
			msg = "route not found"
		case http.StatusInternalServerError:
			msg = "internal error"
		default:
			if s, ok := he.Message.(string); ok && s != "" && s != http.StatusText(he.Code) && he.Code < 500 {
				msg = s
			}
		}
		if code == "" {
			code = "error"
		}
		return he.Code, errorBody{errorPayload{Code: code, Message: msg}}
	}
	m, ok := domainStatus[gpuflow.ErrorCode(err)]
	if !ok {
		m = domainStatus[gpuflow.EINTERNAL]
	}
	body := errorBody{errorPayload{Code: m.code, Message: gpuflow.ErrorMessage(err)}}
	if m.status != http.StatusInternalServerError {
		body.Error.Details = gpuflow.ErrorDetails(err)
	}
	return m.status, body
}

// handleError is Echo's HTTPErrorHandler: every error of every handler and
// of Echo itself leaves the server here, in the one JSON shape.
func (s *Server) handleError(err error, c echo.Context) {
	status, body := errorResponse(err)
	req := c.Request()
	if status >= http.StatusInternalServerError {
		s.log.ErrorContext(req.Context(), "request failed",
			"method", req.Method, "path", req.URL.Path, "status", status, "err", err)
	}
	if c.Response().Committed {
		return // a stream already started; the status is sent
	}
	if req.Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, body)
	}
	if err != nil {
		s.log.DebugContext(req.Context(), "write error response", "err", err)
	}
}
