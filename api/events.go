package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// eventsResponse is the answer of "GET /api/gpu/tasks/{id}/events".
type eventsResponse struct {
	TaskID string          `json:"task_id"`
	Events []gpuflow.Event `json:"events"`
}

// handleTaskEvents handles "GET /api/gpu/tasks/{id}/events": the job's
// recorded events in order. 404 when the job is unknown or not the
// caller's.
func (s *Server) handleTaskEvents(c echo.Context) error {
	job, err := s.jobFor(c)
	if err != nil {
		return err
	}
	events, err := s.cfg.Jobs.Events(c.Request().Context(), job.ID)
	if gpuflow.ErrorCode(err) == gpuflow.ENOTFOUND {
		return gpuflow.Errorf(gpuflow.ENOTFOUND, "task %s not found", job.ID)
	}
	if err != nil {
		return fmt.Errorf("list events of %s: %w", job.ID, err)
	}
	if events == nil {
		events = []gpuflow.Event{}
	}
	return c.JSON(http.StatusOK, eventsResponse{TaskID: job.ID, Events: events})
}
