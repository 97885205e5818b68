package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/dns"
	"github.com/hashicorp/go-memdb"
)

// dnsCatalog adapts the catalog to dns.Catalog: every instance with its
// aggregated health, grouped by service name, and every node; and, from
// the catalog's change feed, only the services that changed.
//
// Its index is a counter of its own, bumped each time the catalog's
// index moves: dns only needs a number that changes whenever the answer
// can have, and the counter lets Changes tell an index it handed out
// (whose catalog index it remembers) from any other.
type dnsCatalog struct {
	cat  *catalog.Catalog
	vips *vip.VIPs // nil without -vip-cidr
	log  *slog.Logger
	// view, when set, returns what DNS may answer (dnsACL.watch) and a
	// key that differs whenever that changed, and adds to the watch set
	// what fires when it may change. Services and nodes the Authorizer
	// may not read are left out, so they answer NXDOMAIN; answers built
	// with another key are built again, in full. nil (ACLs off), or a
	// nil Authorizer: everything.
	view func(memdb.WatchSet) (acl.Authorizer, any)

	mu          sync.Mutex
	lastCatalog uint64 // the catalog index the counter was last bumped for
	lastNodes   uint64 // the index of the nodes last returned
	lastView    any    // view's key when Snapshot last read
	index       uint64 // what Snapshot and Changes return
	// The allocations the answers were built with, and their index.
	lastVIPIndex uint64
	lastVIPs     map[string]vip.Allocation
	lastVIPErrs  map[string]string // services that cannot get a VIP (range full)
	// warned holds, by lower-case service name, the instances with a
	// host name address that were logged, so each is logged once.
	warned map[string]map[string]bool
}

func newDNSCatalog(cat *catalog.Catalog, vips *vip.VIPs, log *slog.Logger) *dnsCatalog {
	return &dnsCatalog{cat: cat, vips: vips, log: log, warned: map[string]map[string]bool{}}
}

// allocations reads the VIP allocations and the services that cannot
// get one (none without -vip-cidr). Before the agent's first read of the
// store they are those kept in the data dir, with index 0.
func (d *dnsCatalog) allocations(ws memdb.WatchSet) (uint64, map[string]vip.Allocation, map[string]string) {
	if d.vips == nil {
		return 0, nil, nil
	}
	idx, allocs := d.vips.Allocations(ws)
	return idx, allocs, d.vips.Errors(nil) // same table, same watch
}

// Snapshot implements dns.Catalog. It adds the catalog's table-level
// watch channels (nodes, services, checks) to ws.
func (d *dnsCatalog) Snapshot(ws memdb.WatchSet) (uint64, []dns.Service, []dns.Node) {
	authz, vkey := d.watchView(ws)
	iidx, insts := d.cat.AllInstances(ws)
	nidx, nodes := d.cat.Nodes(ws, catalog.Filter{})
	insts, nodes = visible(authz, insts, nodes)
	feedIdx, _, _ := d.cat.Changes(nil, 0)
	vidx, vips, verrs := d.allocations(ws)

	d.mu.Lock()
	defer d.mu.Unlock()
	if idx := max(iidx, nidx, feedIdx); idx != d.lastCatalog || vidx != d.lastVIPIndex || vkey != d.lastView || d.index == 0 {
		d.lastCatalog = idx
		d.index++
	}
	d.lastView = vkey
	d.lastVIPIndex, d.lastVIPs, d.lastVIPErrs = vidx, vips, verrs
	d.lastNodes = nidx
	warned := d.warned
	d.warned = map[string]map[string]bool{}
	return d.index, d.services(insts, warned), dnsNodes(nodes)
}

// watchView returns the view and its key (nil, nil without one), adding
// its watch to ws.
func (d *dnsCatalog) watchView(ws memdb.WatchSet) (acl.Authorizer, any) {
	if d.view == nil {
		return nil, nil
	}
	return d.view(ws)
}

// Changes implements dns.Catalog from the catalog's change feed: each
// changed service is read again, and the nodes when they changed.
func (d *dnsCatalog) Changes(ws memdb.WatchSet, since uint64) (dns.Delta, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if since != d.index || d.index == 0 {
		return dns.Delta{}, false // not an index this adapter handed out last
	}
	authz, vkey := d.watchView(ws)
	if vkey != d.lastView {
		return dns.Delta{}, false // another view: every answer may change
	}
	idx, names, reset := d.cat.Changes(ws, d.lastCatalog)
	if reset {
		return dns.Delta{}, false
	}
	vidx, vips, verrs := d.allocations(ws)
	if idx == d.lastCatalog && vidx == d.lastVIPIndex {
		return dns.Delta{Index: d.index}, true
	}
	if vidx != d.lastVIPIndex {
		// The services whose VIP came, went or moved change too, and
		// those that could not get one or now can.
		names = append(names, vipChanges(d.lastVIPs, vips)...)
		names = append(names, errChanges(d.lastVIPErrs, verrs)...)
		slices.Sort(names)
		names = slices.Compact(names)
		d.lastVIPIndex, d.lastVIPs, d.lastVIPErrs = vidx, vips, verrs
	}
	d.lastCatalog = idx
	d.index++
	delta := dns.Delta{Index: d.index}
	for _, name := range names {
		_, insts := d.cat.ServiceHealth(nil, name, catalog.Filter{})
		insts, _ = visible(authz, insts, nil)
		warned := d.warned[name]
		delete(d.warned, name)
		if svcs := d.services(insts, map[string]map[string]bool{name: warned}); len(svcs) > 0 {
			delta.Services = append(delta.Services, svcs...)
		} else {
			delta.Services = append(delta.Services, dns.Service{Name: name})
		}
	}
	if nidx, nodes := d.cat.Nodes(nil, catalog.Filter{}); nidx != d.lastNodes {
		d.lastNodes = nidx
		_, nodes = visible(authz, nil, nodes)
		delta.Nodes, delta.NodesChanged = dnsNodes(nodes), true
	}
	return delta, true
}

// visible trims insts and nodes to what a may read: an instance needs
// service read on its service and node read on its node, a node node read
// (Consul's DNS filters with its token as its catalog reads do); a nil a
// reads everything.
func visible(a acl.Authorizer, insts []catalog.Instance, nodes []*catalog.Node) ([]catalog.Instance, []*catalog.Node) {
	if a == nil {
		return insts, nodes
	}
	insts = slices.DeleteFunc(slices.Clone(insts), func(in catalog.Instance) bool {
		return !a.Allowed(acl.Service, in.Service.Name, acl.Read) || !a.Allowed(acl.Node, in.Node.Node, acl.Read)
	})
	nodes = slices.DeleteFunc(slices.Clone(nodes), func(n *catalog.Node) bool { return !a.Allowed(acl.Node, n.Node, acl.Read) })
	return insts, nodes
}

// services groups instances into dns services by exact name, in the
// order of their first instance, logging each instance that cannot be
// answered unless warned says it was logged already; d.warned gets what
// is logged now. Called with d.mu held.
func (d *dnsCatalog) services(insts []catalog.Instance, warned map[string]map[string]bool) []dns.Service {
	var services []dns.Service
	at := map[string]int{}     // service name -> its position in services
	dnsrr := map[string]bool{} // lower-case names opted out of VIPs
	for _, in := range insts {
		if d.vips != nil && in.Service.Meta[vip.MetaEndpointMode] == vip.EndpointDNSRR {
			dnsrr[strings.ToLower(in.Service.Name)] = true
		}
		inst, reason := dnsInstance(in)
		if reason != "" {
			lname := strings.ToLower(in.Service.Name)
			key := in.Node.Node + "/" + in.Service.ID
			if d.warned[lname] == nil {
				d.warned[lname] = map[string]bool{}
			}
			d.warned[lname][key] = true
			if !warned[lname][key] {
				d.log.Warn("dns: instance not answered: "+reason+"; register it with an IP address to be found by DNS",
					"service", in.Service.Name, "id", in.Service.ID, "node", in.Node.Node,
					"address", in.Service.Address, "node_address", in.Node.Address)
			}
			continue
		}
		i, ok := at[in.Service.Name]
		if !ok {
			i = len(services)
			at[in.Service.Name] = i
			services = append(services, dns.Service{Name: in.Service.Name})
		}
		services[i].Instances = append(services[i].Instances, inst)
	}
	// web.cluster answers the VIP of a service in VIP mode (Swarm's
	// default endpoint mode); while its VIP is not known (the leader has
	// not allocated it yet, or this agent has not read the allocations
	// and kept none in its data dir) it is held: SERVFAIL, never the
	// instances, which clients would cache and reach around the VIP. A
	// service that cannot get a VIP (range full) and one in dnsrr mode
	// answer their instances.
	if d.vips == nil {
		return services
	}
	for i := range services {
		name := strings.ToLower(services[i].Name)
		if dnsrr[name] {
			continue
		}
		if a, ok := d.lastVIPs[name]; ok {
			services[i].VIP = a.Addr
		} else if _, failed := d.lastVIPErrs[name]; !failed {
			services[i].Hold = true
		}
	}
	return services
}

// errChanges lists the services whose VIP error came or went.
func errChanges(old, cur map[string]string) []string {
	var names []string
	for name := range cur {
		if _, ok := old[name]; !ok {
			names = append(names, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			names = append(names, name)
		}
	}
	return names
}

// vipChanges lists the services whose VIP differs between two tables.
func vipChanges(old, cur map[string]vip.Allocation) []string {
	var names []string
	for name, a := range cur {
		if o, ok := old[name]; !ok || o.Addr != a.Addr {
			names = append(names, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			names = append(names, name)
		}
	}
	return names
}

func dnsNodes(nodes []*catalog.Node) []dns.Node {
	out := make([]dns.Node, 0, len(nodes))
	for _, n := range nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			out = append(out, dns.Node{Name: n.Node, Addr: a})
		}
	}
	return out
}

// dnsInstance converts one catalog instance; reason says why it cannot
// be answered, when it cannot.
func dnsInstance(in catalog.Instance) (inst dns.Instance, reason string) {
	inst = dns.Instance{
		Node:      in.Node.Node,
		ServiceID: in.Service.ID,
		Port:      in.Service.Port,
		Tags:      in.Service.Tags,
		Status:    in.Status(),
	}
	nodeAddr, nodeErr := netip.ParseAddr(in.Node.Address)
	if nodeErr == nil {
		inst.NodeAddr = nodeAddr
	}
	if in.Service.Address == "" {
		if nodeErr != nil {
			return inst, fmt.Sprintf("it has no address of its own and its node's, %q, is not an IP", in.Node.Address)
		}
		return inst, ""
	}
	a, err := netip.ParseAddr(in.Service.Address)
	if err != nil {
		return inst, fmt.Sprintf("its address %q is a host name, not an IP", in.Service.Address)
	}
	inst.Address = a
	return inst, ""
}

// dnsPart returns the DNS server, answering from the catalog through
// dnsCatalog; none when DNS is off (-dns-port=-1).
func (w *wiring) dnsPart() (part, bool, error) {
	if w.dnsPC == nil {
		return part{}, false, nil
	}
	dc := w.cfg.dnsConfig()
	dc.PacketConn, dc.Listener, dc.Logger = w.dnsPC, w.dnsLn, w.log
	queries, err := w.queryRegistry()
	if err != nil {
		return part{}, false, err
	}
	view := &dnsACL{w: w}
	dc.Queries = dnsQueries{r: queries, view: view.view}
	if w.tel != nil {
		dc.Metrics = w.tel
	}
	dcat := newDNSCatalog(w.cat, w.vips, w.log)
	dcat.view = view.watch
	srv, err := dns.New(dc, dcat)
	if err != nil {
		return part{}, false, err
	}
	return part{"dns", srv.Run}, true, nil
}

// dnsConfig is the dns server's configuration from the agent's.
func (cfg Config) dnsConfig() dns.Config {
	c := dns.DefaultConfig()
	c.Addr = net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.DNS))
	c.Domain = cfg.Domain
	if normDomain(cfg.AltDomain) != normDomain(cfg.Domain) {
		c.AltDomain = cfg.AltDomain
	}
	c.Datacenter = cfg.Datacenter
	c.Recursors = slices.Clone(cfg.Recursors)
	c.TTL = cfg.DNS.ServiceTTL
	c.NodeTTL = cfg.DNS.NodeTTL
	c.OnlyPassing = cfg.DNS.OnlyPassing
	return c
}

// listenDNS binds the DNS server's UDP socket and TCP listener on the
// same port before the agent reports it started, so that DNSAddr is
// known and a busy port fails the start. With port 0, TCP takes the port
// the kernel gave UDP, which another program may hold for TCP: then it
// tries another.
func listenDNS(addr string, port int) (net.PacketConn, net.Listener, error) {
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("listen for DNS on %s: %w (is another agent using -dns-port=%d? move it with -dns-port, or turn DNS off with -dns-port=-1)", net.JoinHostPort(addr, strconv.Itoa(port)), err, port)
		}
		tcpAddr := net.JoinHostPort(addr, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp", tcpAddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != 0 || attempt == 10 {
			return nil, nil, fmt.Errorf("listen for DNS over TCP on %s: %w (move it with -dns-port, or turn DNS off with -dns-port=-1)", tcpAddr, err)
		}
	}
}

// dnsACL is what DNS answers with when ACLs are on, as Consul's: the dns
// token's view (acl.tokens.dns, PUT /v1/agent/token/dns), else the
// default token's, else the anonymous token's. DNS builds its answers
// ahead of the questions, so dnsACL also says when that view may have
// changed: an agent token was set, this agent saw an ACL write, or the
// resolved token's cache may have run out (token_ttl: a change made
// through another agent shows within twice that, as a token's rights
// show on the HTTP API within it). The answers are built again only
// when what the token grants changed (its Authorizer's fingerprint): a
// full build of 10,000 services takes a good part of a second.
type dnsACL struct {
	w *wiring // its acls are read when asked: nil with ACLs off

	mu     sync.Mutex
	expiry chan struct{} // closes a token_ttl after it was made; nil: none
}

// identity resolves the token DNS answers with: its Authorizer (nil
// with ACLs off), and a key that differs when what it grants does (its
// fingerprint; else the resolver's *acl.Identity, which changes whenever
// the token is resolved again). A token that cannot be resolved answers
// nothing.
func (d *dnsACL) identity() (acl.Authorizer, any) {
	st := d.w.acls
	if st == nil {
		return nil, nil
	}
	kind, secret := acl.KindDNS, st.tokens.Get(acl.KindDNS)
	if secret == "" {
		kind = acl.KindDefault // the resolver takes "" as the default token
	}
	id, err := st.resolver.Identity(context.Background(), secret)
	if err != nil {
		d.w.log.Warn("dns: cannot resolve the "+kind+" ACL token; answering nothing from the catalog", "err", err)
		return denyAll{}, kind + " token unresolved"
	}
	if f, ok := id.Authorizer.(interface{ Fingerprint() string }); ok {
		return id.Authorizer, f.Fingerprint()
	}
	return id.Authorizer, id
}

// view is the Authorizer DNS answers with; nil when ACLs are off.
func (d *dnsACL) view() acl.Authorizer {
	a, _ := d.identity()
	return a
}

// watch returns the view and its key (see identity), adding to ws what
// closes when they may have changed.
func (d *dnsACL) watch(ws memdb.WatchSet) (acl.Authorizer, any) {
	st := d.w.acls
	if st == nil {
		return nil, nil
	}
	ws.Add(st.tokens.Changed())
	ws.Add(st.resolver.Invalidated())
	if ttl := st.resolver.TTL(); ttl > 0 {
		ws.Add(d.expiring(ttl))
	}
	return d.identity()
}

// expiring returns a channel that closes ttl after it was made; one at a
// time, however often DNS asks.
func (d *dnsACL) expiring(ttl time.Duration) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.expiry == nil {
		ch := make(chan struct{})
		d.expiry = ch
		time.AfterFunc(ttl, func() {
			d.mu.Lock()
			d.expiry = nil
			d.mu.Unlock()
			close(ch)
		})
	}
	return d.expiry
}

// denyAll is the Authorizer of a token that could not be resolved.
type denyAll struct{}

func (denyAll) Allowed(acl.Resource, string, acl.Access) bool      { return false }
func (denyAll) AllowedUnder(acl.Resource, string, acl.Access) bool { return false }
