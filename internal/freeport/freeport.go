// Package freeport picks free loopback ports for servers that bind them
// later (a child process, an embedded server that takes an address).
//
// Ports are drawn at random below the kernel's ephemeral range
// (ip_local_port_range). A port the kernel hands out (a listener on port
// 0 in another test process, or any outgoing connection's local port)
// can then never take one between the pick and the bind, as it can when
// the picks are ephemeral ports themselves. A port is handed out once per
// process, so two picks never collide before either is bound. Where the
// range leaves too little room below it, ephemeral ports are picked.
package freeport

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// minPort is the lowest port drawn (clear of the well-known and most
// registered services' ports).
const minPort = 20000

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports this process has picked
)

// Pick returns n distinct free loopback ports.
func Pick(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	lo, hi := minPort, ephemeralStart()-1
	for tries := 0; hi-lo >= 1000 && len(ports) < n && tries < 100*n; tries++ {
		port := lo + mrand.IntN(hi-lo+1) // #nosec G404 -- spreads picks, not a secret
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", Loopback(port))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		ports = append(ports, port)
		handed[port] = true
	}
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: pick a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addr returns one free loopback address, "127.0.0.1:port".
func Addr() (string, error) {
	ports, err := Pick(1)
	if err != nil {
		return "", err
	}
	return Loopback(ports[0]), nil
}

// Loopback is the loopback address of port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// ephemeralStart is the first port of the kernel's ephemeral range (32768,
// Linux's default, where it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 32768
	}
	return n
}
