package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/blocking"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/template"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-memdb"
)

// templateConfig builds the template runner's configuration from
// -template-config files (when loadFiles), then -template, -template-check
// and -template-wait, the way `cairn template` merges -config and its
// flags: the files' templates first, then the flags' (which the check
// applies to); -template-wait wins over the files' wait. The files'
// consul {} block and log_level are ignored: the agent is the source.
// It returns a Config without templates when none are given.
func (c Config) templateConfig(loadFiles bool) (template.Config, error) {
	var tc template.Config
	if loadFiles {
		for _, path := range c.TemplateConfigs {
			fc, err := template.LoadConfigFile(path)
			if err != nil {
				return tc, fmt.Errorf("-template-config: %w", err)
			}
			tc.Templates = append(tc.Templates, fc.Templates...)
			if fc.Wait != nil {
				tc.Wait = *fc.Wait
			}
		}
	}
	for _, s := range c.Templates {
		t, err := template.ParseTemplateFlag(s)
		if err != nil {
			return tc, err
		}
		t.Check = c.TemplateCheck
		tc.Templates = append(tc.Templates, t)
	}
	if c.TemplateCheck != "" && len(c.Templates) == 0 {
		return tc, errors.New("-template-check applies to -template templates and there are none; add a -template, or set check in the template {} block of the -template-config file")
	}
	if c.TemplateWait != "" {
		w, err := template.ParseWait(c.TemplateWait)
		if err != nil {
			return tc, fmt.Errorf("-template-wait: %w", err)
		}
		tc.Wait = w
	}
	return tc, nil
}

// templatePart returns the runner of the -template templates, rendering
// in-process from templateSource; none without templates. The source is
// made either way: tests reach it through the agent.
func (w *wiring) templatePart() (part, bool, error) {
	a := w.agent
	src := &templateSource{store: w.routerFor().Internal(), cat: w.cat, node: w.cfg.NodeName, dc: w.cfg.Datacenter}
	a.mu.Lock()
	a.tmplSource = src
	a.mu.Unlock()
	newRunner := func(tc template.Config) (*template.Runner, error) {
		if len(tc.Templates) == 0 {
			return nil, nil
		}
		tc.Source = src
		tc.Logger = w.log
		return template.New(tc)
	}
	r, err := newRunner(a.tmpl)
	if err != nil {
		return part{}, false, err
	}
	sup := &templateSupervisor{current: r, next: make(chan *template.Runner, 1), tel: w.tel}
	a.onReload("templates", func(cfg Config) (func(), error) {
		tc, err := cfg.templateConfig(true)
		if err != nil {
			return nil, err
		}
		r, err := newRunner(tc)
		if err != nil {
			return nil, err
		}
		return func() { sup.replace(r) }, nil
	})
	return part{"templates", sup.run}, true, nil
}

// templateSource is template.Source over this agent's own parts, with no
// network in between: KV through the same forward.Router the HTTP API
// uses (local on a server, forwarded to one on a client), the catalog
// from memory with the HTTP API's blocking-query loop. Answers are the
// official client's types, filled in as the client decodes the HTTP
// API's JSON, so a template renders the same through this source and
// through template.HTTPSource.
type templateSource struct {
	// store is the agent's own view: templates the agent renders are its
	// configuration, read with the agent token (acl.tokens.agent) when
	// forwarded, as the catalog side reads the agent's own copy.
	store *forward.InternalStore
	cat   *catalog.Catalog
	node  string // this agent's node name
	dc    string
}

var _ template.Source = (*templateSource)(nil)

// checkDC refuses another datacenter, as the HTTP API does.
func (s *templateSource) checkDC(ctx context.Context, q template.QueryOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q.Datacenter != "" && q.Datacenter != s.dc {
		return fmt.Errorf("datacenter %q is not this agent's datacenter %q, and cairn does not federate datacenters; drop the @%s", q.Datacenter, s.dc, q.Datacenter)
	}
	return nil
}

// blockingRead runs read as a blocking query, through the same
// catalog.Block the HTTP API uses.
func (s *templateSource) blockingRead(ctx context.Context, q template.QueryOptions, read func(ws memdb.WatchSet) uint64) (uint64, error) {
	if err := s.checkDC(ctx, q); err != nil {
		return 0, err
	}
	return s.cat.Block(ctx, q.WaitIndex, q.WaitTime, read)
}

// HealthService implements template.Source.
func (s *templateSource) HealthService(ctx context.Context, service, tag string, passingOnly bool, q template.QueryOptions) ([]*api.ServiceEntry, uint64, error) {
	f := catalog.Filter{Passing: passingOnly}
	if tag != "" {
		f.Tags = []string{tag}
	}
	var insts []catalog.Instance
	idx, err := s.blockingRead(ctx, q, func(ws memdb.WatchSet) uint64 {
		i, in := s.cat.ServiceHealth(ws, service, f)
		insts = in
		return i
	})
	if err != nil {
		return nil, 0, err
	}
	entries := make([]consuljson.ServiceEntry, 0, len(insts))
	for _, in := range insts {
		entries = append(entries, consuljson.FromHealth(in))
	}
	out, err := asClient[[]*api.ServiceEntry](entries)
	return out, idx, err
}

// CatalogServices implements template.Source.
func (s *templateSource) CatalogServices(ctx context.Context, q template.QueryOptions) (map[string][]string, uint64, error) {
	var out map[string][]string
	idx, err := s.blockingRead(ctx, q, func(ws memdb.WatchSet) uint64 {
		i, m := s.cat.Services(ws, catalog.Filter{})
		out = m
		return i
	})
	if err != nil {
		return nil, 0, err
	}
	return out, idx, nil
}

// CatalogNodes implements template.Source.
func (s *templateSource) CatalogNodes(ctx context.Context, q template.QueryOptions) ([]*api.Node, uint64, error) {
	var nodes []*catalog.Node
	idx, err := s.blockingRead(ctx, q, func(ws memdb.WatchSet) uint64 {
		i, ns := s.cat.Nodes(ws, catalog.Filter{})
		nodes = ns
		return i
	})
	if err != nil {
		return nil, 0, err
	}
	shapes := make([]*consuljson.Node, 0, len(nodes))
	for _, n := range nodes {
		shapes = append(shapes, consuljson.FromNode(n))
	}
	out, err := asClient[[]*api.Node](shapes)
	return out, idx, err
}

// CatalogNode implements template.Source; "" is this agent's node.
func (s *templateSource) CatalogNode(ctx context.Context, node string, q template.QueryOptions) (*api.CatalogNode, uint64, error) {
	if node == "" {
		node = s.node
	}
	var (
		n    *catalog.Node
		svcs []*catalog.Service
	)
	idx, err := s.blockingRead(ctx, q, func(ws memdb.WatchSet) uint64 {
		var i uint64
		i, n, svcs = s.cat.Node(ws, node)
		return i
	})
	if err != nil || n == nil {
		return nil, idx, err
	}
	out, err := asClient[*api.CatalogNode](consuljson.FromNodeServices(n, svcs))
	return out, idx, err
}

// kvOptions are a template query's options as the kv store takes them.
func (s *templateSource) kvOptions(ctx context.Context, q template.QueryOptions) (kv.QueryOptions, error) {
	if err := s.checkDC(ctx, q); err != nil {
		return kv.QueryOptions{}, err
	}
	return kv.QueryOptions{MinIndex: q.WaitIndex, MaxWait: q.WaitTime}, nil
}

// KVGet implements template.Source.
func (s *templateSource) KVGet(ctx context.Context, key string, q template.QueryOptions) (*api.KVPair, uint64, error) {
	o, err := s.kvOptions(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	m, e, err := s.store.Get(ctx, o, key)
	if err != nil {
		return nil, 0, err
	}
	if e == nil {
		return nil, m.Index, nil
	}
	return apiKVPair(e), m.Index, nil
}

// KVList implements template.Source. Nothing under prefix is nil, as the
// official client answers the HTTP API's 404.
func (s *templateSource) KVList(ctx context.Context, prefix string, q template.QueryOptions) (api.KVPairs, uint64, error) {
	o, err := s.kvOptions(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	m, entries, err := s.store.List(ctx, o, prefix)
	if err != nil {
		return nil, 0, err
	}
	var out api.KVPairs
	for _, e := range entries {
		out = append(out, apiKVPair(e))
	}
	return out, m.Index, nil
}

// Datacenters implements template.Source. cairn knows its own
// datacenter only, which never changes: a blocking query waits out its
// wait (or ctx), by package blocking's rules, and answers the same, at
// the same index.
func (s *templateSource) Datacenters(ctx context.Context, q template.QueryOptions) ([]string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	never := func(memdb.WatchSet) (uint64, error) { return 1, nil }
	if _, err := blocking.Run(ctx, blocking.Query{MinIndex: q.WaitIndex, Wait: q.WaitTime}, never); err != nil {
		return nil, 0, err
	}
	return []string{s.dc}, 1, nil
}

// asClient turns v, one of agent/consuljson's shapes (what the HTTP API
// writes), into T, the official client's type for it, the way the client
// decodes the HTTP API's answer: through JSON. The mapping from the
// catalog has one owner, consuljson, and this source answers exactly what
// the HTTP API does (TestTemplateSourceMatchesHTTP). It also hands each
// template its own copy of the catalog's shared values.
func asClient[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("template source: encode %T: %w", v, err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("template source: decode %T as %T: %w", v, out, err)
	}
	return out, nil
}

func apiKVPair(e *kv.Entry) *api.KVPair {
	return &api.KVPair{
		Key: e.Key, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex,
		LockIndex: e.LockIndex, Flags: e.Flags, Value: slices.Clone(e.Value), Session: e.Session,
	}
}
