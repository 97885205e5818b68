package nft

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/systemtest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func newDP(t testing.TB, ns netNS, tweak ...func(*Config)) *Dataplane {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NetNS = ns.path()
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, f := range tweak {
		f(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// service is one VIP with one TCP port over the backends given.
func service(name, addr string, port uint16, backends ...string) vip.Service {
	p := vip.Port{Proto: vip.TCP, Port: port}
	for _, b := range backends {
		p.Backends = append(p.Backends, netip.MustParseAddrPort(b))
	}
	return vip.Service{Name: name, VIP: netip.MustParseAddr(addr), Ports: []vip.Port{p}}
}

const vipPort = testVIP + ":80"

// spreads checks that every one of want answered at least once and
// nothing else answered.
func spreads(t *testing.T, from string, got map[string]int, want ...string) {
	t.Helper()
	for _, w := range want {
		if got[w] == 0 {
			t.Errorf("connections from %s: %v; backend %s got none", from, got, w)
		}
	}
	for name := range got {
		if !slices.Contains(want, name) {
			t.Errorf("connections from %s: %v; %s should have got none", from, got, name)
		}
	}
}

func TestBalancesOverLocalAndRemoteBackends(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	if err := d.Sync(t.Context(), []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr, b3Addr)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// From a container behind node1 (prerouting; b3 needs masquerade)
	// and from node1 itself (output).
	spreads(t, "client", dialer{c.client}.count(t, vipPort, 60), "b1", "b2", "b3")
	spreads(t, "node1", dialer{c.node1}.count(t, vipPort, 60), "b1", "b2", "b3")

	// The client reaches b3 through the VIP only because node1
	// masquerades: directly, b3's replies have no way back (node2 has no
	// route to the client's network).
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if conn, name, err := (dialer{c.client}).dial(ctx, b3Addr); err == nil {
		conn.Close()
		t.Errorf("client reached %s directly (answered by %s); the topology no longer shows the masquerade is needed", b3Addr, name)
	}
}

func TestUpdateMovesNewConnections(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	ctx := t.Context()
	other := service("other", "10.99.100.2", 80, b1Addr)
	if err := d.Sync(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr, b3Addr), other}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	cl := dialer{c.client}
	before := dump(t, d)

	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr)}, nil); err != nil {
		t.Fatalf("Update removing b3: %v", err)
	}
	// service-ips element to balance-3 -> balance-2 (delete, add), b3's
	// element (the last slot: the others keep theirs), balance-2 in
	// (chain, rule) and balance-3 out.
	if d.lastChanges != 6 {
		t.Errorf("removing one backend sent %d changes, want 6\n%s", d.lastChanges, dump(t, d))
	}
	spreads(t, "client", cl.count(t, vipPort, 30), "b1", "b2")

	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr)}, nil); err != nil {
		t.Fatalf("Update swapping b2 for b3: %v", err)
	}
	spreads(t, "client", cl.count(t, vipPort, 30), "b1", "b3")

	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr, b3Addr)}, nil); err != nil {
		t.Fatalf("Update adding b2 back: %v", err)
	}
	spreads(t, "client", cl.count(t, vipPort, 60), "b1", "b2", "b3")
	// Back in the first state (backend indexes may differ: each backend
	// kept its slot where it could), a full Sync finds nothing to do.
	if err := d.Sync(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr, b3Addr), other}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if d.lastChanges != 0 {
		t.Errorf("Sync after going back to the first state sent %d changes, want 0; table was\n%s\nis\n%s", d.lastChanges, before, dump(t, d))
	}

	if err := d.Update(ctx, nil, []netip.Addr{netip.MustParseAddr(testVIP)}); err != nil {
		t.Fatalf("Update deleting the VIP: %v", err)
	}
	if got := cl.who(t, "10.99.100.2:80"); got != "b1" {
		t.Errorf("the other VIP answered by %s after deleting web, want b1", got)
	}
	golden(t, "after-delete", dump(t, d))
}

func TestPortWithoutBackendsRefusesAtOnce(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	ctx := t.Context()
	web := service("web", testVIP, 80, b1Addr)
	web.Ports = append(web.Ports, vip.Port{Proto: vip.TCP, Port: 81})
	if err := d.Sync(ctx, []vip.Service{web}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for _, from := range []netNS{c.client, c.node1} {
		if err := (dialer{from}).refused(testVIP+":81", 2*time.Second); err != nil {
			t.Errorf("from %s: %v", from.name, err)
		}
	}
	// The last backend goes: refused, not a SYN timeout.
	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80)}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	for _, from := range []netNS{c.client, c.node1} {
		if err := (dialer{from}).refused(vipPort, 2*time.Second); err != nil {
			t.Errorf("from %s after the last backend left: %v", from.name, err)
		}
	}
	// And it comes back.
	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b2Addr)}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := (dialer{c.client}).who(t, vipPort); got != "b2" {
		t.Errorf("answered by %s, want b2", got)
	}
}

// TestSyncRepairsDrift changes the table behind the data plane's back,
// the way an operator with nft would, and checks that Sync puts back
// exactly what it had and traffic flows again.
func TestSyncRepairsDrift(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	ctx := t.Context()
	desired := []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr), service("gone", "10.99.100.2", 81)}
	if err := d.Sync(ctx, desired); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := dump(t, d)
	golden(t, "synced", want)
	if err := d.Sync(ctx, desired); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if d.lastChanges != 0 {
		t.Errorf("a Sync with nothing to repair sent %d changes, want 0", d.lastChanges)
	}

	tab := &nftables.Table{Name: "cairn", Family: nftables.TableFamilyIPv4}
	ch := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: tab} }
	key := keyOf(netip.MustParseAddr(testVIP), vip.TCP, 80)
	b3Key := backendKey(key, 1)
	set := func(name string) *nftables.Set { return d.newBuilder().set(name) }
	shard := shardOf(netip.MustParseAddr(testVIP))
	backends, balance2 := backendsMap(shard), balanceChainName(classOf(2, shard))
	tests := []struct {
		name  string
		drift func(c *nftables.Conn) error
	}{
		{"service element deleted", func(c *nftables.Conn) error {
			return c.SetDeleteElements(set(mapServices), []nftables.SetElement{{Key: key[:]}})
		}},
		{"backend element deleted", func(c *nftables.Conn) error {
			return c.SetDeleteElements(set(backends), []nftables.SetElement{{Key: b3Key[:]}})
		}},
		{"backend element changed", func(c *nftables.Conn) error {
			if err := c.SetDeleteElements(set(backends), []nftables.SetElement{{Key: b3Key[:]}}); err != nil {
				return err
			}
			return c.SetAddElements(set(backends), []nftables.SetElement{{Key: b3Key[:], Val: backendValue(netip.MustParseAddrPort(b2Addr))}})
		}},
		{"balance chain deleted", func(c *nftables.Conn) error {
			if err := c.SetDeleteElements(set(mapServices), []nftables.SetElement{{Key: key[:]}}); err != nil {
				return err
			}
			c.DelChain(ch(balance2))
			return nil
		}},
		{"hooked chain flushed", func(c *nftables.Conn) error { c.FlushChain(ch(chainNatPrerouting)); return nil }},
		{"hooked chain deleted", func(c *nftables.Conn) error { c.DelChain(ch(chainNatPostrouting)); return nil }},
		{"foreign rule in a balance chain", func(c *nftables.Conn) error {
			c.InsertRule(&nftables.Rule{Table: tab, Chain: ch(balance2), Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
			return nil
		}},
		{"stray chain in the table", func(c *nftables.Conn) error { c.AddChain(ch("someone-elses")); return nil }},
		{"no-endpoint element deleted", func(c *nftables.Conn) error {
			k := keyOf(netip.MustParseAddr("10.99.100.2"), vip.TCP, 81)
			return c.SetDeleteElements(set(mapNoEndpoints), []nftables.SetElement{{Key: k[:]}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			behindTheBack(t, c.node1, tt.drift)
			if dump(t, d) == want {
				t.Fatalf("the drift changed nothing visible")
			}
			if err := d.Sync(ctx, desired); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if got := dump(t, d); got != want {
				t.Errorf("after Sync (-want +got):\n%s", cmp.Diff(want, got))
			}
			spreads(t, "client", dialer{c.client}.count(t, vipPort, 30), "b1", "b3")
		})
	}
}

// TestUpdateRecoversFromDrift: an Update whose transaction fails because
// the table changed behind its back rereads the table and succeeds.
func TestUpdateRecoversFromDrift(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	ctx := t.Context()
	if err := d.Sync(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// The operator deletes b3's element and the masquerade chain; the
	// Update below would delete that element too, so its transaction
	// fails, and the retry after rereading repairs both.
	b3Key := backendKey(keyOf(netip.MustParseAddr(testVIP), vip.TCP, 80), 1)
	behindTheBack(t, c.node1, func(c *nftables.Conn) error {
		c.DelChain(&nftables.Chain{Name: chainNatPostrouting, Table: d.table})
		return c.SetDeleteElements(d.newBuilder().set(backendsMap(shardOf(netip.MustParseAddr(testVIP)))), []nftables.SetElement{{Key: b3Key[:]}})
	})
	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr)}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	spreads(t, "client", dialer{c.client}.count(t, vipPort, 30), "b1", "b2")
}

// TestRestartAdoptsAndKeepsConnections: a second Dataplane (the agent
// restarted) adopts the table without touching it, and an established
// connection through the VIP keeps exchanging data across the restart
// and a later change of the backends.
func TestRestartAdoptsAndKeepsConnections(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	desired := []vip.Service{service("web", testVIP, 80, b1Addr, b2Addr, b3Addr)}
	first := newDP(t, c.node1)
	if err := first.Sync(ctx, desired); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	before := dump(t, first)
	conns := map[string]net.Conn{}
	for len(conns) < 3 {
		conn, name, err := dialer{c.client}.dial(ctx, vipPort)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if conns[name] != nil {
			conn.Close()
			continue
		}
		conns[name] = conn
		defer conn.Close()
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := newDP(t, c.node1)
	if err := second.Sync(ctx, desired); err != nil {
		t.Fatalf("Sync after restart: %v", err)
	}
	if second.lastChanges != 0 {
		t.Errorf("adopting an intact table sent %d changes, want 0", second.lastChanges)
	}
	if got := dump(t, second); got != before {
		t.Errorf("table after restart (-want +got):\n%s", cmp.Diff(before, got))
	}
	echo(t, conns)
	// A change after the restart: b2 leaves. The held connections to b1
	// and b3 keep working; new connections avoid b2.
	if err := second.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr)}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	delete(conns, "b2")
	echo(t, conns)
	spreads(t, "client", dialer{c.client}.count(t, vipPort, 20), "b1", "b3")
}

// echo sends a line on each connection and expects it back.
func echo(t *testing.T, conns map[string]net.Conn) {
	t.Helper()
	for name, conn := range conns {
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		msg := "ping " + name + "\n"
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Errorf("write on the held connection to %s: %v", name, err)
			continue
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Errorf("echo on the held connection to %s = %q, %v; want %q", name, buf, err, msg)
		}
	}
}

// TestLeavesOtherTablesAlone: another table in the same namespace (with
// its own nat chain) survives Sync, Update and Flush; Flush removes the
// data plane's table and nothing else.
func TestLeavesOtherTablesAlone(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	nsf, err := os.Open(c.node1.path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(nsf.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	other := conn.AddTable(&nftables.Table{Name: "someone-else", Family: nftables.TableFamilyIPv4})
	oc := conn.AddChain(&nftables.Chain{Name: "post", Table: other, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	conn.AddRule(&nftables.Rule{Table: other, Chain: oc, Exprs: []expr.Any{&expr.Counter{}}})
	conn.AddTable(&nftables.Table{Name: "cairn", Family: nftables.TableFamilyIPv6})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	listOthers := func() string {
		t.Helper()
		var b strings.Builder
		chains, err := conn.ListChains()
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name == "cairn" && ch.Table.Family == nftables.TableFamilyIPv4 {
				continue
			}
			rules, err := conn.GetRules(ch.Table, ch)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%d %s %s: %d rules\n", ch.Table.Family, ch.Table.Name, ch.Name, len(rules))
		}
		tables, err := conn.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tab := range tables {
			if tab.Name == "cairn" && tab.Family == nftables.TableFamilyIPv4 {
				continue
			}
			fmt.Fprintf(&b, "table %d %s\n", tab.Family, tab.Name)
		}
		return b.String()
	}
	before := listOthers()
	if !strings.Contains(before, "someone-else post: 1 rules") || !strings.Contains(before, "table 10 cairn") {
		t.Fatalf("the other tables were not made:\n%s", before)
	}

	d := newDP(t, c.node1)
	if err := d.Sync(ctx, []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b1Addr)}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := dump(t, d); got != "no table\n" {
		t.Errorf("after Flush:\n%s", got)
	}
	if err := d.Flush(ctx); err != nil {
		t.Errorf("second Flush: %v", err)
	}
	if got := listOthers(); got != before {
		t.Errorf("other tables changed (-before +after):\n%s", cmp.Diff(before, got))
	}
	// After a Flush, an Update starts from nothing again.
	if err := d.Update(ctx, []vip.Service{service("web", testVIP, 80, b2Addr)}, nil); err != nil {
		t.Fatalf("Update after Flush: %v", err)
	}
	if got := (dialer{c.client}).who(t, vipPort); got != "b2" {
		t.Errorf("answered by %s, want b2", got)
	}
}

func TestRefusesWhatItCannotProgram(t *testing.T) {
	needNetNS(t)
	d := newDP(t, newNS(t, "refuse"))
	v4 := netip.MustParseAddr("10.99.100.1")
	tests := []struct {
		name string
		svc  vip.Service
		want string
	}{
		{"IPv6 VIP", vip.Service{Name: "web", VIP: netip.MustParseAddr("fd00::1")},
			`nftables update: service "web": VIP fd00::1 is not an IPv4 address; the nftables data plane programs an ip-family table and balances IPv4 VIPs only (use an IPv4 -vip-cidr)`},
		{"IPv6 backend", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP, Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("[fd00::2]:80")}}}},
			`nftables update: service "web" VIP 10.99.100.1 port tcp/80: backend [fd00::2]:80 is not an IPv4 address with a non-zero port`},
		{"unknown protocol", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: "sctp", Port: 80}}},
			`nftables update: service "web" VIP 10.99.100.1: protocol "sctp" is not one of tcp, udp`},
		{"port twice", vip.Service{Name: "web", VIP: v4, Ports: []vip.Port{{Proto: vip.TCP, Port: 80}, {Proto: vip.TCP, Port: 80}}},
			`nftables update: service "web" VIP 10.99.100.1: port tcp/80 is listed twice; Ports must be unique on (Proto, Port)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Update(t.Context(), []vip.Service{tt.svc}, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Update(%s) = %v, want %s", tt.name, err, tt.want)
			}
		})
	}
	if _, err := New(Config{Mark: 0x3}); err == nil || !strings.Contains(err.Error(), "Mark 0x3 has more than one bit set") {
		t.Errorf("New(Mark: 0x3) = %v, want the one-bit error", err)
	}
}

// behindTheBack changes the namespace's nftables with a connection of
// its own, as an operator or another program would.
func behindTheBack(t *testing.T, ns netNS, change func(c *nftables.Conn) error) {
	t.Helper()
	nsf, err := os.Open(ns.path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(nsf.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	if err := change(conn); err != nil {
		t.Fatalf("queue the change: %v", err)
	}
	if err := conn.Flush(); err != nil {
		t.Fatalf("apply the change: %v", err)
	}
}

// TestUpdateCostIsIndependentOfTableSize: the same Update sends the same
// changes whether the table holds a hundred VIPs or two thousand.
func TestUpdateCostIsIndependentOfTableSize(t *testing.T) {
	needNetNS(t)
	ctx := context.Background()
	var sent []int
	for _, n := range []int{100, 2000} {
		d := newDP(t, newNS(t, "size"), func(c *Config) { c.Logger = nil })
		desired := manyServices(n, 10)
		if err := d.Sync(ctx, desired); err != nil {
			t.Fatalf("Sync of %d VIPs: %v", n, err)
		}
		s := desired[0]
		s.Ports = []vip.Port{{Proto: vip.TCP, Port: 80, Backends: s.Ports[0].Backends[:9]}}
		if err := d.Update(ctx, []vip.Service{s}, nil); err != nil {
			t.Fatalf("Update: %v", err)
		}
		sent = append(sent, d.lastChanges)
	}
	if sent[0] != sent[1] {
		t.Errorf("removing one backend sent %d changes with 100 VIPs and %d with 2000; want the same", sent[0], sent[1])
	}
}

func TestStableBackendSlots(t *testing.T) {
	a, b, c, d := "10.99.1.1:80", "10.99.1.2:80", "10.99.1.3:80", "10.99.1.4:80"
	slots := func(s *vipState) []string {
		key := keyOf(netip.MustParseAddr(testVIP), vip.TCP, 80)
		var out []string
		for i := range s.counts[key] {
			out = append(out, s.backends[backendKey(key, i)].String())
		}
		return out
	}
	tests := []struct {
		name      string
		old, want []string
		slots     []string
	}{
		{"first one removed: the last moves into its slot", []string{a, b, c, d}, []string{b, c, d}, []string{d, b, c}},
		{"last one removed", []string{a, b, c, d}, []string{a, b, c}, []string{a, b, c}},
		{"one added at the end", []string{a, b, c}, []string{a, b, c, d}, []string{a, b, c, d}},
		{"one replaced: the new one takes the free slot", []string{a, b, c}, []string{a, c, d}, []string{a, d, c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := desiredVIP(service("web", testVIP, 80, tt.old...))
			want := desiredVIP(service("web", testVIP, 80, tt.want...))
			stabilize(old, want)
			if got := slots(want); !slices.Equal(got, tt.slots) {
				t.Errorf("stabilize(%v -> %v) = %v, want %v", tt.old, tt.want, got, tt.slots)
			}
		})
	}
}

// TestNftCommandReadsTheTable: operators and other tools read the
// ruleset with nft; the table must not make it fail.
func TestNftCommandReadsTheTable(t *testing.T) {
	needNetNS(t)
	nftCmd := systemtest.NeedCommand(t, "nft")
	ns := newNS(t, "nftcmd")
	d := newDP(t, ns)
	web := service("web", testVIP, 80, b1Addr, b2Addr)
	web.Ports = append(web.Ports, vip.Port{Proto: vip.TCP, Port: 81})
	if err := d.Sync(t.Context(), []vip.Service{web}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns.name, nftCmd, "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	for _, want := range []string{
		"ip daddr . meta l4proto . th dport vmap @service-ips",
		"10.99.100.1 . tcp . 80 : goto balance-2-",
		"dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @service-backends-",
		"masquerade fully-random",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, out)
		}
	}
}

func TestBalancesUDP(t *testing.T) {
	c := newCluster(t)
	serveUDP(t, c.b1, "b1", "0.0.0.0:5353")
	serveUDP(t, c.b3, "b3", "0.0.0.0:5353")
	d := newDP(t, c.node1)
	dns := vip.Service{Name: "dns", VIP: netip.MustParseAddr(testVIP), Ports: []vip.Port{
		{Proto: vip.UDP, Port: 53, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.99.11.2:5353"), netip.MustParseAddrPort("10.99.21.2:5353")}},
	}}
	if err := d.Sync(t.Context(), []vip.Service{dns}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got := map[string]int{}
	for range 40 {
		got[dialer{c.client}.askUDP(t, testVIP+":53")]++
	}
	spreads(t, "client (udp)", got, "b1", "b3")
	// TCP to the same VIP and port number is not balanced: only udp/53 is.
	if err := (dialer{c.client}).refused(testVIP+":53", 300*time.Millisecond); err == nil {
		t.Errorf("tcp to %s:53 was refused by the data plane; only udp/53 is a VIP port", testVIP)
	}
}

// TestSyncRebuildsAnIncompatibleTable: a table of our name whose sets
// have other types (another version's layout) cannot be repaired in
// place; Sync rebuilds it.
func TestSyncRebuildsAnIncompatibleTable(t *testing.T) {
	c := newCluster(t)
	d := newDP(t, c.node1)
	behindTheBack(t, c.node1, func(conn *nftables.Conn) error {
		conn.AddTable(d.table)
		return conn.AddSet(&nftables.Set{Table: d.table, Name: mapServices, KeyType: nftables.TypeIPAddr}, nil)
	})
	if err := d.Sync(t.Context(), []vip.Service{service("web", testVIP, 80, b1Addr, b3Addr)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	spreads(t, "client", dialer{c.client}.count(t, vipPort, 30), "b1", "b3")
}
