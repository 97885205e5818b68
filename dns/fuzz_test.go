package dns

import (
	"encoding/binary"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandler feeds raw packets through what a server does with them
// (accept, unpack, serveDNS; see serveRaw) and checks the reply: at most
// one, it unpacks, it answers the query's ID, and over UDP it fits the
// client's size. Run it with go test -run '^$' -fuzz FuzzHandler ./dns.
func FuzzHandler(f *testing.F) {
	cfg := DefaultConfig()
	cfg.AltDomain = "consul."
	s, err := New(cfg, newFakeCatalog(testServices()))
	if err != nil {
		f.Fatal(err)
	}
	s.rebuild() // what Run does first; no recursors, so nothing leaves the process

	for _, q := range []query{
		{name: "web.cluster.", qtype: mdns.TypeA},
		{name: "tasks.big.cluster.", qtype: mdns.TypeA},
		{name: "tasks.big.cluster.", qtype: mdns.TypeA, edns: 1232},
		{name: "big.service.consul.", qtype: mdns.TypeSRV, edns: 600},
		{name: "_web._v1.service.dc1.cluster.", qtype: mdns.TypeSRV},
		{name: "ac110004.addr.dc1.cluster.", qtype: mdns.TypeANY},
		{name: "4.0.17.172.in-addr.arpa.", qtype: mdns.TypePTR},
		{name: "nope.cluster.", qtype: mdns.TypeA},
		{name: "cluster.", qtype: mdns.TypeSOA},
		{name: "example.org.", qtype: mdns.TypeA},
		{name: "cluster.", qtype: mdns.TypeAXFR},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns != 0 {
			m.SetEdns0(q.edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"), false) // name points at itself
	f.Add([]byte("\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00"), false)                         // two questions, none there

	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		w := &recorder{tcp: tcp}
		serveRaw(s, w, b)
		switch {
		case len(w.written) > 1:
			t.Fatalf("%d replies to one packet", len(w.written))
		case len(w.written) == 0:
			if len(b) >= 12 && b[2]&0x80 == 0 {
				t.Fatalf("no reply to a query (header % x)", b[:12])
			}
			return
		}
		out := w.written[0]
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply does not unpack: %v\n% x", err, out)
		}
		if id := binary.BigEndian.Uint16(b); r.Id != id || !r.Response {
			t.Fatalf("reply id %d response %v to query id %d", r.Id, r.Response, id)
		}
		limit := mdns.MaxMsgSize
		if !tcp {
			limit = mdns.MinMsgSize
			req := new(mdns.Msg)
			if req.Unpack(b) == nil {
				limit = udpLimit(req)
			}
		}
		if len(out) > limit {
			t.Fatalf("reply is %d bytes, over the client's %d", len(out), limit)
		}
	})
}
