package freeport

import (
	"net"
	"testing"
)

// TestPick: the ports are distinct, below the ephemeral range, free (they
// bind), and never handed out twice by one process.
func TestPick(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		ports, err := Pick(5)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
			if p < minPort || p >= ephemeralStart() {
				t.Fatalf("port %d outside [%d, %d)", p, minPort, ephemeralStart())
			}
			l, err := net.Listen("tcp", Loopback(p))
			if err != nil {
				t.Fatalf("port %d does not bind: %v", p, err)
			}
			_ = l.Close()
		}
	}
}

// TestPickSkipsTakenPorts: a port someone listens on is never picked.
func TestPickSkipsTakenPorts(t *testing.T) {
	var held []net.Listener
	taken := map[int]bool{}
	for p := minPort; p < minPort+200; p++ {
		if l, err := net.Listen("tcp", Loopback(p)); err == nil {
			held = append(held, l)
			taken[p] = true
		}
	}
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range 500 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if taken[a.Port] {
			t.Fatalf("picked %d, which is taken", a.Port)
		}
	}
}
