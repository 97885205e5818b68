package agent

import (
	"context"
	"errors"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/servers"
	"github.com/hashicorp/go-memdb"
)

// memberView adapts membership to what servers and forward read.
type memberView struct {
	ml *membership.Membership
	dc string
}

// Members implements servers.Members.
func (v *memberView) Members(ws memdb.WatchSet) (uint64, []servers.Member) {
	idx, ms := v.ml.Members(ws)
	out := make([]servers.Member, 0, len(ms))
	for _, m := range ms {
		if m.Meta.Datacenter != "" && m.Meta.Datacenter != v.dc {
			continue
		}
		out = append(out, servers.Member{
			Name:     m.Name,
			ID:       m.Meta.NodeID,
			RaftAddr: m.Meta.RaftAddr,
			Server:   m.Meta.Role == membership.RoleServer,
			Status:   m.Status,
		})
	}
	return idx, out
}

// serverAddrs lists the alive servers of this datacenter, for clients to
// forward to.
func (v *memberView) serverAddrs() []string {
	var out []string
	for _, m := range v.ml.Servers() {
		if m.Meta.RaftAddr != "" && (m.Meta.Datacenter == "" || m.Meta.Datacenter == v.dc) {
			out = append(out, m.Meta.RaftAddr)
		}
	}
	return out
}

// cluster adapts membership and the Raft group to httpapi.Cluster.
type cluster struct {
	agent  *Agent
	ml     *membership.Membership
	router *forward.Router
	// leave is the agent's leave sequence (wiring.leave): a leading
	// server hands over Raft before the members hear it left, so the new
	// leader can still reach it to take it out of the configuration.
	leave func() error
}

var memberStatus = map[membership.Status]httpapi.MemberStatus{
	membership.StatusAlive:   httpapi.MemberAlive,
	membership.StatusLeaving: httpapi.MemberLeaving,
	membership.StatusLeft:    httpapi.MemberLeft,
	membership.StatusFailed:  httpapi.MemberFailed,
}

func (c *cluster) Members() []httpapi.Member {
	_, ms := c.ml.Members(nil)
	out := make([]httpapi.Member, 0, len(ms))
	for _, m := range ms {
		mem := httpapi.Member{
			Name:       m.Name,
			Addr:       m.Addr.String(),
			Port:       m.Port,
			Status:     memberStatus[m.Status],
			Server:     m.Meta.Role == membership.RoleServer,
			Datacenter: m.Meta.Datacenter,
			NodeID:     m.Meta.NodeID,
			Build:      Version,
		}
		if mem.Server {
			mem.ServerPort = portOf(m.Meta.RaftAddr)
		}
		out = append(out, mem)
	}
	return out
}

func (c *cluster) Join(addrs []string) (int, error) { return c.ml.Join(addrs) }

// Leave leaves the cluster before it answers, as Consul's
// /v1/agent/leave does: when it returns, the other members have been
// told (or the timeout passed), so they list this agent as left. The
// agent then stops (its own leave is then a no-op).
func (c *cluster) Leave() error {
	err := c.leave()
	c.agent.Leave()
	return err
}

// leaveTimeout bounds how long /v1/agent/leave waits for the news of the
// leave to reach the other members.
const leaveTimeout = 5 * time.Second

// Prune is ForceLeave that also forgets the member at once
// (force-leave -prune); a live member is left alone, as in Consul.
func (c *cluster) Prune(node string) error {
	err := c.ml.Prune(node)
	if errors.Is(err, membership.ErrNotFailed) {
		return nil
	}
	return err
}

// ForceLeave forces a failed member out. A live member is left alone and
// the call succeeds, as in Consul (serf only acts on failed members).
func (c *cluster) ForceLeave(node string) error {
	err := c.ml.ForceLeave(node)
	if errors.Is(err, membership.ErrNotFailed) {
		return nil
	}
	return err
}

func (c *cluster) RaftConfiguration() (httpapi.RaftConfiguration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, err := c.router.RaftConfiguration(ctx)
	if err != nil {
		return httpapi.RaftConfiguration{}, err
	}
	names := map[string]string{}
	_, ms := c.ml.Members(nil)
	for _, m := range ms {
		names[m.Meta.NodeID] = m.Name
	}
	var out httpapi.RaftConfiguration
	for _, p := range peers {
		out.Servers = append(out.Servers, httpapi.RaftServer{
			ID:              p.ID,
			Node:            names[p.ID],
			Address:         p.Address,
			Leader:          p.Leader,
			Voter:           p.Voter,
			ProtocolVersion: "3",
		})
	}
	out.Index = 1
	return out, nil
}
