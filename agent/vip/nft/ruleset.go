package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the table-level objects. They are fixed: a restart finds them
// again by name.
const (
	chainNatPrerouting    = "nat-prerouting"
	chainNatOutput        = "nat-output"
	chainNatPostrouting   = "nat-postrouting"
	chainFilterPrerouting = "filter-prerouting"
	chainFilterOutput     = "filter-output"
	chainServices         = "services"
	mapServices           = "service-ips"          // VIP . proto . port : goto balance-N (N backends)
	mapBackends           = "service-backends"     // -S (shard): VIP . proto . port . index : ADDR . PORT
	mapNoEndpoints        = "no-endpoint-services" // VIP . proto . port of ports with no backends
)

// mapKey is an element key of both maps: ip daddr . meta l4proto . th dport,
// each field padded to a 4-byte register as the kernel compares them.
type mapKey [12]byte

func keyOf(addr netip.Addr, proto vip.Proto, port uint16) mapKey {
	var k mapKey
	a := addr.As4()
	copy(k[0:4], a[:])
	k[4] = protoNum(proto)
	binary.BigEndian.PutUint16(k[8:10], port)
	return k
}

func (k mapKey) vip() netip.Addr { return netip.AddrFrom4([4]byte(k[0:4])) }

func (k mapKey) String() string {
	proto := fmt.Sprint(k[4])
	switch k[4] {
	case unix.IPPROTO_TCP:
		proto = "tcp"
	case unix.IPPROTO_UDP:
		proto = "udp"
	}
	return fmt.Sprintf("%s . %s . %d", k.vip(), proto, binary.BigEndian.Uint16(k[8:10]))
}

func protoNum(p vip.Proto) byte {
	if p == vip.UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// beKey is an element key of service-backends: the service key and the
// backend's index (host byte order, as numgen writes it).
type beKey [16]byte

func backendKey(k mapKey, i uint32) beKey {
	var b beKey
	copy(b[:12], k[:])
	copy(b[12:], binaryutil.NativeEndian.PutUint32(i))
	return b
}

func (b beKey) String() string {
	return fmt.Sprintf("%s . %d", mapKey(b[:12]), binaryutil.NativeEndian.Uint32(b[12:]))
}

// backendValue is an element value of service-backends: ADDR . PORT,
// the port padded to a register.
func backendValue(be netip.AddrPort) []byte {
	a := be.Addr().As4()
	v := make([]byte, 8)
	copy(v, a[:])
	binary.BigEndian.PutUint16(v[4:6], be.Port())
	return v
}

func parseBackendValue(v []byte) (netip.AddrPort, bool) {
	if len(v) != 8 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[0:4])), binary.BigEndian.Uint16(v[4:6])), true
}

// backendShards is how many service-backends maps the backends are
// spread over, by VIP. Listing a set from the kernel costs time
// quadratic in its size (each netlink dump message walks the set from
// its start again), so one map of 100k backends took 3.7 s to read and
// sixteen of 6k take a sixteenth of the time each.
const backendShards = 16

// shardOf is the service-backends map a VIP's backends live in.
func shardOf(a netip.Addr) int {
	h := uint32(2166136261) // FNV-1a
	for _, c := range a.As4() {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % backendShards)
}

func backendsMap(shard int) string { return fmt.Sprintf("%s-%d", mapBackends, shard) }

// A balance class is N backends in one shard: the chain balance-N-S
// picks one of N from service-backends-S. Encoded as N<<4 | S.
func classOf(n uint32, shard int) uint32 { return n<<4 | uint32(shard) }
func classN(c uint32) uint32             { return c >> 4 }
func classShard(c uint32) int            { return int(c & (backendShards - 1)) }

// balanceChainName is the chain of one balance class, shared by every VIP
// port of that shard with that many backends.
func balanceChainName(c uint32) string {
	return fmt.Sprintf("balance-%d-%d", classN(c), classShard(c))
}

func balanceClass(name string) (uint32, bool) {
	var n uint32
	var shard int
	if _, err := fmt.Sscanf(name, "balance-%d-%d", &n, &shard); err != nil || n == 0 || n >= 1<<28 ||
		shard < 0 || shard >= backendShards || balanceChainName(classOf(n, shard)) != name {
		return 0, false
	}
	return classOf(n, shard), true
}

// rule is one rule as this package writes it: the comment that names it
// (and is its fingerprint in the kernel) and how to build its expressions.
type rule struct {
	comment string
	exprs   func(b *builder) []expr.Any
}

// chainSpec is what one chain should hold.
type chainSpec struct {
	rules []rule
}

// fingerprint is what the kernel shows of a chain: its rules' comments.
func (c chainSpec) fingerprint() string {
	parts := make([]string, len(c.rules))
	for i, r := range c.rules {
		parts[i] = r.comment
	}
	return strings.Join(parts, "\n")
}

// vipState is everything one VIP owns in the table: map elements only.
type vipState struct {
	counts      map[mapKey]uint32        // service-ips: key -> number of backends
	backends    map[beKey]netip.AddrPort // service-backends
	noEndpoints map[mapKey]bool          // no-endpoint-services
}

func newVIPState() *vipState {
	return &vipState{
		counts:      map[mapKey]uint32{},
		backends:    map[beKey]netip.AddrPort{},
		noEndpoints: map[mapKey]bool{},
	}
}

// validate checks a Service against what this data plane can program.
func validate(s vip.Service) error {
	if !s.VIP.Is4() {
		return fmt.Errorf("service %q: VIP %s is not an IPv4 address; the nftables data plane programs an ip-family table and balances IPv4 VIPs only (use an IPv4 -vip-cidr)", s.Name, s.VIP)
	}
	seen := map[string]bool{}
	for _, p := range s.Ports {
		if p.Proto != vip.TCP && p.Proto != vip.UDP {
			return fmt.Errorf("service %q VIP %s: protocol %q is not one of tcp, udp", s.Name, s.VIP, p.Proto)
		}
		if p.Port == 0 {
			return fmt.Errorf("service %q VIP %s: port 0 is not a port a VIP can accept", s.Name, s.VIP)
		}
		id := fmt.Sprintf("%s/%d", p.Proto, p.Port)
		if seen[id] {
			return fmt.Errorf("service %q VIP %s: port %s is listed twice; Ports must be unique on (Proto, Port)", s.Name, s.VIP, id)
		}
		seen[id] = true
		for _, be := range p.Backends {
			if !be.Addr().Is4() || be.Port() == 0 {
				return fmt.Errorf("service %q VIP %s port %s: backend %s is not an IPv4 address with a non-zero port", s.Name, s.VIP, id, be)
			}
		}
	}
	return nil
}

// desiredVIP is the whole table state of one Service.
func desiredVIP(s vip.Service) *vipState {
	st := newVIPState()
	for _, p := range s.Ports {
		key := keyOf(s.VIP, p.Proto, p.Port)
		backends := uniqueBackends(p.Backends)
		if len(backends) == 0 {
			st.noEndpoints[key] = true
			continue
		}
		st.counts[key] = uint32(len(backends))
		for i, be := range backends {
			st.backends[backendKey(key, uint32(i))] = be
		}
	}
	return st
}

func uniqueBackends(in []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(in))
	seen := make(map[netip.AddrPort]bool, len(in))
	for _, be := range in {
		if !seen[be] {
			seen[be] = true
			out = append(out, be)
		}
	}
	return out
}

// balanceSpec is chain balance-N-S: pick one of N backends at random
// from service-backends-S and DNAT to it, marking the connection for
// masquerade.
func balanceSpec(c, mark uint32) chainSpec {
	n, set := classN(c), backendsMap(classShard(c))
	return chainSpec{rules: []rule{{
		comment: fmt.Sprintf("numgen random mod %d, dnat to ip daddr . meta l4proto . th dport . numgen map @%s, mark 0x%x", n, set, mark),
		exprs: func(b *builder) []expr.Any {
			// The kernel lets a rule read only registers it wrote itself,
			// so the key is loaded again here.
			return append(append(serviceKeyExprs(),
				&expr.Numgen{Register: unix.NFT_REG32_03, Modulus: n, Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, DestRegister: unix.NFT_REG_1, IsDestRegSet: true, SetName: set},
			), append(setMarkExprs(mark),
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: unix.NFT_REG_1, RegProtoMin: unix.NFT_REG32_01},
			)...)
		},
	}}}
}

// setMarkExprs: meta mark set meta mark | mark.
func setMarkExprs(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_2},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_2, DestRegister: unix.NFT_REG_2, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^mark), Xor: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: unix.NFT_REG_2},
	}
}

// serviceKeyExprs loads ip daddr . meta l4proto . th dport into
// registers 8-10.
func serviceKeyExprs() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: unix.NFT_REG32_00, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_01},
		&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// servicesRule: ip daddr . meta l4proto . th dport vmap @service-ips.
func servicesRule() rule {
	return rule{
		comment: fmt.Sprintf("ip daddr . meta l4proto . th dport vmap @%s", mapServices),
		exprs: func(b *builder) []expr.Any {
			return append(serviceKeyExprs(),
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, DestRegister: 0, IsDestRegSet: true, SetName: mapServices},
			)
		},
	}
}

// noEndpointRules reject connections to a VIP port with no backends:
// a TCP reset for TCP, ICMP port unreachable for the rest.
func noEndpointRules() []rule {
	match := fmt.Sprintf("ip daddr . meta l4proto . th dport @%s ", mapNoEndpoints)
	lookup := func() []expr.Any {
		return append(serviceKeyExprs(), &expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: mapNoEndpoints})
	}
	return []rule{
		{
			comment: match + "meta l4proto tcp reject with tcp reset",
			exprs: func(*builder) []expr.Any {
				return append(lookup(),
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{unix.IPPROTO_TCP}},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
				)
			},
		},
		{
			comment: match + "reject with icmp port-unreachable",
			exprs: func(*builder) []expr.Any {
				return append(lookup(), &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* ICMP_PORT_UNREACH */})
			},
		},
	}
}

func jumpRule(chain string) rule {
	return rule{
		comment: "jump " + chain,
		exprs: func(*builder) []expr.Any {
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
		},
	}
}

// masqueradeRule: meta mark & MARK != 0 meta mark set mark & ~MARK masquerade fully-random.
func masqueradeRule(mark uint32) rule {
	return rule{
		comment: fmt.Sprintf("meta mark & 0x%x != 0: clear it, masquerade fully-random", mark),
		exprs: func(*builder) []expr.Any {
			return []expr.Any{
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(mark), Xor: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(^mark), Xor: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
				&expr.Masq{FullyRandom: true},
			}
		},
	}
}

// baseChain is a table-level chain: hooked ones carry their hook.
type baseChain struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	spec     chainSpec
}

// baseChains is the fixed skeleton. Regular chains come first: the
// hooked chains jump to them, so they must exist before those rules.
func baseChains(mark uint32) []baseChain {
	dstnat := nftables.ChainPriorityRef(-100)  // dstnat
	preDNAT := nftables.ChainPriorityRef(-110) // dstnat - 10: reject before any DNAT
	srcnat := nftables.ChainPriorityRef(100)   // srcnat
	return []baseChain{
		{name: chainServices, spec: chainSpec{rules: []rule{servicesRule()}}},
		{name: chainNatPrerouting, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: dstnat,
			spec: chainSpec{rules: []rule{jumpRule(chainServices)}}},
		{name: chainNatOutput, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, priority: dstnat,
			spec: chainSpec{rules: []rule{jumpRule(chainServices)}}},
		{name: chainNatPostrouting, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: srcnat,
			spec: chainSpec{rules: []rule{masqueradeRule(mark)}}},
		{name: chainFilterPrerouting, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting, priority: preDNAT,
			spec: chainSpec{rules: noEndpointRules()}},
		{name: chainFilterOutput, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: preDNAT,
			spec: chainSpec{rules: noEndpointRules()}},
	}
}

// stabilize renumbers want's backends so that each one already in the
// kernel keeps its index where it can: removing one of N backends then
// moves only the last one into the gap instead of shifting them all.
// Balancing is the same either way (numgen picks an index at random).
func stabilize(old, want *vipState) {
	for key, n := range want.counts {
		if _, ok := old.counts[key]; !ok {
			continue
		}
		wanted := make(map[netip.AddrPort]bool, n)
		order := make([]netip.AddrPort, 0, n)
		for i := range n {
			be := want.backends[backendKey(key, i)]
			wanted[be] = true
			order = append(order, be)
		}
		slots := make([]netip.AddrPort, n)
		placed := make(map[netip.AddrPort]bool, n)
		for i := range n {
			be, ok := old.backends[backendKey(key, i)]
			if ok && wanted[be] && !placed[be] {
				slots[i] = be
				placed[be] = true
			}
		}
		next := 0
		for _, be := range order {
			if placed[be] {
				continue
			}
			for slots[next].IsValid() {
				next++
			}
			slots[next] = be
			placed[be] = true
		}
		for i, be := range slots {
			want.backends[backendKey(key, uint32(i))] = be
		}
	}
}
