package dns

import (
	"strings"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// A zone is everything a query reads: the answers for every name, built
// from one catalog snapshot and never modified afterwards, so queries
// read it without locks. Server.Run replaces it when the catalog changes.
type zone struct {
	index uint64
	built bool // from a catalog snapshot, not the empty zone of New
	st    *settings
	soa   []*mdns.SOA // one per domain, in st.domains' order
	// services maps a lower-case service name to its answers, nodes a
	// lower-case node name to its addresses; lookup parses a query name
	// into them.
	services map[string]*svcAnswers
	nodes    map[string]*entry
	// ptr maps a lower-case reverse name ("1.0.0.10.in-addr.arpa.") to
	// its PTR records.
	ptr map[string]*entry
	// replaced is closed when a newer zone replaces this one.
	replaced chan struct{}
}

// An entry holds the records of one name. Records are stored without an
// owner name: a query copies them and names them as it was asked, so
// one entry serves every domain and every spelling of the name.
type entry struct {
	a    []mdns.A
	aaaa []mdns.AAAA
	// srv and extra are per domain (their targets are names in it).
	// extra holds the targets' address records without duplicates;
	// extraOf[i] is the index in extra of srv[d][i]'s target, or nil
	// when extra[d][i] belongs to srv[d][i] for every i.
	srv     [][]mdns.SRV
	extra   [][]mdns.RR
	extraOf []int32
	ptr     []mdns.PTR
	// servfail: the name exists but cannot be answered yet (a service
	// VIP not known yet, Service.Hold); queries get SERVFAIL.
	servfail bool
	// next rotates the answers: each query starts one further.
	next atomic.Uint32
}

// empty reports whether the entry has no records at all, in which case
// its name does not exist (NXDOMAIN, as Consul answers a service without
// healthy instances). Zones hold no empty entries.
func (e *entry) empty() bool {
	return !e.servfail && len(e.a) == 0 && len(e.aaaa) == 0 && len(e.ptr) == 0 && (len(e.srv) == 0 || len(e.srv[0]) == 0)
}

// SOA timers, Consul's defaults (dns_config.soa).
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// newZone returns a zone with no names.
func newZone(st *settings, index uint64) *zone {
	z := &zone{
		index:    index,
		st:       st,
		services: make(map[string]*svcAnswers),
		nodes:    make(map[string]*entry),
		ptr:      make(map[string]*entry),
		replaced: make(chan struct{}),
	}
	for _, d := range st.domains {
		z.soa = append(z.soa, &mdns.SOA{
			Hdr:     mdns.RR_Header{Name: d, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: st.soaMin},
			Ns:      "ns." + d,
			Mbox:    "hostmaster." + d,
			Serial:  uint32(index),
			Refresh: soaRefresh,
			Retry:   soaRetry,
			Expire:  soaExpire,
			Minttl:  st.soaMin,
		})
	}
	return z
}

// lookup returns the entry of rel, a name relative to the domain in lower
// case without Consul's .<dc>, or nil when it does not exist. Consul's
// forms are tried first (their .service and .node labels are the more
// specific), then Docker Swarm's: tasks.service is the Consul form of a
// service named "tasks" if there is one, else the tasks of "service".
func (z *zone) lookup(rel string) *entry {
	rest, last := lastLabel(rel)
	switch last {
	case "service":
		if e := z.consulService(rest); e != nil {
			return e
		}
	case "node":
		if e := z.nodes[rest]; e != nil {
			return e
		}
	}
	if svc, ok := strings.CutPrefix(rel, "tasks."); ok {
		if a := z.services[svc]; a != nil {
			return a.tasks
		}
	}
	if a := z.services[rel]; a != nil {
		return a.svc
	}
	return nil
}

// consulService finds <svc>, <tag>.<svc> or _<svc>._<tag> (RFC 2782,
// where _tcp means any tag), the part of a name before .service.
func (z *zone) consulService(rest string) *entry {
	head, name := lastLabel(rest)
	if head == "" {
		if a := z.services[name]; a != nil {
			return a.all
		}
		return nil
	}
	if strings.IndexByte(head, '.') >= 0 {
		return nil
	}
	tag := head
	if len(head) > 1 && head[0] == '_' && len(name) > 1 && name[0] == '_' {
		name, tag = head[1:], name[1:]
		if tag == "tcp" {
			if a := z.services[name]; a != nil {
				return a.all
			}
			return nil
		}
	}
	if a := z.services[name]; a != nil {
		return a.tags[tag]
	}
	return nil
}
