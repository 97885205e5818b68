//go:build system && linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest/netnstest"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// This file is the system tests' topology kit: network namespaces made
// with iproute2 (`ip netns add`, named cairn-e2e-<pid>-<n>-<role>),
// veth pairs and bridges between them, TCP servers and clients inside
// them. Every address lives inside these namespaces (10.98.0.0/16 and
// the VIP range); the host's own network is never touched.

// needNetNS stops the test unless it can make namespaces (root, ip).
func needNetNS(t *testing.T) { netnstest.Need(t) }

// netNS is a network namespace the test made (netnstest.New).
type netNS struct{ name string }

// newNS makes a namespace with loopback up.
func newNS(t *testing.T, role string) netNS { return netNS{netnstest.New(t, "cairn-e2e", role)} }

// ip runs `ip -n NS args...`.
func (n netNS) ip(t *testing.T, args string) { t.Helper(); netnstest.IP(t, n.name, args) }

// sysctl sets a sysctl inside the namespace.
func (n netNS) sysctl(t *testing.T, key, value string) {
	t.Helper()
	netnstest.Sysctl(t, n.name, key, value)
}

// command is name args run inside the namespace (`ip netns exec`, which
// execs the program: the process is the program itself, so signals
// reach it directly). It is killed if the test process dies first.
func (n netNS) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// do runs fn on an OS thread inside the namespace.
func (n netNS) do(fn func() error) error { return netnstest.Do(n.name, fn) }

// dialContext opens a connection from inside the namespace.
func (n netNS) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// httpClient is an HTTP client whose connections start inside the
// namespace (an agent's API listens on its node's address there).
// Requests give up after 15 s, so a hung agent fails the test.
func (n netNS) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.dialContext, MaxIdleConnsPerHost: 4},
		Timeout:   15 * time.Second,
	}
}

// lookupA asks the DNS server at addr for name's A records, from inside
// the namespace (miekg/dns over UDP).
func (n netNS) lookupA(addr, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := n.dialContext(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	cl := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c})
	if err != nil {
		return nil, fmt.Errorf("dns %s A @%s: %w", name, addr, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("dns %s A @%s: rcode %s", name, addr, dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, nil
}

// link joins two namespaces with a veth pair: aName (aCIDR, "" for no
// address) in a, bName/bCIDR in b.
func link(t *testing.T, a netNS, aName, aCIDR string, b netNS, bName, bCIDR string) {
	t.Helper()
	netnstest.Link(t, a.name, aName, aCIDR, b.name, bName, bCIDR)
}

// serveEcho starts a netnstest.EchoServer, like a container's: it
// greets with its name, then echoes.
func serveEcho(t *testing.T, ns netNS, name, addr string) *netnstest.EchoServer {
	t.Helper()
	return netnstest.Serve(t, ns.name, name, addr)
}

// dialer opens TCP connections to echo servers from inside a namespace.
type dialer struct {
	label string // for messages: "node1", "container behind node1"
	ns    netNS
}

// dial connects to addr and reads the greeting: which server answered.
func (d dialer) dial(ctx context.Context, addr string) (net.Conn, string, error) {
	c, err := d.ns.dialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, "", err
	}
	return greet(c, addr)
}

// greet reads the server's name from a new connection.
func greet(c net.Conn, addr string) (net.Conn, string, error) { return netnstest.Greet(c, addr) }

// count makes n connections to addr and counts the answering servers.
// All n connections are made from one thread inside the namespace.
func (d dialer) count(addr string, n int) (map[string]int, error) {
	got := map[string]int{}
	err := d.ns.do(func() error {
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
			cancel()
			if err != nil {
				return fmt.Errorf("connect from %s to %s (after %v): %w", d.label, addr, got, err)
			}
			c, name, err := greet(c, addr)
			if err != nil {
				return fmt.Errorf("from %s (after %v): %w", d.label, got, err)
			}
			c.Close()
			got[name]++
		}
		return nil
	})
	return got, err
}

// refused reports how a connection to addr failed: nil if it was
// refused (RST or ICMP unreachable) within timeout.
func (d dialer) refused(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, name, err := d.dial(ctx, addr)
	if err == nil {
		c.Close()
		return fmt.Errorf("connection from %s to %s was answered by %s", d.label, addr, name)
	}
	if netnstest.Refused(err) || errors.Is(err, unix.ENETUNREACH) {
		return nil
	}
	return fmt.Errorf("connection from %s to %s failed but was not refused within %v: %w", d.label, addr, timeout, err)
}
