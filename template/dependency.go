package template

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
)

// depKind is what a dependency asks for.
type depKind uint8

const (
	depHealthService   depKind = iota + 1 // service
	depCatalogServices                    // services
	depCatalogNodes                       // nodes
	depCatalogNode                        // node
	depKVGet                              // keyOrDefault, keyExists: a missing key is an answer
	depKVBlock                            // key: waits until the key exists
	depKVList                             // ls, tree, safeLs, safeTree
	depDatacenters                        // datacenters
	depFile                               // file
)

// dependency is one thing a template read. It is comparable: the runner
// keys views by it, so two functions reading the same thing share a view.
type dependency struct {
	kind    depKind
	name    string // service or node name, key, prefix, file path
	tag     string
	dc      string
	near    string
	filters string // health filters, sorted, comma-separated
	ignore  bool   // datacenters: leave out datacenters that do not answer
}

// The parts of consul-template's query strings (its dependency package),
// so that the same strings parse the same way.
const (
	dcRe          = `(@(?P<dc>[[:word:]\.\-\_]+))?`
	keyRe         = `/?(?P<key>[^@]+)`
	filterRe      = `(\|(?P<filter>[[:word:]\,]+))?`
	serviceNameRe = `(?P<name>[[:word:]\-\_]+)`
	nodeNameRe    = `(?P<name>[[:word:]\.\-\_]+)`
	nearRe        = `(~(?P<near>[[:word:]\.\-\_]+))?`
	prefixRe      = `/?(?P<prefix>[^@]+)`
	tagRe         = `((?P<tag>[[:word:]=:\.\-\_]+)\.)?`
)

var (
	healthServiceRe   = regexp.MustCompile(`\A` + tagRe + serviceNameRe + dcRe + nearRe + filterRe + `\z`)
	catalogServicesRe = regexp.MustCompile(`\A` + dcRe + `\z`)
	catalogNodesRe    = regexp.MustCompile(`\A` + dcRe + nearRe + `\z`)
	catalogNodeRe     = regexp.MustCompile(`\A` + nodeNameRe + dcRe + `\z`)
	kvGetRe           = regexp.MustCompile(`\A` + keyRe + dcRe + `\z`)
	kvListRe          = regexp.MustCompile(`\A` + prefixRe + dcRe + `\z`)
)

// match returns the named groups of re in s, or nil when s does not match.
func match(re *regexp.Regexp, s string) map[string]string {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for i, name := range re.SubexpNames() {
		if name != "" {
			out[name] = m[i]
		}
	}
	return out
}

// Health filters, as consul-template names them.
const (
	healthAny      = "any"
	healthPassing  = "passing"
	healthWarning  = "warning"
	healthCritical = "critical"
	healthMaint    = "maintenance"
)

// parseHealthService parses `service`'s argument: [tag.]name[@dc][~near][|filter,...].
func parseHealthService(s string) (dependency, error) {
	m := match(healthServiceRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("service %q: not a service query; the form is [tag.]name[@datacenter][~near-node][|passing,warning,critical,maintenance,any]", s)
	}
	var filters []string
	for f := range strings.SplitSeq(m["filter"], ",") {
		switch f = strings.TrimSpace(f); f {
		case healthAny, healthPassing, healthWarning, healthCritical, healthMaint:
			filters = append(filters, f)
		case "":
		default:
			return dependency{}, fmt.Errorf("service %q: unknown health filter %q; use passing, warning, critical, maintenance or any", s, f)
		}
	}
	if len(filters) == 0 {
		filters = []string{healthPassing}
	}
	sort.Strings(filters)
	return dependency{kind: depHealthService, name: m["name"], tag: m["tag"], dc: m["dc"], near: m["near"], filters: strings.Join(filters, ",")}, nil
}

func parseCatalogServices(s string) (dependency, error) {
	m := match(catalogServicesRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("services %q: the argument is @datacenter or nothing", s)
	}
	return dependency{kind: depCatalogServices, dc: m["dc"]}, nil
}

func parseCatalogNodes(s string) (dependency, error) {
	m := match(catalogNodesRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("nodes %q: the argument is [@datacenter][~near-node] or nothing", s)
	}
	return dependency{kind: depCatalogNodes, dc: m["dc"], near: m["near"]}, nil
}

func parseCatalogNode(s string) (dependency, error) {
	if s == "" {
		return dependency{kind: depCatalogNode}, nil
	}
	m := match(catalogNodeRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("node %q: the argument is node-name[@datacenter], or nothing for this agent's node", s)
	}
	return dependency{kind: depCatalogNode, name: m["name"], dc: m["dc"]}, nil
}

func parseKV(s string, kind depKind) (dependency, error) {
	m := match(kvGetRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("key %q: the argument is key[@datacenter]", s)
	}
	return dependency{kind: kind, name: m["key"], dc: m["dc"]}, nil
}

func parseKVList(s string) (dependency, error) {
	m := match(kvListRe, s)
	if m == nil {
		return dependency{}, fmt.Errorf("prefix %q: the argument is prefix[@datacenter]", s)
	}
	return dependency{kind: depKVList, name: m["prefix"], dc: m["dc"]}, nil
}

// String names the dependency as consul-template's logs do.
func (d dependency) String() string {
	at := func(s string) string {
		if d.dc != "" {
			s += "@" + d.dc
		}
		if d.near != "" {
			s += "~" + d.near
		}
		return s
	}
	switch d.kind {
	case depHealthService:
		name := d.name
		if d.tag != "" {
			name = d.tag + "." + name
		}
		return "health.service(" + at(name) + "|" + d.filters + ")"
	case depCatalogServices:
		if d.dc == "" {
			return "catalog.services"
		}
		return "catalog.services(" + at("") + ")"
	case depCatalogNodes:
		if s := at(""); s != "" {
			return "catalog.nodes(" + s + ")"
		}
		return "catalog.nodes"
	case depCatalogNode:
		if s := at(d.name); s != "" {
			return "catalog.node(" + s + ")"
		}
		return "catalog.node"
	case depKVGet:
		return "kv.get(" + at(d.name) + ")"
	case depKVBlock:
		return "kv.block(" + at(d.name) + ")"
	case depKVList:
		return "kv.list(" + at(d.name) + ")"
	case depDatacenters:
		if d.ignore {
			return "catalog.datacenters(ignore-failing)"
		}
		return "catalog.datacenters"
	case depFile:
		return "file(" + d.name + ")"
	}
	return fmt.Sprintf("dependency(%d)", d.kind)
}

// fetch runs one (blocking) query of d against src and turns the answer
// into what templates see, as consul-template's Fetch functions do: the
// same filtering, address fallback, tag sorting and ordering.
func (d dependency) fetch(ctx context.Context, src Source, q QueryOptions) (any, uint64, error) {
	q.Datacenter, q.Near = d.dc, d.near
	switch d.kind {
	case depHealthService:
		filters := strings.Split(d.filters, ",")
		passingOnly := len(filters) == 1 && filters[0] == healthPassing
		entries, idx, err := src.HealthService(ctx, d.name, d.tag, passingOnly, q)
		if err != nil {
			return nil, 0, err
		}
		return healthServices(entries, filters, d.near == ""), idx, nil
	case depCatalogServices:
		m, idx, err := src.CatalogServices(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		return catalogSnippets(m), idx, nil
	case depCatalogNodes:
		nodes, idx, err := src.CatalogNodes(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		return catalogNodes(nodes, d.near == ""), idx, nil
	case depCatalogNode:
		n, idx, err := src.CatalogNode(ctx, d.name, q)
		if err != nil {
			return nil, 0, err
		}
		return catalogNode(n), idx, nil
	case depKVGet, depKVBlock:
		pair, idx, err := src.KVGet(ctx, d.name, q)
		if err != nil {
			return nil, 0, err
		}
		if pair == nil {
			return nil, idx, nil
		}
		return string(pair.Value), idx, nil
	case depKVList:
		pairs, idx, err := src.KVList(ctx, d.name, q)
		if err != nil {
			return nil, 0, err
		}
		return keyPairs(pairs, d.name), idx, nil
	case depDatacenters:
		dcs, idx, err := src.Datacenters(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		out := make([]string, 0, len(dcs))
		for _, dc := range dcs {
			if d.ignore {
				// consul-template's ignoreFailing: a datacenter counts
				// when a consistent read there works.
				if _, _, err := src.CatalogServices(ctx, QueryOptions{Datacenter: dc}); err != nil {
					continue
				}
			}
			out = append(out, dc)
		}
		sort.Strings(out)
		return out, idx, nil
	}
	return nil, 0, fmt.Errorf("%s cannot be fetched from a Source", d)
}

// sortedTags is a sorted copy of tags, never nil (consul-template's
// deepCopyAndSortTags): toJSON prints [] for no tags.
func sortedTags(tags []string) ServiceTags {
	out := make(ServiceTags, 0, len(tags))
	out = append(out, tags...)
	sort.Strings(out)
	return out
}

func acceptStatus(filters []string, status string) bool {
	for _, f := range filters {
		if f == status || f == healthAny {
			return true
		}
	}
	return false
}

func healthServices(entries []*api.ServiceEntry, filters []string, sorted bool) []*HealthService {
	list := make([]*HealthService, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		node := e.Node
		if node == nil {
			node = &api.Node{}
		}
		status := e.Checks.AggregatedStatus()
		if !acceptStatus(filters, status) {
			continue
		}
		address := e.Service.Address
		if address == "" {
			address = node.Address
		}
		list = append(list, &HealthService{
			Node:                   node.Node,
			NodeID:                 node.ID,
			NodeAddress:            node.Address,
			NodeTaggedAddresses:    node.TaggedAddresses,
			NodeMeta:               node.Meta,
			ServiceMeta:            e.Service.Meta,
			Address:                address,
			ServiceTaggedAddresses: e.Service.TaggedAddresses,
			ID:                     e.Service.ID,
			Name:                   e.Service.Service,
			Tags:                   sortedTags(e.Service.Tags),
			Checks:                 e.Checks,
			Status:                 status,
			Port:                   e.Service.Port,
			Weights:                e.Service.Weights,
		})
	}
	if sorted {
		slices.SortStableFunc(list, func(a, b *HealthService) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
		})
	}
	return list
}

// catalogSnippets is nil for no services, as consul-template's is (toJSON
// prints null).
func catalogSnippets(m map[string][]string) []*CatalogSnippet {
	var out []*CatalogSnippet
	for name, tags := range m {
		out = append(out, &CatalogSnippet{Name: name, Tags: sortedTags(tags)})
	}
	slices.SortFunc(out, func(a, b *CatalogSnippet) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func convertNode(n *api.Node) *Node {
	return &Node{
		ID:              n.ID,
		Node:            n.Node,
		Address:         n.Address,
		Datacenter:      n.Datacenter,
		TaggedAddresses: n.TaggedAddresses,
		Meta:            n.Meta,
	}
}

func catalogNodes(nodes []*api.Node, sorted bool) []*Node {
	out := make([]*Node, 0, len(nodes))
	for _, n := range nodes {
		if n != nil {
			out = append(out, convertNode(n))
		}
	}
	if sorted {
		slices.SortStableFunc(out, func(a, b *Node) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Address, b.Address))
		})
	}
	return out
}

// catalogNode is an empty CatalogNode (not nil) for an unknown node, as
// consul-template's is.
func catalogNode(n *api.CatalogNode) *CatalogNode {
	if n == nil || n.Node == nil {
		return &CatalogNode{}
	}
	services := make([]*CatalogNodeService, 0, len(n.Services))
	for _, s := range n.Services {
		if s == nil {
			continue
		}
		services = append(services, &CatalogNodeService{
			ID:                s.ID,
			Service:           s.Service,
			Tags:              sortedTags(s.Tags),
			Meta:              s.Meta,
			Port:              s.Port,
			Address:           s.Address,
			EnableTagOverride: s.EnableTagOverride,
		})
	}
	slices.SortStableFunc(services, func(a, b *CatalogNodeService) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ID, b.ID))
	})
	return &CatalogNode{Node: convertNode(n.Node), Services: services}
}

// keyPairs turns a listing of prefix into KeyPairs whose Key is relative
// to the prefix.
func keyPairs(pairs api.KVPairs, prefix string) []*KeyPair {
	out := make([]*KeyPair, 0, len(pairs))
	for _, p := range pairs {
		if p == nil {
			continue
		}
		key := strings.TrimLeft(strings.TrimPrefix(p.Key, prefix), "/")
		out = append(out, &KeyPair{
			Path:        p.Key,
			Key:         key,
			Value:       string(p.Value),
			CreateIndex: p.CreateIndex,
			ModifyIndex: p.ModifyIndex,
			LockIndex:   p.LockIndex,
			Flags:       p.Flags,
			Session:     p.Session,
		})
	}
	return out
}
