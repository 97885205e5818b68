package catalog

// NodeState is a node with its services and checks, as an agent publishes
// it; exported for the benchmarks of package catalog_test.
type NodeState = nodeState

// ApplyRemote takes another agent's state as if it had arrived over
// gossip from an alive member.
func ApplyRemote(c *Catalog, origin string, version uint64, nodes []NodeState) {
	c.receive(inMsg{buf: encodeRecord(origin, version, nodes)}, map[string]MemberStatus{origin: MemberAlive}, nil)
}
