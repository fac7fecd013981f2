package devtemporal

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// ports are the loopback ports the embedded server listens on.
type ports struct {
	frontend     int // gRPC, dialed by clients
	frontendHTTP int // HTTP API (Nexus callbacks and the like)
	history      int
	matching     int
	worker       int
	ui           int // 0: no UI
}

// resolvePorts checks that the requested fixed ports are free and picks free
// ports for the rest. The checks run before anything starts because the
// server and the UI exit the process when a listen fails.
//
// There is still a short window between the check and the real listen in
// which another process could take a port; that is accepted for a dev server.
func resolvePorts(host string, frontend, ui int) (ports, error) {
	var p ports
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	// hold keeps each port bound until all are chosen, so the OS cannot hand
	// out the same free port twice.
	hold := func(port int) (int, error) {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	fixed := func(port int, what string) (int, error) {
		got, err := hold(port)
		if errors.Is(err, syscall.EADDRINUSE) {
			return 0, fmt.Errorf("port %d is in use: the %s cannot listen on %s: %w", port, what, host, unwrapListenErr(err))
		}
		if err != nil {
			return 0, fmt.Errorf("listen on port %d for the %s: %w", port, what, unwrapListenErr(err))
		}
		return got, nil
	}
	free := func() (int, error) {
		got, err := hold(0)
		if err != nil {
			return 0, fmt.Errorf("find a free port on %s: %w", host, err)
		}
		return got, nil
	}

	var err error
	if frontend > 0 {
		p.frontend, err = fixed(frontend, "temporal frontend")
	} else {
		p.frontend, err = free()
	}
	if err != nil {
		return ports{}, err
	}
	switch {
	case ui > 0:
		p.ui, err = fixed(ui, "temporal web ui")
	case ui == FreePort:
		p.ui, err = free()
	}
	if err != nil {
		return ports{}, err
	}
	for _, dst := range []*int{&p.frontendHTTP, &p.history, &p.matching, &p.worker} {
		if *dst, err = free(); err != nil {
			return ports{}, err
		}
	}
	return p, nil
}

// unwrapListenErr drops the "listen tcp 127.0.0.1:7233:" prefix that repeats
// what the caller already says.
func unwrapListenErr(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err
	}
	return err
}
