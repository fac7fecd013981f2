package api

import (
	"embed"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// openapiDoc is the OpenAPI 3 document of every route, served at
// /openapi.json. It is written by hand; a test fails when it and the routes
// disagree, and checks real answers against its schemas.
//
//go:embed openapi.json
var openapiDoc []byte

// swaggerUI holds Swagger UI's assets (swagger-ui-dist, Apache-2.0) and
// its page, served at /docs from inside the binary.
//
//go:embed swaggerui
var swaggerUI embed.FS

// registerDocRoutes registers the OpenAPI document and Swagger UI.
func (s *Server) registerDocRoutes(e *echo.Echo) {
	e.GET("/openapi.json", s.handleOpenAPI)
	e.GET("/docs", s.handleDocs)
	e.GET("/docs/:file", s.handleDocsAsset)
}

// handleOpenAPI handles "GET /openapi.json".
func (s *Server) handleOpenAPI(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiDoc)
}

// handleDocs handles "GET /docs": Swagger UI's page.
func (s *Server) handleDocs(c echo.Context) error {
	return s.serveAsset(c, "index.html")
}

// handleDocsAsset handles "GET /docs/{file}": Swagger UI's assets.
func (s *Server) handleDocsAsset(c echo.Context) error {
	name := c.Param("file")
	if name == "" {
		name = "index.html"
	}
	return s.serveAsset(c, name)
}

// assetTypes are the media types of the assets, by extension.
var assetTypes = map[string]string{
	".html": echo.MIMETextHTMLCharsetUTF8,
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".txt":  echo.MIMETextPlainCharsetUTF8,
	".md":   echo.MIMETextPlainCharsetUTF8,
	"":      echo.MIMETextPlainCharsetUTF8, // LICENSE, NOTICE
}

func (s *Server) serveAsset(c echo.Context, name string) error {
	notFound := gpuflow.Errorf(gpuflow.ENOTFOUND, "no such file in /docs")
	if strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return notFound
	}
	ctype, ok := assetTypes[path.Ext(name)]
	if !ok {
		return notFound
	}
	data, err := swaggerUI.ReadFile("swaggerui/" + name)
	if err != nil {
		return notFound
	}
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "index.html" {
		h.Set(echo.HeaderCacheControl, "no-cache")
	} else {
		h.Set(echo.HeaderCacheControl, "public, max-age=86400")
	}
	return c.Blob(http.StatusOK, ctype, data)
}
