package tcpproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestCutAndRestore(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	p, err := Listen("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && got != "ping\n" {
			t.Fatalf("echo %q", got)
		}
		return err
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	before := dial()
	if err := echo(before); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	if err := echo(before); err == nil {
		t.Fatal("a connection survived the cut")
	}
	if err := echo(dial()); err == nil {
		t.Fatal("a new connection got through while cut")
	}
	if n := p.Refused(); n != 1 {
		t.Fatalf("refused %d connections while cut, want 1", n)
	}
	p.Restore()
	if err := echo(dial()); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	if n := p.Refused(); n != 1 {
		t.Fatalf("refused %d connections, want 1", n)
	}
}
