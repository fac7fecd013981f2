package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// corsMaxAge is how long browsers may cache a preflight answer, in seconds.
const corsMaxAge = 600

// corsMiddleware answers CORS requests from the allowed origins (exact
// matches, "*" for any): preflights, and the Access-Control-Allow-Origin
// of the rest. Requests from other origins get no CORS headers, so
// browsers keep their pages from reading the answers. It runs before
// authentication: a preflight carries no token.
func corsMiddleware(origins []string) echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:  origins,
		AllowMethods:  []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodOptions},
		AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, HeaderIdempotencyKey},
		ExposeHeaders: []string{HeaderIdempotentReplayed, echo.HeaderWWWAuthenticate, "Retry-After"},
		MaxAge:        corsMaxAge,
	})
}
