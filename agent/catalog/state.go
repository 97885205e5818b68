package catalog

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
)

// The read side: every node, service and check this agent knows, its own
// and the replicas, in go-memdb tables with watch channels. Rows are
// written only by apply, one owner (origin) at a time, as a diff against
// what is there: a row that did not change keeps its indexes and wakes
// nobody.
//
// A row is what reads need together: a node with its node checks, an
// instance (one service on one node) with its service checks. Each memdb
// index entry costs some 400 bytes, so at 100,000 instances a table of
// checks with its own indexes would cost more than everything else.

const (
	tableNodes    = "nodes"
	tableServices = "services"
	tableIndex    = "index"

	// indexChecks is the index row that moves with any check.
	indexChecks = "checks"
	// serviceIndexPrefix + lower-case service name is the index row of
	// one service: it moves when anything in a health answer for that
	// service can have changed (Consul's "service.<name>").
	serviceIndexPrefix = "service."
)

// nodeRow is a node and its node checks (serfHealth first).
type nodeRow struct {
	Key    string // lower-case node name
	Origin string // the agent that owns the node
	N      *Node
	Checks []*Check
}

// serviceRow is one instance and its checks, sorted by ID. Its Key's
// prefix (lower-case node NUL) finds a node's instances.
type serviceRow struct {
	Key    string // lower-case node NUL service ID
	LName  string // lower-case service name
	S      *Service
	Checks []*Check
}

type indexRow struct {
	Key   string
	Value uint64
	// Gone marks the row of a service that has no instance left: a
	// tombstone, kept so the change feed reports the deletion.
	Gone bool
}

// maxTombstones bounds the rows of deleted services. Past it they are
// all dropped at once and the change feed answers "start over" to
// readers from before that point (reset), which costs each of them one
// full read.
const maxTombstones = 4096

func schema() *memdb.DBSchema {
	str := func(field string) memdb.Indexer { return &memdb.StringFieldIndex{Field: field} }
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id":     {Name: "id", Unique: true, Indexer: str("Key")},
			"origin": {Name: "origin", Indexer: str("Origin")},
		}},
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":      {Name: "id", Unique: true, Indexer: str("Key")},
			"service": {Name: "service", Indexer: str("LName")},
		}},
		tableIndex: {Name: tableIndex, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: str("Key")},
			// value orders the rows by index: the change feed reads
			// the rows that moved after a given index without a scan.
			"value": {Name: "value", Indexer: &memdb.UintFieldIndex{Field: "Value"}},
		}},
	}}
}

// state is the indexed read side. Safe for concurrent use: memdb
// serializes writers, readers never block.
type state struct {
	db *memdb.MemDB
	// index is the last index written. It starts at the boot time in
	// milliseconds, so it only grows across restarts too and a client
	// holding an index from before a restart is not confused by a reused
	// number.
	index atomic.Uint64
	// feedFloor is the highest index whose change-feed rows were dropped
	// (tombstones reaped): Changes since an older index must reset.
	// tombstones counts the tombstone rows. Both are written under
	// memdb's writer lock (one apply at a time).
	feedFloor  atomic.Uint64
	tombstones int
}

func newState(now time.Time) *state {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant: an error is a programming error.
		panic(fmt.Sprintf("catalog: invalid memdb schema: %v", err))
	}
	s := &state{db: db}
	s.index.Store(uint64(max(now.UnixMilli(), 1)))
	return s
}

func lower(s string) string { return strings.ToLower(s) }

func key2(a, b string) string { return lower(a) + "\x00" + b }

// nodeState is one node as its owner publishes it, with all its services
// and checks.
type nodeState struct {
	Node     *Node
	Services []*Service
	Checks   []*Check
}

// applyResult says what an apply did.
type applyResult struct {
	changed bool
	// conflicts are node names the origin published but another origin
	// owns; they were skipped.
	conflicts []string
}

// apply makes origin's rows exactly desired. A node named like an agent
// belongs to that agent: when origin publishes its own node, it takes it
// over from whoever registered that name before; any other node belongs to
// the first origin that registered it. apply does not modify desired and
// keeps no reference to its slices.
func (s *state) apply(origin string, desired []nodeState) applyResult {
	tx := s.db.Txn(true)
	defer tx.Abort()
	w := &writer{tx: tx, idx: s.index.Load() + 1, touched: map[string]bool{}, tables: map[string]bool{}}
	var res applyResult

	want := map[string]bool{}
	for _, ns := range desired {
		key := lower(ns.Node.Node)
		existing := w.node(key)
		if existing != nil && existing.Origin != origin {
			if key != lower(origin) {
				res.conflicts = append(res.conflicts, ns.Node.Node)
				continue
			}
			w.deleteNode(existing)
			existing = nil
		}
		want[key] = true
		w.putNode(origin, ns, existing)
	}
	it, err := tx.Get(tableNodes, "origin", origin)
	must(err)
	var gone []*nodeRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*nodeRow); !want[r.Key] {
			gone = append(gone, r)
		}
	}
	for _, r := range gone {
		w.deleteNode(r)
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

// writer is one apply's write transaction: what it touched, for the index
// rows.
type writer struct {
	tx      *memdb.Txn
	idx     uint64
	changed bool
	touched map[string]bool // lower-case service names whose answers changed
	tables  map[string]bool // index rows to move: tables, and indexChecks
}

func must(err error) {
	if err != nil {
		// Only a schema mismatch fails a memdb operation: a programming error.
		panic(fmt.Sprintf("catalog: memdb: %v", err))
	}
}

func (w *writer) node(key string) *nodeRow {
	raw, err := w.tx.First(tableNodes, "id", key)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*nodeRow)
}

func (w *writer) mark(table string) {
	w.changed = true
	w.tables[table] = true
}

// services returns the instance rows of a node.
func (w *writer) services(key string) []*serviceRow {
	it, err := w.tx.Get(tableServices, "id_prefix", key+"\x00")
	must(err)
	var out []*serviceRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*serviceRow))
	}
	return out
}

// storeChecks gives each of want its stored form (Node set, indexes): the
// stored one of have when equal, keeping its indexes, else a new copy
// with this write's index. changed reports whether the set differs.
func (w *writer) storeChecks(node string, want []*Check, have []*Check) (out []*Check, changed bool) {
	byID := make(map[string]*Check, len(have))
	for _, c := range have {
		byID[c.CheckID] = c
	}
	changed = len(want) != len(have)
	for _, c := range want {
		prev := byID[c.CheckID]
		if prev != nil && equalCheck(prev, c) {
			out = append(out, prev)
			continue
		}
		changed = true
		cp := *c // shallow: stored values' slices and maps are never modified in place
		cp.Node = node
		cp.CreateIndex, cp.ModifyIndex = w.idx, w.idx
		if prev != nil {
			cp.CreateIndex = prev.CreateIndex
		}
		out = append(out, &cp)
	}
	return out, changed
}

func (w *writer) putNode(origin string, ns nodeState, existing *nodeRow) {
	key := lower(ns.Node.Node)
	name := ns.Node.Node

	// Sort the checks out: the node's own (serfHealth first), and each
	// instance's. A check of a service the node does not have is dropped.
	svcIDs := make(map[string]bool, len(ns.Services))
	for _, s := range ns.Services {
		svcIDs[s.ID] = true
	}
	var nodeChecks []*Check
	svcChecks := map[string][]*Check{}
	for _, c := range ns.Checks {
		switch {
		case c.ServiceID == "":
			nodeChecks = append(nodeChecks, c)
		case svcIDs[c.ServiceID]:
			svcChecks[c.ServiceID] = append(svcChecks[c.ServiceID], c)
		}
	}
	nodeMoved := w.putNodeRow(origin, ns.Node, nodeChecks, existing)

	// The instance rows.
	old := map[string]*serviceRow{}
	names := map[string]bool{} // every service name on the node, before and after
	for _, r := range w.services(key) {
		old[r.Key] = r
		names[r.LName] = true
	}
	for _, svc := range ns.Services {
		k := key2(key, svc.ID)
		names[lower(svc.Name)] = true
		prev := old[k]
		delete(old, k)
		w.putInstance(name, k, svc, svcChecks[svc.ID], prev)
	}
	for _, r := range old {
		w.deleteInstance(r)
	}

	// A change to the node or to a node check changes the health
	// answers of every service on it.
	if nodeMoved {
		for n := range names {
			w.touched[n] = true
		}
	}
}

// putNodeRow writes a node's row when the node or its checks changed,
// and says whether it did. It sorts checks.
func (w *writer) putNodeRow(origin string, node *Node, checks []*Check, existing *nodeRow) bool {
	sortNodeChecks(checks)
	var haveChecks []*Check
	if existing != nil {
		haveChecks = existing.Checks
	}
	stored, nodeChecksChanged := w.storeChecks(node.Node, checks, haveChecks)
	nodeChanged := existing == nil || existing.Origin != origin || !equalNode(existing.N, node)
	if !nodeChanged && !nodeChecksChanged {
		return false
	}
	n := existing.nodeOrNil()
	if nodeChanged {
		n = new(Node)
		*n = *node
		n.CreateIndex, n.ModifyIndex = w.idx, w.idx
		if existing != nil {
			n.CreateIndex = existing.N.CreateIndex
		}
		w.mark(tableNodes)
	}
	if nodeChecksChanged {
		w.mark(indexChecks)
	}
	must(w.tx.Insert(tableNodes, &nodeRow{Key: lower(node.Node), Origin: origin, N: n, Checks: stored}))
	return true
}

// putInstance writes the row of one instance (key k) on node name when it
// changed from prev (nil: new). It sorts want, the instance's checks.
func (w *writer) putInstance(name, k string, svc *Service, want []*Check, prev *serviceRow) {
	lname := lower(svc.Name)
	var havePrev []*Check
	if prev != nil {
		havePrev = prev.Checks
	}
	slices.SortFunc(want, func(a, b *Check) int { return strings.Compare(a.CheckID, b.CheckID) })
	checks, checksChanged := w.storeChecks(name, want, havePrev)
	svcChanged := prev == nil || !equalService(prev.S, svc)
	if !svcChanged && !checksChanged {
		return
	}
	s := prev.serviceOrNil()
	if svcChanged {
		cp := *svc
		cp.Node = name
		cp.CreateIndex, cp.ModifyIndex = w.idx, w.idx
		if prev != nil {
			cp.CreateIndex = prev.S.CreateIndex
		}
		s = &cp
		w.mark(tableServices)
	}
	if checksChanged {
		w.mark(indexChecks)
	}
	if prev != nil {
		w.touched[prev.LName] = true
	}
	must(w.tx.Insert(tableServices, &serviceRow{Key: k, LName: lname, S: s, Checks: checks}))
	w.touched[lname] = true
}

func (w *writer) deleteInstance(r *serviceRow) {
	must(w.tx.Delete(tableServices, r))
	w.touched[r.LName] = true
	w.mark(tableServices)
	if len(r.Checks) > 0 {
		w.mark(indexChecks)
	}
}

func (r *nodeRow) nodeOrNil() *Node {
	if r == nil {
		return nil
	}
	return r.N
}

func (r *serviceRow) serviceOrNil() *Service {
	if r == nil {
		return nil
	}
	return r.S
}

func (w *writer) deleteNode(r *nodeRow) {
	must(w.tx.Delete(tableNodes, r))
	w.mark(tableNodes)
	if len(r.Checks) > 0 {
		w.mark(indexChecks)
	}
	for _, s := range w.services(r.Key) {
		w.deleteInstance(s)
	}
}

// finish writes the index rows of every changed table and touched
// service. A service with no instance left keeps its row as a tombstone
// (Gone), so that the change feed reports it; its readers see the
// tombstone's index, which this write moved. Past maxTombstones the
// tombstones are dropped and the feed's floor rises.
func (s *state) finish(w *writer) {
	for t := range w.tables {
		must(w.tx.Insert(tableIndex, &indexRow{Key: t, Value: w.idx}))
	}
	for name := range w.touched {
		k := serviceIndexPrefix + name
		raw, err := w.tx.First(tableServices, "service", name)
		must(err)
		old, err := w.tx.First(tableIndex, "id", k)
		must(err)
		wasGone := old != nil && old.(*indexRow).Gone
		gone := raw == nil
		switch {
		case gone && old == nil:
			continue // created and deleted in one write: nobody saw it
		case gone && !wasGone:
			s.tombstones++
		case !gone && wasGone:
			s.tombstones--
		}
		must(w.tx.Insert(tableIndex, &indexRow{Key: k, Value: w.idx, Gone: gone}))
	}
	if s.tombstones > maxTombstones {
		s.reapTombstones(w)
	}
}

// reapTombstones drops every tombstone row. Readers of the feed from
// before this write start over (Changes answers reset).
func (s *state) reapTombstones(w *writer) {
	it, err := w.tx.Get(tableIndex, "id_prefix", serviceIndexPrefix)
	must(err)
	var gone []*indexRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*indexRow); r.Gone {
			gone = append(gone, r)
		}
	}
	for _, r := range gone {
		must(w.tx.Delete(tableIndex, r))
	}
	s.tombstones = 0
	s.feedFloor.Store(w.idx)
}

// sortNodeChecks orders a node's checks as Consul lists them: serfHealth
// first, then by check ID.
func sortNodeChecks(cs []*Check) {
	slices.SortStableFunc(cs, func(a, b *Check) int {
		switch {
		case a.CheckID == b.CheckID:
			return 0
		case a.CheckID == SerfCheckID:
			return -1
		case b.CheckID == SerfCheckID:
			return 1
		}
		return strings.Compare(a.CheckID, b.CheckID)
	})
}

func equalNode(a, b *Node) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	return reflect.DeepEqual(x, y)
}

func equalService(a, b *Service) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	x.Node, y.Node = "", ""
	return reflect.DeepEqual(x, y)
}

func equalCheck(a, b *Check) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	x.Node, y.Node = "", ""
	return reflect.DeepEqual(x, y)
}

// ---- reads ----

// watchIndex reads the index row key and adds its watch channel to ws:
// the row's own channel when it exists, else one that fires when it is
// created. ok is false when there is no such row.
func watchIndex(tx *memdb.Txn, ws memdb.WatchSet, key string) (uint64, bool) {
	ch, raw, err := tx.FirstWatch(tableIndex, "id", key)
	must(err)
	ws.Add(ch)
	if raw == nil {
		return 0, false
	}
	return raw.(*indexRow).Value, true
}

// tablesIndex is the highest index of the tables (or indexChecks),
// watching each; at least 1, so that clients never see 0.
func tablesIndex(tx *memdb.Txn, ws memdb.WatchSet, tables ...string) uint64 {
	var idx uint64 = 1
	for _, t := range tables {
		if v, ok := watchIndex(tx, ws, t); ok {
			idx = max(idx, v)
		}
	}
	return idx
}

// serviceIndex is the index of one service's answers.
func serviceIndex(tx *memdb.Txn, ws memdb.WatchSet, name string) uint64 {
	ch, raw, err := tx.FirstWatch(tableIndex, "id", serviceIndexPrefix+lower(name))
	must(err)
	if raw != nil && !raw.(*indexRow).Gone {
		ws.Add(ch)
		return raw.(*indexRow).Value
	}
	// No such service: any service change may create it.
	return tablesIndex(tx, ws, tableServices)
}

func (f Filter) nodeOK(n *Node) bool {
	for k, v := range f.NodeMeta {
		if got, ok := n.Meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// tagsOK: Consul matches tags without regard to case.
func (f Filter) tagsOK(s *Service) bool {
next:
	for _, want := range f.Tags {
		for _, t := range s.Tags {
			if strings.EqualFold(t, want) {
				continue next
			}
		}
		return false
	}
	return true
}

func nodeTxn(tx *memdb.Txn, name string) *nodeRow {
	raw, err := tx.First(tableNodes, "id", lower(name))
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*nodeRow)
}

// instances reads the instances of a service, in node then service ID
// order, with their checks (the node's, then the instance's) when
// withChecks or f.Passing.
func (s *state) instances(ws memdb.WatchSet, name string, f Filter, withChecks bool) (uint64, []Instance) {
	tx := s.db.Txn(false)
	defer tx.Abort()
	idx := instancesIndex(tx, ws, name, f)
	it, err := tx.Get(tableServices, "service", lower(name))
	must(err)
	var out []Instance
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if !f.tagsOK(r.S) {
			continue
		}
		n := nodeTxn(tx, r.S.Node)
		if n == nil || !f.nodeOK(n.N) {
			continue
		}
		inst := Instance{Node: n.N, Service: r.S}
		if withChecks || f.Passing {
			inst.Checks = make([]*Check, 0, len(n.Checks)+len(r.Checks))
			inst.Checks = append(append(inst.Checks, n.Checks...), r.Checks...)
			if f.Passing && inst.Status() != StatusPassing {
				continue
			}
		}
		out = append(out, inst)
	}
	return idx, out
}
