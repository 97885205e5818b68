package forward

import (
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

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
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
	return &Mux{ln: ln, adv: adv, log: log, raft: make(chan net.Conn), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}, nil
}

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
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		m.untrack(c)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case connRaft:
		// Raft owns the connection from here; it closes it itself.
		m.untrack(c)
		select {
		case m.raft <- c:
		case <-m.done:
			c.Close()
		}
	case connRPC:
		m.rpc(c)
		m.untrack(c)
		c.Close()
	default:
		m.log.Warn("server port: unknown connection type; closing", "remote", c.RemoteAddr(), "byte", b[0])
		m.untrack(c)
		c.Close()
	}
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
	return dial(string(addr), connRaft, timeout)
}

func dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
