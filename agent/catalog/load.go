package catalog

// NodeState is one node with its services and checks, as the agent that
// owns it publishes it.
type NodeState = nodeState

// LoadRemote applies another agent's published state as if it had
// arrived over gossip from a live member. Agents receive states through
// GossipHandler; LoadRemote is for benchmarks and tools that need a large
// catalog without running a cluster.
func (c *Catalog) LoadRemote(origin string, version uint64, nodes []NodeState) {
	c.receive(inMsg{buf: encodeRecord(origin, version, nodes)}, map[string]MemberStatus{origin: MemberAlive}, nil)
}
