package catalog

import "slices"

// Incremental writes of this agent's own entries. A local change touches
// one service (or one node's checks, or one external node), so its apply
// must cost the same whether the node has ten services or ten thousand:
// applyDelta writes only the rows named, where apply would compare every
// row of the origin.

// nodeDelta is a change to one of an origin's nodes. Either Full is the
// node's whole new state, or Gone removes the node with everything on it,
// or the node row is Node (with its checks Checks when SetChecks; they
// include serfHealth) and Instances are the instances that changed, by
// service ID (a nil value: the instance is gone).
type nodeDelta struct {
	Name      string
	Full      *nodeState
	Gone      bool
	Node      *Node
	SetChecks bool
	Checks    []*Check
	Instances map[string]*instanceState
}

// instanceState is one instance as its owner has it, with all its checks.
type instanceState struct {
	S      *Service
	Checks []*Check
}

// applyDelta applies origin's changes. Ownership works as in apply: a
// node another origin owns is skipped (a conflict) unless it is origin's
// own node.
func (s *state) applyDelta(origin string, deltas []nodeDelta) applyResult {
	tx := s.db.Txn(true)
	defer tx.Abort()
	w := &writer{tx: tx, idx: s.index.Load() + 1, touched: map[string]bool{}, tables: map[string]bool{}}
	var res applyResult
	for _, d := range deltas {
		key := lower(d.Name)
		existing := w.node(key)
		if existing != nil && existing.Origin != origin {
			if d.Gone {
				continue
			}
			if key != lower(origin) {
				res.conflicts = append(res.conflicts, d.Name)
				continue
			}
			w.deleteNode(existing)
			existing = nil
		}
		switch {
		case d.Gone:
			if existing != nil {
				w.deleteNode(existing)
			}
			continue
		case d.Full != nil:
			w.putNode(origin, *d.Full, existing)
			continue
		}
		checks := d.Checks
		if !d.SetChecks && existing != nil {
			checks = slices.Clone(existing.Checks) // putNodeRow sorts it
		}
		nodeMoved := w.putNodeRow(origin, d.Node, checks, existing)
		for id, inst := range d.Instances {
			k := key2(key, id)
			raw, err := tx.First(tableServices, "id", k)
			must(err)
			var prev *serviceRow
			if raw != nil {
				prev = raw.(*serviceRow)
			}
			switch {
			case inst != nil:
				w.putInstance(d.Node.Node, k, inst.S, inst.Checks, prev)
			case prev != nil:
				w.deleteInstance(prev)
			}
		}
		if nodeMoved {
			// The node's health is in every answer of a service on it.
			for _, r := range w.services(key) {
				w.touched[r.LName] = true
			}
		}
	}
	if !w.changed {
		return res
	}
	s.finish(w)
	s.index.Store(w.idx)
	tx.Commit()
	res.changed = true
	return res
}
