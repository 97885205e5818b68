package membership

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Role says whether an agent is a server (a member of the Raft group) or a
// client.
type Role string

// The roles.
const (
	RoleServer Role = "server"
	RoleClient Role = "client"
)

// ProtocolVersion is the version of Meta and of this package's gossip
// messages. It is 1; Meta.Proto carries it so later versions can tell.
const ProtocolVersion = 1

// Meta is what an agent tells every other agent about itself. It travels in
// memberlist's node meta, which is limited to 512 bytes (MetaMaxSize), so
// it stays small: New refuses a Meta that does not fit.
type Meta struct {
	// Role is RoleServer or RoleClient; empty means RoleClient.
	Role Role
	// Datacenter is the agent's -datacenter; empty means "dc1".
	Datacenter string
	// RaftAddr is the server RPC/Raft host:port (-server-port), servers only.
	RaftAddr string
	// NodeID is the agent's stable UUID (-node-id), the Raft server ID.
	NodeID string
	// Proto is the protocol version; 0 means ProtocolVersion.
	Proto int
	// HTTPPort and DNSPort are the agent's -http-port and -dns-port.
	HTTPPort, DNSPort int
	// GossipKey is the public key the agent signs its catalog records
	// with (base64 ed25519). In a cluster without servers it is the
	// binding that receivers pin when they first see the member; with
	// servers the binding in the Raft store is authoritative (see
	// docs/gossip-security.md).
	GossipKey string
}

// wireMeta is Meta as it travels: JSON with short keys (about 120 bytes for
// a server), so a reader can still make sense of it in a packet capture,
// and unknown keys from newer agents are ignored. Leaving is not part of
// Meta: it is how a graceful leave is told apart from a failure (see
// Membership.Leave).
type wireMeta struct {
	Role       Role   `json:"r,omitempty"`
	Datacenter string `json:"dc,omitempty"`
	RaftAddr   string `json:"raft,omitempty"`
	NodeID     string `json:"id,omitempty"`
	Proto      int    `json:"v,omitempty"`
	HTTPPort   int    `json:"http,omitempty"`
	DNSPort    int    `json:"dns,omitempty"`
	Leaving    bool   `json:"leaving,omitempty"`
	GossipKey  string `json:"gk,omitempty"`
}

func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	b, err := json.Marshal(wireMeta{
		Role: m.Role, Datacenter: m.Datacenter, RaftAddr: m.RaftAddr, NodeID: m.NodeID,
		Proto: m.Proto, HTTPPort: m.HTTPPort, DNSPort: m.DNSPort, Leaving: leaving, GossipKey: m.GossipKey,
	})
	if err != nil {
		return nil, fmt.Errorf("encode node meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node meta is %d bytes encoded, more than memberlist's limit of %d; shorten -datacenter, -node-id or the server address", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads another agent's meta. The bytes come from the network,
// so any input must give an error, never a panic.
func decodeMeta(b []byte) (m Meta, leaving bool, err error) {
	if len(b) == 0 {
		return Meta{}, false, fmt.Errorf("no node meta (not a cairn agent?)")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, false, fmt.Errorf("node meta is not cairn's (%d bytes): %w", len(b), err)
	}
	return Meta{
		Role: w.Role, Datacenter: w.Datacenter, RaftAddr: w.RaftAddr, NodeID: w.NodeID,
		Proto: w.Proto, HTTPPort: w.HTTPPort, DNSPort: w.DNSPort, GossipKey: w.GossipKey,
	}, w.Leaving, nil
}
