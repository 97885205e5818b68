package httpapi

import (
	"cmp"
	"errors"
	"github.com/cairn-dev/cairn/agent/acl"
	"net/http"
	"slices"
	"strconv"

	"github.com/cairn-dev/cairn/kv"
)

// Cluster is what the HTTP API needs from cluster membership (gossip) and
// from Raft, for /v1/agent/members, join, leave, force-leave and
// /v1/operator/raft/configuration. Methods are called from request
// goroutines, concurrently, and may block for as long as the operation
// takes (a join dials the given addresses).
type Cluster interface {
	// Members is every member this agent knows of, in any status
	// (alive, leaving, left, failed).
	Members() []Member
	// Join contacts the agents at addrs (host or host:port) and returns
	// how many it reached; the error says which failed and why.
	Join(addrs []string) (int, error)
	// Leave leaves the cluster gracefully, so the others see "left"
	// rather than "failed"; the agent then shuts itself down. Leave
	// runs inside the PUT /v1/agent/leave request, which is answered
	// only after it returns: the shutdown must not wait for the HTTP
	// server to stop, or it waits for this very request.
	Leave() error
	// ForceLeave moves a failed member to "left" so the cluster stops
	// trying to reach it; a node it does not know is an error.
	ForceLeave(node string) error
	// RaftConfiguration is the Raft configuration: read from the local
	// Raft on a server, asked of the servers on a client agent. Its
	// error is shown to the caller as it is (500).
	RaftConfiguration() (RaftConfiguration, error)
}

// Member is one agent of the cluster as gossip knows it.
type Member struct {
	Name       string
	Addr       string // gossip IP address
	Port       int    // gossip port
	Status     MemberStatus
	Server     bool
	Datacenter string // "" means this agent's datacenter
	NodeID     string
	ServerPort int    // the server RPC/Raft port; servers only
	Build      string // Consul's form "version:revision"; `members` shows what precedes ':'
}

// MemberStatus is a member's gossip status with serf's codes, which is
// how Consul's API reports it (api.AgentMember.Status).
type MemberStatus int

// The statuses, numbered as serf.MemberStatus.
const (
	MemberNone MemberStatus = iota
	MemberAlive
	MemberLeaving
	MemberLeft
	MemberFailed
)

// String is serf's name for the status, as `consul members` prints it.
func (s MemberStatus) String() string {
	switch s {
	case MemberNone:
		return "none"
	case MemberAlive:
		return "alive"
	case MemberLeaving:
		return "leaving"
	case MemberLeft:
		return "left"
	case MemberFailed:
		return "failed"
	}
	return "unknown MemberStatus " + strconv.Itoa(int(s))
}

// RaftConfiguration is the set of Raft servers, at the log index of the
// configuration entry.
type RaftConfiguration struct {
	Servers []RaftServer
	Index   uint64
}

// RaftServer is one server of the Raft configuration.
type RaftServer struct {
	ID, Node, Address string
	Leader, Voter     bool
	ProtocolVersion   string // Raft protocol version, e.g. "3"
}

// errNoCluster answers the cluster endpoints on an agent wired without a
// Cluster.
var errNoCluster = errors.New("cluster membership is not available on this agent")

// agentMember is Consul's api.AgentMember, the JSON of a serf member: an
// element of /v1/agent/members and the Member of /v1/agent/self.
type agentMember struct {
	Name        string
	Addr        string
	Port        int
	Tags        map[string]string
	Status      int // serf.MemberStatus
	ProtocolMin int
	ProtocolMax int
	ProtocolCur int
	DelegateMin int
	DelegateMax int
	DelegateCur int
}

// toAgentMember gives m the tags a Consul agent gossips (agent/consul's
// setupSerf) and the serf and delegate protocol versions Consul reports;
// dc stands in for an empty m.Datacenter.
func toAgentMember(m Member, dc string) agentMember {
	if m.Datacenter != "" {
		dc = m.Datacenter
	}
	role := "node"
	if m.Server {
		role = "consul"
	}
	tags := map[string]string{
		"role":    role,
		"dc":      dc,
		"id":      m.NodeID,
		"build":   m.Build,
		"segment": "",
		"vsn":     "2",
		"vsn_min": "2",
		"vsn_max": "3",
	}
	if m.Server {
		tags["port"] = strconv.Itoa(m.ServerPort)
		tags["raft_vsn"] = "3"
	}
	return agentMember{
		Name:        m.Name,
		Addr:        m.Addr,
		Port:        m.Port,
		Tags:        tags,
		Status:      int(m.Status),
		ProtocolMin: 1,
		ProtocolMax: 5,
		ProtocolCur: 2,
		DelegateMin: 2,
		DelegateMax: 5,
		DelegateCur: 4,
	}
}

// raftServerOut and raftConfigurationOut are Consul's
// structs.RaftConfigurationResponse (api.RaftConfiguration).
type raftServerOut struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

type raftConfigurationOut struct {
	Servers []raftServerOut
	Index   uint64
}

func (h *handler) clusterOrErr() (Cluster, error) {
	if h.cluster == nil {
		return nil, errNoCluster
	}
	return h.cluster, nil
}

// agentMembers serves GET /v1/agent/members, sorted by name. Like
// Consul, ?wan counts only with a value (the client sends wan=1); cairn
// has no WAN pool, so its WAN members are this datacenter's servers
// (wanMembers). ?segment (an Enterprise feature) is ignored.
func (h *handler) agentMembers(c *call) error {
	cl, err := h.clusterOrErr()
	if err != nil {
		return err
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	out := []agentMember{}
	// Consul's filterMembers: node read on each member's name.
	members := filterList(c, slices.Clone(cl.Members()), func(m Member) bool { return c.can(acl.Node, m.Name, acl.Read) })
	if c.query.Get("wan") != "" {
		return writeFiltered(c, wanMembers(members, h.self.Datacenter))
	}
	slices.SortStableFunc(members, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	for _, m := range members {
		out = append(out, toAgentMember(m, h.self.Datacenter))
	}
	// ?filter= judges api.AgentMember's selectors (Name, Addr, Tags, Status...).
	return writeFiltered(c, out)
}

// wanMembers is the WAN pool Consul would show for one datacenter: its
// alive servers, named <node>.<dc> (what `consul members -wan` lists and
// `consul rtt -wan` takes). cairn has no WAN gossip, so their address
// and port are the LAN ones.
func wanMembers(members []Member, dc string) []agentMember {
	out := []agentMember{}
	for _, m := range members {
		if !m.Server || m.Status != MemberAlive {
			continue
		}
		am := toAgentMember(m, dc)
		am.Name = m.Name + "." + am.Tags["dc"]
		out = append(out, am)
	}
	slices.SortFunc(out, func(a, b agentMember) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// agentJoin serves PUT /v1/agent/join/<address>: 200 with no body once
// the address was reached, else 500 with the reason (as Consul).
func (h *handler) agentJoin(c *call) error {
	cl, err := h.clusterOrErr()
	if err != nil {
		return err
	}
	if c.query.Get("wan") != "" {
		return badRequest("WAN join is not supported: cairn has no WAN gossip pool (it does not federate datacenters); join the address without ?wan")
	}
	if c.arg == "" {
		return badRequest("Missing address to join: put it in the path, e.g. /v1/agent/join/10.0.0.2:8301")
	}
	// Consul's AgentJoin: agent write on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Write); err != nil {
		return err
	}
	if _, err := cl.Join([]string{c.arg}); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// agentLeave serves PUT /v1/agent/leave: a graceful leave, after which
// the agent shuts down (see Cluster.Leave).
func (h *handler) agentLeave(c *call) error {
	cl, err := h.clusterOrErr()
	if err != nil {
		return err
	}
	// Consul's AgentLeave: agent write on this agent.
	if err := c.allow(acl.Agent, h.self.NodeName, acl.Write); err != nil {
		return err
	}
	if err := cl.Leave(); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// agentForceLeave serves PUT /v1/agent/force-leave/<node>. A live member
// is left alone (and the call succeeds), as in Consul; ?prune also
// forgets the member at once instead of after the reconnect timeout.
// Consul answers a node it does not know with 500, and so does this.
func (h *handler) agentForceLeave(c *call) error {
	cl, err := h.clusterOrErr()
	if err != nil {
		return err
	}
	if has(c.query, "wan") {
		return badRequest("WAN force-leave is not supported: cairn has no WAN gossip pool (it does not federate datacenters); drop ?wan")
	}
	if c.arg == "" {
		return badRequest("Missing node name to force-leave: put it in the path, e.g. /v1/agent/force-leave/web-3")
	}
	// Consul's AgentForceLeave: operator write.
	if err := c.allow(acl.Operator, "", acl.Write); err != nil {
		return err
	}
	force := cl.ForceLeave
	if p, ok := cl.(pruner); ok && has(c.query, "prune") {
		force = p.Prune
	}
	if err := force(c.arg); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// pruner is a Cluster that can also forget a member at once
// (?prune); without it ?prune is a plain force-leave.
type pruner interface {
	Prune(node string) error
}

// operatorRaftConfiguration serves GET /v1/operator/raft/configuration,
// with the read headers of the other reads: X-Consul-Index is the
// configuration's index (at least 1) and X-Consul-KnownLeader whether a
// server in it leads.
func (h *handler) operatorRaftConfiguration(c *call) error {
	cl, err := h.clusterOrErr()
	if err != nil {
		return err
	}
	// Consul's Operator.RaftGetConfiguration: operator read.
	if err := c.allow(acl.Operator, "", acl.Read); err != nil {
		return err
	}
	opts, err := readOptions(c.query)
	if err != nil {
		return err
	}
	cfg, err := cl.RaftConfiguration()
	if err != nil {
		return err
	}
	out := raftConfigurationOut{Servers: []raftServerOut{}, Index: cfg.Index}
	leader := false
	for _, s := range cfg.Servers {
		leader = leader || s.Leader
		out.Servers = append(out.Servers, raftServerOut{
			ID:              s.ID,
			Node:            s.Node,
			Address:         s.Address,
			Leader:          s.Leader,
			ProtocolVersion: s.ProtocolVersion,
			Voter:           s.Voter,
		})
	}
	setMeta(c.w, kv.QueryMeta{Index: cfg.Index, KnownLeader: leader}, opts)
	return writeJSON(c.w, http.StatusOK, out)
}
