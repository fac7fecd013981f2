package app

import (
	"slices"
	"testing"
)

func TestConfigCORS(t *testing.T) {
	t.Parallel()
	c, err := configFrom(t, map[string]string{"HTTP_ADDR": "127.0.0.1:9090"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.CORSAllowedOrigins, []string{"http://127.0.0.1:9090"}) {
		t.Errorf("default origins %v, want the API's own", c.CORSAllowedOrigins)
	}
	c, err = configFrom(t, map[string]string{"CORS_ALLOWED_ORIGINS": " https://App.example.com/, http://localhost:3000 ,,"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.com", "http://localhost:3000"}; !slices.Equal(c.CORSAllowedOrigins, want) {
		t.Errorf("origins %v, want %v", c.CORSAllowedOrigins, want)
	}
	if c, err = configFrom(t, map[string]string{"CORS_ALLOWED_ORIGINS": "*"}); err != nil || !slices.Equal(c.CORSAllowedOrigins, []string{"*"}) {
		t.Errorf("*: %v, %v", c.CORSAllowedOrigins, err)
	}
	for _, bad := range []string{"app.example.com", "ftp://x", "https://x/path", "https://x?q=1", "https://u@x", "http://"} {
		if _, err := configFrom(t, map[string]string{"CORS_ALLOWED_ORIGINS": bad}); err == nil {
			t.Errorf("CORS_ALLOWED_ORIGINS=%s accepted", bad)
		}
	}
	if !slices.Contains(EnvVars, "CORS_ALLOWED_ORIGINS") {
		t.Error("EnvVars lacks CORS_ALLOWED_ORIGINS")
	}
}
