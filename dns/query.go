package dns

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Queries answers Consul's prepared query names, <query>.query.<domain>
// (and <query>.query.<dc>.<domain>), where <query> is a query's ID or
// name, or a name a template matches. Unlike the rest of the zone these
// are not built ahead: a query is executed when it is asked, as Consul
// does, so Query is called from the servers' goroutines, concurrently,
// and may block until ctx ends (a client agent asks the servers for the
// definition).
type Queries interface {
	// Query executes the query named name (lower case) for a client at
	// source and returns the instances to answer, in the order to
	// answer them (the query's ?near= order, or shuffled), and the TTL
	// the query sets, if it sets one. ErrNoQuery means there is no
	// such query (NXDOMAIN); another error is a SERVFAIL.
	Query(ctx context.Context, name string, source netip.Addr) (instances []Instance, ttl time.Duration, hasTTL bool, err error)
}

// ErrNoQuery is Queries.Query's answer for a name no query answers.
var ErrNoQuery = errors.New("no such prepared query")

// queryTimeout bounds one prepared query's execution.
const queryTimeout = 2 * time.Second

// preparedQuery answers rel (<query>.query) from Queries: nil when no
// query answers it, or it has no instance; ok false when the name is
// not a query name at all.
func (s *Server) preparedQuery(rel string, source netip.Addr) (e *entry, failed, ok bool) {
	name, last := lastLabel(rel)
	if last != "query" || name == "" || strings.IndexByte(name, '.') >= 0 || s.cfg.Queries == nil {
		return nil, false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	insts, ttl, hasTTL, err := s.cfg.Queries.Query(ctx, name, source)
	if errors.Is(err, ErrNoQuery) {
		return nil, false, true
	}
	if err != nil {
		s.log.Debug("dns: prepared query failed", "query", name, "err", err)
		return nil, true, true
	}
	t := s.st.ttl
	if hasTTL {
		t = uint32(max(ttl, 0) / time.Second)
	}
	return nonEmpty(s.queryEntry(insts, t)), false, true
}

// queryEntry builds the records of instances in their order (the
// builder's service entries sort theirs instead): A/AAAA of their
// addresses and SRV records pointing to their nodes (or addresses), with
// the targets' addresses.
func (s *Server) queryEntry(instances []Instance, ttl uint32) *entry {
	st := &s.st
	b := newBuilder(st)
	e := &entry{srv: make([][]mdns.SRV, len(st.domains)), extra: make([][]mdns.RR, len(st.domains))}
	var addrs []netip.Addr
	for _, in := range instances {
		if in.Port < 0 || in.Port > 65535 {
			continue
		}
		nodeAddr, addr := in.NodeAddr.Unmap(), in.Address.Unmap()
		if !addr.IsValid() {
			addr = nodeAddr
		}
		if !addr.IsValid() {
			continue
		}
		addrs = append(addrs, addr)
		for d, dom := range st.domains {
			t := addrLabel(addr) + ".addr." + st.dc + "." + dom
			if addr == nodeAddr && validLabel(in.Node) {
				t = strings.ToLower(in.Node) + ".node." + st.dc + "." + dom
			}
			e.srv[d] = append(e.srv[d], mdns.SRV{
				Hdr:      mdns.RR_Header{Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: ttl},
				Priority: 1, Weight: 1, Port: uint16(in.Port), Target: t,
			})
			e.extra[d] = append(e.extra[d], b.addrRR(t, addr, ttl))
		}
	}
	b.addAddrs(e, addrs, ttl)
	return e
}
