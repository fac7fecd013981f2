package api

import (
	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// Principal is the caller of a request.
type Principal struct {
	UserID    string
	Superuser bool
}

// Name is how the principal is recorded (for example as who asked for a
// cancel): the user id, or "anonymous".
func (p Principal) Name() string {
	if p.UserID == "" {
		return "anonymous"
	}
	return p.UserID
}

// callerFrom returns the caller of the request. Until authentication lands
// every caller is an anonymous superuser; the auth middleware will put the
// token's principal in the context and this function will read it.
func callerFrom(c echo.Context) Principal {
	_ = c
	return Principal{UserID: "", Superuser: true}
}

// canSee reports whether p may see and act on job j. Jobs p may not see
// answer 404, exactly like jobs that do not exist.
func canSee(p Principal, j *gpuflow.Job) bool {
	return p.Superuser || (p.UserID != "" && j.OwnerID == p.UserID)
}

// ownerScope is the owner filter of p's job listings: "" (all owners) for a
// superuser, the user's own id otherwise.
func ownerScope(p Principal) string {
	if p.Superuser {
		return ""
	}
	return p.UserID
}
