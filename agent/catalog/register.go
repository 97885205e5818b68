package catalog

import "github.com/cairn-dev/cairn/agent/checks"

// Catalog registrations (PUT /v1/catalog/register and deregister) through
// this agent. They belong to this agent: it publishes them with its own
// state, keeps them in its data dir, and they go when it goes. An entry on
// this agent's own node is one of its local services and checks; any other
// node is an external node (a database outside the cluster, say).

// Register applies a catalog registration.
func (c *Catalog) Register(reg Registration) error {
	name := reg.Node.Node
	if name == "" {
		return invalid("Must provide node: give the registration a \"Node\"")
	}
	if lower(name) == lower(c.cfg.NodeName) {
		return c.registerOwn(reg)
	}
	if reg.Node.Address == "" && !reg.SkipNodeUpdate {
		return invalid("Must provide address: node %q needs an \"Address\"", name)
	}
	if err := c.checkNodeOwner(name); err != nil {
		return err
	}
	var svc *Service
	if reg.Service != nil {
		svc = reg.Service.clone()
		if err := c.checkService(svc); err != nil {
			return err
		}
	}
	if err := checkMeta("node "+quote(name), reg.Node.Meta); err != nil {
		return err
	}
	return c.durable(c.registerExternal(reg, svc))
}

// registerExternal applies a validated registration of an external node
// and returns the sequence number of its change in the data dir.
func (c *Catalog) registerExternal(reg Registration, svc *Service) (uint64, error) {
	name := reg.Node.Node
	c.mu.Lock()
	defer c.mu.Unlock()
	key := lower(name)
	old := c.external[key]
	ext := &externalNode{Services: map[string]*Service{}, Checks: map[string]*Check{}}
	if old != nil {
		ext.Node = old.Node
		for id, s := range old.Services {
			ext.Services[id] = s
		}
		for id, ch := range old.Checks {
			ext.Checks[id] = ch
		}
	}
	if ext.Node == nil || !reg.SkipNodeUpdate {
		n := reg.Node.clone()
		n.Datacenter = c.cfg.Datacenter
		n.CreateIndex, n.ModifyIndex = 0, 0
		normalizeNode(n)
		ext.Node = n
	}
	if svc != nil {
		svc.Node = ext.Node.Node
		ext.Services[svc.ID] = svc
	}
	for _, in := range reg.Checks {
		chk, err := fixedCheck(in, ext.Node.Node, func(id string) *Service { return ext.Services[id] })
		if err != nil {
			return 0, err
		}
		ext.Checks[chk.CheckID] = chk
	}
	// Service names and tags on checks follow their services. The
	// checks may be shared with the node's previous state (which a
	// gossip encoding may be reading): change copies.
	for id, chk := range ext.Checks {
		if s := ext.Services[chk.ServiceID]; s != nil {
			cp := *chk
			cp.ServiceName, cp.ServiceTags = s.Name, s.Tags
			ext.Checks[id] = &cp
		}
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.saveExternal(name, ext); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.setExternalLocked(key, ext)
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

// fixedCheck turns a registered check into a fixed-status check of node.
func fixedCheck(in *Check, node string, service func(id string) *Service) (*Check, error) {
	chk := in.clone()
	if chk.CheckID == "" {
		chk.CheckID = chk.Name
	}
	if chk.CheckID == "" {
		return nil, invalid("Missing check ID: a check of node %q has neither CheckID nor Name", node)
	}
	if chk.Status == "" {
		chk.Status = StatusCritical
	}
	if !ValidStatus(chk.Status) {
		return nil, invalid("Status for checks must 'passing', 'warning', 'critical': check %q has Status %q", chk.CheckID, chk.Status)
	}
	if chk.CheckID == SerfCheckID {
		return nil, invalid("check %q: %q is the node health check that membership maintains; give the check another CheckID", chk.CheckID, SerfCheckID)
	}
	if chk.ServiceID != "" && service(chk.ServiceID) == nil {
		return nil, invalid("check %q: ServiceID %q is not a service of node %q; register the service first (or in the same request)", chk.CheckID, chk.ServiceID, node)
	}
	chk.Node = node
	// A registered check runs nowhere; its Type and Definition are kept
	// as the registration gave them (Consul's catalog does the same).
	chk.Output = truncateOutput(chk.Output)
	chk.CreateIndex, chk.ModifyIndex = 0, 0
	normalizeCheck(chk)
	return chk, nil
}

// registerOwn applies a catalog registration on this agent's own node:
// its service and checks become local ones (checks with fixed statuses).
// The node's own fields (address, meta) are the agent's and stay.
func (c *Catalog) registerOwn(reg Registration) error {
	var svc *Service
	if reg.Service != nil {
		svc = reg.Service.clone()
		if err := c.checkService(svc); err != nil {
			return err
		}
	}
	return c.durable(c.registerOwnLocked(reg, svc))
}

func (c *Catalog) registerOwnLocked(reg Registration, svc *Service) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lookup := func(id string) *Service {
		if svc != nil && svc.ID == id {
			return svc
		}
		return c.services[id]
	}
	var defs []checks.Definition
	for _, in := range reg.Checks {
		chk, err := fixedCheck(in, c.cfg.NodeName, lookup)
		if err != nil {
			return 0, err
		}
		if lc := c.checks[chk.CheckID]; lc != nil && lc.def.Type() != "" {
			return 0, invalid("check %q is a %s check of this agent's, run by the agent; update it through /v1/agent/check, not the catalog", chk.CheckID, lc.def.Type())
		}
		defs = append(defs, checks.Definition{
			ID: chk.CheckID, Name: chk.Name, ServiceID: chk.ServiceID, Notes: chk.Notes,
			Status: checks.Status(chk.Status), Output: chk.Output,
		})
	}
	var seq uint64
	if c.store != nil {
		var err error
		if svc != nil {
			if seq, err = c.store.saveService(svc); err != nil {
				return 0, err
			}
		}
		for _, d := range defs {
			if seq, err = c.store.saveCheck(d); err != nil {
				return 0, err
			}
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	if svc != nil {
		svc.Node = c.cfg.NodeName
		c.setServiceLocked(svc)
	}
	for _, d := range defs {
		c.setCheckLocked(newLocalCheck(d, nil))
	}
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

// checkNodeOwner refuses to touch a node that another agent owns: an
// agent's own node, or an external node registered through another agent.
func (c *Catalog) checkNodeOwner(name string) error {
	if c.cfg.Members != nil {
		_, ms := c.cfg.Members.Members(nil)
		for _, m := range ms {
			if lower(m.Name) == lower(name) && m.Status != MemberLeft {
				return notOwner("node %q is the node of agent %q, which alone registers its entries; use that agent's API", name, m.Name)
			}
		}
	}
	tx := c.state.db.Txn(false)
	defer tx.Abort()
	if n := nodeTxn(tx, name); n != nil {
		if o := n.Origin; lower(o) != lower(c.cfg.NodeName) {
			return notOwner("node %q was registered through agent %q, which alone changes it; use that agent's API", name, o)
		}
	}
	return nil
}

// Deregister applies a catalog deregistration: a service, a check, or a
// whole external node. Entries that do not exist are not an error, as in
// Consul.
func (c *Catalog) Deregister(d Deregistration) error {
	if d.Node == "" {
		return invalid("Must provide node: give the deregistration a \"Node\"")
	}
	if lower(d.Node) == lower(c.cfg.NodeName) {
		switch {
		case d.ServiceID != "":
			err := c.DeregisterService(d.ServiceID)
			if errorsIsNotFound(err) {
				return nil
			}
			return err
		case d.CheckID != "":
			err := c.DeregisterCheck(d.CheckID)
			if errorsIsNotFound(err) {
				return nil
			}
			return err
		}
		return invalid("node %q is this agent's own node and cannot be deregistered; stop the agent with leave instead, or name a ServiceID or CheckID", d.Node)
	}
	if err := c.checkNodeOwner(d.Node); err != nil {
		return err
	}
	return c.durable(c.deregisterExternal(d))
}

func (c *Catalog) deregisterExternal(d Deregistration) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := lower(d.Node)
	old := c.external[key]
	if old == nil {
		return 0, nil
	}
	var next *externalNode
	switch {
	case d.ServiceID != "" || d.CheckID != "":
		ext := &externalNode{Node: old.Node, Services: map[string]*Service{}, Checks: map[string]*Check{}}
		for id, s := range old.Services {
			if id != d.ServiceID {
				ext.Services[id] = s
			}
		}
		for id, ch := range old.Checks {
			if id != d.CheckID && (d.ServiceID == "" || ch.ServiceID != d.ServiceID) {
				ext.Checks[id] = ch
			}
		}
		if len(ext.Services) == len(old.Services) && len(ext.Checks) == len(old.Checks) {
			return 0, nil
		}
		next = ext
	}
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.saveExternal(old.Node.Node, next); err != nil {
			return 0, err
		}
	}
	if err := c.bumpLocked(); err != nil {
		return 0, err
	}
	c.setExternalLocked(key, next)
	c.flushOutputLocked()
	c.commitLocked()
	c.compactLocked()
	return seq, nil
}

func errorsIsNotFound(err error) bool {
	e, ok := err.(*invalidError)
	return ok && e.kind == ErrNotFound
}
