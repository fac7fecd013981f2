package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
)

// Actions a WebSocket client may send.
const (
	actionSubscribe   = "subscribe"
	actionUnsubscribe = "unsubscribe"
	actionPing        = "ping"
)

// Types of the messages the server sends besides events.
const (
	msgSubscribed   = "subscribed"
	msgUnsubscribed = "unsubscribed"
	msgPong         = "pong"
	msgError        = "error"
)

// maxClientMessage is the largest message a WebSocket client may send; a
// larger one closes the connection (1009, message too big).
const maxClientMessage = 4096

// clientMessage is what a WebSocket client sends:
// {"action":"subscribe","task_id":"…"}, {"action":"unsubscribe","task_id":"…"}
// or {"action":"ping"}.
type clientMessage struct {
	Action string `json:"action"`
	TaskID string `json:"task_id,omitempty"`
}

// parseClientMessage decodes and checks one client message. Malformed JSON
// is invalid_json; an unknown action, a missing task_id or a field of the
// wrong type is EINVALID; a task_id that is not a UUID is ENOTFOUND, as an
// unknown task is. A valid message's TaskID is the canonical (lowercase)
// UUID.
func parseClientMessage(data []byte) (clientMessage, error) {
	var m clientMessage
	if err := decodeStrict(data, &m); err != nil {
		return clientMessage{}, err
	}
	invalid := func(field, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{field: msg}})
	}
	switch m.Action {
	case actionPing:
		if m.TaskID != "" {
			return clientMessage{}, invalid("task_id", "task_id is not allowed with action %q", actionPing)
		}
		return m, nil
	case actionSubscribe, actionUnsubscribe:
	case "":
		return clientMessage{}, invalid("action", "action is required: %s, %s or %s",
			actionSubscribe, actionUnsubscribe, actionPing)
	default:
		return clientMessage{}, invalid("action", "action must be %s, %s or %s, got %q",
			actionSubscribe, actionUnsubscribe, actionPing, truncate(m.Action, 64))
	}
	if m.TaskID == "" {
		return clientMessage{}, invalid("task_id", "task_id is required with action %q", m.Action)
	}
	id, err := uuid.Parse(m.TaskID)
	if err != nil || len(m.TaskID) != 36 {
		return clientMessage{}, gpuflow.Errorf(gpuflow.ENOTFOUND, "task %s not found", truncate(m.TaskID, 64)).
			WithDetails(map[string]any{"task_id": truncate(m.TaskID, 64)})
	}
	m.TaskID = id.String()
	return m, nil
}

// truncate shortens s to at most n bytes, for echoing input back.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// serverMessage is a message of the server that is not an event: an
// acknowledgement, a pong or an error.
type serverMessage struct {
	Type   string        `json:"type"`
	TaskID string        `json:"task_id,omitempty"`
	Error  *errorPayload `json:"error,omitempty"`
}

// errorMessage is the WebSocket form of err: the HTTP error body with
// "type":"error", {"type":"error","error":{"code","message","details"}}.
func errorMessage(err error, taskID string) []byte {
	status, body := errorResponse(err)
	if status == http.StatusInternalServerError {
		body.Error.Details = nil
	}
	return mustJSON(serverMessage{Type: msgError, TaskID: taskID, Error: &body.Error})
}

// mustJSON encodes v, which cannot fail for the package's own types.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return b
}
