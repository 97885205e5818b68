package ipvs

// The TestVM* tests and BenchmarkVM* benchmarks run inside the VM that
// TestSystemIPVS boots (a real IPVS kernel); elsewhere they skip. Each
// builds its own world: backends are TCP servers in network namespaces
// joined to the VM's root namespace by veth pairs, clients dial from the
// root namespace (or from a client namespace), and each test uses its
// own interface, VIPs and subnets so the tests do not see each other.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vmNet is one test's private network: namespaces with veth pairs to
// the root namespace, numbered 10.<net>.<i>.0/24 (.1 root side, .2 in
// the namespace).
type vmNet struct {
	t   *testing.T
	net int
	n   int // namespaces made so far
}

func newVMNet(t *testing.T, net int) *vmNet {
	t.Helper()
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &vmNet{t: t, net: net}
}

// inNetns runs f with the calling goroutine's thread in ns. Sockets f
// creates stay in ns.
func inNetns(t testing.TB, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread is in the wrong namespace: stop everything
		}
	}()
	f()
}

// namespace makes a network namespace joined to the root one and
// returns it with its IPv4 address (and IPv6 fd00:<net>:<i>::2).
func (v *vmNet) namespace() (netns.NsHandle, netip.Addr) {
	t := v.t
	t.Helper()
	v.n++
	i := v.n
	var ns netns.NsHandle
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		ns, err = netns.New()
		if err != nil {
			t.Fatal(err)
		}
		if err := netns.Set(orig); err != nil {
			panic(err)
		}
	}()
	t.Cleanup(func() { ns.Close() })
	host := fmt.Sprintf("v%d-%d", v.net, i)
	peer := host + "p"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer, PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		t.Fatalf("veth %s: %v", host, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(host); err == nil {
			netlink.LinkDel(l)
		}
	})
	gw := netip.AddrFrom4([4]byte{10, byte(v.net), byte(i), 1})
	addr := netip.AddrFrom4([4]byte{10, byte(v.net), byte(i), 2})
	l, err := netlink.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	mustNL(t, netlink.AddrAdd(l, &netlink.Addr{IPNet: prefix(gw, 24)}))
	gw6, addr6 := v.addr6(i, 1), v.addr6(i, 2)
	mustNL(t, netlink.AddrAdd(l, &netlink.Addr{IPNet: prefix6(gw6), Flags: unix.IFA_F_NODAD}))
	mustNL(t, netlink.LinkSetUp(l))

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	pl, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	mustNL(t, h.LinkSetUp(lo))
	mustNL(t, h.AddrAdd(pl, &netlink.Addr{IPNet: prefix(addr, 24)}))
	mustNL(t, h.AddrAdd(pl, &netlink.Addr{IPNet: prefix6(addr6), Flags: unix.IFA_F_NODAD}))
	mustNL(t, h.LinkSetUp(pl))
	mustNL(t, h.RouteAdd(&netlink.Route{Gw: net.IP(gw.AsSlice())}))
	mustNL(t, h.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: net.IP(gw6.AsSlice())}))
	return ns, addr
}

// addr6 is fd00:<net>:<i>::<host>.
func (v *vmNet) addr6(i, host int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 3: byte(v.net), 5: byte(i), 15: byte(host)})
}

func prefix6(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(64, 128)}
}

func prefix(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

func mustNL(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// backend is a TCP server in its own namespace: it greets each
// connection with its name and then echoes.
type backend struct {
	name string
	addr netip.AddrPort
}

func (v *vmNet) backends(n int, port uint16) []backend {
	v.t.Helper()
	var out []backend
	for i := range n {
		ns, a := v.namespace()
		name := fmt.Sprintf("b%d", i+1)
		var ln net.Listener
		inNetns(v.t, ns, func() {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(a, port).String())
			if err != nil {
				v.t.Fatal(err)
			}
		})
		serve(v.t, ln, name)
		out = append(out, backend{name: name, addr: netip.AddrPortFrom(a, port)})
	}
	return out
}

// backends6 are TCP backends on the namespaces' IPv6 addresses.
func (v *vmNet) backends6(n int, port uint16) []backend {
	v.t.Helper()
	var out []backend
	for i := range n {
		ns, _ := v.namespace()
		a := netip.AddrPortFrom(v.addr6(v.n, 2), port)
		name := fmt.Sprintf("b%d", i+1)
		var ln net.Listener
		inNetns(v.t, ns, func() {
			var err error
			ln, err = net.Listen("tcp6", a.String())
			if err != nil {
				v.t.Fatal(err)
			}
		})
		serve(v.t, ln, name)
		out = append(out, backend{name: name, addr: a})
	}
	return out
}

// udpBackends answer every datagram with their name.
func (v *vmNet) udpBackends(n int, port uint16) []backend {
	v.t.Helper()
	var out []backend
	for i := range n {
		ns, a := v.namespace()
		name := fmt.Sprintf("u%d", i+1)
		var pc net.PacketConn
		inNetns(v.t, ns, func() {
			var err error
			pc, err = net.ListenPacket("udp", netip.AddrPortFrom(a, port).String())
			if err != nil {
				v.t.Fatal(err)
			}
		})
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 512)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name), from)
			}
		})
		v.t.Cleanup(func() {
			pc.Close()
			wg.Wait()
		})
		out = append(out, backend{name: name, addr: netip.AddrPortFrom(a, port)})
	}
	return out
}

// serve runs ln until the test ends; every goroutine is waited for.
func serve(t *testing.T, ln net.Listener, name string) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

func addrs(bs []backend) []netip.AddrPort {
	var out []netip.AddrPort
	for _, b := range bs {
		out = append(out, b.addr)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// conn is a client connection through a VIP and the backend that
// answered.
type conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
	seenAs  string // the client's address as the backend saw it
}

func dial(to netip.AddrPort) (*conn, error) {
	c, err := net.DialTimeout("tcp", to.String(), 3*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read greeting from %s: %w", to, err)
	}
	c.SetDeadline(time.Time{})
	name, seen, _ := strings.Cut(strings.TrimSpace(name), " ")
	return &conn{Conn: c, r: r, backend: name, seenAs: seen}, nil
}

// echo checks the connection still carries data both ways.
func (c *conn) echo() error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != "ping\n" {
		return fmt.Errorf("echo = %q, want %q", got, "ping\n")
	}
	return nil
}

// count opens n connections one after the other and counts the
// backends that answered.
func count(t *testing.T, to netip.AddrPort, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, err := dial(to)
		if err != nil {
			t.Fatalf("dial %s: %v", to, err)
		}
		got[c.backend]++
		c.Close()
	}
	return got
}

// dialBackend dials until the named backend answers (rr: at most n tries).
func dialBackend(t *testing.T, to netip.AddrPort, name string, n int) *conn {
	t.Helper()
	for range n {
		c, err := dial(to)
		if err != nil {
			t.Fatal(err)
		}
		if c.backend == name {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
	}
	t.Fatalf("%d connections to %s reached no %s", n, to, name)
	return nil
}

func newDP(t *testing.T, cfg Config) *Dataplane {
	t.Helper()
	dp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dp.Flush(context.Background())
		dp.Close()
	})
	return dp
}

// dump is the kernel's IPVS state for the VIPs given, one line per
// service and destination, sorted: the thing tests compare.
func dump(t testing.TB, vips ...netip.Addr) string {
	t.Helper()
	h, err := ipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range svcs {
		k, ok := keyOf(s)
		if !ok || !slices.Contains(vips, k.vip) {
			continue
		}
		ds, err := h.GetDestinations(s)
		if err != nil {
			t.Fatal(err)
		}
		var dl []string
		for _, d := range ds {
			a, _ := netip.AddrFromSlice(d.Address)
			fwd := "masq"
			if d.ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagMasq {
				fwd = fmt.Sprintf("fwd%d", d.ConnectionFlags&ipvs.ConnectionFlagFwdMask)
			}
			dl = append(dl, fmt.Sprintf("  -> %s %s weight %d", netip.AddrPortFrom(a.Unmap(), d.Port), fwd, d.Weight))
		}
		slices.Sort(dl)
		lines = append(lines, strings.Join(append([]string{fmt.Sprintf("%s %s", k, s.SchedName)}, dl...), "\n"))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// ifAddrs lists the addresses on an interface; nil when it is missing.
func ifAddrs(t testing.TB, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond (kernel state, which sends no event) until it
// holds or the deadline passes, and reports the last state seen.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last state:\n%s", what, d, last)
		}
		<-tick.C
	}
}

func svc(name, v string, port uint16, bs ...netip.AddrPort) vip.Service {
	return vip.Service{Name: name, VIP: netip.MustParseAddr(v), Ports: []vip.Port{{Proto: vip.TCP, Port: port, Backends: bs}}}
}

func within(got map[string]int, want int, names ...string) bool {
	for _, n := range names {
		if got[n] < want-1 || got[n] > want+1 {
			return false
		}
	}
	return true
}

func TestVMRoundRobin(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 11).backends(3, 8080)
	dp := newDP(t, Config{Interface: "cairn-rr"})
	s := svc("web", "10.211.0.1", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	want := `tcp 10.211.0.1:80 rr
  -> 10.11.1.2:8080 masq weight 1
  -> 10.11.2.2:8080 masq weight 1
  -> 10.11.3.2:8080 masq weight 1`
	if diff := cmp.Diff(want, dump(t, s.VIP)); diff != "" {
		t.Errorf("kernel state (-want +got):\n%s", diff)
	}
	if got := ifAddrs(t, "cairn-rr"); !slices.Equal(got, []string{"10.211.0.1/32"}) {
		t.Errorf("addresses on cairn-rr = %v, want [10.211.0.1/32]", got)
	}
	got := count(t, netip.AddrPortFrom(s.VIP, 80), 30)
	if !within(got, 10, "b1", "b2", "b3") {
		t.Errorf("30 connections went %v, want 10 each (±1)", got)
	}
	t.Logf("30 connections: %v", got)
	// Masqueraded (TestVMMasquerade): the backend sees the node.
	c, err := dial(netip.AddrPortFrom(s.VIP, 80))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	t.Logf("a client on the node is seen by the backend as %s", c.seenAs)
}

func TestVMIPv6(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 19).backends6(2, 8080)
	dp := newDP(t, Config{Interface: "cairn-v6"})
	s := vip.Service{Name: "web6", VIP: netip.MustParseAddr("fd00:219::1"), Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: addrs(bs)}}}
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	want := `tcp [fd00:219::1]:80 rr
  -> [fd00:13:1::2]:8080 masq weight 1
  -> [fd00:13:2::2]:8080 masq weight 1`
	if diff := cmp.Diff(want, dump(t, s.VIP)); diff != "" {
		t.Errorf("kernel state (-want +got):\n%s", diff)
	}
	if got := count(t, netip.AddrPortFrom(s.VIP, 80), 10); !within(got, 5, "b1", "b2") {
		t.Errorf("10 connections to [%s]:80 went %v, want 5 each (±1)", s.VIP, got)
	}
	// Adopted as it is by a second instance.
	before := dump(t, s.VIP)
	dp2 := newDP(t, Config{Interface: "cairn-v6"})
	if err := dp2.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, dump(t, s.VIP)); diff != "" {
		t.Errorf("a second Sync changed the IPv6 service (-before +after):\n%s", diff)
	}
}

func TestVMUDP(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 20).udpBackends(2, 5353)
	dp := newDP(t, Config{Interface: "cairn-udp", DrainPoll: 20 * time.Millisecond})
	s := vip.Service{Name: "dns", VIP: netip.MustParseAddr("10.220.0.1"), Ports: []vip.Port{{Proto: vip.UDP, Port: 53, Backends: addrs(bs)}}}
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	ask := func() (string, error) {
		c, err := net.Dial("udp", "10.220.0.1:53")
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who")); err != nil {
			return "", err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	got := map[string]int{}
	for range 10 {
		name, err := ask()
		if err != nil {
			t.Fatalf("udp to the VIP: %v", err)
		}
		got[name]++
	}
	if !within(got, 5, "u1", "u2") {
		t.Errorf("10 UDP flows went %v, want 5 each (±1)", got)
	}
	// UDP has no active connections: a removed backend goes at once.
	s.Ports[0].Backends = []netip.AddrPort{bs[1].addr}
	if err := dp.Update(t.Context(), []vip.Service{s}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed UDP backend deleted", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return !strings.Contains(d, bs[0].addr.String()), d
	})
	for range 4 {
		if name, err := ask(); err != nil || name != "u2" {
			t.Errorf("udp to the VIP after u1 left: %q, %v; want u2", name, err)
		}
	}
	// No backends: the datagram gets port unreachable (connection refused).
	s.Ports[0].Backends = nil
	if err := dp.Update(t.Context(), []vip.Service{s}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the UDP service without backends removed", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return d == "", d
	})
	if _, err := ask(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("udp to the VIP without backends: %v, want connection refused", err)
	}
}

func TestVMDrain(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 12).backends(3, 8080)
	dp := newDP(t, Config{Interface: "cairn-dr", DrainPoll: 20 * time.Millisecond, DrainTimeout: time.Minute})
	s := svc("web", "10.212.0.1", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(s.VIP, 80)
	held := dialBackend(t, to, "b1", 3)

	// b1 leaves: weight 0, no new connections, the held one goes on.
	if err := dp.Update(t.Context(), []vip.Service{svc("web", "10.212.0.1", 80, bs[1].addr, bs[2].addr)}, nil); err != nil {
		t.Fatal(err)
	}
	want := `tcp 10.212.0.1:80 rr
  -> 10.12.1.2:8080 masq weight 0
  -> 10.12.2.2:8080 masq weight 1
  -> 10.12.3.2:8080 masq weight 1`
	if diff := cmp.Diff(want, dump(t, s.VIP)); diff != "" {
		t.Errorf("kernel state after removing b1 (-want +got):\n%s", diff)
	}
	if got := count(t, to, 20); got["b1"] != 0 || !within(got, 10, "b2", "b3") {
		t.Errorf("20 connections while b1 drains went %v, want none to b1, 10 each to b2 and b3", got)
	}
	if err := held.echo(); err != nil {
		t.Errorf("the connection held to draining b1: %v", err)
	}
	if err := held.echo(); err != nil {
		t.Errorf("the connection held to draining b1, again: %v", err)
	}
	// Its last connection closes: b1 is deleted.
	held.Close()
	t0 := time.Now()
	waitFor(t, "drained b1 deleted after its connection closed", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return !strings.Contains(d, "10.12.1.2:8080"), d
	})
	t.Logf("b1 deleted %v after its last connection closed", time.Since(t0).Round(time.Millisecond))
}

func TestVMDrainTimeout(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 13).backends(2, 8080)
	dp := newDP(t, Config{Interface: "cairn-dt", DrainPoll: 20 * time.Millisecond, DrainTimeout: 500 * time.Millisecond})
	s := svc("web", "10.213.0.1", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	held := dialBackend(t, netip.AddrPortFrom(s.VIP, 80), "b1", 2)
	t0 := time.Now()
	if err := dp.Update(t.Context(), []vip.Service{svc("web", "10.213.0.1", 80, bs[1].addr)}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b1 deleted after the drain timeout though a connection is open", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return !strings.Contains(d, "10.13.1.2:8080"), d
	})
	if e := time.Since(t0); e < 500*time.Millisecond {
		t.Errorf("b1 deleted after %v, before the 500ms drain timeout", e)
	}
	// expire_nodest_conn=1: the held connection gets a reset, not silence.
	if err := held.echo(); err == nil {
		t.Errorf("the connection to deleted b1 still echoes")
	} else if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Errorf("the connection to deleted b1: %v, want a reset", err)
	}
}

func TestVMDelete(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 14).backends(2, 8080)
	dp := newDP(t, Config{Interface: "cairn-del"})
	a := svc("a", "10.214.0.1", 80, addrs(bs)...)
	b := svc("b", "10.214.0.2", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := dp.Update(t.Context(), nil, []netip.Addr{a.VIP}); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, a.VIP); d != "" {
		t.Errorf("kernel state of deleted %s:\n%s\nwant none", a.VIP, d)
	}
	if got := ifAddrs(t, "cairn-del"); !slices.Equal(got, []string{"10.214.0.2/32"}) {
		t.Errorf("addresses on cairn-del = %v, want [10.214.0.2/32]", got)
	}
	if got := count(t, netip.AddrPortFrom(b.VIP, 80), 4); !within(got, 2, "b1", "b2") {
		t.Errorf("the other VIP: 4 connections went %v", got)
	}
	// Deleting again, or something never programmed, is not an error.
	if err := dp.Update(t.Context(), nil, []netip.Addr{a.VIP, netip.MustParseAddr("10.214.9.9")}); err != nil {
		t.Errorf("delete again: %v", err)
	}
}

// TestVMNoBackendsRefuses: a VIP:port with no backends must refuse at
// once, from the node itself and from a container-like namespace.
func TestVMNoBackendsRefuses(t *testing.T) {
	needVM(t)
	vn := newVMNet(t, 15)
	bs := vn.backends(1, 8080)
	client, _ := vn.namespace()
	dp := newDP(t, Config{Interface: "cairn-nb", DrainPoll: 20 * time.Millisecond})
	s := svc("web", "10.215.0.1", 80, addrs(bs)...)
	if err := dp.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(s.VIP, 80)
	// Its last backend goes (and drains at once: no connection).
	if err := dp.Update(t.Context(), []vip.Service{svc("web", "10.215.0.1", 80)}, nil); err != nil {
		t.Fatal(err)
	}
	// Once it has drained, the port has no IPVS service: the VIP is a
	// local address with nothing listening there, so TCP resets. (An
	// IPVS service without destinations answers ICMP port unreachable,
	// which the kernel rate-limits: 6 at once, then ~1/s per client.)
	waitFor(t, "the last backend drained and the service removed", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return d == "", d
	})
	refused := func(where string, n int) {
		for i := range n {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", to.String(), 5*time.Second)
			e := time.Since(t0)
			if err == nil {
				c.Close()
				t.Fatalf("%s: connection %d to %s with no backends was accepted", where, i, to)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || e > 500*time.Millisecond {
				t.Errorf("%s: connection %d to %s with no backends: %v after %v; want connection refused at once", where, i, to, err, e)
			}
			if i == 0 {
				t.Logf("%s: %v after %v", where, err, e)
			}
		}
	}
	refused("from the node", 20)
	inNetns(t, client, func() { refused("from a namespace behind the node", 20) })

	// A VIP:port that never had a backend refuses too.
	if err := dp.Update(t.Context(), []vip.Service{svc("new", "10.215.0.2", 81)}, nil); err != nil {
		t.Fatal(err)
	}
	to = netip.AddrPortFrom(netip.MustParseAddr("10.215.0.2"), 81)
	refused("new VIP from the node", 3)
}

// TestVMAdoption: a restarted agent (a new Dataplane) syncing the same
// desired state changes nothing and keeps established connections,
// including a backend that was draining when the old one stopped.
func TestVMAdoption(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 16).backends(3, 8080)
	cfg := Config{Interface: "cairn-ad", DrainPoll: 20 * time.Millisecond, DrainTimeout: time.Minute}
	dp1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := svc("web", "10.216.0.1", 80, addrs(bs)...)
	if err := dp1.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(s.VIP, 80)
	held2 := dialBackend(t, to, "b2", 3)
	held1 := dialBackend(t, to, "b1", 3)
	// b1 starts draining, then the agent stops without flushing.
	s = svc("web", "10.216.0.1", 80, bs[1].addr, bs[2].addr)
	if err := dp1.Update(t.Context(), []vip.Service{s}, nil); err != nil {
		t.Fatal(err)
	}
	if err := dp1.Close(); err != nil {
		t.Fatal(err)
	}
	before := dump(t, s.VIP)
	statsBefore := serviceConns(t, s.VIP)

	dp2 := newDP(t, cfg)
	if err := dp2.Sync(t.Context(), []vip.Service{s}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, dump(t, s.VIP)); diff != "" {
		t.Errorf("a second Sync of the same state changed the kernel (-before +after):\n%s", diff)
	}
	if got := serviceConns(t, s.VIP); got != statsBefore {
		t.Errorf("service connection counter %d after adoption, %d before: the service was re-created", got, statsBefore)
	}
	if got := ifAddrs(t, "cairn-ad"); !slices.Equal(got, []string{"10.216.0.1/32"}) {
		t.Errorf("addresses on cairn-ad = %v, want [10.216.0.1/32]", got)
	}
	for _, c := range []*conn{held1, held2} {
		if err := c.echo(); err != nil {
			t.Errorf("connection to %s held across the restart: %v", c.backend, err)
		}
	}
	if got := count(t, to, 10); got["b1"] != 0 || !within(got, 5, "b2", "b3") {
		t.Errorf("10 connections after the restart went %v, want 5 each to b2 and b3", got)
	}
	// The adopted drain finishes under the new instance.
	held1.Close()
	waitFor(t, "b1, draining before the restart, deleted by the new instance", 10*time.Second, func() (bool, string) {
		d := dump(t, s.VIP)
		return !strings.Contains(d, "10.16.1.2:8080"), d
	})
}

func serviceConns(t testing.TB, a netip.Addr) uint32 {
	t.Helper()
	h, err := ipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	for _, s := range svcs {
		if k, ok := keyOf(s); ok && k.vip == a {
			n += s.Stats.Connections
		}
	}
	return n
}

// foreign adds an IPVS service cairn does not own and checks, at the
// end of the test, that it was left exactly as it was.
func foreign(t *testing.T) {
	t.Helper()
	h, err := ipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	fa := netip.MustParseAddr("10.77.0.1")
	fs := &ipvs.Service{Address: net.IP(fa.AsSlice()), Protocol: syscall.IPPROTO_TCP, Port: 80, SchedName: "wrr", AddressFamily: unix.AF_INET, Netmask: 0xffffffff}
	if err := h.NewService(fs); err != nil {
		t.Fatal(err)
	}
	if err := h.NewDestination(fs, &ipvs.Destination{Address: net.IP{10, 77, 1, 2}, Port: 80, Weight: 3, AddressFamily: unix.AF_INET}); err != nil {
		t.Fatal(err)
	}
	want := dump(t, fa)
	t.Cleanup(func() {
		if diff := cmp.Diff(want, dump(t, fa)); diff != "" {
			t.Errorf("cairn changed a service it does not own (-want +got):\n%s", diff)
		}
		h.DelService(fs)
	})
}

func TestVMDriftRepair(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 17).backends(3, 8080)
	foreign(t)
	dp := newDP(t, Config{Interface: "cairn-drift", DrainPoll: 20 * time.Millisecond})
	a := svc("a", "10.217.0.1", 80, bs[0].addr, bs[1].addr)
	b := svc("b", "10.217.0.2", 80, bs[2].addr)
	desired := []vip.Service{a, b}
	if err := dp.Sync(t.Context(), desired); err != nil {
		t.Fatal(err)
	}
	good := dump(t, a.VIP, b.VIP)

	// Behind cairn's back: a backend deleted, the scheduler changed, a
	// stray backend and a stray port on a's VIP, b's address removed.
	h, err := ipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	k := svcKey{a.VIP, vip.TCP, 80}
	as := dp.service(k)
	mustNL(t, h.DelDestination(as, destination(k, bs[0].addr, 1)))
	mustNL(t, h.NewDestination(as, destination(k, bs[2].addr, 5)))
	as.SchedName = "wrr"
	mustNL(t, h.UpdateService(as))
	stray := dp.service(svcKey{a.VIP, vip.TCP, 81})
	mustNL(t, h.NewService(stray))
	l, err := netlink.LinkByName("cairn-drift")
	if err != nil {
		t.Fatal(err)
	}
	mustNL(t, netlink.AddrDel(l, &netlink.Addr{IPNet: prefix(b.VIP, 32)}))
	nft, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	nft.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "cairn-ipvs-cairn-drift"})
	mustNL(t, nft.Flush())
	t.Logf("drifted:\n%s", dump(t, a.VIP, b.VIP))

	if err := dp.Sync(t.Context(), desired); err != nil {
		t.Fatal(err)
	}
	// The stray backend drains (weight 0), then goes: it has no connection.
	waitFor(t, "Sync repaired the drift", 10*time.Second, func() (bool, string) {
		d := dump(t, a.VIP, b.VIP)
		return d == good, d
	})
	if got := ifAddrs(t, "cairn-drift"); !slices.Equal(got, []string{"10.217.0.1/32", "10.217.0.2/32"}) {
		t.Errorf("addresses on cairn-drift = %v, want both VIPs", got)
	}
	if !nftTableExists(t, "cairn-ipvs-cairn-drift") {
		t.Errorf("Sync did not re-create the deleted masquerade table")
	}
	if got := count(t, netip.AddrPortFrom(b.VIP, 80), 2); got["b3"] != 2 {
		t.Errorf("2 connections to b's VIP went %v, want both to b3", got)
	}

	// A VIP left on cairn's interface by an earlier run and no longer
	// desired is cairn's: Sync removes its services and the address.
	if err := dp.Sync(t.Context(), []vip.Service{a}); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, b.VIP); d != "" {
		t.Errorf("stale VIP %s after Sync without it:\n%s", b.VIP, d)
	}
	if got := ifAddrs(t, "cairn-drift"); !slices.Equal(got, []string{"10.217.0.1/32"}) {
		t.Errorf("addresses on cairn-drift = %v, want only a's VIP", got)
	}
}

func TestVMFlush(t *testing.T) {
	needVM(t)
	bs := newVMNet(t, 18).backends(1, 8080)
	foreign(t)
	dp := newDP(t, Config{Interface: "cairn-fl"})
	a := svc("a", "10.218.0.1", 80, addrs(bs)...)
	b := vip.Service{Name: "b", VIP: netip.MustParseAddr("10.218.0.2"), Ports: []vip.Port{
		{Proto: vip.TCP, Port: 80, Backends: addrs(bs)},
		{Proto: vip.UDP, Port: 53, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.18.1.2:53")}},
	}}
	if err := dp.Sync(t.Context(), []vip.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, a.VIP, b.VIP); strings.Count(d, "\n") != 5 {
		t.Fatalf("before Flush:\n%s\nwant 3 services with one backend each", d)
	}
	// A fresh instance (a restarted agent told -vip-dataplane none)
	// flushes what the first one made.
	dp2 := newDP(t, Config{Interface: "cairn-fl"})
	if err := dp2.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, a.VIP, b.VIP); d != "" {
		t.Errorf("after Flush:\n%s\nwant nothing", d)
	}
	if _, err := netlink.LinkByName("cairn-fl"); err == nil {
		t.Errorf("interface cairn-fl still there after Flush")
	}
	if nftTableExists(t, "cairn-ipvs-cairn-fl") {
		t.Errorf("nftables table cairn-ipvs-cairn-fl still there after Flush")
	}
	if err := dp2.Flush(t.Context()); err != nil {
		t.Errorf("second Flush: %v", err)
	}
}

// manyServices is n VIPs (from 10.200.0.0/16) with one TCP port and
// per backends each. The backends need not exist: nothing dials them.
func manyServices(n, per int) []vip.Service {
	out := make([]vip.Service, n)
	for i := range n {
		v := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
		bs := make([]netip.AddrPort, per)
		for j := range per {
			bs[j] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(100 + j), byte(i >> 8), byte(i)}), 8080)
		}
		slices.SortFunc(bs, netip.AddrPort.Compare)
		out[i] = vip.Service{Name: fmt.Sprintf("svc%d", i), VIP: v, Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: bs}}}
	}
	return out
}

// BenchmarkVM10k programs 10,000 VIPs × 10 backends (one TCP port
// each) and measures, on that one state (programming it takes minutes
// under emulation, so it is done once):
//   - program: a fresh data plane's first Sync into an empty kernel;
//   - update-one: one change, one service's backend replaced by another
//     (one destination added, one set to weight 0 to drain), alternating;
//     the goal is < 10 ms;
//   - sync-unchanged: the periodic resync when nothing changed (reads
//     every service's destinations back).
func BenchmarkVM10k(b *testing.B) {
	needVM(b)
	svcs := manyServices(10000, 10)
	cfg := Config{Interface: "cairn-bench"}
	var dp *Dataplane
	b.Cleanup(func() {
		if dp != nil {
			dp.Flush(context.Background())
			dp.Close()
		}
	})
	b.Run("program", func(b *testing.B) {
		for b.Loop() {
			if dp != nil {
				b.StopTimer()
				if err := dp.Flush(b.Context()); err != nil {
					b.Fatal(err)
				}
				dp.Close()
				b.StartTimer()
			}
			var err error
			if dp, err = New(cfg); err != nil {
				b.Fatal(err)
			}
			if err := dp.Sync(b.Context(), svcs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(svcs)*11), "µs/kernel-op")
	})
	if dp == nil {
		b.Skip("program did not run")
	}
	b.Run("update-one", func(b *testing.B) {
		s := svcs[5000]
		alt := s
		alt.Ports = []vip.Port{{Proto: vip.TCP, Port: 80, Backends: slices.Clone(s.Ports[0].Backends)}}
		alt.Ports[0].Backends[9] = netip.MustParseAddrPort("10.250.0.1:8080")
		slices.SortFunc(alt.Ports[0].Backends, netip.AddrPort.Compare)
		next := [][]vip.Service{{alt}, {s}}
		i := 0
		for b.Loop() {
			if err := dp.Update(b.Context(), next[i%2], nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("sync-unchanged", func(b *testing.B) {
		for b.Loop() {
			if err := dp.Sync(b.Context(), svcs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
