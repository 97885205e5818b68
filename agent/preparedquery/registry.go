package preparedquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/kv"
	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
)

// Store is what the registry needs from the replicated store: a
// *kv.Server on servers, the forwarder to them on client agents.
type Store interface {
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)
	SessionInfo(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error)
}

// Catalog is what execution reads: a *catalog.Catalog.
type Catalog interface {
	ServiceHealth(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance)
	Nodes(ws memdb.WatchSet, f catalog.Filter) (uint64, []*catalog.Node)
}

// Config configures a Registry.
type Config struct {
	Store   Store   // required
	Catalog Catalog // required
	// Coordinates returns the members' network coordinates, for Near;
	// nil sorts nothing (the answers are shuffled).
	Coordinates func() []membership.NodeCoordinate
	// NodeName is this agent's node, what Near "_agent" means.
	NodeName string
	// Datacenter is reported in execute answers.
	Datacenter string
}

// Registry stores, reads and executes prepared queries. Safe for
// concurrent use.
type Registry struct{ cfg Config }

// New validates cfg; it starts nothing.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("preparedquery: Config.Store and Config.Catalog are required")
	}
	return &Registry{cfg: cfg}, nil
}

// The reserved KV keys: one per query (by ID) and one per name, whose
// value is the ID. A name key is written with check-not-exists in the
// same transaction as its query, so two queries can never share a name.
const (
	prefix     = "_cairn/query/"
	idPrefix   = prefix + "id/"
	namePrefix = prefix + "name/="
)

// Create stores a new query and returns its ID.
func (r *Registry) Create(ctx context.Context, q Query) (string, error) {
	if q.ID != "" {
		return "", invalid("ID must be empty when creating a new prepared query")
	}
	if err := r.check(ctx, &q); err != nil {
		return "", err
	}
	q.ID = uuid.NewString()
	value, err := json.Marshal(q)
	if err != nil {
		return "", fmt.Errorf("encode prepared query: %w", err)
	}
	ops := []kv.Op{{Verb: kv.VerbCheckNotExists, Key: idPrefix + q.ID}}
	if nameKeyed(&q) {
		ops = append(ops,
			kv.Op{Verb: kv.VerbCheckNotExists, Key: namePrefix + q.Name},
			kv.Op{Verb: kv.VerbCheckNotExists, Key: idPrefix + q.Name},
			kv.Op{Verb: kv.VerbSet, Key: namePrefix + q.Name, Value: []byte(q.ID)})
	}
	ops = append(ops, kv.Op{Verb: kv.VerbSet, Key: idPrefix + q.ID, Value: value})
	if err := r.txn(ctx, ops, q.Name); err != nil {
		return "", err
	}
	return q.ID, nil
}

// Update replaces the query q.ID with q; the ID must exist.
func (r *Registry) Update(ctx context.Context, q Query) error {
	if err := r.check(ctx, &q); err != nil {
		return err
	}
	old, err := r.byID(ctx, q.ID)
	if err != nil {
		return err
	}
	if old == nil {
		return invalid("Cannot modify non-existent prepared query: '%s'", q.ID)
	}
	value, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("encode prepared query: %w", err)
	}
	ops := []kv.Op{{Verb: kv.VerbCheckIndex, Key: idPrefix + q.ID, Index: old.ModifyIndex}}
	if nameKeyed(old) && (old.Name != q.Name || !nameKeyed(&q)) {
		ops = append(ops, kv.Op{Verb: kv.VerbDelete, Key: namePrefix + old.Name})
	}
	if nameKeyed(&q) && (old.Name != q.Name || !nameKeyed(old)) {
		ops = append(ops,
			kv.Op{Verb: kv.VerbCheckNotExists, Key: namePrefix + q.Name},
			kv.Op{Verb: kv.VerbCheckNotExists, Key: idPrefix + q.Name},
			kv.Op{Verb: kv.VerbSet, Key: namePrefix + q.Name, Value: []byte(q.ID)})
	}
	ops = append(ops, kv.Op{Verb: kv.VerbSet, Key: idPrefix + q.ID, Value: value})
	return r.txn(ctx, ops, q.Name)
}

// Delete removes the query id; a missing one is not an error (Consul's).
func (r *Registry) Delete(ctx context.Context, id string) error {
	old, err := r.byID(ctx, id)
	if err != nil || old == nil {
		return err
	}
	return r.remove(ctx, old)
}

func (r *Registry) remove(ctx context.Context, q *Query) error {
	ops := []kv.Op{{Verb: kv.VerbDelete, Key: idPrefix + q.ID}}
	if nameKeyed(q) {
		ops = append(ops, kv.Op{Verb: kv.VerbDelete, Key: namePrefix + q.Name})
	}
	return r.txn(ctx, ops, q.Name)
}

// nameKeyed reports whether q holds its name: named queries and every
// template (the empty name is the catch-all template).
func nameKeyed(q *Query) bool { return q.Name != "" || q.IsTemplate() }

// check validates q and its session.
func (r *Registry) check(ctx context.Context, q *Query) error {
	if err := q.Validate(); err != nil {
		return err
	}
	if _, err := uuid.Parse(q.Name); err == nil && q.Name != "" {
		return invalid("Name '%s' looks like a query ID; names and IDs share one namespace, pick another name", q.Name)
	}
	if strings.Contains(q.Name, "/") {
		return invalid("Name '%s' contains '/'; a query name is one DNS label or path segment", q.Name)
	}
	if q.Session != "" {
		_, s, err := r.cfg.Store.SessionInfo(ctx, kv.QueryOptions{}, q.Session)
		if err != nil {
			return fmt.Errorf("check the query's session: %w", err)
		}
		if s == nil {
			return invalid("invalid session %q", q.Session)
		}
	}
	q.CreateIndex, q.ModifyIndex = 0, 0
	return nil
}

// txn applies ops; a failed check means the name is taken (or the query
// changed under an update).
func (r *Registry) txn(ctx context.Context, ops []kv.Op, name string) error {
	_, _, txnErrs, err := r.cfg.Store.Txn(ctx, kv.QueryOptions{}, ops)
	if len(txnErrs) > 0 || errors.Is(err, kv.ErrTxnFailed) {
		for _, te := range txnErrs {
			if te.OpIndex < len(ops) && ops[te.OpIndex].Verb == kv.VerbCheckIndex {
				return invalid("the query changed while it was being updated; read it again and retry")
			}
		}
		return invalid("Name '%s' aliases an existing query name or ID", name)
	}
	return err
}

// List returns every query, ordered by ID, as a blocking read.
func (r *Registry) List(ctx context.Context, o kv.QueryOptions) (kv.QueryMeta, []*Query, error) {
	meta, ents, err := r.cfg.Store.List(ctx, o, idPrefix)
	if err != nil {
		return meta, nil, err
	}
	out := make([]*Query, 0, len(ents))
	for _, e := range ents {
		q, err := decode(e)
		if err != nil {
			return meta, nil, err
		}
		if r.sessionGone(ctx, q) {
			continue
		}
		out = append(out, q)
	}
	return meta, out, nil
}

// Get returns the query id, nil when there is none, as a blocking read.
func (r *Registry) Get(ctx context.Context, o kv.QueryOptions, id string) (kv.QueryMeta, *Query, error) {
	meta, ents, err := r.cfg.Store.List(ctx, o, idPrefix+id)
	if err != nil {
		return meta, nil, err
	}
	for _, e := range ents {
		if e.Key != idPrefix+id {
			continue
		}
		q, err := decode(e)
		if err != nil || r.sessionGone(ctx, q) {
			return meta, nil, err
		}
		return meta, q, nil
	}
	return meta, nil, nil
}

func (r *Registry) byID(ctx context.Context, id string) (*Query, error) {
	if id == "" {
		return nil, nil
	}
	_, q, err := r.Get(ctx, kv.QueryOptions{}, id)
	return q, err
}

// sessionGone reports whether q's session has ended, and deletes q when
// it has: Consul deletes a query with its session.
func (r *Registry) sessionGone(ctx context.Context, q *Query) bool {
	if q.Session == "" {
		return false
	}
	_, s, err := r.cfg.Store.SessionInfo(ctx, kv.QueryOptions{Stale: true}, q.Session)
	if err != nil || s != nil {
		return false // unknown: keep it
	}
	_ = r.remove(ctx, q) // best effort; the next read tries again
	return true
}

func decode(e *kv.Entry) (*Query, error) {
	var q Query
	if err := json.Unmarshal(e.Value, &q); err != nil {
		return nil, fmt.Errorf("prepared query at %s is unreadable: %w", e.Key, err)
	}
	q.CreateIndex, q.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return &q, nil
}

// Resolve returns the query idOrName names (an ID, a name, or a name a
// template's name is a prefix of), rendered for that name; ErrNotFound
// when none.
func (r *Registry) Resolve(ctx context.Context, idOrName string) (*Query, error) {
	_, all, err := r.List(ctx, kv.QueryOptions{})
	if err != nil {
		return nil, err
	}
	q := resolve(all, idOrName)
	if q == nil {
		return nil, ErrNotFound
	}
	return q.Render(idOrName)
}

// ExecOptions are the caller's options of an execution.
type ExecOptions struct {
	// Near sorts by round trip time from this node ("_agent": this
	// agent's; "_ip": the node whose address is SourceIP); the query's
	// own Service.Near wins over it, as in Consul.
	Near     string
	SourceIP netip.Addr
	// Limit keeps the first Limit instances; 0 keeps all.
	Limit int
}

// Result is an execution's answer (api.PreparedQueryExecuteResponse).
type Result struct {
	Query      *Query // rendered
	Service    string
	Instances  []catalog.Instance
	DNS        DNSOptions
	Datacenter string
	Failovers  int
	Index      uint64 // the catalog's
}

// Execute resolves idOrName and runs it against the local catalog.
func (r *Registry) Execute(ctx context.Context, idOrName string, opts ExecOptions) (*Result, error) {
	q, err := r.Resolve(ctx, idOrName)
	if err != nil {
		return nil, err
	}
	if q.Service.Connect {
		return nil, invalid("the query asks for Connect-capable instances (Service.Connect), and cairn has no Connect service mesh")
	}
	idx, insts := r.cfg.Catalog.ServiceHealth(nil, q.Service.Service, catalog.Filter{})
	insts = filter(q, insts)

	near := opts.Near
	if q.Service.Near != "" {
		near = q.Service.Near
	}
	rand.Shuffle(len(insts), func(i, j int) { insts[i], insts[j] = insts[j], insts[i] })
	if from := r.nearNode(near, opts.SourceIP); from != "" && r.cfg.Coordinates != nil {
		membership.SortByDistance(r.cfg.Coordinates(), from, insts, func(in catalog.Instance) string { return in.Node.Node })
	}
	if opts.Limit > 0 && len(insts) > opts.Limit {
		insts = insts[:opts.Limit]
	}
	return &Result{
		Query:      q,
		Service:    q.Service.Service,
		Instances:  insts,
		DNS:        q.DNS,
		Datacenter: r.cfg.Datacenter,
		Index:      idx,
	}, nil
}

// nearNode resolves Near's magic values.
func (r *Registry) nearNode(near string, source netip.Addr) string {
	switch near {
	case "_agent":
		return r.cfg.NodeName
	case "_ip":
		if !source.IsValid() {
			return ""
		}
		_, nodes := r.cfg.Catalog.Nodes(nil, catalog.Filter{})
		for _, n := range nodes {
			if a, err := netip.ParseAddr(n.Address); err == nil && a.Unmap() == source.Unmap() {
				return n.Node
			}
		}
		return ""
	}
	return near
}

// filter keeps the instances q accepts, as Consul's execute: health
// (FilterIgnore), node meta, service meta, then tags.
func filter(q *Query, insts []catalog.Instance) []catalog.Instance {
	ignored := make(map[string]bool, len(q.Service.IgnoreCheckIDs))
	for _, id := range q.Service.IgnoreCheckIDs {
		ignored[id] = true
	}
	var must, not []string
	for _, t := range q.Service.Tags {
		t = strings.ToLower(t)
		if rest, ok := strings.CutPrefix(t, "!"); ok {
			not = append(not, rest)
		} else {
			must = append(must, t)
		}
	}
	kept := insts[:0]
outer:
	for _, in := range insts {
		for _, c := range in.Checks {
			if ignored[c.CheckID] {
				continue
			}
			if c.Status == catalog.StatusCritical || (q.Service.OnlyPassing && c.Status != catalog.StatusPassing) {
				continue outer
			}
		}
		if !hasMeta(in.Node.Meta, q.Service.NodeMeta) || !hasMeta(in.Service.Meta, q.Service.ServiceMeta) {
			continue
		}
		tags := make(map[string]bool, len(in.Service.Tags))
		for _, t := range in.Service.Tags {
			tags[strings.ToLower(t)] = true
		}
		for _, t := range must {
			if !tags[t] {
				continue outer
			}
		}
		for _, t := range not {
			if tags[t] {
				continue outer
			}
		}
		kept = append(kept, in)
	}
	return kept
}

// hasMeta reports whether meta has every pair of want (Consul's
// SatisfiesMetaFilters: a missing key never matches).
func hasMeta(meta, want map[string]string) bool {
	for k, v := range want {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}
