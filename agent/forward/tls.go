package forward

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// connTLS is the first byte of a TLS connection to the server port
// (Consul's RPCTLS); the byte that says Raft or RPC follows inside TLS.
const connTLS byte = 0x04

// TLS is what the server port and the pool need from the agent's TLS
// settings; the agent's tlsconfig.Manager. Called once per connection,
// from the accepting or dialling goroutine, so a reload applies to the
// next connection.
type TLS interface {
	// IncomingRPC is the server side: nil refuses TLS; required refuses
	// plain connections.
	IncomingRPC() (cfg *tls.Config, required bool)
	// OutgoingRPC is the client side: nil dials plain.
	OutgoingRPC() *tls.Config
}

// Limits on connections that have not yet said what they carry (and,
// with TLS, finished the handshake): each holds a slot until then, so a
// flood of half-open connections cannot hold the port. Zero values take
// the defaults.
type Limits struct {
	// HandshakeTimeout bounds the time from accept to the inner byte
	// (Consul's limits.rpc_handshake_timeout, default 5s).
	HandshakeTimeout time.Duration
	// MaxPendingPerIP is how many such connections one address may hold
	// (default 100, Consul's limits.rpc_max_conns_per_client); more are
	// closed at once. Servers on one host share an address, and a
	// starting or rejoining server opens many at once: 16 was too few
	// under load.
	MaxPendingPerIP int
	// MaxPending bounds them over all addresses (default 1024).
	MaxPending int
}

func (l Limits) withDefaults() Limits {
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = 5 * time.Second
	}
	if l.MaxPendingPerIP <= 0 {
		l.MaxPendingPerIP = 100
	}
	if l.MaxPending <= 0 {
		l.MaxPending = 1024
	}
	return l
}

// admit takes a pending slot for c's address; false: over a limit.
func (m *Mux) admit(c net.Conn) (release func(), ok bool) {
	ip := remoteIP(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pendingAll >= m.limits.MaxPending || m.pending[ip] >= m.limits.MaxPendingPerIP {
		return nil, false
	}
	m.pendingAll++
	m.pending[ip]++
	var done bool
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if done {
			return
		}
		done = true
		m.pendingAll--
		if m.pending[ip]--; m.pending[ip] <= 0 {
			delete(m.pending, ip)
		}
	}, true
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// dialer makes connections to the server port: plain, or TLS when the
// agent's settings say verify_outgoing.
type dialer struct{ tls TLS }

func (d dialer) dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if d.tls != nil {
		cfg = d.tls.OutgoingRPC()
	}
	if cfg != nil {
		if _, err := c.Write([]byte{connTLS}); err != nil {
			c.Close()
			return nil, err
		}
		tc := tls.Client(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with server %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
