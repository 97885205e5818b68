package catalog

// Replicas lists the other agents whose catalog state this agent holds,
// with the version of it held: what metrics read to tell how far gossip
// has carried every agent's state here.
func (c *Catalog) Replicas() map[string]uint64 {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	out := make(map[string]uint64, len(c.remotes))
	for origin, r := range c.remotes {
		out[origin] = r.version
	}
	return out
}
