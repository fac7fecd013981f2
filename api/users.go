package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// userView is an account as the API shows it (fastapi-users' shape, plus
// created_at). The password hash never leaves the server.
type userView struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	IsActive    bool      `json:"is_active"`
	IsSuperuser bool      `json:"is_superuser"`
	IsVerified  bool      `json:"is_verified"`
	CanRunLocal bool      `json:"can_run_local"`
	CreatedAt   time.Time `json:"created_at"`
}

func newUserView(u *gpuflow.User) userView {
	return userView{ID: u.ID, Email: u.Email, IsActive: u.IsActive, IsSuperuser: u.IsSuperuser,
		IsVerified: u.IsVerified, CanRunLocal: u.CanRunLocal, CreatedAt: u.CreatedAt.UTC()}
}

// handleMe handles "GET /users/me": the caller's account.
func (s *Server) handleMe(c echo.Context) error {
	u := userFrom(c)
	if u == nil {
		return gpuflow.Errorf(gpuflow.EUNAUTHORIZED, "not logged in")
	}
	return c.JSON(http.StatusOK, newUserView(u))
}
