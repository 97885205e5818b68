// Package membership owns cairn's cluster membership: which agents are in
// the cluster, whether each is alive, leaving, left or failed (failure
// detection), and gossip encryption. It is Consul's Serf LAN layer, built
// directly on github.com/hashicorp/memberlist.
//
// A Membership binds the gossip port (UDP and TCP, 8301 by default), joins
// other agents (Join, RetryJoin), leaves gracefully (Leave) so that the
// others see "left" rather than "failed", and keeps a table of every member
// it has heard of, including failed and left ones, until
// Config.ReapFailedAfter (Consul's reconnect_timeout). Each member carries a
// small Meta (role, datacenter, Raft address, node ID, ports) that every
// other agent can read.
//
// Reads have the shape of the rest of cairn's state:
//
//	index, members := m.Members(ws)
//
// where ws (a go-memdb WatchSet) gets a channel that closes on the next
// change, so consumers (the catalog, the Raft server manager, the HTTP
// /v1/agent/members endpoint) wait on it instead of polling.
//
// Other components share memberlist's gossip instead of running their
// own: Register gives a component a message kind, a Handler that receives
// its messages and its part of push/pull (anti-entropy), and a Channel to
// Broadcast (piggybacked on gossip), SendBestEffort (one UDP packet to one
// member) or SendReliable (TCP to one member, any size) on.
// The catalog replicates every agent's services this way.
//
// Node names are unique in a cluster: an agent whose -node is already used
// by a live member at another address is refused (Join says so), and the
// cluster keeps the original. Agents whose -encrypt keys differ cannot
// join each other; Join says that too.
//
// membership knows nothing of the catalog, KV, DNS or templates: it must
// not import kv, dns, template or registrator (nor agent).
package membership
