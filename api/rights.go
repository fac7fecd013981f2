package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// Who may do what beyond their own jobs: registration (open, by
// invitation or closed), the superuser's account routes (invitations,
// PATCH /users/{id}), and who may run jobs on the worker's own host.

// Invitation lifetimes.
const (
	defaultInvitationTTL = 72 * time.Hour
	maxInvitationTTL     = 90 * 24 * time.Hour
)

// registrationMode is the configured mode; closed when unset or unknown.
func (a *authState) registrationMode() string {
	switch a.registration {
	case gpuflow.RegistrationOpen, gpuflow.RegistrationInvite:
		return a.registration
	}
	return gpuflow.RegistrationClosed
}

// registerAllowed returns EFORBIDDEN (REGISTER_DISABLED) when registration
// is closed, and when it is by invitation and the request has no code.
func (s *Server) registerAllowed(code string) error {
	switch s.auth.registrationMode() {
	case gpuflow.RegistrationOpen:
		return nil
	case gpuflow.RegistrationInvite:
		if code != "" {
			return nil
		}
		return withWireCode(codeRegisterDisabled, gpuflow.Errorf(gpuflow.EFORBIDDEN,
			"registration on this server needs an invitation code (invite_code) from a superuser").
			WithDetails(map[string]any{"registration": gpuflow.RegistrationInvite}))
	}
	return withWireCode(codeRegisterDisabled, gpuflow.Errorf(gpuflow.EFORBIDDEN,
		"registration is closed on this server; an operator creates accounts").
		WithDetails(map[string]any{"registration": gpuflow.RegistrationClosed}))
}

// createAccount stores u, redeeming the invitation code when registration
// is by invitation.
func (s *Server) createAccount(ctx context.Context, u *gpuflow.User, code string) error {
	if s.auth.registrationMode() != gpuflow.RegistrationInvite {
		return s.auth.users.CreateUser(ctx, u)
	}
	if s.auth.invitations == nil {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "invitations are not configured on this server")
	}
	err := s.auth.invitations.CreateUserInvited(ctx, u, auth.HashInvitationCode(code))
	if gpuflow.ErrorCode(err) == gpuflow.EFORBIDDEN {
		s.log.InfoContext(ctx, "registration refused: unusable invitation code")
		return withWireCode(codeRegisterBadInvitation, gpuflow.Errorf(gpuflow.EFORBIDDEN,
			"the invitation code is unknown, used, expired or for another email"))
	}
	return err
}

// requireSuperuser returns EFORBIDDEN unless the caller is a superuser.
func requireSuperuser(c echo.Context) error {
	if !callerFrom(c).Superuser {
		return gpuflow.Errorf(gpuflow.EFORBIDDEN, "only a superuser may do this")
	}
	return nil
}

// invitationRequest is the optional body of "POST /users/invitations".
type invitationRequest struct {
	Email          string `json:"email"`
	ExpiresInHours *int   `json:"expires_in_hours"`
}

// invitationView is an invitation as its maker sees it, once, with its code.
type invitationView struct {
	ID        string    `json:"id"`
	Code      string    `json:"code"`
	Email     *string   `json:"email"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Register  string    `json:"register"`
}

// handleCreateInvitation handles "POST /users/invitations" (superusers):
// a new invitation code, valid once, for expires_in_hours (72 by default,
// at most 2160), only for email when given. The code is shown in this
// answer alone; the server keeps its SHA-256. 403 for other callers.
func (s *Server) handleCreateInvitation(c echo.Context) error {
	if err := requireSuperuser(c); err != nil {
		return err
	}
	if s.auth.invitations == nil {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "invitations are not configured on this server")
	}
	req := c.Request()
	var in invitationRequest
	if err := decodeOptional(req, c.Response(), maxAuthBody, &in); err != nil {
		return err
	}
	ttl := defaultInvitationTTL
	if in.ExpiresInHours != nil {
		h := *in.ExpiresInHours
		if h < 1 || time.Duration(h)*time.Hour > maxInvitationTTL {
			return invalidField("expires_in_hours", fmt.Sprintf("expires_in_hours must be between 1 and %d",
				int(maxInvitationTTL/time.Hour)))
		}
		ttl = time.Duration(h) * time.Hour
	}
	if in.Email != "" {
		var err error
		if in.Email, err = gpuflow.NormalizeEmail(in.Email); err != nil {
			return err
		}
	}
	code, hash, err := auth.NewInvitationCode()
	if err != nil {
		return err
	}
	now := s.now().UTC()
	inv := &gpuflow.Invitation{ID: uuid.NewString(), Email: in.Email, CreatedBy: callerFrom(c).UserID,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.auth.invitations.CreateInvitation(req.Context(), inv, hash); err != nil {
		return fmt.Errorf("create invitation: %w", err)
	}
	s.log.InfoContext(req.Context(), "invitation created", "invitation_id", inv.ID, "created_by", inv.CreatedBy,
		"for_email", in.Email != "", "expires_at", inv.ExpiresAt)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, invitationView{ID: inv.ID, Code: code, Email: nullable(inv.Email),
		CreatedAt: inv.CreatedAt.UTC(), ExpiresAt: inv.ExpiresAt.UTC(), Register: "/auth/register"})
}

// userPatch is the body of "PATCH /users/{id}".
type userPatch struct {
	IsActive    *bool `json:"is_active"`
	IsSuperuser *bool `json:"is_superuser"`
	CanRunLocal *bool `json:"can_run_local"`
}

// handlePatchUser handles "PATCH /users/{id}" (superusers): it changes an
// account's is_active, is_superuser and can_run_local and answers 200 with
// the account. A deactivated or demoted account's tokens and WebSockets
// lose what they no longer may at once (every request loads the account;
// WebSockets are closed). 403 for other callers, 404 for an unknown id,
// 409 for a superuser demoting or deactivating themselves.
func (s *Server) handlePatchUser(c echo.Context) error {
	if err := requireSuperuser(c); err != nil {
		return err
	}
	req := c.Request()
	id, err := uuid.Parse(c.Param("id"))
	if err != nil || len(c.Param("id")) != 36 {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "user not found")
	}
	if err := requireJSON(req); err != nil {
		return err
	}
	body, err := readBody(req, c.Response(), maxAuthBody)
	if err != nil {
		return err
	}
	var in userPatch
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	up := gpuflow.UserUpdate{IsActive: in.IsActive, IsSuperuser: in.IsSuperuser, CanRunLocal: in.CanRunLocal}
	if up.Empty() {
		return gpuflow.Errorf(gpuflow.EINVALID, "nothing to change: send is_active, is_superuser or can_run_local")
	}
	caller := callerFrom(c)
	if id.String() == caller.UserID && ((up.IsActive != nil && !*up.IsActive) || (up.IsSuperuser != nil && !*up.IsSuperuser)) {
		return gpuflow.Errorf(gpuflow.ECONFLICT, "a superuser cannot deactivate or demote themselves; ask another superuser")
	}
	u, err := s.auth.users.UpdateUser(req.Context(), id.String(), up)
	if err != nil {
		return err
	}
	s.log.InfoContext(req.Context(), "user changed", "user_id", u.ID, "by", caller.UserID,
		"is_active", u.IsActive, "is_superuser", u.IsSuperuser, "can_run_local", u.CanRunLocal)
	if s.live.hub != nil {
		s.live.hub.recheckUser(u.ID) // this replica's WebSockets at once; others on their next check
	}
	return c.JSON(http.StatusOK, newUserView(u))
}

// hostProviders are the configured providers that run jobs on the
// worker's own host (mode local).
func (s *Server) hostProviders() []string {
	var out []string
	for _, p := range s.cfg.Providers {
		if info := p.Info(); info.Mode == gpuflow.ModeLocal {
			out = append(out, info.Name)
		}
	}
	return out
}

// mayRunLocal reports whether u may run jobs on the worker's host.
func (s *Server) mayRunLocal(u *gpuflow.User) bool { return s.cfg.Auth.Local.Allows(u) }

// restrictLocal keeps a job of u's off the worker's host when u may not
// run there: a spec naming a host provider is EFORBIDDEN; one allowing any
// provider gets the list of the others (stored with the job, so the queue
// never admits it to the host). EFORBIDDEN too when no other provider is
// left.
func (s *Server) restrictLocal(u *gpuflow.User, spec *gpuflow.JobSpec) error {
	host := s.hostProviders()
	if len(host) == 0 || s.mayRunLocal(u) {
		return nil
	}
	forbidden := func(msg string) error {
		return gpuflow.Errorf(gpuflow.EFORBIDDEN, "%s", msg).WithDetails(map[string]any{"providers": host})
	}
	for _, h := range host {
		if spec.Provider == h || slices.Contains(spec.Providers, h) {
			return forbidden("this account may not run jobs on the worker's host (provider " + h +
				"); a superuser can allow it")
		}
	}
	if spec.Provider != "" || len(spec.Providers) > 0 {
		return nil // the job names other providers only
	}
	var others []string
	for _, n := range s.cfg.Providers.Names() {
		if !slices.Contains(host, n) {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return forbidden("this account may not run jobs on the worker's host, and no other provider is configured")
	}
	spec.Providers = others
	return nil
}
