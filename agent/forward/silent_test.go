package forward

import (
	"net"
	"testing"
)

// SilentServer listens on loopback until the test ends, reads whatever
// arrives and never answers: a paused server. reached gets a value (if
// none is waiting) each time bytes arrive. Exported for the package's
// external tests too.
func SilentServer(t *testing.T) (addr string, reached <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					select {
					case got <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}
