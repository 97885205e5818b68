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
	ports []Port // sorted; the backends are the passing instances'
	// problem explains a part of the registration that was ignored
	// (a bad vip_port), for a log line; "" when none.
	problem string
}

// shapeOf derives a service's VIP ports and backends from its instances
// (all of them, whatever their health: the ports must not flip when a
// check fails). It returns nil when the service has no instances.
//
// The rule for the ports (README, "Service VIPs"):
//   - an instance's Meta vip_port ("80", "80/tcp,53/udp") names the
//     ports; when instances disagree, the value most of them carry wins
//     (ties: the lexically smallest);
//   - otherwise the VIP accepts the most common registered Port of the
//     instances (ties: the lowest), with Meta vip_proto or tcp.
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
		metaVotes map[string]int // made on the first vip_port seen
		portVotes []vote         // few distinct ports: a slice beats a map
		udp, tcp  int
	)
	for _, in := range insts {
		m := in.Service.Meta
		if m[MetaEndpointMode] == EndpointDNSRR {
			s.dnsrr = true
		}
		if v := m[MetaPort]; v != "" {
			if metaVotes == nil {
				metaVotes = map[string]int{}
			}
			metaVotes[v]++
		}
		if p := in.Service.Port; p > 0 && p <= 65535 {
			portVotes = addVote(portVotes, p)
		}
		switch strings.ToLower(m[MetaProto]) {
		case string(UDP):
			udp++
		case string(TCP):
			tcp++
		}
	}
	if s.dnsrr {
		return s
	}
	proto := TCP
	if udp > tcp {
		proto = UDP
	}

	var targets []Port
	if len(metaVotes) > 0 {
		spec := mostCommonKey(metaVotes, strings.Compare)
		ps, err := parsePorts(spec, proto)
		if err != nil {
			s.problem = err.Error()
		} else {
			targets = ps
		}
	}
	if targets == nil && len(portVotes) > 0 {
		best := portVotes[0]
		for _, v := range portVotes[1:] {
			if v.n > best.n || (v.n == best.n && v.port < best.port) {
				best = v
			}
		}
		targets = []Port{{Proto: proto, Port: uint16(best.port)}}
	}
	if len(targets) == 0 {
		return s
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
	backends = slices.Compact(backends)
	for i := range targets {
		targets[i].Backends = backends
	}
	s.ports = targets
	return s
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
