package dns

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

func TestNames(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat)

	webSRV := []string{
		"SRV 1 1 8080 n1.node.dc1.cluster.",
		"SRV 1 1 8080 n2.node.dc1.cluster.",
		"SRV 1 1 8081 ac110004.addr.dc1.cluster.",
	}
	webExtra := []string{
		"ac110004.addr.dc1.cluster. A 172.17.0.4",
		"n1.node.dc1.cluster. A 10.0.0.1",
		"n2.node.dc1.cluster. A 10.0.0.2",
	}
	v1SRV := []string{"SRV 1 1 8080 n1.node.dc1.cluster.", "SRV 1 1 8081 ac110004.addr.dc1.cluster."}
	v1Extra := []string{"ac110004.addr.dc1.cluster. A 172.17.0.4", "n1.node.dc1.cluster. A 10.0.0.1"}
	webA := []string{"A 10.0.0.1", "A 10.0.0.2", "A 172.17.0.4"}

	tests := []struct {
		name   string
		q      query
		rcode  int
		answer []string
		extra  []string // with owners
		soa    bool     // the zone's SOA in the authority section
	}{
		// Docker Swarm's names.
		{name: "vip", q: query{name: "web.cluster.", qtype: mdns.TypeA}, answer: []string{"A 10.10.0.5"}},
		{name: "vip any case", q: query{name: "WeB.CLUSTER.", qtype: mdns.TypeA}, answer: []string{"A 10.10.0.5"}},
		{name: "vip nodata aaaa", q: query{name: "web.cluster.", qtype: mdns.TypeAAAA}, soa: true},
		{name: "tasks", q: query{name: "tasks.web.cluster.", qtype: mdns.TypeA}, answer: webA},
		{name: "no vip: instances", q: query{name: "api.cluster.", qtype: mdns.TypeA}, answer: []string{"A 10.0.0.1"}},
		{name: "no vip: aaaa", q: query{name: "api.cluster.", qtype: mdns.TypeAAAA}, answer: []string{"AAAA fd00::6"}},
		{name: "tasks any", q: query{name: "tasks.api.cluster.", qtype: mdns.TypeANY}, answer: []string{"A 10.0.0.1", "AAAA fd00::6"}},
		{name: "tasks srv is nodata", q: query{name: "tasks.web.cluster.", qtype: mdns.TypeSRV}, soa: true},
		// Consul's service names.
		{name: "service a", q: query{name: "web.service.cluster.", qtype: mdns.TypeA}, answer: webA},
		{name: "service srv", q: query{name: "web.service.cluster.", qtype: mdns.TypeSRV}, answer: webSRV, extra: webExtra},
		{name: "service dc srv", q: query{name: "web.service.dc1.cluster.", qtype: mdns.TypeSRV}, answer: webSRV, extra: webExtra},
		{name: "service other dc", q: query{name: "web.service.dc2.cluster.", qtype: mdns.TypeSRV}, rcode: mdns.RcodeNameError, soa: true},
		{name: "tag srv", q: query{name: "v1.web.service.cluster.", qtype: mdns.TypeSRV}, answer: v1SRV, extra: v1Extra},
		{name: "tag any case", q: query{name: "PRIMARY.web.service.cluster.", qtype: mdns.TypeA}, answer: []string{"A 10.0.0.1"}},
		{name: "rfc2782 tag", q: query{name: "_web._v1.service.cluster.", qtype: mdns.TypeSRV}, answer: v1SRV, extra: v1Extra},
		{name: "rfc2782 tcp", q: query{name: "_web._tcp.service.cluster.", qtype: mdns.TypeSRV}, answer: webSRV, extra: webExtra},
		{name: "rfc2782 udp is a tag", q: query{name: "_web._udp.service.cluster.", qtype: mdns.TypeSRV}, rcode: mdns.RcodeNameError, soa: true},
		{name: "unknown tag", q: query{name: "v9.web.service.cluster.", qtype: mdns.TypeSRV}, rcode: mdns.RcodeNameError, soa: true},
		{name: "ipv6 srv", q: query{name: "api.service.cluster.", qtype: mdns.TypeSRV},
			answer: []string{"SRV 1 1 9000 n1.node.dc1.cluster.", "SRV 1 1 9000 n6.node.dc1.cluster."},
			extra:  []string{"n1.node.dc1.cluster. A 10.0.0.1", "n6.node.dc1.cluster. AAAA fd00::6"}},
		{name: "consul domain", q: query{name: "web.service.consul.", qtype: mdns.TypeSRV},
			answer: []string{"SRV 1 1 8080 n1.node.dc1.consul.", "SRV 1 1 8080 n2.node.dc1.consul.", "SRV 1 1 8081 ac110004.addr.dc1.consul."},
			extra:  []string{"ac110004.addr.dc1.consul. A 172.17.0.4", "n1.node.dc1.consul. A 10.0.0.1", "n2.node.dc1.consul. A 10.0.0.2"}},
		{name: "consul vip form", q: query{name: "web.consul.", qtype: mdns.TypeA}, answer: []string{"A 10.10.0.5"}},
		{name: "service txt is nodata", q: query{name: "web.service.cluster.", qtype: mdns.TypeTXT}, soa: true},
		{name: "only critical", q: query{name: "db.service.cluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeNameError, soa: true},
		{name: "only critical tasks", q: query{name: "tasks.db.cluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeNameError, soa: true},
		{name: "invalid name skipped", q: query{name: "bad_name.service.cluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeNameError, soa: true},
		{name: "unknown", q: query{name: "nope.cluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeNameError, soa: true},
		// Nodes and addresses: every SRV target resolves.
		{name: "node", q: query{name: "n1.node.cluster.", qtype: mdns.TypeA}, answer: []string{"A 10.0.0.1"}},
		{name: "node dc", q: query{name: "n2.node.dc1.consul.", qtype: mdns.TypeA}, answer: []string{"A 10.0.0.2"}},
		{name: "node ipv6", q: query{name: "n6.node.dc1.cluster.", qtype: mdns.TypeAAAA}, answer: []string{"AAAA fd00::6"}},
		{name: "node ipv6 nodata a", q: query{name: "n6.node.cluster.", qtype: mdns.TypeA}, soa: true},
		{name: "node without services", q: query{name: "n3.node.cluster.", qtype: mdns.TypeA}, answer: []string{"A 10.0.0.3"}},
		{name: "addr", q: query{name: "ac110004.addr.dc1.cluster.", qtype: mdns.TypeA}, answer: []string{"A 172.17.0.4"}},
		{name: "addr ipv6", q: query{name: "fd000000000000000000000000000006.addr.dc1.cluster.", qtype: mdns.TypeAAAA}, answer: []string{"AAAA fd00::6"}},
		{name: "addr bad hex", q: query{name: "zz110004.addr.dc1.cluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeNameError, soa: true},
		// PTR for node, instance and VIP addresses.
		{name: "ptr node", q: query{name: "1.0.0.10.in-addr.arpa.", qtype: mdns.TypePTR}, answer: []string{"PTR n1.node.dc1.cluster."}},
		{name: "ptr instance", q: query{name: "4.0.17.172.in-addr.arpa.", qtype: mdns.TypePTR}, answer: []string{"PTR web.service.dc1.cluster."}},
		{name: "ptr vip", q: query{name: "5.0.10.10.in-addr.arpa.", qtype: mdns.TypePTR}, answer: []string{"PTR web.cluster."}},
		{name: "ptr ipv6", q: query{name: "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", qtype: mdns.TypePTR}, answer: []string{"PTR n6.node.dc1.cluster."}},
		{name: "ptr unknown without recursor", q: query{name: "9.9.9.10.in-addr.arpa.", qtype: mdns.TypePTR}, rcode: mdns.RcodeRefused},
		// The zone itself.
		{name: "soa", q: query{name: "cluster.", qtype: mdns.TypeSOA}, answer: []string{"SOA ns.cluster. hostmaster.cluster. 1 3600 600 86400 0"}},
		{name: "apex a is nodata", q: query{name: "consul.", qtype: mdns.TypeA}, soa: true},
		// What is not cairn's.
		{name: "outside without recursor", q: query{name: "example.org.", qtype: mdns.TypeA}, rcode: mdns.RcodeRefused},
		{name: "suffix is not the domain", q: query{name: "webcluster.", qtype: mdns.TypeA}, rcode: mdns.RcodeRefused},
		{name: "chaos class", q: query{name: "version.bind.", qtype: mdns.TypeTXT}, rcode: mdns.RcodeNotImplemented},
		{name: "axfr", q: query{name: "cluster.", qtype: mdns.TypeAXFR, net: "tcp"}, rcode: mdns.RcodeRefused},
		{name: "maila", q: query{name: "web.cluster.", qtype: mdns.TypeMAILA}, rcode: mdns.RcodeNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(mdns.Msg)
			m.SetQuestion(tt.q.name, tt.q.qtype)
			if tt.name == "chaos class" {
				m.Question[0].Qclass = mdns.ClassCHAOS
			}
			r, _, err := (&mdns.Client{Net: tt.q.net, Timeout: 5 * time.Second}).Exchange(m, s.addr)
			if err != nil {
				t.Fatal(err)
			}
			q := tt.q.name + " " + mdns.TypeToString[tt.q.qtype]
			if r.Rcode != tt.rcode {
				t.Errorf("%s: rcode %s, want %s", q, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if diff := cmp.Diff(tt.answer, section(r.Answer, false)); diff != "" {
				t.Errorf("%s: answer (-want +got):\n%s", q, diff)
			}
			if diff := cmp.Diff(tt.extra, section(r.Extra, true)); diff != "" {
				t.Errorf("%s: additional (-want +got):\n%s", q, diff)
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA
			if gotSOA != tt.soa || (!tt.soa && len(r.Ns) > 0) {
				t.Errorf("%s: authority %v, want the SOA: %v", q, r.Ns, tt.soa)
			}
			local := tt.rcode == mdns.RcodeSuccess || tt.rcode == mdns.RcodeNameError
			if local && !r.Authoritative {
				t.Errorf("%s: AA not set on a local answer", q)
			}
			for _, rr := range r.Answer {
				if rr.Header().Name != tt.q.name && rr.Header().Rrtype != mdns.TypeSOA {
					t.Errorf("%s: answer owner %q, want the question's name as asked", q, rr.Header().Name)
				}
			}
		})
	}
}

func TestOnlyPassingOff(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat, func(c *Config) { c.OnlyPassing = false })
	r := exchange(t, s.addr, query{name: "tasks.web.cluster.", qtype: mdns.TypeA})
	want := []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.3", "A 172.17.0.4"} // n3 is warning
	if diff := cmp.Diff(want, section(r.Answer, false)); diff != "" {
		t.Errorf("OnlyPassing=false: tasks.web answer (-want +got):\n%s", diff)
	}
}

func TestTTLs(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat, func(c *Config) {
		c.TTL, c.NodeTTL, c.SOAMinTTL = 5*time.Second, 30*time.Second, 60*time.Second
	})
	for _, tt := range []struct {
		q    query
		want uint32
	}{
		{query{name: "web.cluster.", qtype: mdns.TypeA}, 5},
		{query{name: "tasks.web.cluster.", qtype: mdns.TypeA}, 5},
		{query{name: "web.service.cluster.", qtype: mdns.TypeSRV}, 5},
		{query{name: "n1.node.cluster.", qtype: mdns.TypeA}, 30},
		{query{name: "ac110004.addr.dc1.cluster.", qtype: mdns.TypeA}, 30},
		{query{name: "1.0.0.10.in-addr.arpa.", qtype: mdns.TypePTR}, 30},
	} {
		r := exchange(t, s.addr, tt.q)
		if len(r.Answer) == 0 {
			t.Fatalf("%s: no answer", tt.q.name)
		}
		if got := r.Answer[0].Header().Ttl; got != tt.want {
			t.Errorf("%s: TTL %d, want %d", tt.q.name, got, tt.want)
		}
	}
	// Negative answers are cached for the SOA minimum (RFC 2308).
	r := exchange(t, s.addr, query{name: "nope.cluster.", qtype: mdns.TypeA})
	soa, ok := r.Ns[0].(*mdns.SOA)
	if !ok || soa.Minttl != 60 || soa.Hdr.Ttl != 60 {
		t.Errorf("NXDOMAIN authority %v, want the SOA with minimum and TTL 60", r.Ns)
	}
}

func TestRotation(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat)
	for _, q := range []query{
		{name: "tasks.web.cluster.", qtype: mdns.TypeA},
		{name: "web.service.cluster.", qtype: mdns.TypeSRV},
	} {
		var firsts []string
		var sets [][]string
		for range 3 {
			r := exchange(t, s.addr, q)
			firsts = append(firsts, rrText(r.Answer[0]))
			sets = append(sets, section(r.Answer, false))
			if q.qtype == mdns.TypeSRV {
				// The first additional record is the first answer's target.
				if got, want := r.Extra[0].Header().Name, r.Answer[0].(*mdns.SRV).Target; got != want {
					t.Errorf("%s: first additional record is %s, want the first answer's target %s", q.name, got, want)
				}
			}
		}
		if uniq := slices.Compact(slices.Sorted(slices.Values(firsts))); len(uniq) != 3 {
			t.Errorf("%s: first answers of three queries %q, want each instance first once", q.name, firsts)
		}
		for _, set := range sets[1:] {
			if diff := cmp.Diff(sets[0], set); diff != "" {
				t.Errorf("%s: rotation changed the set of answers:\n%s", q.name, diff)
			}
		}
	}
}

func TestSizes(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat)

	// 40 A records: 12+19 of header and question, 16 per record (owner
	// compressed) is 671 bytes, over 512.
	tests := []struct {
		name       string
		q          query
		truncated  bool
		maxLen     int
		allAnswers bool
		allExtra   bool
	}{
		{name: "udp without edns", q: query{name: "tasks.big.cluster.", qtype: mdns.TypeA}, truncated: true, maxLen: 512},
		{name: "udp edns 4096", q: query{name: "tasks.big.cluster.", qtype: mdns.TypeA, edns: 4096}, maxLen: 4096, allAnswers: true},
		{name: "udp edns below 512 means 512", q: query{name: "tasks.big.cluster.", qtype: mdns.TypeA, edns: 100}, truncated: true, maxLen: 512},
		{name: "tcp", q: query{name: "tasks.big.cluster.", qtype: mdns.TypeA, net: "tcp"}, allAnswers: true},
		{name: "srv udp without edns", q: query{name: "big.service.cluster.", qtype: mdns.TypeSRV}, truncated: true, maxLen: 512},
		{name: "srv tcp", q: query{name: "big.service.cluster.", qtype: mdns.TypeSRV, net: "tcp"}, allAnswers: true, allExtra: true},
		// The 40 SRV records (44 bytes each: SRV targets are not
		// compressed) fit in 2000 bytes but not all their targets'
		// addresses: additional records are dropped without TC.
		{name: "srv edns: extra dropped without tc", q: query{name: "big.service.cluster.", qtype: mdns.TypeSRV, edns: 2000}, maxLen: 2000, allAnswers: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := exchange(t, s.addr, tt.q)
			size := wireLen(r)
			if r.Truncated != tt.truncated {
				t.Errorf("TC=%v, want %v (%d answers, %d bytes)", r.Truncated, tt.truncated, len(r.Answer), size)
			}
			if tt.maxLen > 0 && size > tt.maxLen {
				t.Errorf("reply is %d bytes, over the limit %d", size, tt.maxLen)
			}
			if got := len(r.Answer); (got == 40) != tt.allAnswers || got == 0 {
				t.Errorf("%d answers, want all 40: %v (and at least one)", got, tt.allAnswers)
			}
			extra := len(section(r.Extra, true))
			if tt.q.qtype == mdns.TypeSRV && tt.allAnswers && ((extra == 40) != tt.allExtra || extra == 0) {
				t.Errorf("%d additional records, want all 40: %v (and at least one)", extra, tt.allExtra)
			}
			if tt.q.edns != 0 {
				opt := r.IsEdns0()
				if opt == nil || opt.UDPSize() != ednsSize {
					t.Errorf("OPT %v, want one advertising %d", opt, ednsSize)
				}
			} else if r.IsEdns0() != nil {
				t.Errorf("OPT in the reply to a query without one")
			}
		})
	}
}

func TestEDNS(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat)
	m := new(mdns.Msg)
	m.SetQuestion("web.cluster.", mdns.TypeA)
	m.SetEdns0(1232, true)
	m.IsEdns0().SetVersion(1)
	r, _, err := new(mdns.Client).Exchange(m, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != mdns.RcodeBadVers || r.IsEdns0() == nil || !r.IsEdns0().Do() {
		t.Errorf("EDNS version 1: rcode %s, OPT %v; want BADVERS with an OPT that copies DO", mdns.RcodeToString[r.Rcode], r.IsEdns0())
	}
}

func TestMalformed(t *testing.T) {
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat)
	conn, err := net.Dial("udp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pack := func(m *mdns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := func(name string) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		m.Id = 4242
		return m
	}
	two := q("web.cluster.")
	two.Question = append(two.Question, two.Question[0])
	none := q("web.cluster.")
	none.Question = nil
	notify := q("web.cluster.")
	notify.Opcode = mdns.OpcodeNotify
	update := q("web.cluster.")
	update.Opcode = mdns.OpcodeUpdate
	withAnswer := q("web.cluster.")
	withAnswer.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	twoOPT := q("web.cluster.")
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	// A name that points at itself: header, then question name = a
	// pointer to offset 12.
	loop := pack(q("web.cluster."))[:12]
	loop = append(loop, 0xC0, 12, 0, 1, 0, 1)
	// A question cut short.
	short := pack(q("web.cluster."))
	short = short[:len(short)-3]

	for _, tt := range []struct {
		name  string
		b     []byte
		rcode int
	}{
		{"two questions", pack(two), mdns.RcodeFormatError},
		{"no question", pack(none), mdns.RcodeFormatError},
		{"notify", pack(notify), mdns.RcodeNotImplemented},
		{"update", pack(update), mdns.RcodeNotImplemented},
		{"answer in a query", pack(withAnswer), mdns.RcodeFormatError},
		{"two OPT records", pack(twoOPT), mdns.RcodeFormatError},
		{"compression loop", loop, mdns.RcodeFormatError},
		{"question cut short", short, mdns.RcodeFormatError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Write(tt.b); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			r := new(mdns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not unpack: %v", err)
			}
			if r.Id != 4242 || !r.Response || r.Rcode != tt.rcode {
				t.Errorf("reply id %d response %v rcode %s, want id 4242, a response, %s", r.Id, r.Response, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
		})
	}
	// The server still answers.
	if r := exchange(t, s.addr, query{name: "web.cluster.", qtype: mdns.TypeA}); len(r.Answer) != 1 {
		t.Errorf("after malformed packets: %v", r)
	}
}

func TestCatalogChange(t *testing.T) {
	services, nodes := testServices()
	cat := newFakeCatalog(services, nodes)
	s := newTestServer(t, cat)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A new instance, a new service; web loses its VIP; api goes away.
	services = slices.Clone(services)
	services[0].VIP = netip.Addr{}
	services[0].Instances = append(slices.Clone(services[0].Instances), Instance{Node: "n3", NodeAddr: ip("10.0.0.3"), Port: 8080, Status: StatusPassing})
	services[1] = Service{Name: "cache", Instances: []Instance{{Node: "n2", NodeAddr: ip("10.0.0.2"), Port: 6379, Status: StatusPassing}}}
	idx := cat.Set(services, nodes)
	if err := s.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if s.Index() != idx {
		t.Errorf("Index() = %d, want %d", s.Index(), idx)
	}
	for _, tt := range []struct {
		q      query
		rcode  int
		answer []string
	}{
		{query{name: "web.cluster.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.3", "A 172.17.0.4"}},
		{query{name: "cache.service.cluster.", qtype: mdns.TypeSRV}, mdns.RcodeSuccess, []string{"SRV 1 1 6379 n2.node.dc1.cluster."}},
		{query{name: "api.cluster.", qtype: mdns.TypeA}, mdns.RcodeNameError, nil},
	} {
		r := exchange(t, s.addr, tt.q)
		if r.Rcode != tt.rcode {
			t.Errorf("after the change, %s: rcode %s, want %s", tt.q.name, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
		}
		if diff := cmp.Diff(tt.answer, section(r.Answer, false)); diff != "" {
			t.Errorf("after the change, %s (-want +got):\n%s", tt.q.name, diff)
		}
	}
	// The SOA serial follows the catalog index.
	r := exchange(t, s.addr, query{name: "cluster.", qtype: mdns.TypeSOA})
	if got := r.Answer[0].(*mdns.SOA).Serial; got != uint32(idx) {
		t.Errorf("SOA serial %d, want the catalog index %d", got, idx)
	}
}

func TestConfigErrors(t *testing.T) {
	cat := newFakeCatalog(nil, nil)
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"bad addr", func(c *Config) { c.Addr = "localhost:53" }, `dns address "localhost:53" is not IP:port`},
		{"root domain", func(c *Config) { c.Domain = "." }, `domain "." is the root`},
		{"bad domain", func(c *Config) { c.Domain = "my_cluster." }, `domain "my_cluster." is not a DNS domain: "my_cluster" is not a DNS label`},
		{"overlapping alt", func(c *Config) { c.AltDomain = "sub.cluster" }, `alt domain "sub.cluster" overlaps domain "cluster."`},
		{"bad dc", func(c *Config) { c.Datacenter = "dc.1" }, `datacenter "dc.1" is not a DNS label`},
		{"fractional ttl", func(c *Config) { c.TTL = 1500 * time.Millisecond }, `dns TTL "1.5s" must be whole seconds`},
		{"negative node ttl", func(c *Config) { c.NodeTTL = -time.Second }, `dns node TTL "-1s" must be whole seconds`},
		{"recursor host name", func(c *Config) { c.Recursors = []string{"dns.google"} }, `recursor "dns.google" is not an IP or IP:port`},
		{"negative timeout", func(c *Config) { c.RecursorTimeout = -1 }, `recursor timeout "-1ns" is negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			_, err := New(cfg, cat)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
	if _, err := New(DefaultConfig(), nil); err == nil || !strings.Contains(err.Error(), "no Catalog") {
		t.Errorf("New without a Catalog = %v, want an error saying so", err)
	}
	cfg := DefaultConfig()
	cfg.Recursors = []string{"192.0.2.1", "[2001:db8::1]:5353", "2001:db8::2"}
	s, err := New(cfg, cat)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"192.0.2.1:53", "[2001:db8::1]:5353", "[2001:db8::2]:53"}, s.st.recursors); diff != "" {
		t.Errorf("recursors (-want +got):\n%s", diff)
	}
}

func TestRunErrors(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := DefaultConfig()
	cfg.Addr = busy.LocalAddr().String()
	s, err := New(cfg, newFakeCatalog(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "-dns-port") {
		t.Errorf("Run on a busy port = %v, want the bind error and what to do", err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
}

// TestPreboundConns serves connections the caller bound, and Run closes
// them when it returns.
func TestPreboundConns(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cat := newFakeCatalog(testServices())
	s := newTestServer(t, cat, func(c *Config) { c.PacketConn, c.Listener = pc, ln })
	if s.UDPAddr().String() != pc.LocalAddr().String() {
		t.Errorf("UDPAddr() = %v, want the PacketConn's %v", s.UDPAddr(), pc.LocalAddr())
	}
	for _, netw := range []string{"udp", "tcp"} {
		addr := pc.LocalAddr().String()
		if netw == "tcp" {
			addr = ln.Addr().String()
		}
		if r := exchange(t, addr, query{name: "web.cluster.", qtype: mdns.TypeA, net: netw}); len(r.Answer) != 1 {
			t.Errorf("%s: %v", netw, r)
		}
	}
}

// TestLogsUnanswerable: a service or node whose name is not a DNS label is
// skipped with one log line, not one per rebuild, and again if it comes
// back after being fixed.
func TestLogsUnanswerable(t *testing.T) {
	var buf bytes.Buffer
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	services, nodes := testServices()
	cat := newFakeCatalog(services, nodes)
	s, err := New(cfg, cat)
	if err != nil {
		t.Fatal(err)
	}
	count := func() (svc, node int) {
		return strings.Count(buf.String(), "service=bad_name"), strings.Count(buf.String(), "node=bad.node")
	}
	s.rebuild()
	if svc, node := count(); svc != 1 || node != 1 {
		t.Fatalf("after the first build: %d lines for bad_name, %d for bad.node, want 1 each:\n%s", svc, node, buf.String())
	}
	cat.Set(services, nodes)
	s.rebuild()
	if svc, _ := count(); svc != 1 {
		t.Errorf("a rebuild repeated the line for bad_name:\n%s", buf.String())
	}
	cat.Set(services[:len(services)-2], nodes) // drops bad_name (and big)
	s.rebuild()
	cat.Set(services, nodes)
	s.rebuild()
	if svc, _ := count(); svc != 2 {
		t.Errorf("bad_name came back: %d lines, want 2:\n%s", svc, buf.String())
	}
	if !strings.Contains(buf.String(), "not a DNS label") {
		t.Errorf("the log does not say why:\n%s", buf.String())
	}
}
