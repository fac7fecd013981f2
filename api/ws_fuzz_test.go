package api

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
)

// FuzzParseClientMessage checks the WebSocket client message parser on any
// input: it never panics, accepts only well-formed messages (with a
// canonical task id), and answers everything else with a client error whose
// message is valid JSON. The seed corpus runs with every go test.
func FuzzParseClientMessage(f *testing.F) {
	for _, seed := range []string{
		`{"action":"subscribe","task_id":"4887cbed-9c79-4ef9-83b2-302194ee1bb3"}`,
		`{"action":"unsubscribe","task_id":"4887CBED-9C79-4EF9-83B2-302194EE1BB3"}`,
		`{"action":"ping"}`,
		`{"action":"ping","task_id":"4887cbed-9c79-4ef9-83b2-302194ee1bb3"}`,
		`{"action":"subscribe"}`,
		`{"action":"subscribe","task_id":"nope"}`,
		`{"action":"subscribe","task_id":"{4887cbed-9c79-4ef9-83b2-302194ee1bb3}"}`,
		`{"action":"subscribe","task_id":"urn:uuid:4887cbed-9c79-4ef9-83b2-302194ee1bb3"}`,
		`{"action":"subscribe","task_id":7}`,
		`{"action":"dance","task_id":"4887cbed-9c79-4ef9-83b2-302194ee1bb3"}`,
		`{"action":"subscribe","task_id":"4887cbed-9c79-4ef9-83b2-302194ee1bb3","x":1}`,
		`{"action":"subscribe","task_id":"4887cbed-9c79-4ef9-83b2-302194ee1bb3"} {}`,
		`{"action":null}`, `{}`, `[]`, `null`, `"subscribe"`, ``, ` `, `{`, `{"action":"\ud800"}`,
		"{\"action\":\"subscribe\",\"task_id\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseClientMessage(data)
		if err != nil {
			status, _ := errorResponse(err)
			if status < 400 || status >= 500 {
				t.Fatalf("status %d for %q: %v", status, data, err)
			}
			var msg serverMessage
			if jerr := json.Unmarshal(errorMessage(err, ""), &msg); jerr != nil || msg.Type != msgError ||
				msg.Error == nil || msg.Error.Code == "" || msg.Error.Message == "" {
				t.Fatalf("error message for %q: %+v (%v)", data, msg, jerr)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		switch m.Action {
		case actionPing:
			if m.TaskID != "" {
				t.Fatalf("ping with task %q", m.TaskID)
			}
		case actionSubscribe, actionUnsubscribe:
			u, perr := uuid.Parse(m.TaskID)
			if perr != nil || u.String() != m.TaskID {
				t.Fatalf("task id %q is not canonical", m.TaskID)
			}
		default:
			t.Fatalf("accepted action %q", m.Action)
		}
		// What it accepted, it accepts again, the same.
		again, err := parseClientMessage(mustJSON(m))
		if err != nil || again != m {
			t.Fatalf("re-parse of %+v: %+v, %v", m, again, err)
		}
	})
}
