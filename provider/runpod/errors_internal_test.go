package runpod

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gpuflow/gpuflow"
)

// TestClassify covers the answers the emulator has no switch for.
func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		create bool
		want   gpuflow.ProviderErrorKind
	}{
		{"capacity", &apiError{Status: 400, Detail: "There are no longer any instances available with the requested specifications. Please refresh and try again."}, true, gpuflow.KindNoCapacity},
		{"capacity disk", &apiError{Status: 400, Detail: "There are no longer any instances available with enough disk space."}, true, gpuflow.KindNoCapacity},
		{"rule", &apiError{Status: 400, Detail: "minCudaVersion and allowedCudaVersions are mutually exclusive"}, true, gpuflow.KindInvalidRequest},
		{"balance", &apiError{Status: 402, Detail: "insufficient balance"}, true, gpuflow.KindAuth},
		{"pool", &apiError{Status: 403, Detail: "access denied"}, true, gpuflow.KindNoCapacity},
		{"forbidden", &apiError{Status: 403, Detail: "access denied"}, false, gpuflow.KindAuth},
		{"not found", &apiError{Status: 404}, false, gpuflow.KindNotFound},
		{"conflict", &apiError{Status: 409}, false, gpuflow.KindInvalidRequest},
		{"schema", &apiError{Status: 422, Errors: []string{"$: additional properties 'x' not allowed"}}, true, gpuflow.KindInvalidRequest},
		{"rate", &apiError{Status: 429}, false, gpuflow.KindTransient},
		{"bad gateway", &apiError{Status: 502}, true, gpuflow.KindTransient},
		{"gql capacity spot", &apiError{GraphQL: true, Status: 200, Detail: "There are no longer any instances available with the request specifications. Please try again later."}, true, gpuflow.KindNoCapacity},
		{"gql host", &apiError{GraphQL: true, Status: 200, Detail: "There are not enough free GPUs on the host machine to start this pod."}, true, gpuflow.KindNoCapacity},
		{"gql pod gone", &apiError{GraphQL: true, Status: 200, Detail: "Pod not found."}, false, gpuflow.KindNotFound},
		{"gql internal", &apiError{GraphQL: true, Status: 200, Detail: "Something went wrong. Please try again later."}, false, gpuflow.KindTransient},
		{"gql other", &apiError{GraphQL: true, Status: 200, Detail: "Invalid GPU type id."}, true, gpuflow.KindInvalidRequest},
		{"gql validation", &apiError{GraphQL: true, Status: 400, Detail: `Variable "$input" got invalid value`}, true, gpuflow.KindInvalidRequest},
		{"gql key", &apiError{GraphQL: true, Status: 401, Detail: "Unauthorized"}, false, gpuflow.KindAuth},
		{"gql forbidden create", &apiError{GraphQL: true, Status: 403}, true, gpuflow.KindAuth},
		{"no answer", &transportError{Op: "GET x", Err: errors.New("connection refused")}, false, gpuflow.KindTransient},
		{"canceled", context.Canceled, false, gpuflow.KindTransient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("op", tc.err, tc.create)
			var pe *gpuflow.ProviderError
			if !errors.As(err, &pe) || pe.Kind != tc.want {
				t.Errorf("classify(%v) = %v, want kind %s", tc.err, err, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	h := http.Header{}
	if got := retryAfter(h); got != 0 {
		t.Errorf("none: %v", got)
	}
	h.Set("Retry-After", "12")
	if got := retryAfter(h); got != 12*time.Second {
		t.Errorf("seconds: %v", got)
	}
	h.Set("Retry-After", time.Now().Add(time.Minute).UTC().Format(http.TimeFormat))
	if got := retryAfter(h); got < 58*time.Second || got > time.Minute {
		t.Errorf("date: %v", got)
	}
	h.Set("Retry-After", "soon")
	if got := retryAfter(h); got != 0 {
		t.Errorf("junk: %v", got)
	}
}

func TestProblemWithoutJSON(t *testing.T) {
	e := problem(502, http.Header{}, []byte("<html>bad gateway</html>"))
	if e.Status != 502 || e.Title != "Bad Gateway" || e.Detail != "<html>bad gateway</html>" {
		t.Errorf("problem %+v", e)
	}
}

func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"python", "-c", "print('hi')"}, `python -c 'print('\''hi'\'')'`},
		{[]string{"echo", "", "a b", "$HOME"}, `echo '' 'a b' '$HOME'`},
		{[]string{"run.sh", "--lr=0.1", "a/b"}, `run.sh --lr=0.1 a/b`},
	} {
		if got := shellJoin(tc.argv); got != tc.want {
			t.Errorf("shellJoin(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}
