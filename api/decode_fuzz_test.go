package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

// FuzzDecodeSubmit checks the strict decoder on submit bodies: it never
// panics, every failure is a 400 with a code a client can act on, and
// what it accepts is valid JSON that decodes again to the same request.
// The seed corpus runs with every go test.
func FuzzDecodeSubmit(f *testing.F) {
	for _, seed := range []string{
		`{"command":["python","train.py"],"gpu_type":"RTX4090","gpu_count":1}`,
		`{"name":"x","image":"alpine","command":["true"],"env":{"A":"1"},"gpu_type":"A100","gpu_count":8,"memory_gb":16.5,` +
			`"vcpus":4,"disk_gb":50,"priority":5,"strategy":"cost","provider":null,"providers":[],"spot":false,` +
			`"max_price_per_hour":null,"max_duration_minutes":60,"estimated_duration":60}`,
		`{"gpu_count":0,"command":["echo"]}`,
		`{"gpu_count":"1"}`, `{"gpu_count":1.5}`, `{"gpu_count":1e400}`, `{"env":{"A":1}}`, `{"command":"ls"}`,
		`{"unknown":1}`, `{"name":"a"} {"name":"b"}`, `{"name":"a"} x`, `[]`, `null`, `""`, `{`, ``, `   `,
		`{"name":"\ud800"}`, "{\"name\":\"\xff\"}", `{"priority":-1}`, `{"command":[null]}`, `{"Name":"case"}`,
		`{"name":"a","name":"b"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in submitRequest
		err := decodeStrict(data, &in)
		if err != nil {
			status, body := errorResponse(err)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d for %q: %v", status, data, err)
			}
			if c := body.Error.Code; c != codeInvalidJSON && c != "validation_failed" {
				t.Fatalf("code %q for %q", c, data)
			}
			if body.Error.Message == "" {
				t.Fatalf("no message for %q", data)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		enc, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", in, err)
		}
		var again submitRequest
		if err := decodeStrict(enc, &again); err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		if !reflect.DeepEqual(in.spec(), again.spec()) {
			t.Fatalf("spec changed on a round trip:\n%+v\n%+v", in.spec(), again.spec())
		}
	})
}
