package dns

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// TestHold: a service in VIP mode whose VIP is not known yet answers
// SERVFAIL for <svc> (never its instances, which would bypass the VIP),
// while tasks.<svc> and Consul's names answer the instances.
func TestHold(t *testing.T) {
	services, nodes := testServices()
	for i := range services {
		if services[i].Name == "api" {
			services[i].Hold = true
		}
	}
	cat := newFakeCatalog(services, nodes)
	s := newTestServer(t, cat)
	tests := []struct {
		q      query
		rcode  int
		answer []string
	}{
		{query{name: "api.cluster.", qtype: mdns.TypeA}, mdns.RcodeServerFailure, nil},
		{query{name: "api.cluster.", qtype: mdns.TypeAAAA}, mdns.RcodeServerFailure, nil},
		{query{name: "api.cluster.", qtype: mdns.TypeA, net: "tcp"}, mdns.RcodeServerFailure, nil},
		{query{name: "tasks.api.cluster.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"A 10.0.0.1"}},
		{query{name: "api.service.cluster.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"A 10.0.0.1"}},
		// A VIP known wins over a hold.
		{query{name: "web.cluster.", qtype: mdns.TypeA}, mdns.RcodeSuccess, []string{"A 10.10.0.5"}},
	}
	for _, tt := range tests {
		m := exchange(t, s.addr, tt.q)
		if m.Rcode != tt.rcode {
			t.Errorf("%s %s: rcode %s, want %s", tt.q.name, mdns.TypeToString[tt.q.qtype], mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.rcode])
		}
		if diff := cmp.Diff(tt.answer, section(m.Answer, false)); diff != "" {
			t.Errorf("%s %s answer (-want +got):\n%s", tt.q.name, mdns.TypeToString[tt.q.qtype], diff)
		}
	}
}
