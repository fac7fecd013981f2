package api

import (
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// maxAuthBody bounds the bodies of the account routes.
const maxAuthBody = 16 << 10

// registerRequest is the body of "POST /auth/register". fastapi-users
// clients may also send the account flags; like that library's safe mode,
// they are accepted and ignored (a client cannot make itself a superuser).
type registerRequest struct {
	Email       string `json:"email"`
	Password    string `json:"password"`
	IsActive    *bool  `json:"is_active"`
	IsSuperuser *bool  `json:"is_superuser"`
	IsVerified  *bool  `json:"is_verified"`
	// InviteCode is a superuser's invitation code: required when
	// registration is by invitation, ignored otherwise.
	InviteCode string `json:"invite_code"`
}

// handleRegister handles "POST /auth/register": it creates an active,
// unverified, ordinary account and answers 201 with it. 400 for a bad email
// (validation_failed), a weak password (REGISTER_INVALID_PASSWORD) or an
// email taken in any case (REGISTER_USER_ALREADY_EXISTS); 403
// REGISTER_DISABLED when registration is closed (or by invitation and no
// invite_code is given), REGISTER_INVALID_INVITATION for a code that is
// unknown, used, expired or for another email; 429 past the per-address
// limit. Nothing is stored on any refusal.
func (s *Server) handleRegister(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	if err := s.auth.ready(); err != nil {
		return err
	}
	if err := s.limit(c, s.auth.perAddress, c.RealIP(), "too many attempts from this address"); err != nil {
		return err
	}
	if err := requireJSON(req); err != nil {
		return err
	}
	body, err := readBody(req, c.Response(), maxAuthBody)
	if err != nil {
		return err
	}
	var in registerRequest
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	if err := s.registerAllowed(strings.TrimSpace(in.InviteCode)); err != nil {
		return err
	}
	email, err := gpuflow.NormalizeEmail(in.Email)
	if err != nil {
		return err
	}
	if err := auth.CheckPassword(in.Password, email); err != nil {
		msg := err.Error()
		return withWireCode(codeRegisterInvalidPassword, gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"reason": msg, "fields": map[string]any{"password": msg}}))
	}
	// The hash comes first whether or not the email is taken: both answers
	// take as long.
	hash, err := s.auth.hasher.Hash(in.Password)
	if err != nil {
		return err
	}
	u := &gpuflow.User{Email: email, HashedPassword: hash, IsActive: true, CreatedAt: s.now().UTC()}
	if err := s.createAccount(ctx, u, strings.TrimSpace(in.InviteCode)); err != nil {
		if gpuflow.ErrorCode(err) == gpuflow.ECONFLICT {
			return withWireCode(codeRegisterUserAlreadyExists,
				gpuflow.Errorf(gpuflow.EINVALID, "a user with this email already exists"))
		}
		if gpuflow.ErrorCode(err) != gpuflow.EINTERNAL {
			return err
		}
		return fmt.Errorf("register user: %w", err)
	}
	s.log.InfoContext(ctx, "user registered", "user_id", u.ID, "invited", s.auth.registrationMode() == gpuflow.RegistrationInvite)
	return c.JSON(http.StatusCreated, newUserView(u))
}

// loginRequest is the OAuth2 password form of "POST /auth/jwt/login", as a
// form or as JSON. Only username and password count; grant_type, when
// given, must be "password".
type loginRequest struct {
	Username     string `json:"username"`
	Password     string `json:"password"`
	GrantType    string `json:"grant_type"`
	Scope        string `json:"scope"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// tokenResponse is the answer of a login.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"` // seconds
}

// handleLogin handles "POST /auth/jwt/login": username (the email) and
// password, form-encoded as OAuth2 clients send them or as JSON. 200 with a
// bearer token; 400 LOGIN_BAD_CREDENTIALS for an unknown email, a wrong
// password or an inactive account alike; 429 with Retry-After past the
// per-address or per-account limit.
func (s *Server) handleLogin(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	if err := s.auth.ready(); err != nil {
		return err
	}
	if err := s.limit(c, s.auth.perAddress, c.RealIP(), "too many attempts from this address"); err != nil {
		return err
	}
	in, err := readLogin(c)
	if err != nil {
		return err
	}
	// Attempts count per email as given (normalised), known or not, so
	// that the limit says nothing about which accounts exist. A
	// successful login clears the count.
	account := strings.ToLower(strings.TrimSpace(in.Username))
	if err := s.limit(c, s.auth.perAccount, account, "too many login attempts for this account"); err != nil {
		return err
	}
	badCredentials := withWireCode(codeLoginBadCredentials,
		gpuflow.Errorf(gpuflow.EINVALID, "the email or password is wrong, or the account is inactive"))
	u, err := s.auth.users.UserByEmail(ctx, account)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		s.auth.hasher.VerifyNone(in.Password) // as slow as a wrong password
		s.log.DebugContext(ctx, "login refused", "reason", "unknown email")
		return badCredentials
	}
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if !s.auth.hasher.Verify(u.HashedPassword, in.Password) {
		s.log.DebugContext(ctx, "login refused", "reason", "wrong password", "user_id", u.ID)
		return badCredentials
	}
	if !u.IsActive {
		s.log.DebugContext(ctx, "login refused", "reason", "inactive", "user_id", u.ID)
		return badCredentials
	}
	s.auth.perAccount.reset(account)
	token, exp, err := s.auth.tokens.Issue(u.ID)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "user logged in", "user_id", u.ID)
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Pragma", "no-cache")
	return c.JSON(http.StatusOK, tokenResponse{
		AccessToken: token, TokenType: "bearer",
		ExpiresIn: int64(math.Ceil(exp.Sub(s.now()).Seconds())),
	})
}

// readLogin reads the login form or JSON body.
func readLogin(c echo.Context) (loginRequest, error) {
	var in loginRequest
	req := c.Request()
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	switch mt {
	case echo.MIMEApplicationForm, echo.MIMEApplicationJSON:
	default:
		ct := req.Header.Get(echo.HeaderContentType)
		if ct == "" {
			ct = "none"
		}
		return in, &wireError{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType,
			Message: "Content-Type must be application/x-www-form-urlencoded or application/json, got " + ct}
	}
	body, err := readBody(req, c.Response(), maxAuthBody)
	if err != nil {
		return in, err
	}
	if mt == echo.MIMEApplicationJSON {
		if err := decodeStrict(body, &in); err != nil {
			return in, err
		}
	} else {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return in, gpuflow.Errorf(gpuflow.EINVALID, "malformed form body")
		}
		in = loginRequest{Username: form.Get("username"), Password: form.Get("password"),
			GrantType: form.Get("grant_type"), Scope: form.Get("scope")}
	}
	fields := map[string]any{}
	if strings.TrimSpace(in.Username) == "" {
		fields["username"] = "username is required"
	}
	if in.Password == "" {
		fields["password"] = "password is required"
	}
	if in.GrantType != "" && in.GrantType != "password" {
		fields["grant_type"] = `grant_type must be "password"`
	}
	if len(in.Username) > gpuflow.MaxEmailLen {
		fields["username"] = "username must be at most 254 characters"
	}
	for _, f := range []string{"username", "password", "grant_type"} {
		if msg, ok := fields[f]; ok {
			return in, gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).WithDetails(map[string]any{"fields": fields})
		}
	}
	return in, nil
}

// limit takes one event of key from w and answers 429 with Retry-After
// when w is exhausted.
func (s *Server) limit(c echo.Context, w *window, key, msg string) error {
	wait := w.take(key, s.now())
	if wait <= 0 {
		return nil
	}
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.FormatInt(secs, 10))
	s.log.InfoContext(c.Request().Context(), "auth attempt rate limited", "limit", msg, "retry_after_s", secs)
	return gpuflow.Errorf(gpuflow.ERATELIMIT, "%s; try again in %s", msg, time.Duration(secs)*time.Second).
		WithDetails(map[string]any{"retry_after_seconds": secs})
}
