//go:build system && linux

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/systemtest"
	"github.com/hashicorp/consul/api"
)

// The VIP system test runs real cairn agents, each in the network
// namespace of a "node", with the nftables data plane programming that
// node's kernel, and checks what a user sees: `web.cluster` answers one
// VIP, and connections to VIP:port from a node or from a container
// behind it are balanced over the healthy instances on every node.
//
//	                 lan (bridge br0, gateway 10.98.0.254 into a blackhole)
//	       ┌──────────────────────┼───────────────────────┐
//	node0 10.98.0.10       node1 10.98.0.11          node2 10.98.0.12
//	(server)               │  b1 10.98.1.2:8080      │  b3 10.98.2.2:8080
//	                       │  b2 10.98.1.6:8080      │  b4 10.98.2.6:9090 (added later)
//	                       │  k1 10.98.1.10 (client) │  b5 10.98.2.10:8080 (measurements)
//
// Each backend and client is a "container": a namespace behind its node
// with a veth pair, its node as default gateway. The nodes forward and
// route each other's container ranges (10.98.N.0/24 via node N); their
// default route goes to a LAN gateway that silently drops what it is
// sent, as a packet for an unprogrammed VIP would be lost leaving a real
// host: only the node's own rules can make such a connection refused.
// Agents listen on their node's address (HTTP 8500, DNS 8600); the test
// talks to them from inside the node's namespace.
//
// Run it as root: go test -tags system -run '^TestSystemVIP' -v ./e2e/
// (-v shows the figures the Measurements step logs).

const (
	vipCIDR  = "10.200.0.0/24"
	lanGW    = "10.98.0.254"
	httpPort = 8500
	dnsPort  = 8600
)

// vipNode is one node: its namespace and its cairn agent.
type vipNode struct {
	t       *testing.T // the top-level test, which owns the process
	name    string
	ip      string
	index   int // N in 10.98.N.0/24, its containers' range
	ns      netNS
	server  bool
	join    string
	dataDir string
	proc    *proc
	api     *api.Client
	starts  int
	ctrs    int    // containers made behind it
	plane   string // -vip-dataplane; nftables when ""
}

func (n *vipNode) args() []string {
	args := []string{"agent", "-node", n.name, "-data-dir", n.dataDir,
		"-bind", n.ip, "-client", n.ip,
		"-http-port", strconv.Itoa(httpPort), "-dns-port", strconv.Itoa(dnsPort),
		"-serf-lan-port", "8301", "-server-port", "8300",
		"-vip-cidr", vipCIDR, "-vip-dataplane", cmp.Or(n.plane, "nftables")}
	if n.server {
		args = append(args, "-server", "-bootstrap-expect", "1")
	}
	if n.join != "" {
		args = append(args, "-retry-join", n.join)
	}
	return args
}

// start runs the node's agent (again, on the same data dir).
func (n *vipNode) start() {
	n.t.Helper()
	n.starts++
	label := n.name
	if n.starts > 1 {
		label = fmt.Sprintf("%s (start %d)", n.name, n.starts)
	}
	n.proc = startCommand(n.t, label, n.ns.command(cairnBin, n.args()...))
}

// waitReady waits until the agent knows a leader that answers a
// consistent read through it.
func (n *vipNode) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, n.name+" has a leader and answers a consistent read", 30*time.Second, func() (bool, string) {
		if n.proc.exited() {
			t.Fatalf("%s exited (%v); output:\n%s", n.name, n.proc.state, n.proc.out.String())
		}
		leader, err := n.api.Status().Leader()
		if err != nil || leader == "" {
			return false, fmt.Sprintf("leader %q %s", leader, errText(err))
		}
		if _, _, err := n.api.KV().Get("e2e-ready-probe", &api.QueryOptions{RequireConsistent: true}); err != nil {
			return false, "consistent read: " + err.Error()
		}
		return true, ""
	})
}

func (n *vipNode) httpAddr() string { return net.JoinHostPort(n.ip, strconv.Itoa(httpPort)) }
func (n *vipNode) dnsAddr() string  { return net.JoinHostPort(n.ip, strconv.Itoa(dnsPort)) }

// container makes a namespace behind the node, as a container runtime
// would: a veth pair with a /30, the node as its default gateway.
func (n *vipNode) container(t *testing.T, role string) (netNS, string) {
	t.Helper()
	j := n.ctrs
	n.ctrs++
	ns := newNS(t, role)
	gw := fmt.Sprintf("10.98.%d.%d", n.index, 4*j+1)
	addr := fmt.Sprintf("10.98.%d.%d", n.index, 4*j+2)
	link(t, n.ns, fmt.Sprintf("c%d", j), gw+"/30", ns, "eth0", addr+"/30")
	ns.ip(t, "route add default via "+gw)
	return ns, addr
}

// backend is a service instance: an echo server in a container.
type backend struct {
	id   string
	node *vipNode
	addr string
	port int
}

func (b backend) hostPort() string { return net.JoinHostPort(b.addr, strconv.Itoa(b.port)) }

// register registers the backend as an instance of web with its node's
// agent, with a TTL check that starts passing (the test fails it with
// /v1/agent/check/fail, which is deterministic).
func (b backend) register(t *testing.T) {
	t.Helper()
	err := b.node.api.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: b.id, Name: "web", Address: b.addr, Port: b.port,
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatalf("register %s (%s) on %s: %v", b.id, b.hostPort(), b.node.name, err)
	}
}

func (b backend) deregister(t *testing.T) {
	t.Helper()
	if err := b.node.api.Agent().ServiceDeregister(b.id); err != nil {
		t.Fatalf("deregister %s on %s: %v", b.id, b.node.name, err)
	}
}

func (b backend) checkID() string { return "service:" + b.id }

// vipCluster is the whole topology.
type vipCluster struct {
	t                   *testing.T
	node0, node1, node2 *vipNode
	backends            map[string]backend
	// The clients: node1's and node2's own namespaces, and a container
	// behind node1.
	onNode1, inK1, onNode2 dialer
}

func newVIPCluster(t *testing.T) *vipCluster {
	t.Helper()
	needNetNS(t)
	c := &vipCluster{t: t, backends: map[string]backend{}}
	lan := newNS(t, "lan")
	lan.ip(t, "link add br0 type bridge")
	lan.ip(t, "addr add "+lanGW+"/24 dev br0")
	lan.ip(t, "link set br0 up")
	// The gateway forwards into a blackhole: silently, as the Internet
	// would lose a packet for an unprogrammed VIP (an unreachable
	// route would answer with ICMP, which looks like a refusal).
	lan.sysctl(t, "net.ipv4.ip_forward", "1")
	lan.ip(t, "route add blackhole default")
	base := t.TempDir()
	nodes := make([]*vipNode, 3)
	for i := range nodes {
		n := &vipNode{t: t, name: fmt.Sprintf("node%d", i), ip: fmt.Sprintf("10.98.0.%d", 10+i), index: i}
		n.ns = newNS(t, n.name)
		n.dataDir = fmt.Sprintf("%s/%s", base, n.name)
		link(t, lan, fmt.Sprintf("p%d", i), "", n.ns, "eth0", n.ip+"/24")
		lan.ip(t, fmt.Sprintf("link set p%d master br0", i))
		n.ns.ip(t, "route add default via "+lanGW)
		n.ns.sysctl(t, "net.ipv4.ip_forward", "1")
		cl, err := api.NewClient(&api.Config{Address: n.httpAddr(), HttpClient: n.ns.httpClient()})
		if err != nil {
			t.Fatal(err)
		}
		n.api = cl
		nodes[i] = n
	}
	for _, n := range nodes {
		for _, o := range nodes {
			if o != n && o.index != 0 {
				n.ns.ip(t, fmt.Sprintf("route add 10.98.%d.0/24 via %s", o.index, o.ip))
			}
		}
	}
	c.node0, c.node1, c.node2 = nodes[0], nodes[1], nodes[2]
	c.node0.server = true
	join := c.node0.ip + ":8301"
	c.node1.join, c.node2.join = join, join

	for _, b := range []struct {
		id   string
		node *vipNode
		port int
	}{{"b1", c.node1, 8080}, {"b2", c.node1, 8080}, {"b3", c.node2, 8080}} {
		c.addBackend(b.id, b.node, b.port)
	}
	k1, _ := c.node1.container(t, "k1")
	c.onNode1 = dialer{label: "node1", ns: c.node1.ns}
	c.inK1 = dialer{label: "container k1 behind node1", ns: k1}
	c.onNode2 = dialer{label: "node2", ns: c.node2.ns}

	for _, n := range nodes {
		n.start()
	}
	for _, n := range nodes {
		n.waitReady(t)
	}
	return c
}

// addBackend starts an echo server in a new container behind node; it
// is not registered yet.
func (c *vipCluster) addBackend(id string, node *vipNode, port int) backend {
	c.t.Helper()
	ns, addr := node.container(c.t, id)
	b := backend{id: id, node: node, addr: addr, port: port}
	serveEcho(c.t, ns, id, b.hostPort())
	c.backends[id] = b
	return b
}

// webHealth is what an agent's health API says about web: instance ID
// -> aggregated status, and the consul-virtual tagged address.
func webHealth(n *vipNode) (map[string]string, string, error) {
	entries, _, err := n.api.Health().Service("web", "", false, nil)
	if err != nil {
		return nil, "", err
	}
	st := map[string]string{}
	virtual := ""
	for _, e := range entries {
		st[e.Service.ID] = e.Checks.AggregatedStatus()
		if v, ok := e.Service.TaggedAddresses["consul-virtual"]; ok {
			virtual = net.JoinHostPort(v.Address, strconv.Itoa(v.Port))
		}
	}
	return st, virtual, nil
}

// spreadOver makes n connections from d to addr and checks that they
// reached exactly the backends want, each at least once.
func spreadOver(d dialer, addr string, n int, want ...string) (map[string]int, error) {
	got, err := d.count(addr, n)
	if err != nil {
		return got, err
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(slices.Values(want))) {
		return got, fmt.Errorf("%d connections from %s to %s reached %v, want each of %v", n, d.label, addr, got, want)
	}
	return got, nil
}

// waitSpread waits until a batch of connections from each client
// reaches exactly want.
func waitSpread(t *testing.T, what string, within time.Duration, addr string, want []string, clients ...dialer) {
	t.Helper()
	eventually(t, what, within, func() (bool, string) {
		for _, d := range clients {
			if _, err := spreadOver(d, addr, 10*len(want), want...); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
}

// TestSystemVIP checks service VIPs end to end on this machine's kernel
// with the nftables data plane. The steps share one cluster and run in
// order; each leaves the cluster as the next expects.
func TestSystemVIP(t *testing.T) {
	c := newVIPCluster(t)
	for _, id := range []string{"b1", "b2", "b3"} {
		c.backends[id].register(t)
	}
	var vip string // VIP:8080
	allClients := []dialer{c.onNode1, c.inK1, c.onNode2}
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			// What the kernels held when the step failed.
			for _, n := range []*vipNode{c.node1, c.node2} {
				out, err := n.ns.command("nft", "list", "table", "ip", "cairn").CombinedOutput()
				t.Logf("nft list table ip cairn on %s (%v):\n%s", n.name, err, out)
			}
			t.FailNow()
		}
	}

	step("DNSAnswersTheVIP", func(t *testing.T) {
		// The consul-virtual tagged address shows once the leader has
		// allocated and every instance passes.
		eventually(t, "node1's health API lists b1, b2, b3 passing with a consul-virtual address", 20*time.Second, func() (bool, string) {
			st, virtual, err := webHealth(c.node1)
			if err != nil {
				return false, err.Error()
			}
			want := map[string]string{"b1": "passing", "b2": "passing", "b3": "passing"}
			if !maps.Equal(st, want) || virtual == "" {
				return false, fmt.Sprintf("statuses %v, consul-virtual %q", st, virtual)
			}
			vip = virtual
			return true, ""
		})
		ap, err := netip.ParseAddrPort(vip)
		if err != nil || !netip.MustParsePrefix(vipCIDR).Contains(ap.Addr()) || ap.Port() != 8080 {
			t.Fatalf("consul-virtual = %s, want an address in %s and port 8080 (the instances' common port)", vip, vipCIDR)
		}
		// Both a node and a container behind it ask the node's agent.
		for _, d := range []dialer{c.onNode1, c.inK1} {
			eventually(t, "web.cluster A from "+d.label, 10*time.Second, func() (bool, string) {
				got, err := d.ns.lookupA(c.node1.dnsAddr(), "web.cluster")
				if err != nil {
					return false, err.Error()
				}
				if !slices.Equal(got, []string{ap.Addr().String()}) {
					return false, fmt.Sprintf("web.cluster A = %v, want [%s]", got, ap.Addr())
				}
				return true, ""
			})
		}
		// Another node's agent answers the same VIP (once it has read
		// the allocations; until then SERVFAIL, never the instances).
		eventually(t, "web.cluster A at node2", 10*time.Second, func() (bool, string) {
			got, err := c.onNode2.ns.lookupA(c.node2.dnsAddr(), "web.cluster")
			if err != nil || !slices.Equal(got, []string{ap.Addr().String()}) {
				return false, fmt.Sprintf("web.cluster A at node2 = %v %s, want [%s]", got, errText(err), ap.Addr())
			}
			return true, ""
		})
	})

	step("DNSRROptsOut", func(t *testing.T) {
		// Meta endpoint_mode=dnsrr (Swarm's word): no VIP, the name
		// answers the instances.
		b3 := c.backends["b3"]
		err := c.node2.api.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "db1", Name: "db", Address: b3.addr, Port: 5432,
			Meta:  map[string]string{"endpoint_mode": "dnsrr"},
			Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.node2.api.Agent().ServiceDeregister("db1"); err != nil {
				t.Errorf("deregister db1: %v", err)
			}
		}()
		eventually(t, "db.cluster A at node1 answers db's instance", 10*time.Second, func() (bool, string) {
			got, err := c.inK1.ns.lookupA(c.node1.dnsAddr(), "db.cluster")
			if err != nil || !slices.Equal(got, []string{b3.addr}) {
				return false, fmt.Sprintf("db.cluster A = %v %s, want [%s]", got, errText(err), b3.addr)
			}
			return true, ""
		})
		entries, _, err := c.node1.api.Health().Service("db", "", true, nil)
		if err != nil || len(entries) != 1 {
			t.Fatalf("node1's health of db = %d entries %s, want 1", len(entries), errText(err))
		}
		if v, ok := entries[0].Service.TaggedAddresses["consul-virtual"]; ok {
			t.Errorf("db (endpoint_mode=dnsrr) has a consul-virtual address %v, want none", v)
		}
	})

	step("BalancedOverAllHealthyBackends", func(t *testing.T) {
		want := []string{"b1", "b2", "b3"}
		waitSpread(t, "VIP balanced over b1, b2, b3 from every client", 20*time.Second, vip, want, allClients...)
		for _, d := range allClients {
			got, err := spreadOver(d, vip, 60, want...)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("60 connections from %s: %v", d.label, got)
		}
	})

	step("FailingBackendGetsNoNewConnections", func(t *testing.T) {
		// b3 sits behind node2: node1 learns of the failure by gossip.
		b3 := c.backends["b3"]
		t0 := time.Now()
		if err := b3.node.api.Agent().FailTTL(b3.checkID(), "e2e: failing"); err != nil {
			t.Fatal(err)
		}
		waitSpread(t, "b3 out of the VIP after its check failed", 10*time.Second, vip, []string{"b1", "b2"}, allClients...)
		t.Logf("b3 left every client's balancing %v after its TTL check failed", time.Since(t0).Round(time.Millisecond))
		for _, d := range allClients {
			if _, err := spreadOver(d, vip, 60, "b1", "b2"); err != nil {
				t.Fatal(err)
			}
		}
		// Passing again, it is back.
		if err := b3.node.api.Agent().PassTTL(b3.checkID(), "e2e: passing"); err != nil {
			t.Fatal(err)
		}
		waitSpread(t, "b3 back in the VIP after its check passed", 10*time.Second, vip, []string{"b1", "b2", "b3"}, allClients...)
	})

	step("AgentKilledAndRestartedKeepsConnections", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		held, who, err := c.inK1.dial(ctx, vip)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		echo := func(when string) {
			t.Helper()
			msg := "ping " + when + "\n"
			_ = held.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, len(msg))
			if _, err := held.Write([]byte(msg)); err != nil {
				t.Fatalf("held connection to %s via %s, %s: write: %v", who, vip, when, err)
			}
			if _, err := io.ReadFull(held, buf); err != nil || string(buf) != msg {
				t.Fatalf("held connection to %s via %s, %s: echo = %q %s, want %q", who, vip, when, buf, errText(err), msg)
			}
		}
		echo("before the kill")

		c.node1.proc.signal(syscall.SIGKILL)
		c.node1.proc.wait(10 * time.Second)
		echo("with node1's agent dead")
		// The kernel keeps balancing while the agent is gone.
		for _, d := range []dialer{c.onNode1, c.inK1} {
			if _, err := spreadOver(d, vip, 30, "b1", "b2", "b3"); err != nil {
				t.Fatalf("with node1's agent dead: %v", err)
			}
		}

		// New connections from the container keep working through the
		// restart, the restarted agent's first sync (which adopts the
		// rules the killed one left) and its first updates.
		probe := startProbe(t, c.inK1, vip)
		c.node1.start()
		c.node1.waitReady(t)
		echo("after the restart")
		// The restarted agent reconciles again: a change made now
		// reaches node1's kernel (b2 fails, then passes).
		b2 := c.backends["b2"]
		if err := b2.node.api.Agent().FailTTL(b2.checkID(), "e2e: failing"); err != nil {
			t.Fatal(err)
		}
		waitSpread(t, "b2 out of node1's balancing after the restart", 10*time.Second, vip, []string{"b1", "b3"}, c.onNode1, c.inK1)
		if err := b2.node.api.Agent().PassTTL(b2.checkID(), "e2e: passing"); err != nil {
			t.Fatal(err)
		}
		waitSpread(t, "b2 back in node1's balancing after the restart", 10*time.Second, vip, []string{"b1", "b2", "b3"}, allClients...)
		echo("after the restarted agent changed the rules")
		seen, failed := probe.stopAfter(0)
		t.Logf("connections from k1 through the restart and the restarted agent's first changes: %v", seen)
		if len(failed) > 0 {
			t.Errorf("%d connections from k1 through the VIP failed while node1's agent restarted; first: %v", len(failed), failed[0])
		}
	})

	step("NewInstanceGetsTraffic", func(t *testing.T) {
		// b4 listens on another port (9090), as an instance published on
		// its own host port would: the VIP still takes 8080, the common
		// port, and forwards to b4's 9090.
		b4 := c.addBackend("b4", c.node2, 9090)
		t0 := time.Now()
		b4.register(t)
		waitSpread(t, "b4 in the VIP from every client", 15*time.Second, vip, []string{"b1", "b2", "b3", "b4"}, allClients...)
		t.Logf("b4 (node2) reached through the VIP from every client %v after its registration", time.Since(t0).Round(time.Millisecond))
		_, virtual, err := webHealth(c.node1)
		if err != nil || virtual != vip {
			t.Fatalf("consul-virtual after adding b4 = %q %s, want %s", virtual, errText(err), vip)
		}
	})

	step("Measurements", func(t *testing.T) {
		measureRegistrationToTraffic(t, c, vip)
		measureConnectSetup(t, c, vip)
	})

	step("RemovedServiceRefuses", func(t *testing.T) {
		// b4, alone on 9090, goes last: the VIP's port was decided
		// once, by the leader, and stays 8080 however the instances
		// that are left listen.
		for _, id := range []string{"b1", "b2", "b3"} {
			c.backends[id].deregister(t)
		}
		eventually(t, "the VIP forwards 8080 to b4 alone", 10*time.Second, func() (bool, string) {
			got, err := spreadOver(c.onNode1, vip, 10, "b4")
			return err == nil, fmt.Sprint(got, " ", errText(err))
		})
		if _, virtual, err := webHealth(c.node1); err != nil || virtual != vip {
			t.Fatalf("consul-virtual with only b4 (port 9090) left = %q %s, want %s", virtual, errText(err), vip)
		}
		c.backends["b4"].deregister(t)
		t0 := time.Now()
		for _, d := range []dialer{c.onNode1, c.inK1, c.onNode2} {
			eventually(t, "VIP refuses connections from "+d.label, 10*time.Second, func() (bool, string) {
				if err := d.refused(vip, time.Second); err != nil {
					return false, err.Error()
				}
				return true, ""
			})
		}
		t.Logf("VIP refused connections from every client %v after the deregistrations", time.Since(t0).Round(time.Millisecond))

		// An agent restarted while the VIP is kept for the grace period
		// (no instances left) knows its ports from the allocation
		// record: the VIP keeps refusing at once, not timing out.
		systemtest.NeedCommand(t, "nft")
		c.node1.proc.signal(syscall.SIGKILL)
		c.node1.proc.wait(10 * time.Second)
		if out, err := c.node1.ns.command("nft", "delete", "table", "ip", "cairn").CombinedOutput(); err != nil {
			t.Fatalf("delete node1's table while its agent is down: %v: %s", err, out)
		}
		c.node1.start()
		c.node1.waitReady(t)
		for _, d := range []dialer{c.onNode1, c.inK1} {
			eventually(t, "VIP refuses connections from "+d.label+" after node1's agent restarted with an empty table", 10*time.Second, func() (bool, string) {
				if err := d.refused(vip, time.Second); err != nil {
					return false, err.Error()
				}
				return true, ""
			})
		}
	})

	step("LeaveOrDataplaneNoneRemovesRules", func(t *testing.T) {
		systemtest.NeedCommand(t, "nft")
		hasTable := func(n *vipNode) (bool, string) {
			out, err := n.ns.command("nft", "list", "tables").CombinedOutput()
			return err == nil && strings.Contains(string(out), "table ip cairn"), fmt.Sprintf("nft list tables on %s: %s %s", n.name, out, errText(err))
		}
		for _, n := range []*vipNode{c.node1, c.node2} {
			if ok, state := hasTable(n); !ok {
				t.Fatalf("before: want cairn's table; %s", state)
			}
		}
		// `cairn leave` removes node2's rules (a SIGTERM keeps them,
		// as a restart or an upgrade needs).
		if out, err := c.node2.ns.command(cairnBin, "leave", "-http-addr", c.node2.httpAddr()).CombinedOutput(); err != nil {
			t.Fatalf("cairn leave on node2: %v: %s", err, out)
		}
		if code := c.node2.proc.wait(30 * time.Second); code != 0 {
			t.Fatalf("node2: exit code after cairn leave = %d, want 0", code)
		}
		if ok, state := hasTable(c.node2); ok {
			t.Errorf("after cairn leave on node2, its table is still there; %s", state)
		}
		// Restarted with -vip-dataplane none, node1 removes what its
		// earlier run left.
		c.node1.proc.signal(syscall.SIGKILL)
		c.node1.proc.wait(10 * time.Second)
		c.node1.plane = "none"
		c.node1.start()
		c.node1.waitReady(t)
		eventually(t, "node1 without cairn's table after a start with -vip-dataplane none", 10*time.Second, func() (bool, string) {
			ok, state := hasTable(c.node1)
			return !ok, state
		})
	})
}

// measureRegistrationToTraffic registers an instance on node2 and
// measures how long until a connection from node1 through the VIP
// reaches it, over several trials; it reports the figures and asserts
// none (house style: no timing assertions).
func measureRegistrationToTraffic(t *testing.T, c *vipCluster, vip string) {
	t.Helper()
	const trials = 20
	b5 := c.addBackend("b5", c.node2, 8080)
	var took []time.Duration
	for i := range trials {
		t0 := time.Now()
		b5.register(t)
		var reached time.Duration
		err := c.onNode1.ns.do(func() error {
			deadline := t0.Add(15 * time.Second)
			for time.Now().Before(deadline) {
				conn, err := net.DialTimeout("tcp4", vip, 2*time.Second)
				if err != nil {
					return err
				}
				conn, name, err := greet(conn, vip)
				if err != nil {
					return err
				}
				conn.Close()
				if name == "b5" {
					reached = time.Since(t0)
					return nil
				}
			}
			return fmt.Errorf("no connection reached b5 within 15s")
		})
		if err != nil {
			t.Fatalf("trial %d: registration of b5 on node2 -> traffic from node1: %v", i, err)
		}
		took = append(took, reached)
		b5.deregister(t)
		// b5 must be out of node1's kernel before the next trial.
		eventually(t, "b5 out of node1's balancing", 15*time.Second, func() (bool, string) {
			got, err := c.onNode1.count(vip, 60)
			if err != nil {
				return false, err.Error()
			}
			if got["b5"] > 0 {
				return false, fmt.Sprintf("60 connections: %v", got)
			}
			return true, ""
		})
	}
	slices.Sort(took)
	t.Logf("registration on node2 -> first connection from node1 reaching it through the VIP, %d trials: p50 %v, p99 %v, min %v, max %v",
		trials, took[len(took)/2].Round(time.Millisecond), took[(len(took)*99)/100].Round(time.Millisecond),
		took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// measureConnectSetup compares connection setup (connect, and connect
// plus the server's first byte) through the VIP with setup straight to
// the backends, from the container behind node1, interleaved so that the
// machine's load hits both alike.
func measureConnectSetup(t *testing.T, c *vipCluster, vip string) {
	t.Helper()
	const n = 300
	direct := []string{c.backends["b1"].hostPort(), c.backends["b2"].hostPort(), c.backends["b3"].hostPort(), c.backends["b4"].hostPort()}
	var viaConn, viaFirst, dirConn, dirFirst []time.Duration
	one := func(addr string, conn, first *[]time.Duration) error {
		t0 := time.Now()
		cn, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		*conn = append(*conn, time.Since(t0))
		cn, _, err = greet(cn, addr)
		if err != nil {
			return err
		}
		*first = append(*first, time.Since(t0))
		return cn.Close()
	}
	err := c.inK1.ns.do(func() error {
		for i := range n {
			if err := one(vip, &viaConn, &viaFirst); err != nil {
				return err
			}
			if err := one(direct[i%len(direct)], &dirConn, &dirFirst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("connection setup from k1: %v", err)
	}
	med := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	vc, dc, vf, df := med(viaConn), med(dirConn), med(viaFirst), med(dirFirst)
	t.Logf("connection setup from k1, %d each, medians: connect via VIP %v vs direct %v (ratio %.2f); connect+first byte via VIP %v vs direct %v (ratio %.2f)",
		n, vc, dc, float64(vc)/float64(dc), vf, df, float64(vf)/float64(df))
}

// probe connects through a VIP from one client over and over, on its
// own goroutine, and keeps what answered and what failed.
type probe struct {
	stop, done chan struct{}
	once       sync.Once
	after      int // connections to make after stop
	seen       map[string]int
	failed     []error
}

// startProbe starts probing; it stops at the latest when t ends.
func startProbe(t *testing.T, d dialer, addr string) *probe {
	p := &probe{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]int{}}
	t.Cleanup(func() { p.stopAfter(0) })
	go func() {
		defer close(p.done)
		err := d.ns.do(func() error {
			left := -1
			for left != 0 {
				select {
				case <-p.stop:
					if left < 0 {
						left = p.after
					}
				default:
				}
				if left > 0 {
					left--
				}
				c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
				if err == nil {
					var name string
					c, name, err = greet(c, addr)
					if err == nil {
						c.Close()
						p.seen[name]++
						continue
					}
				}
				p.failed = append(p.failed, err)
				time.Sleep(10 * time.Millisecond) // pace the retries of a failing dial
			}
			return nil
		})
		if err != nil {
			p.failed = append(p.failed, err)
		}
	}()
	return p
}

// stopAfter makes n more connections, stops, and returns the tallies.
func (p *probe) stopAfter(n int) (map[string]int, []error) {
	p.once.Do(func() {
		p.after = n
		close(p.stop)
	})
	<-p.done
	return p.seen, p.failed
}
