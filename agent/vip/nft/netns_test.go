package nft

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest/netnstest"
)

// This file is the test topology: network namespaces made with iproute2
// (`ip netns add`), joined by veth pairs and a bridge, and TCP servers
// listening inside them. Only addresses in 10.99.0.0/16, inside these
// namespaces, are used.

// netNS is a network namespace the test made (netnstest.New).
type netNS struct {
	name string
}

func (n netNS) path() string { return "/run/netns/" + n.name }

// needNetNS skips (outside CI) unless the test can make namespaces and
// program nftables in them.
func needNetNS(t testing.TB) { netnstest.Need(t) }

// newNS makes a namespace with loopback up.
func newNS(t testing.TB, role string) netNS { return netNS{netnstest.New(t, "cairn", role)} }

// ip runs `ip -n NS args...`.
func (n netNS) ip(t testing.TB, args string) { t.Helper(); netnstest.IP(t, n.name, args) }

// sysctl sets a sysctl inside the namespace.
func (n netNS) sysctl(t testing.TB, key, value string) {
	t.Helper()
	netnstest.Sysctl(t, n.name, key, value)
}

// do runs fn on an OS thread inside the namespace.
func (n netNS) do(fn func() error) error { return netnstest.Do(n.name, fn) }

// link joins two namespaces with a veth pair: aName/aCIDR in a,
// bName/bCIDR in b.
func link(t testing.TB, a netNS, aName, aCIDR string, b netNS, bName, bCIDR string) {
	t.Helper()
	netnstest.Link(t, a.name, aName, aCIDR, b.name, bName, bCIDR)
}

// serve starts a netnstest.EchoServer: it greets with its name, then
// echoes.
func serve(t testing.TB, ns netNS, name, addr string) *netnstest.EchoServer {
	t.Helper()
	return netnstest.Serve(t, ns.name, name, addr)
}

// dialer opens TCP connections from inside a namespace.
type dialer struct{ ns netNS }

// dial connects to addr and reads the greeting: which server answered.
func (d dialer) dial(ctx context.Context, addr string) (net.Conn, string, error) {
	var c net.Conn
	err := d.ns.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return netnstest.Greet(c, addr)
}

// who makes one connection and returns which server answered.
func (d dialer) who(t testing.TB, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, name, err := d.dial(ctx, addr)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", d.ns.name, addr, err)
	}
	c.Close()
	return name
}

// count makes n connections and counts the answering servers.
func (d dialer) count(t testing.TB, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[d.who(t, addr)]++
	}
	return got
}

// refused reports how a connection to addr failed: nil if it was
// refused (RST or ICMP unreachable) within the timeout.
func (d dialer) refused(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, name, err := d.dial(ctx, addr)
	if err == nil {
		c.Close()
		return fmt.Errorf("connection to %s was answered by %s", addr, name)
	}
	if netnstest.Refused(err) {
		return nil
	}
	return fmt.Errorf("connection to %s failed but was not refused: %w", addr, err)
}

// cluster is two "nodes" on one LAN (a bridge in its own namespace), two
// backends behind node1 and one behind node2 (like containers), and a
// client namespace behind node1:
//
//	client 10.99.13.2 ─ node1 10.99.0.1 ─┬─ br0 ─┬─ node2 10.99.0.2 ─ b3 10.99.21.2
//	            b1 10.99.11.2 ─┘ └─ b2 10.99.12.2     (lan)
//
// node2 has no route back to node1's clients, so a connection from client
// balanced to b3 works only if node1 masquerades it.
type cluster struct {
	node1, node2, client netNS
	b1, b2, b3           netNS
	servers              map[string]*netnstest.EchoServer
}

const (
	testVIP = "10.99.100.1"
	b1Addr  = "10.99.11.2:8080"
	b2Addr  = "10.99.12.2:8080"
	b3Addr  = "10.99.21.2:8080"
)

func newCluster(t testing.TB) *cluster {
	t.Helper()
	needNetNS(t)
	c := &cluster{servers: map[string]*netnstest.EchoServer{}}
	lan := newNS(t, "lan")
	lan.ip(t, "link add br0 type bridge")
	lan.ip(t, "link set br0 up")
	c.node1, c.node2 = newNS(t, "node1"), newNS(t, "node2")
	link(t, lan, "p1", "", c.node1, "eth0", "10.99.0.1/24")
	link(t, lan, "p2", "", c.node2, "eth0", "10.99.0.2/24")
	lan.ip(t, "link set p1 master br0")
	lan.ip(t, "link set p2 master br0")
	c.client = newNS(t, "client")
	c.b1, c.b2, c.b3 = newNS(t, "b1"), newNS(t, "b2"), newNS(t, "b3")
	link(t, c.node1, "k", "10.99.13.1/24", c.client, "eth0", "10.99.13.2/24")
	link(t, c.node1, "c1", "10.99.11.1/24", c.b1, "eth0", "10.99.11.2/24")
	link(t, c.node1, "c2", "10.99.12.1/24", c.b2, "eth0", "10.99.12.2/24")
	link(t, c.node2, "c1", "10.99.21.1/24", c.b3, "eth0", "10.99.21.2/24")
	c.client.ip(t, "route add default via 10.99.13.1")
	c.b1.ip(t, "route add default via 10.99.11.1")
	c.b2.ip(t, "route add default via 10.99.12.1")
	c.b3.ip(t, "route add default via 10.99.21.1")
	c.node1.ip(t, "route add 10.99.21.0/24 via 10.99.0.2")
	c.node1.ip(t, "route add 10.99.100.0/24 via 10.99.0.2")
	c.node1.sysctl(t, "net.ipv4.ip_forward", "1")
	c.node2.sysctl(t, "net.ipv4.ip_forward", "1")
	for name, ns := range map[string]netNS{"b1": c.b1, "b2": c.b2, "b3": c.b3} {
		c.servers[name] = serve(t, ns, name, "0.0.0.0:8080")
	}
	return c
}

// serveUDP answers each datagram with name.
func serveUDP(t testing.TB, ns netNS, name, addr string) {
	t.Helper()
	var pc net.PacketConn
	err := ns.do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	})
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
}

// askUDP sends one datagram to addr from a fresh socket and returns the
// answer (a fresh source port is a new conntrack entry, so a new pick).
func (d dialer) askUDP(t testing.TB, addr string) string {
	t.Helper()
	var c net.Conn
	err := d.ns.do(func() error {
		var err error
		c, err = net.Dial("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("dial udp %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("who")); err != nil {
		t.Fatalf("send to udp %s: %v", addr, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("answer from udp %s: %v", addr, err)
	}
	return string(buf[:n])
}
