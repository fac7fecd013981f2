package api

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// uiCSP is the dashboard's Content-Security-Policy: its own scripts only,
// API calls and the WebSocket to this origin, inline styles (Element
// Plus and ECharts set them) and data: images.
const uiCSP = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"style-src 'self' 'unsafe-inline'; font-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"

// uiTypes are the media types of the dashboard's files, by extension.
var uiTypes = map[string]string{
	".html":  echo.MIMETextHTMLCharsetUTF8,
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".woff2": "font/woff2",
	".woff":  "font/woff",
	".ttf":   "font/ttf",
}

// registerUIRoutes registers the web dashboard (Config.UI): its page at
// /ui/ (the dashboard routes inside the page, after the #) and its files at
// /ui/assets/{file}. Without Config.UI they answer 404.
func (s *Server) registerUIRoutes(e *echo.Echo) {
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	e.GET("/ui/", s.handleUI)
	e.GET("/ui/assets/:file", s.handleUIAsset)
}

// handleUI handles "GET /ui/": the dashboard's page.
func (s *Server) handleUI(c echo.Context) error {
	return s.serveUI(c, "index.html")
}

// handleUIAsset handles "GET /ui/assets/{file}": the dashboard's scripts,
// styles and images. Their names carry a hash of their content, so they
// are cached for good.
func (s *Server) handleUIAsset(c echo.Context) error {
	name := c.Param("file")
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "no such file in /ui/assets")
	}
	return s.serveUI(c, "assets/"+name)
}

func (s *Server) serveUI(c echo.Context, name string) error {
	if s.cfg.UI == nil {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "this build has no web dashboard")
	}
	ctype, ok := uiTypes[path.Ext(name)]
	if !ok {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "no such file in /ui")
	}
	data, err := fs.ReadFile(s.cfg.UI, name)
	if err != nil {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "no such file in /ui")
	}
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "index.html" {
		h.Set(echo.HeaderCacheControl, "no-cache")
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
	} else {
		h.Set(echo.HeaderCacheControl, "public, max-age=31536000, immutable")
	}
	return c.Blob(http.StatusOK, ctype, data)
}
