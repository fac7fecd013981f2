package api

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gpuflow/gpuflow"
)

// The agent endpoint: a cloud machine's boot script reports its job's
// progress, output and exit code here, authenticated by a token valid for
// that job alone (auth.AgentTokens). Progress and exit codes are recorded in
// the job store (gpuflow.ReportRecorder) and acknowledged once committed;
// the relay (package relay) delivers them to the workflow as its progress
// and finished signals, so an unreachable Temporal never refuses a report.
// Output is appended to the job's logs. Nothing here talks to Temporal:
// only the store being down answers 503, and the agent retries.

// LogAppender is implemented by job stores that can append output at its
// end (output that arrives without an offset).
type LogAppender interface {
	AppendLogTail(ctx context.Context, jobID string, data []byte) (int64, error)
}

// HeaderLogOffset carries the byte offset of an agent's output chunk
// (provider/agentscript sends it).
const HeaderLogOffset = "Gpuflow-Log-Offset"

// OffsetLogAppender stores output at a byte offset; a chunk stored again
// at the same offset is a no-op.
type OffsetLogAppender interface {
	AppendLog(ctx context.Context, jobID string, offset int64, data []byte) error
}

// AgentVerifier checks an agent token for a job.
type AgentVerifier interface {
	Verify(token, jobID string) error
}

const maxAgentMessage = 1000

func (s *Server) registerAgentRoutes(e *echo.Echo) {
	g := e.Group("/agent/v1/jobs/:id", s.requireAgent)
	g.POST("/progress", s.handleAgentProgress)
	g.POST("/finished", s.handleAgentFinished)
	g.POST("/logs", s.handleAgentLogs)
}

// requireAgent admits requests carrying a valid agent token for the job in
// the path.
func (s *Server) requireAgent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Agents == nil {
			return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "the agent endpoint is not configured")
		}
		token, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok || s.cfg.Agents.Verify(strings.TrimSpace(token), c.Param("id")) != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="gpuflow-agent"`)
			return gpuflow.Errorf(gpuflow.EUNAUTHORIZED, "a valid agent token for this job is required")
		}
		return next(c)
	}
}

// handleAgentProgress handles "POST /agent/v1/jobs/:id/progress".
func (s *Server) handleAgentProgress(c echo.Context) error {
	var in struct {
		Percent *float64 `json:"percent"`
		Message string   `json:"message"`
	}
	if err := s.decodeAgentJSON(c, &in); err != nil {
		return err
	}
	if in.Percent == nil || *in.Percent < 0 || *in.Percent > 100 {
		return agentFieldError("percent", "percent must be between 0 and 100")
	}
	if len(in.Message) > maxAgentMessage {
		return agentFieldError("message", "message must be at most 1000 characters")
	}
	return s.recordAgent(c, gpuflow.AgentReport{Kind: gpuflow.ReportProgress, Percent: *in.Percent, Message: in.Message})
}

// handleAgentFinished handles "POST /agent/v1/jobs/:id/finished".
func (s *Server) handleAgentFinished(c echo.Context) error {
	var in struct {
		ExitCode *int `json:"exit_code"`
	}
	if err := s.decodeAgentJSON(c, &in); err != nil {
		return err
	}
	if in.ExitCode == nil || *in.ExitCode < -1 || *in.ExitCode > 255 {
		return agentFieldError("exit_code", "exit_code must be between -1 and 255")
	}
	return s.recordAgent(c, gpuflow.AgentReport{Kind: gpuflow.ReportFinished, ExitCode: *in.ExitCode})
}

// handleAgentLogs handles "POST /agent/v1/jobs/:id/logs": the body is raw
// output, appended to the job's logs.
func (s *Server) handleAgentLogs(c echo.Context) error {
	la, ok := s.cfg.Jobs.(LogAppender)
	if !ok {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "this job store cannot take agent output")
	}
	body, err := readBody(c.Request(), c.Response(), maxSubmitBody)
	if err != nil {
		return err
	}
	// An agent that says where its chunk starts (it resends a chunk whose
	// answer it lost) has it stored at that offset: a chunk stored twice
	// is stored once.
	if h := c.Request().Header.Get(HeaderLogOffset); h != "" {
		off, err := strconv.ParseInt(h, 10, 64)
		if err != nil || off < 0 {
			return agentFieldError("offset", HeaderLogOffset+" must be a byte offset, a whole number from 0")
		}
		// The chunk's end must be a byte offset too (found by
		// FuzzAgentLogOffset: next_offset wrapped around).
		if off > math.MaxInt64-int64(len(body)) {
			return agentFieldError("offset", HeaderLogOffset+" is too large: the chunk would end past the largest byte offset")
		}
		if oa, ok := s.cfg.Jobs.(OffsetLogAppender); ok {
			if err := oa.AppendLog(c.Request().Context(), c.Param("id"), off, body); err != nil {
				return err
			}
			return c.JSON(http.StatusAccepted, map[string]any{"offset": off, "next_offset": off + int64(len(body))})
		}
	}
	off, err := la.AppendLogTail(c.Request().Context(), c.Param("id"), body)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"offset": off, "next_offset": off + int64(len(body))})
}

func (s *Server) decodeAgentJSON(c echo.Context, v any) error {
	if err := requireJSON(c.Request()); err != nil {
		return err
	}
	body, err := readBody(c.Request(), c.Response(), 64<<10)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// recordAgent records a report for the job in the path and answers 202
// once it is committed. A second exit code for a job is acknowledged and
// ignored (the first one stands); a different one is logged.
func (s *Server) recordAgent(c echo.Context, r gpuflow.AgentReport) error {
	rec, ok := s.cfg.Jobs.(gpuflow.ReportRecorder)
	if !ok {
		return gpuflow.Errorf(gpuflow.EUNAVAILABLE, "this job store cannot record agent reports")
	}
	ctx := c.Request().Context()
	r.JobID, r.ReceivedAt = c.Param("id"), s.now().UTC()
	kept, created, err := rec.RecordReport(ctx, r)
	if err != nil {
		return err
	}
	if !created && kept.ExitCode != r.ExitCode {
		s.log.WarnContext(ctx, "agent reported a second, different exit code; the first one stands",
			"job_id", r.JobID, "kept_exit_code", kept.ExitCode, "ignored_exit_code", r.ExitCode)
	}
	return c.NoContent(http.StatusAccepted)
}

func agentFieldError(field, msg string) error {
	return &gpuflow.Error{Code: gpuflow.EINVALID, Message: msg, Details: map[string]any{"fields": map[string]any{field: msg}}}
}
