//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// A test cluster is several cairn processes on 127.0.0.1: servers
// started with -server -bootstrap-expect N, clients without -server,
// every one with -retry-join to the first server's gossip address, as an
// operator would write it. Each node keeps its ports and data dir across
// restarts, so a restarted server comes back as the same Raft peer.

// clusterPortLo and clusterPortHi bound cluster nodes' ports: below the
// kernel's ephemeral range (32768-60999 on Linux), so that no outgoing
// connection of any process can hold a node's port while the node is
// down between a kill and its restart on the same ports.
const clusterPortLo, clusterPortHi = 20000, 32000

var (
	pickedMu sync.Mutex
	picked   = map[int]bool{} // ports handed out in this test process
)

// clusterPorts picks a node's four ports in that range, each free
// on 127.0.0.1 for both TCP and UDP (gossip uses both on the same port)
// and never handed out before in this process.
func clusterPorts(t *testing.T) ports {
	t.Helper()
	pickedMu.Lock()
	defer pickedMu.Unlock()
	pick := func() int {
		for range 1000 {
			p := clusterPortLo + rand.IntN(clusterPortHi-clusterPortLo)
			if picked[p] || !bindable(p) {
				continue
			}
			picked[p] = true
			return p
		}
		t.Fatalf("no free port in %d-%d on 127.0.0.1 after 1000 tries", clusterPortLo, clusterPortHi)
		return 0
	}
	return ports{http: pick(), dns: pick(), serf: pick(), server: pick()}
}

func bindable(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (p ports) serfAddr() string   { return "127.0.0.1:" + strconv.Itoa(p.serf) }
func (p ports) serverAddr() string { return "127.0.0.1:" + strconv.Itoa(p.server) }

// clusterNode is one agent of a test cluster. proc is the process running now
// (nil before the first start); api talks to its HTTP port, which stays
// the same across restarts.
type clusterNode struct {
	t       *testing.T
	name    string
	server  bool
	expect  int // -bootstrap-expect of a server
	ports   ports
	dataDir string
	extra   []string // more flags for every start (e.g. -encrypt)
	proc    *proc
	api     *api.Client
	starts  int
}

// args are the node's command line; join is the -retry-join address.
func (n *clusterNode) args(join string) []string {
	args := []string{"agent", "-node", n.name, "-data-dir", n.dataDir}
	if n.server {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(n.expect))
	}
	args = append(args, n.ports.flags()...)
	if join != "" {
		args = append(args, "-retry-join", join)
	}
	return append(args, n.extra...)
}

// start runs the node (again), retry-joining join.
func (n *clusterNode) start(join string) {
	n.t.Helper()
	if n.running() {
		n.t.Fatalf("start %s: it is already running", n.name)
	}
	n.starts++
	label := n.name
	if n.starts > 1 {
		label = fmt.Sprintf("%s (start %d)", n.name, n.starts)
	}
	n.proc = start(n.t, label, n.args(join)...)
}

func (n *clusterNode) running() bool { return n.proc != nil && !n.proc.exited() }

// kill stops the node with SIGKILL (no leave, no flush) and waits for
// the process to be gone.
func (n *clusterNode) kill() {
	n.t.Helper()
	n.proc.signal(syscall.SIGKILL)
	n.proc.wait(10 * time.Second)
}

// term stops the node with SIGTERM, which leaves the cluster, and checks
// that it exits 0.
func (n *clusterNode) term() {
	n.t.Helper()
	n.proc.signal(syscall.SIGTERM)
	if code := n.proc.wait(30 * time.Second); code != 0 {
		n.t.Fatalf("%s: exit code after SIGTERM = %d, want 0; output:\n%s", n.name, code, n.proc.out.String())
	}
}

type testCluster struct {
	t       *testing.T
	servers []*clusterNode
	clients []*clusterNode
}

// newCluster starts servers servers (s0, s1, ...) and clients clients
// (c0, c1, ...), each with extra flags, and waits until every agent knows
// the leader and a consistent read through it works.
func newCluster(t *testing.T, servers, clients int, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	base := t.TempDir()
	mk := func(name string, server bool) *clusterNode {
		p := clusterPorts(t)
		return &clusterNode{
			t: t, name: name, server: server, expect: servers, ports: p,
			dataDir: base + "/" + name, extra: extra, api: boundedClient(t, p.httpAddr()),
		}
	}
	for i := range servers {
		c.servers = append(c.servers, mk(fmt.Sprintf("s%d", i), true))
	}
	for i := range clients {
		c.clients = append(c.clients, mk(fmt.Sprintf("c%d", i), false))
	}
	join := c.servers[0].ports.serfAddr()
	for _, n := range c.all() {
		n.start(join)
	}
	c.waitReady(c.all()...)
	return c
}

// boundedClient is an official client for addr whose requests give up
// after 15 s, so a hung agent fails the test instead of stalling it.
func boundedClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, HttpClient: &http.Client{Timeout: 15 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testCluster) all() []*clusterNode { return append(slices.Clone(c.servers), c.clients...) }

// waitReady waits until each node knows the leader and answers a
// consistent read (see proc.waitLeader).
func (c *testCluster) waitReady(nodes ...*clusterNode) {
	c.t.Helper()
	for _, n := range nodes {
		n.proc.waitLeader(n.ports.httpAddr())
	}
}

// joinAddr is a gossip address to rejoin through: the first running
// server other than n (any server when none runs).
func (c *testCluster) joinAddr(n *clusterNode) string {
	for _, s := range c.servers {
		if s != n && s.running() {
			return s.ports.serfAddr()
		}
	}
	return c.servers[0].ports.serfAddr()
}

// restart starts a stopped node again on its ports and data dir, joining
// through a running server.
func (c *testCluster) restart(n *clusterNode) {
	c.t.Helper()
	n.start(c.joinAddr(n))
}

// leader waits for a running server that says it leads and has applied
// earlier entries (a consistent read through it works), and returns it.
func (c *testCluster) leader() *clusterNode {
	c.t.Helper()
	var leader *clusterNode
	eventually(c.t, "a leader among the running servers", 20*time.Second, func() (bool, string) {
		var seen []string
		for _, s := range c.servers {
			if !s.running() {
				seen = append(seen, s.name+": stopped")
				continue
			}
			addr, err := s.api.Status().Leader()
			seen = append(seen, fmt.Sprintf("%s: leader %q %v", s.name, addr, errText(err)))
			if err != nil || addr != s.ports.serverAddr() {
				continue
			}
			if _, _, err := s.api.KV().Get("e2e-ready-probe", &api.QueryOptions{RequireConsistent: true}); err != nil {
				seen = append(seen, s.name+": consistent read: "+err.Error())
				continue
			}
			leader = s
			return true, ""
		}
		return false, strings.Join(seen, "; ")
	})
	return leader
}

// followers are the running servers other than leader.
func (c *testCluster) followers(leader *clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, s := range c.servers {
		if s != leader && s.running() {
			out = append(out, s)
		}
	}
	return out
}

// members is what the node's /v1/agent/members says, as "name status"
// strings sorted by name, with status as `cairn members` names it.
func (n *clusterNode) members() ([]string, error) {
	ms, err := n.api.Agent().Members(false)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+" "+memberStatusName(m.Status))
	}
	slices.Sort(out)
	return out, nil
}

func memberStatusName(s int) string {
	names := []string{"none", "alive", "leaving", "left", "failed"}
	if s >= 0 && s < len(names) {
		return names[s]
	}
	return "status-" + strconv.Itoa(s)
}

// raftServers lists the Raft configuration as n reports it: node names,
// sorted, with "/nonvoter" after a non-voter and "*" after the leader.
func (n *clusterNode) raftServers() ([]string, error) {
	cfg, err := n.api.Operator().RaftGetConfiguration(nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range cfg.Servers {
		e := s.Node
		if !s.Voter {
			e += "/nonvoter"
		}
		if s.Leader {
			e += "*"
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return out, nil
}

// eventually polls cond until it holds or within runs out; on timeout it
// fails the test with what and the last state cond reported. This is how
// a test learns about other processes: they have no events to block on.
func eventually(t *testing.T, what string, within time.Duration, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last seen: %s", what, within, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

// rawResponse is an HTTP answer as the wire carried it.
type rawResponse struct {
	code int
	body string
}

func (r rawResponse) String() string { return fmt.Sprintf("%d %q", r.code, r.body) }

// rawPut sends PUT /v1/kv/<key> to addr with a plain HTTP client, so the
// test sees the status code and body exactly.
func rawPut(ctx context.Context, addr, key, value string) (rawResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return rawResponse{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return rawResponse{code: resp.StatusCode, body: strings.TrimSpace(string(b))}, err
}
