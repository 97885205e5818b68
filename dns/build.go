package dns

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// zoneBuilder turns the catalog's changes into zones. A zone is never
// modified once served, so each change makes a new one that shares
// everything unchanged with the last: the services map is copied (a
// table of pointers) and only the changed services are built anew; the
// PTR map is copied and only its touched names recomputed, which is why
// the builder keeps, for each reverse name, who contributes to it. Only
// the Run goroutine uses a zoneBuilder.
type zoneBuilder struct {
	st *settings
	// The last zone's maps, which that zone still reads: never modified,
	// only copied.
	services map[string]*svcAnswers
	nodes    map[string]*entry
	ptr      map[string]*entry
	// The builder's own indexes, modified in place: the node PTR records
	// by reverse name, and the services contributing PTR records to each
	// reverse name.
	nodePTR   map[string]*entry
	ptrOwners map[string][]string
	// What cannot be answered, for the log: service names by lower-case
	// name, and node names.
	badServices map[string][]string
	badNodes    []string
}

func newZoneBuilder(st *settings) *zoneBuilder {
	zb := &zoneBuilder{st: st}
	zb.reset()
	return zb
}

// reset forgets the last zone: the next update builds everything.
func (zb *zoneBuilder) reset() {
	zb.services = map[string]*svcAnswers{}
	zb.nodes = map[string]*entry{}
	zb.ptr = map[string]*entry{}
	zb.nodePTR = map[string]*entry{}
	zb.ptrOwners = map[string][]string{}
	zb.badServices = map[string][]string{}
	zb.badNodes = nil
}

// svcAnswers holds the answers of one service name. Entries with no
// records are nil.
type svcAnswers struct {
	name  string            // lower case
	svc   *entry            // <svc>: the VIP, else the instances (Swarm)
	tasks *entry            // tasks.<svc> (Swarm)
	all   *entry            // <svc>.service, _<svc>._tcp.service (Consul)
	tags  map[string]*entry // <tag>.<svc>.service, _<svc>._<tag>.service
	ptrs  []named           // reverse names of its own addresses and its VIP
}

type named struct {
	name string
	e    *entry
}

// buildResult says what a build could not answer, for the log.
type buildResult struct {
	badServices []string // names that are not DNS labels
	badNodes    []string
	rebuilt     int // services built anew rather than reused
}

// build precomputes every answer from a full catalog snapshot.
func (zb *zoneBuilder) build(index uint64, services []Service, nodes []Node) (*zone, buildResult) {
	zb.reset()
	return zb.update(index, services, nodes, true)
}

// update makes the next zone from the last one and a change: services
// holds the current entries of every service name that changed (all
// catalog services of that name, in any case; a name with no instances
// left is removed), and nodes, when nodesChanged, every node.
func (zb *zoneBuilder) update(index uint64, services []Service, nodes []Node, nodesChanged bool) (*zone, buildResult) {
	z := newZone(zb.st, index)
	b := newBuilder(zb.st)

	// Group the changed services by lower-case name (DNS names are not
	// case sensitive), in the order given.
	groups := make(map[string][]int, len(services))
	var order []string
	for i := range services {
		key := strings.ToLower(services[i].Name)
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], i)
	}

	touched := map[string]bool{} // reverse names whose PTR records may change
	next := zb.services
	if len(order) > 0 {
		next = maps.Clone(zb.services)
	}
	for _, key := range order {
		group := groups[key]
		old := next[key]
		delete(next, key)
		delete(zb.badServices, key)
		var a *svcAnswers
		if exists(services, group) {
			if bad := badNames(services, group); len(bad) > 0 {
				zb.badServices[key] = bad
			} else {
				a = b.service(key, services, group)
				next[key] = a
			}
		}
		zb.movePTRs(key, old, a, touched)
	}
	z.services, zb.services = next, next

	if nodesChanged {
		zb.buildNodes(b, nodes, touched)
	}
	z.nodes = zb.nodes
	z.ptr = zb.ptr
	if len(touched) > 0 {
		z.ptr = maps.Clone(zb.ptr)
		for name := range touched {
			zb.mergePTR(z, name)
		}
		zb.ptr = z.ptr
	}

	res := buildResult{rebuilt: len(order), badNodes: zb.badNodes}
	for _, names := range zb.badServices {
		res.badServices = append(res.badServices, names...)
	}
	slices.Sort(res.badServices)
	res.badServices = slices.Compact(res.badServices)
	return z, res
}

// exists reports whether any service of group has an instance or a VIP
// (a VIP is answered with no instance behind it, as Swarm does).
func exists(services []Service, group []int) bool {
	for _, i := range group {
		if len(services[i].Instances) > 0 || services[i].VIP.IsValid() {
			return true
		}
	}
	return false
}

// badNames returns the names of group that are not DNS labels.
func badNames(services []Service, group []int) []string {
	var bad []string
	for _, i := range group {
		if !validLabel(services[i].Name) {
			bad = append(bad, services[i].Name)
		}
	}
	return bad
}

// movePTRs records that service key now contributes now's PTR names
// instead of old's, and marks the names whose records change.
func (zb *zoneBuilder) movePTRs(key string, old, now *svcAnswers, touched map[string]bool) {
	var before, after []named
	if old != nil {
		before = old.ptrs
	}
	if now != nil {
		after = now.ptrs
	}
	if slices.EqualFunc(before, after, samePTRs) {
		return
	}
	for _, n := range before {
		zb.ptrOwners[n.name] = slices.DeleteFunc(zb.ptrOwners[n.name], func(o string) bool { return o == key })
		if len(zb.ptrOwners[n.name]) == 0 {
			delete(zb.ptrOwners, n.name)
		}
		touched[n.name] = true
	}
	for _, n := range after {
		owners := zb.ptrOwners[n.name]
		if i, found := slices.BinarySearch(owners, key); !found {
			zb.ptrOwners[n.name] = slices.Insert(owners, i, key)
		}
		touched[n.name] = true
	}
}

func samePTRs(x, y named) bool {
	return x.name == y.name && slices.EqualFunc(x.e.ptr, y.e.ptr, func(p, q mdns.PTR) bool { return p.Ptr == q.Ptr })
}

// buildNodes rebuilds the node names and their PTR records, marking the
// reverse names whose records change.
func (zb *zoneBuilder) buildNodes(b *builder, nodes []Node, touched map[string]bool) {
	st := zb.st
	for name := range zb.nodePTR {
		touched[name] = true
	}
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(x, y Node) int { return strings.Compare(x.Name, y.Name) })
	zb.nodes = make(map[string]*entry, len(sorted))
	zb.nodePTR = make(map[string]*entry, len(sorted))
	zb.badNodes = nil
	seen := make(map[string]bool, len(sorted))
	// The PTR records of each reverse name, gathered first: many nodes
	// may share an address, and merging entry by entry would copy the
	// growing list once per node.
	ptrs := map[string][]mdns.PTR{}
	var reverse []string // in the order first seen
	for _, n := range sorted {
		a := n.Addr.Unmap()
		if n.Name == "" || !a.IsValid() || seen[n.Name] {
			continue
		}
		seen[n.Name] = true
		lower := strings.ToLower(n.Name)
		if !validLabel(n.Name) || zb.nodes[lower] != nil {
			zb.badNodes = append(zb.badNodes, n.Name)
			continue
		}
		e := &entry{}
		b.addAddrs(e, []netip.Addr{a}, st.nodeTTL)
		zb.nodes[lower] = e
		r := reverseName(a)
		if r == "" {
			continue
		}
		if _, ok := ptrs[r]; !ok {
			reverse = append(reverse, r)
		}
		ptrs[r] = append(ptrs[r], b.ptrEntry(lower+".node."+st.dc+"."+st.domains[0]).ptr...)
	}
	for _, r := range reverse {
		zb.nodePTR[r] = &entry{ptr: ptrs[r]}
		touched[r] = true
	}
}

// mergePTR sets z's PTR records of one reverse name from the node and
// the services that contribute to it, in that order, without duplicates.
func (zb *zoneBuilder) mergePTR(z *zone, name string) {
	e := zb.nodePTR[name]
	for _, key := range zb.ptrOwners[name] {
		for _, n := range zb.services[key].ptrs {
			if n.name != name {
				continue
			}
			if e == nil {
				e = n.e
			} else {
				e = mergedPTR(e, n.e)
			}
		}
	}
	if e == nil {
		delete(z.ptr, name)
		return
	}
	z.ptr[name] = e
}

// mergedPTR returns a new entry with a's PTR records and those of b that
// a lacks. Entries are shared by zones, so neither is modified.
func mergedPTR(a, b *entry) *entry {
	merged := &entry{ptr: slices.Clone(a.ptr)}
	for _, p := range b.ptr {
		if !slices.ContainsFunc(merged.ptr, func(q mdns.PTR) bool { return q.Ptr == p.Ptr }) {
			merged.ptr = append(merged.ptr, p)
		}
	}
	return merged
}

// builder builds the entries of one zone. Its maps are scratch space
// reused from one service to the next.
type builder struct {
	st *settings
	// targetRR caches the address record of an SRV target name, shared
	// by every SRV entry that points to it.
	targetRR map[string]mdns.RR
	ips      map[netip.Addr]net.IP
	seenAddr map[netip.Addr]bool
	seenSRV  map[srvKey]bool
	extraAt  map[string]int32
}

type srvKey struct {
	target string
	port   uint16
}

func newBuilder(st *settings) *builder {
	return &builder{
		st:       st,
		targetRR: make(map[string]mdns.RR),
		ips:      make(map[netip.Addr]net.IP),
		seenAddr: make(map[netip.Addr]bool),
		seenSRV:  make(map[srvKey]bool),
		extraAt:  make(map[string]int32),
	}
}

// healthyInstance is an instance that is answered, with what its records
// need.
type healthyInstance struct {
	addr    netip.Addr
	port    uint16
	tags    []string // lower case, valid labels only
	targets []string // SRV target per domain
}

// service builds the entries of one service name from the catalog
// services of group (the same name in any case).
func (b *builder) service(name string, services []Service, group []int) *svcAnswers {
	st := b.st
	a := &svcAnswers{name: name}
	var vip netip.Addr
	var instances []Instance
	hold := false
	for _, i := range group {
		s := &services[i]
		if !vip.IsValid() && s.VIP.IsValid() {
			vip = s.VIP.Unmap()
		}
		hold = hold || s.Hold
		instances = append(instances, s.Instances...)
	}
	healthy := b.healthy(instances)

	// PTR: instances' own addresses (registered, healthy or not) and the VIP.
	ptrs := make(map[string]bool)
	for _, in := range instances {
		if own := in.Address.Unmap(); own.IsValid() && own != in.NodeAddr.Unmap() {
			if r := reverseName(own); r != "" && !ptrs[r] {
				ptrs[r] = true
				a.ptrs = append(a.ptrs, named{r, b.ptrEntry(name + ".service." + st.dc + "." + st.domains[0])})
			}
		}
	}
	if vip.IsValid() {
		if r := reverseName(vip); r != "" && !ptrs[r] {
			a.ptrs = append(a.ptrs, named{r, b.ptrEntry(name + "." + st.domains[0])})
		}
	}

	// Consul: <svc>.service (= _<svc>._tcp.service), and per tag.
	all := b.serviceEntry(healthy, nil)
	a.all = nonEmpty(all)
	var tags []string
	for _, h := range healthy {
		tags = append(tags, h.tags...)
	}
	slices.Sort(tags)
	for _, tag := range slices.Compact(tags) {
		if a.tags == nil {
			a.tags = make(map[string]*entry)
		}
		a.tags[tag] = b.serviceEntry(healthy, func(h *healthyInstance) bool { return slices.Contains(h.tags, tag) })
	}

	// Docker Swarm: tasks.<svc> is always the instances; <svc> is the
	// VIP when there is one. Same records, separate rotation.
	a.tasks = nonEmpty(&entry{a: all.a, aaaa: all.aaaa})
	a.svc = a.tasks
	if a.svc != nil {
		a.svc = &entry{a: all.a, aaaa: all.aaaa}
	}
	switch {
	case vip.IsValid():
		a.svc = &entry{}
		b.addAddrs(a.svc, []netip.Addr{vip}, st.ttl)
	case hold:
		a.svc = &entry{servfail: true}
	}
	return a
}

// nonEmpty returns e, or nil when it has no records.
func nonEmpty(e *entry) *entry {
	if e.empty() {
		return nil
	}
	return e
}

// healthy returns the instances that are answered, in a stable order,
// with the names their SRV records point to.
func (b *builder) healthy(instances []Instance) []*healthyInstance {
	st := b.st
	sorted := slices.Clone(instances)
	slices.SortFunc(sorted, func(x, y Instance) int {
		return cmp.Or(cmp.Compare(x.Node, y.Node), cmp.Compare(x.ServiceID, y.ServiceID), cmp.Compare(x.Port, y.Port))
	})
	var out []*healthyInstance
	for _, in := range sorted {
		if in.Status != StatusPassing && (in.Status != StatusWarning || st.passing) {
			continue
		}
		if in.Port < 0 || in.Port > 65535 {
			continue
		}
		nodeAddr, own := in.NodeAddr.Unmap(), in.Address.Unmap()
		addr := own
		if !addr.IsValid() {
			addr = nodeAddr
		}
		if !addr.IsValid() {
			continue
		}
		h := &healthyInstance{addr: addr, port: uint16(in.Port)}
		for _, t := range in.Tags {
			if validLabel(t) {
				h.tags = append(h.tags, strings.ToLower(t))
			}
		}
		// Consul's SRV target: the node's name when the instance answers
		// on the node's address, else the address itself encoded.
		byNode := addr == nodeAddr && validLabel(in.Node)
		for _, d := range st.domains {
			var t string
			if byNode {
				t = strings.ToLower(in.Node) + ".node." + st.dc + "." + d
			} else {
				t = addrLabel(addr) + ".addr." + st.dc + "." + d
			}
			if _, ok := b.targetRR[t]; !ok {
				b.targetRR[t] = b.addrRR(t, addr, st.ttl)
			}
			h.targets = append(h.targets, t)
		}
		out = append(out, h)
	}
	return out
}

// serviceEntry returns the entry of the healthy instances keep accepts
// (all when keep is nil): their addresses, and SRV records with their
// targets' addresses.
func (b *builder) serviceEntry(healthy []*healthyInstance, keep func(*healthyInstance) bool) *entry {
	st := b.st
	e := &entry{srv: make([][]mdns.SRV, len(st.domains)), extra: make([][]mdns.RR, len(st.domains))}
	var addrs []netip.Addr
	for d := range st.domains {
		clear(b.seenSRV)
		clear(b.extraAt)
		for _, h := range healthy {
			if keep != nil && !keep(h) {
				continue
			}
			if d == 0 {
				addrs = append(addrs, h.addr)
			}
			t := h.targets[d]
			if b.seenSRV[srvKey{t, h.port}] {
				continue
			}
			b.seenSRV[srvKey{t, h.port}] = true
			e.srv[d] = append(e.srv[d], mdns.SRV{
				Hdr:      mdns.RR_Header{Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: st.ttl},
				Priority: 1,
				Weight:   1,
				Port:     h.port,
				Target:   t,
			})
			i, ok := b.extraAt[t]
			if !ok {
				i = int32(len(e.extra[d]))
				b.extraAt[t] = i
				e.extra[d] = append(e.extra[d], b.targetRR[t])
			}
			if d == 0 {
				e.extraOf = append(e.extraOf, i)
			}
		}
	}
	// The same instances in the same order give the same duplicates in
	// every domain, so one extraOf serves them all; none is needed when
	// every record has a target of its own.
	if len(e.extra[0]) == len(e.srv[0]) {
		e.extraOf = nil
	}
	b.addAddrs(e, addrs, st.ttl)
	return e
}

// addAddrs sets e's A and AAAA records to addrs, without duplicates.
func (b *builder) addAddrs(e *entry, addrs []netip.Addr, ttl uint32) {
	clear(b.seenAddr)
	for _, a := range addrs {
		if b.seenAddr[a] {
			continue
		}
		b.seenAddr[a] = true
		if a.Is4() {
			e.a = append(e.a, mdns.A{Hdr: mdns.RR_Header{Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: b.ip(a)})
		} else {
			e.aaaa = append(e.aaaa, mdns.AAAA{Hdr: mdns.RR_Header{Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: ttl}, AAAA: b.ip(a)})
		}
	}
}

// addrRR returns the A or AAAA record of name.
func (b *builder) addrRR(name string, a netip.Addr, ttl uint32) mdns.RR {
	if a.Is4() {
		return &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: b.ip(a)}
	}
	return &mdns.AAAA{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: ttl}, AAAA: b.ip(a)}
}

// ip returns a as a net.IP, one shared slice per address.
func (b *builder) ip(a netip.Addr) net.IP {
	ip, ok := b.ips[a]
	if !ok {
		ip = net.IP(a.AsSlice())
		b.ips[a] = ip
	}
	return ip
}

// ptrEntry returns an entry of one PTR record to target.
func (b *builder) ptrEntry(target string) *entry {
	return &entry{ptr: []mdns.PTR{{Hdr: mdns.RR_Header{Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: b.st.nodeTTL}, Ptr: target}}}
}
