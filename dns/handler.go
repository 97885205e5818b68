package dns

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// ednsSize is the UDP payload size cairn advertises in its OPT
	// record and reads queries into.
	ednsSize = 4096
	// maxUDPSize is the largest UDP payload cairn sends a client that
	// advertises more (65535 minus the IPv4 and UDP headers).
	maxUDPSize = 65507
)

// accept is the servers' MsgAcceptFunc: miekg/dns answers FORMERR
// (MsgReject) or NOTIMP (MsgRejectNotImplemented) for what it rejects,
// before unpacking the rest, and drops responses.
func accept(dh mdns.Header) mdns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return mdns.MsgIgnore // a response: answering could loop or amplify
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != mdns.OpcodeQuery {
		return mdns.MsgRejectNotImplemented // NOTIFY, UPDATE, IQUERY, STATUS
	}
	// A query has one question, no answer or authority records, and at
	// most an OPT and a TSIG in the additional section.
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return mdns.MsgReject
	}
	return mdns.MsgAccept
}

// A reply is the memory one query's answer is built in. Replies are
// pooled, so a query copies records into arrays that earlier queries
// grew and allocates nothing in the common case.
type reply struct {
	msg   mdns.Msg
	ans   []mdns.RR
	ns    []mdns.RR
	extra []mdns.RR
	a     []mdns.A
	aaaa  []mdns.AAAA
	srv   []mdns.SRV
	ptr   []mdns.PTR
	seen  []bool
	opt   mdns.OPT
	buf   []byte
	src   netip.Addr // the client's address, for prepared queries' Near "_ip"
}

var replies = sync.Pool{New: func() any { return &reply{buf: make([]byte, 0, 512)} }}

// maxPooled bounds what a pooled reply keeps, so one huge answer does not
// pin its memory.
const maxPooled = 1024

func getReply() *reply {
	r := replies.Get().(*reply)
	r.msg = mdns.Msg{}
	return r
}

func putReply(r *reply) {
	if cap(r.ans) > maxPooled || cap(r.extra) > maxPooled || cap(r.buf) > 64<<10 {
		return
	}
	// Drop the references to the zone, which may be replaced.
	clear(r.ans)
	clear(r.ns)
	clear(r.extra)
	clear(r.a)
	clear(r.aaaa)
	clear(r.srv)
	clear(r.ptr)
	r.ans, r.ns, r.extra = r.ans[:0], r.ns[:0], r.extra[:0]
	r.a, r.aaaa, r.srv, r.ptr = r.a[:0], r.aaaa[:0], r.srv[:0], r.ptr[:0]
	r.msg = mdns.Msg{}
	replies.Put(r)
}

// serveDNS is the servers' handler: it answers one query that accept let
// through and miekg/dns unpacked.
func (s *Server) serveDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	var start time.Time
	if s.cfg.Metrics != nil {
		start = time.Now()
	}
	r := getReply()
	defer putReply(r)
	tcp := w.RemoteAddr().Network() == "tcp"
	r.src = addrOf(w.RemoteAddr())
	m := s.answer(r, req)
	if s.cfg.Metrics != nil {
		defer func() { s.cfg.Metrics.Query(m.Rcode, time.Since(start)) }()
	}
	limit := mdns.MaxMsgSize
	if !tcp {
		limit = udpLimit(req)
	}
	fit(m, limit)
	// PackBuffer packs into the buffer when it is at least the
	// uncompressed length long, so hand it all of it.
	b, err := m.PackBuffer(r.buf[:cap(r.buf)])
	if err != nil {
		// Only a record cairn cannot pack gets here (a recursor's, say).
		s.log.Debug("dns: pack reply", "name", req.Question[0].Name, "err", err)
		fail := new(mdns.Msg)
		fail.SetRcode(req, mdns.RcodeServerFailure)
		b, err = fail.Pack()
		if err != nil {
			return
		}
	}
	_, _ = w.Write(b) // the client went away; nothing to do
	if cap(b) > cap(r.buf) {
		r.buf = b
	}
}

// udpLimit is the largest UDP reply the client of req takes: 512 bytes
// without EDNS (RFC 1035), its advertised size with it (RFC 6891).
func udpLimit(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
	}
	return mdns.MinMsgSize
}

// fit trims m to limit bytes. TC is set only when answer or authority
// records had to go: additional records are optional (RFC 2181 section 9).
func fit(m *mdns.Msg, limit int) {
	tc := m.Truncated
	nAns, nNs := len(m.Answer), len(m.Ns)
	m.Truncate(limit)
	m.Truncated = tc || len(m.Answer) < nAns || len(m.Ns) < nNs
}

// answer builds the reply to req in r, or returns the recursor's.
func (s *Server) answer(r *reply, req *mdns.Msg) *mdns.Msg {
	m := &r.msg
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.RecursionAvailable = len(s.st.recursors) > 0
	m.Question = req.Question
	m.Answer, m.Ns, m.Extra = r.ans[:0], r.ns[:0], r.extra[:0]
	defer func() { r.ans, r.ns, r.extra = m.Answer, m.Ns, m.Extra }()

	// EDNS (RFC 6891): answer with an OPT when asked with one; one OPT
	// at most; version 0 only.
	var opt *mdns.OPT
	nOPT := 0
	for _, rr := range req.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			opt = o
			nOPT++
		}
	}
	if opt != nil {
		r.opt = mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		r.opt.SetUDPSize(ednsSize)
		if opt.Do() {
			r.opt.SetDo() // RFC 3225: copied, though cairn does not sign
		}
		// Last in the additional section, whatever the reply; a
		// recursor's reply gets it below.
		defer func() { m.Extra = append(m.Extra, &r.opt) }()
	}
	switch {
	case nOPT > 1, len(req.Question) != 1:
		return rcode(m, mdns.RcodeFormatError)
	case opt != nil && opt.Version() != 0:
		return rcode(m, mdns.RcodeBadVers)
	case req.Opcode != mdns.OpcodeQuery:
		return rcode(m, mdns.RcodeNotImplemented)
	}
	q := req.Question[0]
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return rcode(m, mdns.RcodeNotImplemented) // CHAOS, HESIOD, ...
	}
	switch q.Qtype {
	case mdns.TypeNone, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY:
		return rcode(m, mdns.RcodeFormatError) // not types one asks for
	case mdns.TypeAXFR, mdns.TypeIXFR:
		return rcode(m, mdns.RcodeRefused) // the zone is built from the catalog; read that
	case mdns.TypeMAILA, mdns.TypeMAILB:
		return rcode(m, mdns.RcodeNotImplemented)
	}

	name := strings.ToLower(q.Name)
	z := s.zone.Load()
	d, rel, ok := z.split(name)
	if !ok {
		if (q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY) && isReverse(name) {
			if e := z.ptr[name]; e != nil {
				m.Authoritative = true
				r.addPTR(m, e, q.Name, int(e.next.Add(1)-1))
				return m
			}
		}
		if len(s.st.recursors) == 0 {
			return rcode(m, mdns.RcodeRefused)
		}
		if fwd := s.forward(req); fwd != nil {
			if opt != nil {
				fwd.Extra = append(fwd.Extra, &r.opt)
			} else if fwd.Rcode > 0xF {
				fwd.Rcode = mdns.RcodeServerFailure // an extended rcode needs the client's EDNS
			}
			return fwd
		}
		return rcode(m, mdns.RcodeServerFailure)
	}
	m.Authoritative = true
	soa := z.soa[d]

	if rel == "" { // the domain itself
		if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
			m.Answer = append(m.Answer, soa)
		} else {
			m.Ns = append(m.Ns, soa)
		}
		return m
	}
	rel = z.stripDC(rel)

	// <hex-ip>.addr: any address, as Consul answers it.
	if rest, last := lastLabel(rel); last == "addr" && !strings.Contains(rest, ".") {
		if a, ok := parseAddrLabel(rest); ok {
			e := entry{} // on the stack; the records are copied below
			if a.Is4() {
				r.a = append(r.a[:0], mdns.A{Hdr: mdns.RR_Header{Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: s.st.nodeTTL}, A: a.AsSlice()})
				e.a = r.a[:1:1]
			} else {
				r.aaaa = append(r.aaaa[:0], mdns.AAAA{Hdr: mdns.RR_Header{Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: s.st.nodeTTL}, AAAA: a.AsSlice()})
				e.aaaa = r.aaaa[:1:1]
			}
			return r.records(m, &e, d, q, soa, 0)
		}
	}

	e := z.lookup(rel)
	if qe, failed, ok := s.preparedQuery(rel, r.src); ok {
		if failed {
			return rcode(m, mdns.RcodeServerFailure)
		}
		e = qe
	}
	if e == nil {
		m.Rcode = mdns.RcodeNameError
		m.Ns = append(m.Ns, soa)
		return m
	}
	if e.servfail {
		m.Authoritative = false
		return rcode(m, mdns.RcodeServerFailure)
	}
	return r.records(m, e, d, q, soa, int(e.next.Add(1)-1))
}

// rcode returns m with rcode and nothing else.
func rcode(m *mdns.Msg, code int) *mdns.Msg {
	m.Rcode = code
	return m
}

// records adds e's records of q's type to m, rotated by k, or the SOA
// when it has none (NODATA).
func (r *reply) records(m *mdns.Msg, e *entry, d int, q mdns.Question, soa mdns.RR, k int) *mdns.Msg {
	switch q.Qtype {
	case mdns.TypeA:
		r.addA(m, e.a, q.Name, k)
	case mdns.TypeAAAA:
		r.addAAAA(m, e.aaaa, q.Name, k)
	case mdns.TypeANY:
		r.addA(m, e.a, q.Name, k)
		r.addAAAA(m, e.aaaa, q.Name, k)
	case mdns.TypeSRV:
		r.addSRV(m, e, d, q.Name, k)
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa)
	}
	return m
}

// addA appends src to m's answer, rotated to start at k, named owner.
func (r *reply) addA(m *mdns.Msg, src []mdns.A, owner string, k int) {
	if len(src) == 0 {
		return
	}
	k %= len(src)
	base := len(r.a)
	r.a = append(append(r.a, src[k:]...), src[:k]...)
	for i := base; i < len(r.a); i++ {
		r.a[i].Hdr.Name = owner
		m.Answer = append(m.Answer, &r.a[i])
	}
}

// addAAAA is addA for AAAA.
func (r *reply) addAAAA(m *mdns.Msg, src []mdns.AAAA, owner string, k int) {
	if len(src) == 0 {
		return
	}
	k %= len(src)
	base := len(r.aaaa)
	r.aaaa = append(append(r.aaaa, src[k:]...), src[:k]...)
	for i := base; i < len(r.aaaa); i++ {
		r.aaaa[i].Hdr.Name = owner
		m.Answer = append(m.Answer, &r.aaaa[i])
	}
}

// addPTR is addA for PTR.
func (r *reply) addPTR(m *mdns.Msg, e *entry, owner string, k int) {
	src := e.ptr
	k %= len(src)
	base := len(r.ptr)
	r.ptr = append(append(r.ptr, src[k:]...), src[:k]...)
	for i := base; i < len(r.ptr); i++ {
		r.ptr[i].Hdr.Name = owner
		m.Answer = append(m.Answer, &r.ptr[i])
	}
}

// addSRV appends e's SRV records in domain d to the answer, rotated, and
// their targets' address records to the additional section, in the same
// order so that a truncated reply keeps the ones its answers need.
func (r *reply) addSRV(m *mdns.Msg, e *entry, d int, owner string, k int) {
	if len(e.srv) == 0 || len(e.srv[d]) == 0 {
		return
	}
	src, extra := e.srv[d], e.extra[d]
	k %= len(src)
	base := len(r.srv)
	r.srv = append(append(r.srv, src[k:]...), src[:k]...)
	for i := base; i < len(r.srv); i++ {
		r.srv[i].Hdr.Name = owner
		m.Answer = append(m.Answer, &r.srv[i])
	}
	if e.extraOf == nil { // one target per record
		m.Extra = append(append(m.Extra, extra[k:]...), extra[:k]...)
		return
	}
	if cap(r.seen) < len(extra) {
		r.seen = make([]bool, len(extra))
	}
	seen := r.seen[:len(extra)]
	clear(seen)
	for i := range src {
		j := e.extraOf[(k+i)%len(src)]
		if !seen[j] {
			seen[j] = true
			m.Extra = append(m.Extra, extra[j])
		}
	}
}

// split finds the domain name is in: its index, and the rest of the name
// without the dot before the domain ("" for the domain itself).
func (z *zone) split(name string) (d int, rel string, ok bool) {
	for i, dom := range z.st.domains {
		switch {
		case name == dom:
			return i, "", true
		case len(name) > len(dom) && strings.HasSuffix(name, dom) && name[len(name)-len(dom)-1] == '.':
			return i, name[:len(name)-len(dom)-1], true
		}
	}
	return 0, "", false
}

// stripDC removes Consul's optional datacenter label (web.service.dc1 is
// web.service). Other datacenters are not known, so their names are not
// found.
func (z *zone) stripDC(rel string) string {
	rest, last := lastLabel(rel)
	if last != z.st.dc {
		return rel
	}
	_, kind := lastLabel(rest)
	switch kind {
	case "service", "node", "addr", "query":
		return rest
	}
	return rel
}

// addrOf is the IP of a client's address (the zero Addr when unknown).
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
