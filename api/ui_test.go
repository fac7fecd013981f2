package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

// TestUIRoutes: the dashboard's page and assets are served from Config.UI,
// answers match the OpenAPI document, and nothing outside assets/ leaks.
func TestUIRoutes(t *testing.T) {
	t.Parallel()
	ui := fstest.MapFS{
		"index.html":            {Data: []byte("<!doctype html><title>gpuflow</title>")},
		"assets/index-abc1.js":  {Data: []byte("console.log(1)")},
		"assets/index-abc1.css": {Data: []byte("body{}")},
		"assets/logo.svg":       {Data: []byte("<svg/>")},
		"secret.txt":            {Data: []byte("no")},
	}
	env := newFeedEnv(t, nil, nil, nil, nil, func(c *Config, _ *feedEnv) { c.UI = ui })
	bare := newFeedEnv(t, nil, nil, nil, nil)
	d := newDocChecker(t)
	for _, c := range []struct {
		name, path string
		srv        *Server
		status     int
		ctype      string
		body       string
	}{
		{"redirect", "/ui", env.srv, http.StatusMovedPermanently, "", ""},
		{"page", "/ui/", env.srv, http.StatusOK, "text/html; charset=UTF-8", "<!doctype html><title>gpuflow</title>"},
		{"script", "/ui/assets/index-abc1.js", env.srv, http.StatusOK, "text/javascript; charset=utf-8", "console.log(1)"},
		{"style", "/ui/assets/index-abc1.css", env.srv, http.StatusOK, "text/css; charset=utf-8", "body{}"},
		{"image", "/ui/assets/logo.svg", env.srv, http.StatusOK, "image/svg+xml", "<svg/>"},
		{"missing", "/ui/assets/nope.js", env.srv, http.StatusNotFound, "application/json", ""},
		{"unknown type", "/ui/assets/x.exe", env.srv, http.StatusNotFound, "application/json", ""},
		{"dot file", "/ui/assets/.env", env.srv, http.StatusNotFound, "application/json", ""},
		{"escape", "/ui/assets/..%2fsecret.txt", env.srv, http.StatusNotFound, "application/json", ""},
		{"not built", "/ui/", bare.srv, http.StatusNotFound, "application/json", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, c.path, nil)
		rec := httptest.NewRecorder()
		c.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, rec.Code, c.status, rec.Body.String())
			continue
		}
		if c.ctype != "" && !strings.HasPrefix(rec.Header().Get("Content-Type"), c.ctype) {
			t.Errorf("%s: Content-Type %q, want %q", c.name, rec.Header().Get("Content-Type"), c.ctype)
		}
		if c.body != "" && rec.Body.String() != c.body {
			t.Errorf("%s: body %q, want %q", c.name, rec.Body.String(), c.body)
		}
		d.check(c.name, req, nil, true, rec.Code, rec.Header(), rec.Body.Bytes())
		switch c.name {
		case "redirect":
			if loc := rec.Header().Get("Location"); loc != "/ui/" {
				t.Errorf("redirect to %q", loc)
			}
		case "page":
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("page CSP %q", csp)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("page Cache-Control %q", cc)
			}
		case "script":
			if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
				t.Errorf("asset Cache-Control %q", cc)
			}
		}
	}
}
