package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// logsResponse is a page of a job's output.
type logsResponse struct {
	TaskID     string `json:"task_id"`
	Offset     int64  `json:"offset"`
	NextOffset int64  `json:"next_offset"`
	Logs       string `json:"logs"`
}

// handleTaskLogs handles "GET /api/gpu/tasks/{id}/logs": the job's output
// from ?offset= (default 0), at most 1 MiB a page. With ?follow=1 it streams
// the output as text/plain until the job has finished and all of it is sent.
func (s *Server) handleTaskLogs(c echo.Context) error {
	job, err := s.jobFor(c)
	if err != nil {
		return err
	}
	var offset int64
	if o := c.QueryParam("offset"); o != "" {
		offset, err = strconv.ParseInt(o, 10, 64)
		if err != nil || offset < 0 {
			msg := "offset must be a non-negative integer"
			return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
				WithDetails(map[string]any{"fields": map[string]any{"offset": msg}})
		}
	}
	follow := false
	if f := c.QueryParam("follow"); f != "" {
		follow, err = strconv.ParseBool(f)
		if err != nil {
			msg := "follow must be 1, 0, true or false"
			return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
				WithDetails(map[string]any{"fields": map[string]any{"follow": msg}})
		}
	}
	if follow {
		return s.followLogs(c, job, offset)
	}
	data, err := s.cfg.Jobs.Logs(c.Request().Context(), job.ID, offset, maxLogPage)
	if err != nil {
		return fmt.Errorf("read logs of %s: %w", job.ID, err)
	}
	return c.JSON(http.StatusOK, logsResponse{
		TaskID: job.ID, Offset: offset, NextOffset: offset + int64(len(data)), Logs: string(data),
	})
}

// followLogs streams the job's output from offset until the job is terminal
// and nothing more is stored (or the client leaves, or the server shuts
// down). With an event feed it reads again when the job's events or output
// notices arrive, and every logFallback regardless; without one it polls
// every logPoll.
func (s *Server) followLogs(c echo.Context, job *gpuflow.Job, offset int64) error {
	ctx := c.Request().Context()
	resp := c.Response()
	// Watch before the first read, so that nothing written after it is
	// missed.
	var wake <-chan struct{}
	every := s.logPoll
	if hub := s.live.hub; hub != nil {
		w, stop := hub.watch(job.ID)
		defer stop()
		wake, every = w, s.live.logFallback
	}
	resp.Header().Set(echo.HeaderContentType, echo.MIMETextPlainCharsetUTF8)
	resp.Header().Set("X-Content-Type-Options", "nosniff")
	resp.Header().Set("Cache-Control", "no-cache")
	resp.WriteHeader(http.StatusOK)
	resp.Flush()

	terminal := job.Status.Terminal()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		data, err := s.cfg.Jobs.Logs(ctx, job.ID, offset, maxLogPage)
		if err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "follow logs: read", "job_id", job.ID, "err", err)
			}
			return nil // the stream has started; ending it is all that is left
		}
		if len(data) > 0 {
			if _, err := resp.Write(data); err != nil {
				return nil // the client left
			}
			resp.Flush()
			offset += int64(len(data))
			continue
		}
		if terminal {
			// Nothing more, and the job had finished before this read:
			// every byte it wrote is sent.
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.closingCh():
			return nil // shutting down; the client resumes with ?offset=
		case <-wake:
		case <-tick.C:
		}
		j, err := s.cfg.Jobs.Job(ctx, job.ID)
		if err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "follow logs: get job", "job_id", job.ID, "err", err)
			}
			return nil
		}
		terminal = j.Status.Terminal()
	}
}
