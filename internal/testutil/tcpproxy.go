package testutil

import (
	"testing"

	"github.com/gpuflow/gpuflow/internal/tcpproxy"
)

// NewTCPProxy starts a tcpproxy.Proxy on a free loopback port forwarding
// to target; it is closed when the test ends.
func NewTCPProxy(t testing.TB, target string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
