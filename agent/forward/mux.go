package forward

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte of every connection to the server port says what it
// carries, as in Consul's RPC multiplexing.
const (
	connRaft byte = 0x01
	connRPC  byte = 0x02
)

// Mux splits the server port between Raft and forwarded requests.
type Mux struct {
	ln   net.Listener
	adv  net.Addr
	log  *slog.Logger
	raft chan net.Conn
	rpc  func(net.Conn)

	tls    TLS
	limits Limits
	dialer dialer

	mu         sync.Mutex
	conns      map[net.Conn]struct{}
	pending    map[string]int // connections not yet past their first byte(s), by remote IP
	pendingAll int
	closed     bool
	done       chan struct{}
	wg         sync.WaitGroup
}

// Listen binds the server port. advertiseIP is the address other servers
// dial, with the bound port (empty: the bound address).
func Listen(bind, advertiseIP string, log *slog.Logger) (*Mux, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("bind server port %s: %w (is another agent using -server-port?)", bind, err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	var adv net.Addr = tcp
	if advertiseIP != "" {
		ip := net.ParseIP(advertiseIP)
		if ip == nil {
			ln.Close()
			return nil, fmt.Errorf("advertise address %q is not an IP address", advertiseIP)
		}
		adv = &net.TCPAddr{IP: ip, Port: tcp.Port}
	} else if tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("server port bound to %s: other servers cannot dial an unspecified address; set -advertise (or -bind to a concrete address)", bind)
	}
	return &Mux{ln: ln, adv: adv, log: log, raft: make(chan net.Conn), conns: map[net.Conn]struct{}{},
		pending: map[string]int{}, limits: Limits{}.withDefaults(), done: make(chan struct{})}, nil
}

// UseTLS makes the server port accept TLS (and, when t says required,
// only TLS from peers with a certificate of the CA) and Raft dial out
// with it; call before Serve.
func (m *Mux) UseTLS(t TLS) {
	m.tls = t
	m.dialer = dialer{tls: t}
}

// SetLimits sets the limits on connections that have not yet said what
// they carry; call before Serve.
func (m *Mux) SetLimits(l Limits) { m.limits = l.withDefaults() }

// Addr is the advertised server address.
func (m *Mux) Addr() net.Addr { return m.adv }

// Serve accepts connections until Close, handing RPC connections to rpc
// (which owns them) and Raft connections to the RaftLayer.
func (m *Mux) Serve(rpc func(net.Conn)) error {
	m.rpc = rpc
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return nil
			default:
			}
			return fmt.Errorf("server port accept: %w", err)
		}
		if !m.track(c) {
			c.Close()
			return nil
		}
		m.wg.Go(func() { m.handle(c) })
	}
}

func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *Mux) handle(c net.Conn) {
	release, ok := m.admit(c)
	if !ok {
		m.log.Debug("server port: too many connections that have not finished their handshake; closing", "remote", c.RemoteAddr())
		m.untrack(c)
		c.Close()
		return
	}
	kind, conn, err := m.open(c)
	release()
	if err != nil {
		m.log.Debug("server port: connection refused", "remote", c.RemoteAddr(), "err", err)
		m.untrack(c)
		c.Close()
		return
	}
	if conn != c {
		// Close must reach the TLS connection's socket either way.
		m.mu.Lock()
		delete(m.conns, c)
		closed := m.closed
		if !closed {
			m.conns[conn] = struct{}{}
		}
		m.mu.Unlock()
		if closed {
			conn.Close()
			return
		}
	}
	switch kind {
	case connRaft:
		// Raft owns the connection from here; it closes it itself.
		m.untrack(conn)
		select {
		case m.raft <- conn:
		case <-m.done:
			conn.Close()
		}
	case connRPC:
		m.rpc(conn)
		m.untrack(conn)
		conn.Close()
	}
}

// open reads what c carries, within the handshake timeout: the first
// byte, and for TLS the handshake and the inner byte. With TLS required
// a plain connection gets nothing, and a TLS peer without a certificate
// of the CA fails the handshake, so neither gets a byte read as Raft or
// RPC.
func (m *Mux) open(c net.Conn) (byte, net.Conn, error) {
	c.SetDeadline(time.Now().Add(m.limits.HandshakeTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, nil, err
	}
	var cfg *tls.Config
	var required bool
	if m.tls != nil {
		cfg, required = m.tls.IncomingRPC()
	}
	conn := c
	switch b[0] {
	case connRaft, connRPC:
		if required {
			return 0, nil, errors.New("plain connection refused: TLS is required (tls.internal_rpc.verify_incoming)")
		}
	case connTLS:
		if cfg == nil {
			return 0, nil, errors.New("TLS connection refused: this server has no certificate (tls cert_file/key_file)")
		}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return 0, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		if _, err := io.ReadFull(tc, b[:]); err != nil {
			return 0, nil, err
		}
		if b[0] != connRaft && b[0] != connRPC {
			return 0, nil, fmt.Errorf("unknown connection type %#x inside TLS", b[0])
		}
		conn = tc
	default:
		return 0, nil, fmt.Errorf("unknown connection type %#x", b[0])
	}
	c.SetDeadline(time.Time{})
	return b[0], conn, nil
}

// Close stops accepting and closes every RPC connection.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

// RaftLayer is the raft.StreamLayer of the server port.
func (m *Mux) RaftLayer() raft.StreamLayer { return raftLayer{m} }

type raftLayer struct{ m *Mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raft:
		return c, nil
	case <-l.m.done:
		return nil, errors.New("server port closed")
	}
}

func (l raftLayer) Close() error   { return nil } // the Mux owns the listener
func (l raftLayer) Addr() net.Addr { return l.m.adv }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dialer.dial(string(addr), connRaft, timeout)
}
