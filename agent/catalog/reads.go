package catalog

import (
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Reads. Each returns the index of its answer and adds to ws (which may
// be nil) the channels that close when the answer can have changed. The
// values returned are shared with the catalog and other readers: never
// modify them.

// Index is the catalog's latest index: the highest any answer can have.
func (c *Catalog) Index() uint64 { return c.state.index.Load() }

func (c *Catalog) read() *memdb.Txn { return c.state.db.Txn(false) }

func orNew(ws memdb.WatchSet) memdb.WatchSet {
	if ws == nil {
		return memdb.NewWatchSet()
	}
	return ws
}

// Services returns every service name with the union of its instances'
// tags, sorted (/v1/catalog/services).
func (c *Catalog) Services(ws memdb.WatchSet, f Filter) (uint64, map[string][]string) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableServices)
	if len(f.NodeMeta) > 0 {
		idx = max(idx, tablesIndex(tx, ws, tableNodes))
	}
	it, err := tx.Get(tableServices, "id")
	must(err)
	out := map[string][]string{}
	seen := map[string]map[string]bool{}
	nodeOK := map[string]bool{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if len(f.NodeMeta) > 0 {
			ok, known := nodeOK[r.S.Node]
			if !known {
				n := nodeTxn(tx, r.S.Node)
				ok = n != nil && f.nodeOK(n.N)
				nodeOK[r.S.Node] = ok
			}
			if !ok {
				continue
			}
		}
		if !f.tagsOK(r.S) {
			continue
		}
		name := r.S.Name
		tags, ok := out[name]
		if !ok {
			tags = []string{}
			seen[name] = map[string]bool{}
		}
		for _, t := range r.S.Tags {
			if !seen[name][t] {
				seen[name][t] = true
				tags = append(tags, t)
			}
		}
		out[name] = tags
	}
	for _, tags := range out {
		slices.Sort(tags)
	}
	return idx, out
}

// ServiceNodes returns the instances of a service, without checks
// (/v1/catalog/service/<name>); with f.Passing, only those whose checks
// all pass.
func (c *Catalog) ServiceNodes(ws memdb.WatchSet, name string, f Filter) (uint64, []Instance) {
	idx, out := c.state.instances(orNew(ws), name, f, false)
	if f.Passing {
		for i := range out {
			out[i].Checks = nil
		}
	}
	return idx, out
}

// ServiceHealth returns the instances of a service with their checks
// (/v1/health/service/<name>): the node's checks (serfHealth first), then
// the instance's. This is what DNS answers from, with f.Passing.
func (c *Catalog) ServiceHealth(ws memdb.WatchSet, name string, f Filter) (uint64, []Instance) {
	return c.state.instances(orNew(ws), name, f, true)
}

// ServiceIndex is the index ServiceNodes and ServiceHealth would answer
// name and f at, and it adds the same channels to ws, but it reads no
// instance: a reader that keeps their answers by index (the HTTP API's
// encoded answers) learns from it alone whether its copy is current.
func (c *Catalog) ServiceIndex(ws memdb.WatchSet, name string, f Filter) uint64 {
	tx := c.read()
	defer tx.Abort()
	return instancesIndex(tx, orNew(ws), name, f)
}

// instancesIndex is the index of a service's instances as f selects
// them: the service's own, and the nodes' when f reads node meta (a node
// that gains or loses the meta joins or leaves the answer).
func instancesIndex(tx *memdb.Txn, ws memdb.WatchSet, name string, f Filter) uint64 {
	idx := serviceIndex(tx, ws, name)
	if len(f.NodeMeta) > 0 {
		idx = max(idx, tablesIndex(tx, ws, tableNodes))
	}
	return idx
}

// Nodes returns every node, sorted by name (/v1/catalog/nodes).
func (c *Catalog) Nodes(ws memdb.WatchSet, f Filter) (uint64, []*Node) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes)
	it, err := tx.Get(tableNodes, "id")
	must(err)
	var out []*Node
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n := raw.(*nodeRow).N
		if f.nodeOK(n) {
			out = append(out, n)
		}
	}
	return idx, out
}

// NodesIndex is the index Nodes would answer at, and it adds the same
// channel to ws, without reading a node: a watcher of node changes pays
// nothing per node for each change.
func (c *Catalog) NodesIndex(ws memdb.WatchSet) uint64 {
	tx := c.read()
	defer tx.Abort()
	return tablesIndex(tx, orNew(ws), tableNodes)
}

// nodeServices returns the instance rows of a node, in service ID order.
func nodeServices(tx *memdb.Txn, node string) []*serviceRow {
	it, err := tx.Get(tableServices, "id_prefix", lower(node)+"\x00")
	must(err)
	var out []*serviceRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*serviceRow))
	}
	return out
}

// Node returns a node and its services (/v1/catalog/node/<node>); nil when
// there is no such node.
func (c *Catalog) Node(ws memdb.WatchSet, name string) (uint64, *Node, []*Service) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes, tableServices)
	n := nodeTxn(tx, name)
	if n == nil {
		return idx, nil, nil
	}
	var svcs []*Service
	for _, r := range nodeServices(tx, name) {
		svcs = append(svcs, r.S)
	}
	return idx, n.N, svcs
}

// ServiceChecks returns the checks of every instance of a service, not
// its nodes' checks (/v1/health/checks/<service>).
func (c *Catalog) ServiceChecks(ws memdb.WatchSet, name string, f Filter) (uint64, []*Check) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := serviceIndex(tx, ws, name)
	if len(f.NodeMeta) > 0 {
		idx = max(idx, tablesIndex(tx, ws, tableNodes))
	}
	it, err := tx.Get(tableServices, "service", lower(name))
	must(err)
	var out []*Check
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if len(f.NodeMeta) > 0 {
			if n := nodeTxn(tx, r.S.Node); n == nil || !f.nodeOK(n.N) {
				continue
			}
		}
		out = append(out, r.Checks...)
	}
	return idx, out
}

// NodeChecks returns a node's checks, its own and its services', sorted by
// check ID (/v1/health/node/<node>).
func (c *Catalog) NodeChecks(ws memdb.WatchSet, node string) (uint64, []*Check) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes, indexChecks)
	n := nodeTxn(tx, node)
	if n == nil {
		return idx, nil
	}
	out := slices.Clone(n.Checks)
	for _, r := range nodeServices(tx, node) {
		out = append(out, r.Checks...)
	}
	sortChecks(out)
	return idx, out
}

// ChecksInState returns every check in a status, or all of them for "any"
// (/v1/health/state/<state>), sorted by node and check ID. An unknown
// state is ErrInvalid. It scans every row: an index on status would cost
// more memory than this rare query costs time.
func (c *Catalog) ChecksInState(ws memdb.WatchSet, status string, f Filter) (uint64, []*Check, error) {
	if status != "any" && !ValidStatus(status) {
		return 0, nil, invalid("Invalid state %q: use any, passing, warning or critical", status)
	}
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes, indexChecks)
	keep := func(out []*Check, cs []*Check) []*Check {
		for _, ch := range cs {
			if status == "any" || ch.Status == status {
				out = append(out, ch)
			}
		}
		return out
	}
	var out []*Check
	it, err := tx.Get(tableNodes, "id")
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n := raw.(*nodeRow)
		if !f.nodeOK(n.N) {
			continue
		}
		out = keep(out, n.Checks)
		for _, r := range nodeServices(tx, n.N.Node) {
			out = keep(out, r.Checks)
		}
	}
	sortChecks(out)
	return idx, out, nil
}

// sortChecks orders checks by node, then check ID.
func sortChecks(cs []*Check) {
	sort.SliceStable(cs, func(i, j int) bool {
		if a, b := lower(cs[i].Node), lower(cs[j].Node); a != b {
			return a < b
		}
		return cs[i].CheckID < cs[j].CheckID
	})
}

// AllInstances returns every instance of every service with its node and
// checks, in service name, node and ID order: for consumers that rebuild
// a whole view on each change (DNS zones, the VIP reconciler). Its index
// and watch channels are the table-level ones (nodes, services, checks).
func (c *Catalog) AllInstances(ws memdb.WatchSet) (uint64, []Instance) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes, tableServices, indexChecks)
	it, err := tx.Get(tableServices, "service_prefix", "")
	must(err)
	var out []Instance
	nodes := map[string]*nodeRow{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		n, ok := nodes[r.S.Node]
		if !ok {
			n = nodeTxn(tx, r.S.Node)
			nodes[r.S.Node] = n
		}
		if n == nil {
			continue
		}
		checks := make([]*Check, 0, len(n.Checks)+len(r.Checks))
		checks = append(append(checks, n.Checks...), r.Checks...)
		out = append(out, Instance{Node: n.N, Service: r.S, Checks: checks})
	}
	return idx, out
}

// Changes is the catalog's change feed: the services whose health
// answers (ServiceHealth) can have changed after index since, by
// lower-case name, deleted services included, in index order. It adds to
// ws a channel that closes on the next change of any service. reset is
// true when since is 0 or older than the feed remembers: the caller must
// then re-read every service. A consumer keeps the index returned and
// passes it back next time; names is empty when nothing changed.
//
// Node changes reach the feed through the services on the node; a
// change to a node with no services moves only Nodes' index.
func (c *Catalog) Changes(ws memdb.WatchSet, since uint64) (index uint64, names []string, reset bool) {
	ws = orNew(ws)
	tx := c.read()
	defer tx.Abort()
	index = tablesIndex(tx, ws, tableServices, tableNodes, indexChecks)
	if since == 0 || since < c.state.feedFloor.Load() {
		return index, nil, true
	}
	it, err := tx.LowerBound(tableIndex, "value", since+1)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*indexRow)
		if name, ok := strings.CutPrefix(r.Key, serviceIndexPrefix); ok {
			names = append(names, name)
		}
	}
	return index, names, false
}
