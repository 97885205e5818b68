package vip

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/hashicorp/go-memdb"
)

// Catalog is what the allocator and the reconciler read from the
// service catalog (*catalog.Catalog satisfies it). Every method is a
// local read, safe for concurrent use, that adds to ws (never nil here)
// the channels that close when its answer can have changed.
type Catalog interface {
	// Changes reports the services whose health answers changed after
	// index since: their lower-case names (deleted services included),
	// and adds to ws a channel that closes on the next change. reset is
	// true when since is too old to answer (or 0): the caller must then
	// re-read every service (Services/ServiceHealth).
	Changes(ws memdb.WatchSet, since uint64) (index uint64, names []string, reset bool)
	// Services returns every service name (with its tags, unused here).
	Services(ws memdb.WatchSet, f catalog.Filter) (uint64, map[string][]string)
	// ServiceHealth returns a service's instances with their checks,
	// the node's included; the name is matched without regard to case.
	ServiceHealth(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance)
}

// Meta keys a service's instances use to shape its VIP.
const (
	// MetaEndpointMode "dnsrr" (Docker Swarm's word) opts a service out:
	// no VIP, and <name>.cluster answers the instances. One instance
	// saying so is enough.
	MetaEndpointMode = "endpoint_mode"
	EndpointDNSRR    = "dnsrr"
	// MetaPort lists the ports the VIP accepts: "80", "80/tcp,53/udp".
	MetaPort = "vip_port"
	// MetaProto is the protocol of MetaPort entries without one (and of
	// the common-port default): "tcp" (the default) or "udp".
	MetaProto = "vip_proto"
)

// shape is what the catalog says about one service, before its VIP.
type shape struct {
	name  string // as registered (the first instance's spelling)
	dnsrr bool
	// portMeta and protoMeta are the vip_port and vip_proto values most
	// instances carry ("" when none carries one; ties go to the
	// lexically smallest). protoMeta is lower case.
	portMeta, protoMeta string
	// common is the most common registered Port of the instances (ties:
	// the lowest); 0 when none has one.
	common uint16
	// backends are the passing instances' Address:Port, sorted, unique.
	backends []netip.AddrPort
}

// shapeOf reads what a service's instances say about its VIP (all of
// them, whatever their health: the Meta and ports must not flip when a
// check fails) and its backends (the passing ones). It returns nil when
// the service has no instances. Which ports the VIP accepts is decided
// by pin, once, from this.
//
// Every VIP port forwards to each passing instance's registered
// Address:Port (the node's address when the service has none), so
// instances published on different host ports sit behind one VIP:port.
// Instances with no port or no IP address are not backends.
func shapeOf(insts []catalog.Instance) *shape {
	if len(insts) == 0 {
		return nil
	}
	s := &shape{name: insts[0].Service.Name}
	var (
		metaVotes  map[string]int // made on the first vip_port seen
		protoVotes map[string]int
		portVotes  []vote // few distinct ports: a slice beats a map
	)
	for _, in := range insts {
		m := in.Service.Meta
		if m[MetaEndpointMode] == EndpointDNSRR {
			s.dnsrr = true
		}
		if v := strings.TrimSpace(m[MetaPort]); v != "" {
			if metaVotes == nil {
				metaVotes = map[string]int{}
			}
			metaVotes[v]++
		}
		if v := strings.ToLower(strings.TrimSpace(m[MetaProto])); v != "" {
			if protoVotes == nil {
				protoVotes = map[string]int{}
			}
			protoVotes[v]++
		}
		if p := in.Service.Port; p > 0 && p <= 65535 {
			portVotes = addVote(portVotes, p)
		}
	}
	if s.dnsrr {
		return s
	}
	if len(metaVotes) > 0 {
		s.portMeta = mostCommonKey(metaVotes, strings.Compare)
	}
	if len(protoVotes) > 0 {
		s.protoMeta = mostCommonKey(protoVotes, strings.Compare)
	}
	if len(portVotes) > 0 {
		best := portVotes[0]
		for _, v := range portVotes[1:] {
			if v.n > best.n || (v.n == best.n && v.port < best.port) {
				best = v
			}
		}
		s.common = uint16(best.port)
	}

	backends := make([]netip.AddrPort, 0, len(insts))
	for _, in := range insts {
		if !passing(in.Checks) || in.Service.Port <= 0 || in.Service.Port > 65535 {
			continue
		}
		a, ok := instanceAddr(in)
		if !ok {
			continue
		}
		backends = append(backends, netip.AddrPortFrom(a, uint16(in.Service.Port)))
	}
	slices.SortFunc(backends, netip.AddrPort.Compare)
	s.backends = slices.Compact(backends)
	return s
}

// Pinned is how a VIP's target ports were decided: the ports, and the
// vip_port and vip_proto Meta they were decided from. The leader keeps
// it in the allocation record, so every node programs the same ports
// whatever instances it sees.
type Pinned struct {
	Ports     []Port // sorted, unique; Backends nil. None: not decided yet
	PortMeta  string // the vip_port value they came from; "": the common port
	ProtoMeta string // the vip_proto value in effect; "": tcp
}

// pin decides a service's target ports from what its instances say
// now (s) and what was decided before (old). The rule (README, "Service
// VIPs"):
//
//   - decided once, when the service is first seen with a port: the
//     ports Meta vip_port names ("80", "80/tcp,53/udp"; when instances
//     disagree, the value most of them carry, ties to the lexically
//     smallest), else the most common registered Port of the instances
//     (ties: the lowest); the protocol of entries without one is Meta
//     vip_proto, else tcp;
//   - changed only when the instances' vip_port or vip_proto Meta
//     changes to another value than the one the ports were decided
//     from; instances that come and go on other ports, or that drop the
//     Meta, change nothing. A new vip_proto alone keeps the port numbers.
//
// problem explains a Meta that was ignored (a bad vip_port), for a log
// line; "" when none.
func pin(old Pinned, s *shape) (p Pinned, problem string) {
	portMeta, protoMeta := s.portMeta, s.protoMeta
	if len(old.Ports) > 0 {
		// An absent Meta changes nothing; only another value does.
		if portMeta == "" {
			portMeta = old.PortMeta
		}
		if protoMeta == "" {
			protoMeta = old.ProtoMeta
		}
		if portMeta == old.PortMeta && protoMeta == old.ProtoMeta {
			return old, ""
		}
	}
	proto := TCP
	switch Proto(protoMeta) {
	case "", TCP:
	case UDP:
		proto = UDP
	default:
		problem = fmt.Sprintf("meta %s=%q is neither tcp nor udp; using tcp", MetaProto, protoMeta)
	}
	if portMeta != "" {
		ps, err := parsePorts(portMeta, proto)
		if err == nil {
			return Pinned{Ports: ps, PortMeta: portMeta, ProtoMeta: protoMeta}, problem
		}
		if len(old.Ports) > 0 {
			// Keep what was decided; the Meta is reported.
			return old, err.Error() + "; keeping the VIP's ports " + FormatPorts(old.Ports)
		}
		problem = err.Error() + "; using the most common instance port instead"
		portMeta = ""
	}
	if len(old.Ports) > 0 && old.PortMeta == "" {
		// Decided from the common port: only the protocol changed.
		ps := make([]Port, len(old.Ports))
		for i, op := range old.Ports {
			ps[i] = Port{Proto: proto, Port: op.Port}
		}
		slices.SortFunc(ps, comparePort)
		ps = slices.CompactFunc(ps, func(a, b Port) bool { return comparePort(a, b) == 0 })
		return Pinned{Ports: ps, ProtoMeta: protoMeta}, problem
	}
	if s.common == 0 {
		return Pinned{}, problem // no port yet: decided when one comes
	}
	return Pinned{Ports: []Port{{Proto: proto, Port: s.common}}, PortMeta: portMeta, ProtoMeta: protoMeta}, problem
}

// equalPinned reports whether two decisions are the same.
func equalPinned(a, b Pinned) bool {
	return a.PortMeta == b.PortMeta && a.ProtoMeta == b.ProtoMeta && slices.EqualFunc(a.Ports, b.Ports, func(x, y Port) bool { return comparePort(x, y) == 0 })
}

// FormatPorts writes ports as vip_port spells them: "53/udp,80/tcp".
func FormatPorts(ports []Port) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p.Port)))
		b.WriteByte('/')
		b.WriteString(string(p.Proto))
	}
	return b.String()
}

// withBackends returns ports with every port forwarding to backends.
func withBackends(ports []Port, backends []netip.AddrPort) []Port {
	out := make([]Port, len(ports))
	for i, p := range ports {
		out[i] = Port{Proto: p.Proto, Port: p.Port, Backends: backends}
	}
	return out
}

// passing reports whether an instance with these checks (its node's
// included) is healthy: catalog.AggregateStatus, the one definition.
func passing(checks []*catalog.Check) bool {
	return catalog.AggregateStatus(checks) == catalog.StatusPassing
}

// instanceAddr is where an instance is reached: its own address, else
// its node's; ok is false when that is not an IP.
func instanceAddr(in catalog.Instance) (netip.Addr, bool) {
	s := in.Service.Address
	if s == "" && in.Node != nil {
		s = in.Node.Address
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parsePorts parses a vip_port value: comma-separated port[/proto].
func parsePorts(spec string, defProto Proto) ([]Port, error) {
	var out []Port
	for f := range strings.SplitSeq(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		num, proto, hasProto := strings.Cut(f, "/")
		p := defProto
		if hasProto {
			switch Proto(strings.ToLower(proto)) {
			case TCP:
				p = TCP
			case UDP:
				p = UDP
			default:
				return nil, fmt.Errorf("meta %s=%q: protocol %q is neither tcp nor udp", MetaPort, spec, proto)
			}
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("meta %s=%q: %q is not a port from 1 to 65535; write e.g. \"80\" or \"80/tcp,53/udp\"", MetaPort, spec, num)
		}
		out = append(out, Port{Proto: p, Port: uint16(n)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("meta %s=%q names no port; write e.g. \"80\" or \"80/tcp,53/udp\"", MetaPort, spec)
	}
	slices.SortFunc(out, comparePort)
	return slices.CompactFunc(out, func(a, b Port) bool { return comparePort(a, b) == 0 }), nil
}

func comparePort(a, b Port) int {
	if c := strings.Compare(string(a.Proto), string(b.Proto)); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// mostCommonKey returns the key with the most votes; ties go to the
// smallest key by less.
func mostCommonKey[K comparable](votes map[K]int, compare func(a, b K) int) K {
	var (
		best  K
		count = -1
	)
	for k, n := range votes {
		if n > count || (n == count && compare(k, best) < 0) {
			best, count = k, n
		}
	}
	return best
}

// vote counts one port's instances.
type vote struct{ port, n int }

func addVote(vs []vote, port int) []vote {
	for i := range vs {
		if vs[i].port == port {
			vs[i].n++
			return vs
		}
	}
	return append(vs, vote{port, 1})
}
