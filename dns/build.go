package dns

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// zoneBuilder turns catalog snapshots into zones. It keeps what each
// service contributed to the last zone, with a hash of the service's
// catalog entries, so that when one service of 10,000 changes, one is
// rebuilt and the rest reused (with their rotation); the node and PTR
// maps are reused while nothing they come from changed. Only the Run
// goroutine uses it.
type zoneBuilder struct {
	st   *settings
	seed maphash.Seed
	// The last zone's maps, which that zone still reads: never modified,
	// only copied or reused.
	services map[string]*svcAnswers
	nodes    map[string]*entry
	ptr      map[string]*entry
	nodeSum  uint64 // hash of the nodes nodes and ptr were built from
	buf      []byte // hash input, reused
}

func newZoneBuilder(st *settings) *zoneBuilder {
	return &zoneBuilder{st: st, seed: maphash.MakeSeed()}
}

// svcAnswers holds the answers of one service name. Entries with no
// records are nil.
type svcAnswers struct {
	name  string            // lower case
	sum   uint64            // hash of the catalog entries it was built from
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

// build precomputes the answers for one catalog snapshot.
func (zb *zoneBuilder) build(index uint64, services []Service, nodes []Node) (*zone, buildResult) {
	st := zb.st
	var res buildResult
	z := newZone(st, index)
	b := newBuilder(st)

	// Group services by lower-case name (DNS names are not case
	// sensitive): nearly every name is one catalog service; dups holds
	// the names that are several.
	first := make(map[string]int, len(services))
	var order []string // names in catalog order
	var dups map[string][]int
	for i := range services {
		s := &services[i]
		if !validLabel(s.Name) {
			res.badServices = append(res.badServices, s.Name)
			continue
		}
		key := strings.ToLower(s.Name)
		j, ok := first[key]
		if !ok {
			first[key] = i
			order = append(order, key)
			continue
		}
		if dups == nil {
			dups = make(map[string][]int)
		}
		if dups[key] == nil {
			dups[key] = []int{j}
		}
		dups[key] = append(dups[key], i)
	}
	slices.Sort(res.badServices)
	res.badServices = slices.Compact(res.badServices)

	// Rebuild the services whose catalog entries changed.
	var changed []*svcAnswers
	samePTR := true // no PTR record changes
	kept := 0       // names the last zone had too
	for _, key := range order {
		group := dups[key]
		if group == nil {
			group = []int{first[key]}
		}
		sum := zb.hashGroup(services, group)
		old := zb.services[key]
		if old != nil {
			kept++
			if old.sum == sum {
				continue
			}
		}
		a := b.service(key, services, group)
		a.sum = sum
		changed = append(changed, a)
		samePTR = samePTR && old != nil && slices.EqualFunc(old.ptrs, a.ptrs, func(x, y named) bool {
			return x.name == y.name && slices.EqualFunc(x.e.ptr, y.e.ptr, func(p, q mdns.PTR) bool { return p.Ptr == q.Ptr })
		})
	}
	res.rebuilt = len(changed)
	sameNames := kept == len(order) && kept == len(zb.services)
	var next map[string]*svcAnswers
	if sameNames {
		next = maps.Clone(zb.services) // copies the table; no rehashing
	} else {
		next = make(map[string]*svcAnswers, len(order))
		for _, key := range order {
			if a := zb.services[key]; a != nil {
				next[key] = a
			}
		}
	}
	for _, a := range changed {
		next[a.name] = a
	}
	zb.services, z.services = next, next

	// Nodes: those listed and those instances name.
	nodeAddr := make(map[string]netip.Addr, len(nodes))
	var nodeNames []string
	zb.buf = zb.buf[:0]
	addNode := func(name string, a netip.Addr) {
		a = a.Unmap()
		if name == "" || !a.IsValid() {
			return
		}
		if _, ok := nodeAddr[name]; !ok {
			nodeNames = append(nodeNames, name)
			nodeAddr[name] = a
			zb.buf = appendAddr(appendString(zb.buf, name), a)
		}
	}
	for _, n := range nodes {
		addNode(n.Name, n.Addr)
	}
	for _, s := range services {
		for _, in := range s.Instances {
			addNode(in.Node, in.NodeAddr)
		}
	}
	nodeSum := maphash.Bytes(zb.seed, zb.buf)
	if zb.ptr != nil && sameNames && samePTR && nodeSum == zb.nodeSum {
		z.nodes, z.ptr = zb.nodes, zb.ptr
		return z, res
	}

	slices.Sort(nodeNames)
	nptr := len(nodeNames)
	for _, a := range next {
		nptr += len(a.ptrs)
	}
	z.nodes = make(map[string]*entry, len(nodeNames))
	z.ptr = make(map[string]*entry, nptr)
	for _, name := range nodeNames {
		lower := strings.ToLower(name)
		if !validLabel(name) || z.nodes[lower] != nil {
			res.badNodes = append(res.badNodes, name)
			continue
		}
		a := nodeAddr[name]
		e := &entry{}
		b.addAddrs(e, []netip.Addr{a}, st.nodeTTL)
		z.nodes[lower] = e
		z.addPTR(reverseName(a), b.ptrEntry(lower+".node."+st.dc+"."+st.domains[0]))
	}
	for _, key := range order {
		for _, n := range next[key].ptrs {
			z.addPTR(n.name, n.e)
		}
	}
	zb.nodes, zb.ptr, zb.nodeSum = z.nodes, z.ptr, nodeSum
	return z, res
}

// hashGroup hashes the catalog entries of one service name.
func (zb *zoneBuilder) hashGroup(services []Service, group []int) uint64 {
	b := zb.buf[:0]
	for _, i := range group {
		s := &services[i]
		b = appendAddr(appendString(b, s.Name), s.VIP)
		b = binary.AppendUvarint(b, uint64(len(s.Instances)))
		for _, in := range s.Instances {
			b = appendAddr(appendString(b, in.Node), in.NodeAddr)
			b = appendAddr(appendString(b, in.ServiceID), in.Address)
			b = binary.AppendVarint(b, int64(in.Port))
			b = binary.AppendUvarint(b, uint64(len(in.Tags)))
			for _, t := range in.Tags {
				b = appendString(b, t)
			}
			b = appendString(b, in.Status)
		}
	}
	zb.buf = b
	return maphash.Bytes(zb.seed, b)
}

// appendString appends s, length first, so that no two lists of strings
// append the same bytes.
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	a16 := a.As16()
	return append(append(b, byte(a.BitLen())), a16[:]...)
}

// addPTR adds e's PTR records to name's, without duplicates. Entries may
// be cached by services, so a second contribution makes a new entry.
func (z *zone) addPTR(name string, e *entry) {
	if name == "" {
		return
	}
	old := z.ptr[name]
	if old == nil {
		z.ptr[name] = e
		return
	}
	merged := &entry{ptr: slices.Clone(old.ptr)}
	for _, p := range e.ptr {
		if !slices.ContainsFunc(merged.ptr, func(q mdns.PTR) bool { return q.Ptr == p.Ptr }) {
			merged.ptr = append(merged.ptr, p)
		}
	}
	z.ptr[name] = merged
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
	for _, i := range group {
		s := &services[i]
		if !vip.IsValid() && s.VIP.IsValid() {
			vip = s.VIP.Unmap()
		}
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
	if vip.IsValid() {
		a.svc = &entry{}
		b.addAddrs(a.svc, []netip.Addr{vip}, st.ttl)
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
