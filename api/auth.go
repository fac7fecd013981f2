package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
	"github.com/gpuflow/gpuflow/auth"
)

// AuthConfig configures accounts, tokens and the limits on logging in.
type AuthConfig struct {
	// Users stores the accounts.
	Users gpuflow.UserStore
	// Secret is the HS256 key of the access tokens, at least
	// auth.MinSecretLen bytes. Without it (or without Users) every route
	// that needs a token answers 503.
	Secret []byte
	// TokenLifetime is how long an access token is valid;
	// auth.DefaultLifetime (1h) when 0.
	TokenLifetime time.Duration
	// PasswordCost is the bcrypt cost of new password hashes;
	// auth.DefaultCost when 0. Tests use auth.MinCost.
	PasswordCost int
	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For header names the client. Empty (the default): the
	// header is ignored and the client is the connection's peer.
	TrustedProxies []*net.IPNet
	// LoginPerAccount limits login attempts per account (by the email
	// given, known or not); a successful login clears the account's count.
	// Zero: 5 per 15 minutes. A negative Limit disables it.
	LoginPerAccount RateLimit
	// AttemptsPerAddress limits logins and registrations per client
	// address. Zero: 20 per minute. A negative Limit disables it.
	AttemptsPerAddress RateLimit
	// Registration is who may create an account through POST
	// /auth/register: gpuflow.RegistrationOpen (anyone),
	// RegistrationInvite (with a superuser's invitation code) or
	// RegistrationClosed. Empty or unknown: closed.
	Registration string
	// Invitations stores invitation codes; without it invitations answer
	// 503 (and registration by invitation cannot succeed).
	Invitations gpuflow.InvitationStore
	// Local says who may run jobs on providers of mode local (the
	// worker's own host): superusers and accounts with can_run_local
	// always; the zero value allows no one else.
	Local gpuflow.LocalPolicy
}

// RateLimit allows Limit events per Period.
//
// The counts are kept in memory: several API replicas each count on their
// own, so a client spreading its attempts over n replicas gets n times the
// limit. Put a shared limiter (at the load balancer) in front when that
// matters.
type RateLimit struct {
	Limit  int
	Period time.Duration
}

// Default limits.
var (
	defaultLoginPerAccount    = RateLimit{Limit: 5, Period: 15 * time.Minute}
	defaultAttemptsPerAddress = RateLimit{Limit: 20, Period: time.Minute}
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

// Context keys of the authenticated caller.
const (
	principalKey   = "gpuflow.principal"
	userKey        = "gpuflow.user"
	tokenExpiryKey = "gpuflow.token_expiry" // #nosec G101 -- a context key (its value a time.Time), not a credential
)

// noOwner is the owner filter of a caller who is nobody: no job has it.
const noOwner = "00000000-0000-0000-0000-000000000000"

// callerFrom returns the caller of the request, as the authentication
// middleware found it. A request that did not pass it (a public route) has
// the zero Principal, which sees no job.
func callerFrom(c echo.Context) Principal {
	p, _ := c.Get(principalKey).(Principal)
	return p
}

// userFrom returns the caller's account, or nil on a public route.
func userFrom(c echo.Context) *gpuflow.User {
	u, _ := c.Get(userKey).(*gpuflow.User)
	return u
}

// canSee reports whether p may see and act on job j. Jobs p may not see
// answer 404, exactly like jobs that do not exist.
func canSee(p Principal, j *gpuflow.Job) bool {
	return p.Superuser || (p.UserID != "" && j.OwnerID == p.UserID)
}

// ownerScope is the owner filter of p's job listings: "" (all owners) for a
// superuser, the user's own id otherwise (an id no job has when p is
// nobody, so that a missing principal lists nothing rather than all).
func ownerScope(p Principal) string {
	switch {
	case p.Superuser:
		return ""
	case p.UserID == "":
		return noOwner
	}
	return p.UserID
}

// authState holds what authentication needs.
type authState struct {
	users      gpuflow.UserStore
	tokens     *auth.Tokens // nil: not configured
	hasher     *auth.Hasher
	perAccount *window
	perAddress *window
	misconfig  string // why tokens is nil

	registration string
	invitations  gpuflow.InvitationStore
}

func newAuthState(cfg AuthConfig, now func() time.Time) *authState {
	a := &authState{
		users:      cfg.Users,
		hasher:     &auth.Hasher{Cost: cfg.PasswordCost},
		perAccount: newWindow(cfg.LoginPerAccount, defaultLoginPerAccount),
		perAddress: newWindow(cfg.AttemptsPerAddress, defaultAttemptsPerAddress),

		registration: cfg.Registration,
		invitations:  cfg.Invitations,
	}
	tokens, err := auth.NewTokens(cfg.Secret, cfg.TokenLifetime, now)
	switch {
	case err != nil:
		a.misconfig = err.Error()
	case cfg.Users == nil:
		a.misconfig = "no user store"
	default:
		a.tokens = tokens
		// Make the hash that logins for unknown emails compare against
		// now, so that the first such login is not slower than the rest.
		go a.hasher.VerifyNone("")
	}
	return a
}

// ready returns EUNAVAILABLE when authentication is not configured.
func (a *authState) ready() error {
	if a.tokens == nil {
		return &gpuflow.Error{Code: gpuflow.EUNAVAILABLE, Message: "authentication is not configured on this server",
			Err: errors.New(a.misconfig)}
	}
	return nil
}

// registerAuthRoutes sets up authentication: the client address extractor,
// the middleware that guards every route but the public ones, and the
// account routes.
func (s *Server) registerAuthRoutes(e *echo.Echo) {
	s.auth = newAuthState(s.cfg.Auth, s.now)
	if s.auth.misconfig != "" {
		s.log.Error("authentication is not configured: routes that need a token answer 503",
			"reason", s.auth.misconfig)
	}
	e.IPExtractor = ipExtractor(s.cfg.Auth.TrustedProxies)
	e.Use(s.requireAuth)
	e.POST("/auth/register", s.handleRegister)
	e.POST("/auth/jwt/login", s.handleLogin)
	e.GET("/users/me", s.handleMe)
	e.PATCH("/users/:id", s.handlePatchUser)
	e.POST("/users/invitations", s.handleCreateInvitation)
}

// ipExtractor finds the client's address: the connection's peer, or with
// trusted proxies the nearest address in X-Forwarded-For that is not one of
// them. Echo's default would believe any client's X-Forwarded-For.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// isPublic reports whether the request's route is open to everyone: the
// service routes, the docs, the metrics and the account routes. Every other
// route, known or not, needs a token.
func isPublic(c echo.Context) bool {
	p := c.Path() // the matched route's template
	if p == "" {
		p = c.Request().URL.Path
	}
	switch p {
	case "/", "/health", "/docs", "/openapi.json", "/metrics", "/ui", "/ui/":
		return true
	}
	// The agent routes check their own, job-scoped token (agent.go).
	// The dashboard's page and assets are public; it signs in through /auth.
	return strings.HasPrefix(p, "/auth/") || strings.HasPrefix(p, "/docs/") || strings.HasPrefix(p, "/agent/") ||
		strings.HasPrefix(p, "/ui/assets/")
}

// requireAuth is the middleware that authenticates every non-public
// request: it verifies the bearer token, loads its user (a primary-key
// look-up per request, so that deactivating or deleting an account takes
// effect at once) and puts the principal in the context for callerFrom.
// No, malformed, expired or revoked credentials answer 401 with
// WWW-Authenticate: Bearer.
func (s *Server) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if isPublic(c) {
			return next(c)
		}
		u, exp, err := s.authenticateRequest(c)
		if err != nil {
			return err
		}
		c.Set(tokenExpiryKey, exp)
		c.Set(principalKey, Principal{UserID: u.ID, Superuser: u.IsSuperuser})
		c.Set(userKey, u)
		return next(c)
	}
}

// authenticateRequest returns the active user the request's token names,
// setting WWW-Authenticate on a 401.
func (s *Server) authenticateRequest(c echo.Context) (*gpuflow.User, time.Time, error) {
	token, ok := requestToken(c.Request())
	if !ok {
		if err := s.auth.ready(); err != nil {
			return nil, time.Time{}, err
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
		return nil, time.Time{}, gpuflow.Errorf(gpuflow.EUNAUTHORIZED, "missing bearer token: send the header Authorization: Bearer TOKEN")
	}
	u, exp, err := s.verifyToken(c.Request().Context(), token)
	if gpuflow.ErrorCode(err) == gpuflow.EUNAUTHORIZED {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	}
	return u, exp, err
}

// verifyToken checks token and returns the active user it names and when
// the token expires: EUNAUTHORIZED
// for a token that is malformed, forged, expired, or names a user who no
// longer exists or is inactive; EUNAVAILABLE when authentication is not
// configured or the user store is down.
func (s *Server) verifyToken(ctx context.Context, token string) (*gpuflow.User, time.Time, error) {
	if err := s.auth.ready(); err != nil {
		return nil, time.Time{}, err
	}
	invalid := func(reason error) error {
		return &gpuflow.Error{Code: gpuflow.EUNAUTHORIZED, Message: "invalid or expired token", Err: reason}
	}
	id, exp, err := s.auth.tokens.VerifyExpiry(token)
	if err != nil {
		s.log.DebugContext(ctx, "token refused", "err", err)
		return nil, time.Time{}, invalid(err)
	}
	u, err := s.auth.users.User(ctx, id)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		s.log.DebugContext(ctx, "token of an unknown user", "user_id", id)
		return nil, time.Time{}, invalid(err)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("load user %s: %w", id, err)
	}
	if !u.IsActive {
		s.log.DebugContext(ctx, "token of an inactive user", "user_id", id)
		return nil, time.Time{}, invalid(errors.New("user is inactive"))
	}
	return u, exp, nil
}

// requestToken returns the request's access token: from the Authorization
// header ("Bearer <token>"), and for a WebSocket upgrade, which browsers
// cannot give headers, also from ?token= or the subprotocol pair
// "bearer, <token>".
func requestToken(r *http.Request) (string, bool) {
	if h := r.Header.Get(echo.HeaderAuthorization); h != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
			return "", false
		}
		return token, true
	}
	if !strings.EqualFold(r.Header.Get(echo.HeaderUpgrade), "websocket") {
		return "", false
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return t, true
	}
	var protocols []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			protocols = append(protocols, strings.TrimSpace(p))
		}
	}
	for i := 0; i+1 < len(protocols); i++ {
		if strings.EqualFold(protocols[i], "bearer") && protocols[i+1] != "" {
			return protocols[i+1], true
		}
	}
	return "", false
}
