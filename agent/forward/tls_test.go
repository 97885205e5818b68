package forward

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPendingConnectionsLimitedPerAddress holds more connections that
// never finish their handshake than one address may: the excess is
// closed at once, the rest when the handshake timeout ends.
func TestPendingConnectionsLimitedPerAddress(t *testing.T) {
	m, err := Listen("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.SetLimits(Limits{MaxPendingPerIP: 4, HandshakeTimeout: time.Minute})
	served := make(chan error, 1)
	go func() { served <- m.Serve(func(c net.Conn) {}) }()
	t.Cleanup(func() { m.Close(); <-served })

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	var conns []net.Conn
	for range 12 {
		c, err := d.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// and then never a byte
		conns = append(conns, c)
	}
	closed := closedWithin(conns, 3*time.Second) // under the handshake timeout
	if closed != 8 {
		t.Errorf("%d of 12 half-open connections from one address closed at once; want 8 (4 may wait)", closed)
	}
}

// closedWithin counts the connections the other side closes within d,
// reading all of them at once.
func closedWithin(conns []net.Conn, d time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(d))
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}
