package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.srv.cfg
	cfg.CORSAllowedOrigins = []string{"http://127.0.0.1:8080", "https://app.example.com"}
	b.srv = New(cfg)

	t.Run("AllowedOrigin", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/providers", "", header{"Origin", "https://app.example.com"})
		if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("%d, headers %v", rec.Code, rec.Header())
		}
		if !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), HeaderIdempotentReplayed) {
			t.Errorf("expose headers %q", rec.Header().Get("Access-Control-Expose-Headers"))
		}
		// Errors carry them too, so that the page can read them.
		rec = b.do(t, http.MethodGet, "/api/gpu/providers", "", anonymous, header{"Origin", "http://127.0.0.1:8080"})
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8080" {
			t.Errorf("401: %d, headers %v", rec.Code, rec.Header())
		}
	})

	t.Run("OtherOrigin", func(t *testing.T) {
		rec := b.do(t, http.MethodGet, "/api/gpu/providers", "", header{"Origin", "https://evil.example.com"})
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q for another origin", got)
		}
	})

	t.Run("Preflight", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodOptions, "/api/gpu/jobs/submit", nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req) // no token: preflights carry none
		h := rec.Header()
		if rec.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("%d, headers %v, body %s", rec.Code, h, rec.Body)
		}
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"authorization", "content-type", "idempotency-key"} {
			if !strings.Contains(allowed, want) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, want)
			}
		}
		if !strings.Contains(h.Get("Access-Control-Allow-Methods"), http.MethodPost) || h.Get("Access-Control-Max-Age") == "" {
			t.Errorf("headers %v", h)
		}

		req.Header.Set("Origin", "https://evil.example.com")
		rec = httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight of another origin allowed: %q", got)
		}
	})

	t.Run("NoneConfigured", func(t *testing.T) {
		plain := setup(t)
		rec := plain.do(t, http.MethodGet, "/api/gpu/providers", "", header{"Origin", "https://app.example.com"})
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin %q without configured origins", got)
		}
	})
}
