package catalog

import "fmt"

// The transaction ledger: which /v1/txn intents (agent/catalogtxn) have
// had their catalog half applied here. A transaction that mixes KV and
// catalog operations commits through Raft with an intent (its catalog
// steps) under a KV key; the agent then applies the steps to this catalog
// and records the intent's ID here, durably, before it deletes the key.
// After a crash, an intent still in the KV store is applied again unless
// the ledger has it: replaying a recorded intent could undo a later
// change of the same entries. Recorded IDs live in the catalog log and
// survive its compaction until ForgetTxn.

// TxnApplied reports whether the intent id has been applied here.
func (c *Catalog) TxnApplied(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txns[id]
}

// AppliedTxns returns the IDs of the intents applied and not forgotten.
func (c *Catalog) AppliedTxns() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.txns))
	for id := range c.txns {
		out = append(out, id)
	}
	return out
}

// MarkTxnApplied records, on disk before it returns, that the intent id
// has been applied.
func (c *Catalog) MarkTxnApplied(id string) error {
	if id == "" {
		return fmt.Errorf("record an applied transaction: empty intent ID")
	}
	c.mu.Lock()
	var seq uint64
	if c.store != nil {
		var err error
		if seq, err = c.store.append(logLine{Op: opTxn, ID: id}, "transaction "+quote(id)); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	if c.txns == nil {
		c.txns = map[string]bool{}
	}
	c.txns[id] = true
	c.mu.Unlock()
	return c.durable(seq, nil)
}

// ForgetTxn drops id from the ledger once its intent is gone from the KV
// store. It does not wait for the disk: a forget lost in a crash leaves
// an ID whose intent no longer exists, which the next pass forgets again.
func (c *Catalog) ForgetTxn(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.txns[id] {
		return nil
	}
	if c.store != nil {
		if _, err := c.store.append(logLine{Op: opTxnForget, ID: id}, "transaction "+quote(id)); err != nil {
			return err
		}
	}
	delete(c.txns, id)
	c.compactLocked()
	return nil
}

// TxnStep is one catalog write of a transaction: a registration or a
// deregistration (exactly one is set).
type TxnStep struct {
	Register   *Registration   `json:",omitempty"`
	Deregister *Deregistration `json:",omitempty"`
}

// CheckTxn runs, without writing anything, the checks that Register and
// Deregister would make on steps applied in order, so that a transaction
// refused for bad input is refused before anything of it commits. The
// entries steps register earlier count for the later ones (a check of a
// service registered by a previous step).
func (c *Catalog) CheckTxn(steps []TxnStep) error {
	// services[node][id]: the services as the steps leave them, for the
	// ServiceID of checks; nil map: read from the catalog.
	services := map[string]map[string]bool{}
	const wiped = "\x00" // the node was deregistered: nothing of the catalog counts
	hasService := func(node, id string) bool {
		key := lower(node)
		if m, ok := services[key]; ok {
			if v, ok := m[id]; ok || m[wiped] {
				return v
			}
		}
		if key == lower(c.cfg.NodeName) {
			return c.LocalService(id) != nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		ext := c.external[key]
		return ext != nil && ext.Services[id] != nil
	}
	set := func(node, id string, v bool) {
		key := lower(node)
		if services[key] == nil {
			services[key] = map[string]bool{}
		}
		services[key][id] = v
	}
	for i, st := range steps {
		if err := c.checkStep(st, hasService, set, services, wiped); err != nil {
			return &TxnStepError{Step: i, Err: err}
		}
	}
	return nil
}

// TxnStepError is CheckTxn's error: the step that would fail, and why.
type TxnStepError struct {
	Step int
	Err  error
}

func (e *TxnStepError) Error() string { return fmt.Sprintf("step %d: %v", e.Step, e.Err) }
func (e *TxnStepError) Unwrap() error { return e.Err }

func (c *Catalog) checkStep(st TxnStep, hasService func(node, id string) bool, set func(node, id string, v bool), services map[string]map[string]bool, wiped string) error {
	{
		switch {
		case st.Register != nil:
			reg := st.Register
			name := reg.Node.Node
			if name == "" {
				return invalid("Must provide node: give the registration a \"Node\"")
			}
			own := lower(name) == lower(c.cfg.NodeName)
			if !own {
				if reg.Node.Address == "" && !reg.SkipNodeUpdate {
					return invalid("Must provide address: node %q needs an \"Address\"", name)
				}
				if err := c.checkNodeOwner(name); err != nil {
					return err
				}
				if err := checkMeta("node "+quote(name), reg.Node.Meta); err != nil {
					return err
				}
			}
			if reg.Service != nil {
				svc := reg.Service.clone()
				if err := c.checkService(svc); err != nil {
					return err
				}
				set(name, svc.ID, true)
			}
			for _, in := range reg.Checks {
				chk, err := fixedCheck(in, name, func(id string) *Service {
					if hasService(name, id) {
						return &Service{ID: id}
					}
					return nil
				})
				if err != nil {
					return err
				}
				if own {
					c.mu.Lock()
					lc := c.checks[chk.CheckID]
					c.mu.Unlock()
					if lc != nil && lc.def.Type() != "" {
						return invalid("check %q is a %s check of this agent's, run by the agent; update it through /v1/agent/check, not the catalog", chk.CheckID, lc.def.Type())
					}
				}
			}
		case st.Deregister != nil:
			d := st.Deregister
			if d.Node == "" {
				return invalid("Must provide node: give the deregistration a \"Node\"")
			}
			if lower(d.Node) == lower(c.cfg.NodeName) {
				if d.ServiceID == "" && d.CheckID == "" {
					return invalid("node %q is this agent's own node and cannot be deregistered; stop the agent with leave instead, or name a ServiceID or CheckID", d.Node)
				}
			} else if err := c.checkNodeOwner(d.Node); err != nil {
				return err
			}
			if d.ServiceID != "" {
				set(d.Node, d.ServiceID, false)
			}
			if d.ServiceID == "" && d.CheckID == "" {
				services[lower(d.Node)] = map[string]bool{wiped: true}
			}
		default:
			return invalid("a transaction step with neither a registration nor a deregistration")
		}
	}
	return nil
}
