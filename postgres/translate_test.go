package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/gpuflow/gpuflow"
)

// TestTranslateLostConnection: a connection that breaks under a statement
// (a crash, a restart, a cut, a stale pooled connection) is the database
// unavailable (503), not an internal error (500).
func TestTranslateLostConnection(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		io.ErrUnexpectedEOF,
		fmt.Errorf("read: %w", io.EOF),
		&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET},
		fmt.Errorf("write: %w", syscall.EPIPE),
		net.ErrClosed,
	} {
		if got := gpuflow.ErrorCode(translate(err, "op", "thing")); got != gpuflow.EUNAVAILABLE {
			t.Errorf("%v: %s, want %s", err, got, gpuflow.EUNAVAILABLE)
		}
	}
	if got := gpuflow.ErrorCode(translate(errors.New("something else"), "op", "thing")); got == gpuflow.EUNAVAILABLE {
		t.Errorf("an unknown error became %s", got)
	}
}
