package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	chainReject           = "reject-chain"
	mapServices           = "service-ips"
	mapNoEndpoints        = "no-endpoint-services"

	// commentMax is the longest rule comment the kernel keeps
	// (NFT_USERDATA_MAXLEN is 256 bytes with a 2-byte TLV header).
	commentMax = 250
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

// svcChainName and epChainName are deterministic: a restart adopts the
// chains an earlier run made because it would name them the same.
func svcChainName(addr netip.Addr, proto vip.Proto, port uint16) string {
	return fmt.Sprintf("svc-%s-%s-%d", addr, proto, port)
}

func epChainName(addr netip.Addr, proto vip.Proto, port uint16, be netip.AddrPort) string {
	return fmt.Sprintf("ep-%s-%s-%d-%s-%d", addr, proto, port, be.Addr(), be.Port())
}

// vipOfChain returns the VIP a per-service chain belongs to, false for any
// other name.
func vipOfChain(name string) (netip.Addr, bool) {
	var rest string
	switch {
	case strings.HasPrefix(name, "svc-"):
		rest = name[len("svc-"):]
	case strings.HasPrefix(name, "ep-"):
		rest = name[len("ep-"):]
	default:
		return netip.Addr{}, false
	}
	s, _, _ := strings.Cut(rest, "-")
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// rule is one rule as this package writes it: the comment that names it
// (and is its fingerprint in the kernel) and how to build its expressions.
type rule struct {
	comment string
	// build queues the rule's expressions; it may first queue an
	// anonymous set the rule refers to.
	build func(b *builder) ([]expr.Any, error)
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

// vipState is everything one VIP owns in the table. The desired form has
// chain specs; the form that records what the kernel holds keeps only the
// fingerprints (fps).
type vipState struct {
	chains      map[string]chainSpec // desired only
	fps         map[string]string    // chain name -> fingerprint
	services    map[mapKey]string    // service-ips element -> chain it goes to
	noEndpoints map[mapKey]bool      // no-endpoint-services elements
}

func newVIPState() *vipState {
	return &vipState{
		chains:      map[string]chainSpec{},
		fps:         map[string]string{},
		services:    map[mapKey]string{},
		noEndpoints: map[mapKey]bool{},
	}
}

// recorded is the state as kept after it was applied: fingerprints only.
func (s *vipState) recorded() *vipState {
	return &vipState{fps: s.fps, services: s.services, noEndpoints: s.noEndpoints}
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
func desiredVIP(s vip.Service, mark uint32) *vipState {
	st := newVIPState()
	for _, p := range s.Ports {
		key := keyOf(s.VIP, p.Proto, p.Port)
		backends := uniqueBackends(p.Backends)
		if len(backends) == 0 {
			st.noEndpoints[key] = true
			continue
		}
		svc := svcChainName(s.VIP, p.Proto, p.Port)
		targets := make([]string, len(backends))
		for i, be := range backends {
			ep := epChainName(s.VIP, p.Proto, p.Port, be)
			targets[i] = ep
			st.chains[ep] = chainSpec{rules: []rule{dnatRule(be)}}
		}
		st.chains[svc] = chainSpec{rules: []rule{balanceRule(s.Name, backends, targets, mark)}}
		st.services[key] = svc
	}
	for name, c := range st.chains {
		st.fps[name] = c.fingerprint()
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

// dnatRule: dnat to ADDR:PORT.
func dnatRule(be netip.AddrPort) rule {
	return rule{
		comment: "dnat to " + be.String(),
		build: func(*builder) ([]expr.Any, error) {
			a := be.Addr().As4()
			return []expr.Any{
				&expr.Immediate{Register: 1, Data: a[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(be.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
			}, nil
		},
	}
}

// balanceRule: meta mark set mark | MARK numgen random mod N vmap { i : goto target-i }.
// Its comment lists the backends (or, past the kernel's comment limit, a
// hash of them) so Sync can tell whether it is still the right rule.
func balanceRule(name string, backends []netip.AddrPort, targets []string, mark uint32) rule {
	list := make([]string, len(backends))
	for i, be := range backends {
		list[i] = be.String()
	}
	comment := fmt.Sprintf("%s: mark 0x%x, numgen random mod %d -> %s", name, mark, len(backends), strings.Join(list, " "))
	if len(comment) > commentMax {
		sum := sha256.Sum256([]byte(strings.Join(targets, "\n")))
		comment = fmt.Sprintf("mark 0x%x, numgen random mod %d -> sha256:%s", mark, len(backends), hex.EncodeToString(sum[:8]))
		if len(name)+2+len(comment) <= commentMax {
			comment = name + ": " + comment
		}
	}
	return rule{
		comment: comment,
		build: func(b *builder) ([]expr.Any, error) {
			set := b.anonVerdictMap()
			elems := make([]nftables.SetElement, len(targets))
			for i, t := range targets {
				elems[i] = nftables.SetElement{
					Key:         binaryutil.NativeEndian.PutUint32(uint32(i)),
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: t},
				}
			}
			if err := b.conn.AddSet(set, elems); err != nil {
				return nil, err
			}
			return append(setMarkExprs(mark),
				&expr.Numgen{Register: 1, Modulus: uint32(len(targets)), Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
			), nil
		},
	}
}

// setMarkExprs: meta mark set meta mark | mark.
func setMarkExprs(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^mark), Xor: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// lookupRule: ip daddr . meta l4proto . th dport vmap @set.
func lookupRule(set string) rule {
	return rule{
		comment: "ip daddr . meta l4proto . th dport vmap @" + set,
		build: func(b *builder) ([]expr.Any, error) {
			s := b.namedSet(set)
			return []expr.Any{
				&expr.Payload{DestRegister: unix.NFT_REG32_00, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_01},
				&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: unix.NFT_REG32_00, DestRegister: 0, IsDestRegSet: true, SetName: s.Name, SetID: s.ID},
			}, nil
		},
	}
}

func jumpRule(chain string) rule {
	return rule{
		comment: "jump " + chain,
		build: func(*builder) ([]expr.Any, error) {
			return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}, nil
		},
	}
}

// masqueradeRule: meta mark & MARK != 0 meta mark set mark & ~MARK masquerade fully-random.
func masqueradeRule(mark uint32) rule {
	return rule{
		comment: fmt.Sprintf("meta mark & 0x%x != 0: clear it, masquerade fully-random", mark),
		build: func(*builder) ([]expr.Any, error) {
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
			}, nil
		},
	}
}

func rejectRules() []rule {
	return []rule{
		{
			comment: "meta l4proto tcp reject with tcp reset",
			build: func(*builder) ([]expr.Any, error) {
				return []expr.Any{
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
				}, nil
			},
		},
		{
			comment: "reject with icmp port-unreachable",
			build: func(*builder) ([]expr.Any, error) {
				return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* ICMP_PORT_UNREACH */}}, nil
			},
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
		{name: chainServices, spec: chainSpec{rules: []rule{lookupRule(mapServices)}}},
		{name: chainReject, spec: chainSpec{rules: rejectRules()}},
		{name: chainNatPrerouting, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: dstnat,
			spec: chainSpec{rules: []rule{jumpRule(chainServices)}}},
		{name: chainNatOutput, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, priority: dstnat,
			spec: chainSpec{rules: []rule{jumpRule(chainServices)}}},
		{name: chainNatPostrouting, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: srcnat,
			spec: chainSpec{rules: []rule{masqueradeRule(mark)}}},
		{name: chainFilterPrerouting, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting, priority: preDNAT,
			spec: chainSpec{rules: []rule{lookupRule(mapNoEndpoints)}}},
		{name: chainFilterOutput, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: preDNAT,
			spec: chainSpec{rules: []rule{lookupRule(mapNoEndpoints)}}},
	}
}
