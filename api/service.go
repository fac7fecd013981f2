package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
)

// handleRoot handles "GET /": what this API is and where things are.
func (s *Server) handleRoot(c echo.Context) error {
	var ui *string
	if s.cfg.TemporalUIURL != "" {
		ui = &s.cfg.TemporalUIURL
	}
	return c.JSON(http.StatusOK, map[string]any{
		"name":        "gpuflow",
		"version":     s.cfg.Version,
		"docs":        "/docs",
		"openapi":     "/openapi.json",
		"temporal_ui": ui,
		"health":      "/health",
	})
}

// handleHealth handles "GET /health": every health check, concurrently and
// each with a deadline. 200 when all pass, 503 naming the failing ones.
func (s *Server) handleHealth(c echo.Context) error {
	ctx := c.Request().Context()
	checks := make(map[string]string, len(s.cfg.HealthChecks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range s.cfg.HealthChecks {
		wg.Go(func() {
			result := "ok"
			if err := runCheck(ctx, check); err != nil {
				result = err.Error()
			}
			mu.Lock()
			checks[name] = result
			mu.Unlock()
		})
	}
	wg.Wait()
	status, code := "healthy", http.StatusOK
	for name, result := range checks {
		if result != "ok" {
			status, code = "unhealthy", http.StatusServiceUnavailable
			s.log.WarnContext(ctx, "health check failed", "check", name, "err", result)
		}
	}
	return c.JSON(code, map[string]any{"status": status, "checks": checks})
}

// runCheck runs check with healthCheckTimeout, returning when the deadline
// passes even if check ignores its context.
func runCheck(ctx context.Context, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("check panicked: %v", r)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s", healthCheckTimeout)
		}
		return ctx.Err()
	}
}
