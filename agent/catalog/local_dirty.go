package catalog

import "sort"

// Bookkeeping of what changed in this agent's own entries since the last
// commit, so that a commit (and the check runner's sync) touches only
// that: every change of c.services, c.checks and c.external goes through
// the helpers here.

// dirtySet names what changed since the last commit.
type dirtySet struct {
	services   map[string]struct{} // IDs of local services (or their checks)
	nodeChecks bool                // the local node's own checks
	external   map[string]struct{} // lower-case names of external nodes
}

func (d *dirtySet) service(id string) {
	if d.services == nil {
		d.services = map[string]struct{}{}
	}
	d.services[id] = struct{}{}
}

func (d *dirtySet) owner(serviceID string) {
	if serviceID == "" {
		d.nodeChecks = true
		return
	}
	d.service(serviceID)
}

func (d *dirtySet) externalNode(key string) {
	if d.external == nil {
		d.external = map[string]struct{}{}
	}
	d.external[key] = struct{}{}
}

// setServiceLocked adds or replaces a local service.
func (c *Catalog) setServiceLocked(svc *Service) {
	c.services[svc.ID] = svc
	c.dirty.service(svc.ID)
	// Its checks show its name and tags.
	for id := range c.byService[svc.ID] {
		c.runnerDirty[id] = struct{}{}
	}
}

// deleteServiceLocked removes a local service (not its checks).
func (c *Catalog) deleteServiceLocked(id string) {
	delete(c.services, id)
	c.dirty.service(id)
}

// setCheckLocked adds or replaces a local check.
func (c *Catalog) setCheckLocked(lc *localCheck) {
	id := lc.def.ID
	if old := c.checks[id]; old != nil && old.def.ServiceID != lc.def.ServiceID {
		c.unindexCheckLocked(id, old.def.ServiceID)
	}
	c.checks[id] = lc
	set := c.byService[lc.def.ServiceID]
	if set == nil {
		set = map[string]struct{}{}
		c.byService[lc.def.ServiceID] = set
	}
	set[id] = struct{}{}
	c.dirty.owner(lc.def.ServiceID)
	c.runnerDirty[id] = struct{}{}
}

// deleteCheckLocked removes a local check.
func (c *Catalog) deleteCheckLocked(id string) {
	old := c.checks[id]
	if old == nil {
		return
	}
	delete(c.checks, id)
	c.unindexCheckLocked(id, old.def.ServiceID)
	c.runnerDirty[id] = struct{}{}
}

func (c *Catalog) unindexCheckLocked(id, serviceID string) {
	if set := c.byService[serviceID]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(c.byService, serviceID)
		}
	}
	c.dirty.owner(serviceID)
}

// checksOfLocked returns the IDs of a service's checks ("" for the
// node's own checks).
func (c *Catalog) checksOfLocked(serviceID string) []string {
	set := c.byService[serviceID]
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// setExternalLocked replaces (nil: removes) an external node.
func (c *Catalog) setExternalLocked(key string, n *externalNode) {
	if n == nil {
		delete(c.external, key)
	} else {
		c.external[key] = n
	}
	c.dirty.externalNode(key)
}

// deltasLocked turns c.dirty into changes for the read side.
func (c *Catalog) deltasLocked() []nodeDelta {
	var out []nodeDelta
	if c.dirty.nodeChecks || len(c.dirty.services) > 0 {
		d := nodeDelta{Name: c.cfg.NodeName, Node: c.node, SetChecks: c.dirty.nodeChecks}
		if d.SetChecks {
			own := nodeState{Node: c.node}
			for _, id := range c.checksOfLocked("") {
				lc := c.checks[id]
				own.Checks = append(own.Checks, c.checkRowLocked(lc, lc.pubOutput))
			}
			d.Checks = withSerfHealth([]nodeState{own}, c.cfg.NodeName, StatusPassing)[0].Checks
		}
		d.Instances = make(map[string]*instanceState, len(c.dirty.services))
		for id := range c.dirty.services {
			svc := c.services[id]
			if s := c.cfg.ServerService; svc == nil && s != nil && s.ID == id {
				// A server's own service shows unless a registered
				// service of the same ID hides it (wireNodesLocked).
				svc = s
			}
			if svc == nil {
				d.Instances[id] = nil
				continue
			}
			inst := &instanceState{S: svc}
			for _, cid := range c.checksOfLocked(id) {
				lc := c.checks[cid]
				inst.Checks = append(inst.Checks, c.checkRowLocked(lc, lc.pubOutput))
			}
			d.Instances[id] = inst
		}
		out = append(out, d)
	}
	for key := range c.dirty.external {
		n := c.external[key]
		if n == nil {
			out = append(out, nodeDelta{Name: key, Gone: true})
			continue
		}
		ns := nodeState{Node: n.Node}
		for _, s := range n.Services {
			ns.Services = append(ns.Services, s)
		}
		for _, ch := range n.Checks {
			ns.Checks = append(ns.Checks, ch)
		}
		out = append(out, nodeDelta{Name: n.Node.Node, Full: &ns})
	}
	return out
}

// logLinesLocked is the whole local state as log lines, for compaction.
func (c *Catalog) logLinesLocked() []logLine {
	out := make([]logLine, 0, len(c.services)+len(c.checks)+len(c.external)+1)
	out = append(out, logLine{Op: opReserved, Reserved: c.reserved})
	ids := make([]string, 0, len(c.services))
	for id := range c.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		out = append(out, logLine{Op: opService, Service: c.services[id]})
	}
	ids = ids[:0]
	for id := range c.checks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if c.checks[id].condition {
			continue
		}
		d := c.checks[id].def
		out = append(out, logLine{Op: opCheck, Check: &d})
	}
	keys := make([]string, 0, len(c.external))
	for k := range c.external {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, logLine{Op: opExternal, External: c.external[k]})
	}
	txns := make([]string, 0, len(c.txns))
	for id := range c.txns {
		txns = append(txns, id)
	}
	sort.Strings(txns)
	for _, id := range txns {
		out = append(out, logLine{Op: opTxn, ID: id})
	}
	return out
}

// compactLocked rewrites the log when it has grown well past the state it
// holds; a failure is logged and retried after the next change (the log
// stays valid, only longer).
func (c *Catalog) compactLocked() {
	if c.store == nil || !c.store.needsCompaction(len(c.services)+len(c.checks)+len(c.external)) {
		return
	}
	if err := c.store.compact(c.logLinesLocked()); err != nil {
		c.log.Warn("could not compact the catalog log; it keeps growing until this works", "err", err)
	}
}

// durable waits, without mu, until the changes up to seq are on disk:
// the change is acknowledged only then. Concurrent changes share one
// sync.
func (c *Catalog) durable(seq uint64, err error) error {
	if err != nil || c.store == nil || seq == 0 {
		return err
	}
	return c.store.wait(seq)
}
