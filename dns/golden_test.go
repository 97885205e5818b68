package dns

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the answers the server gives")

// TestGolden compares whole answers, as dig would print them, with
// testdata/<case>.golden. Each case asks a fresh server, so rotation
// starts from the first instance. Rewrite with go test -run TestGolden -update
// and read the diff.
func TestGolden(t *testing.T) {
	for _, tt := range []struct {
		file string
		q    query
	}{
		{"vip_a", query{name: "web.cluster.", qtype: mdns.TypeA}},
		{"tasks_a", query{name: "tasks.web.cluster.", qtype: mdns.TypeA}},
		{"service_srv_edns", query{name: "web.service.cluster.", qtype: mdns.TypeSRV, edns: 1232}},
		{"rfc2782_tag_srv_consul", query{name: "_web._v1.service.dc1.consul.", qtype: mdns.TypeSRV}},
		{"ipv6_srv", query{name: "api.service.cluster.", qtype: mdns.TypeSRV}},
		{"node_aaaa", query{name: "n6.node.cluster.", qtype: mdns.TypeAAAA}},
		{"ptr_instance", query{name: "4.0.17.172.in-addr.arpa.", qtype: mdns.TypePTR}},
		{"nxdomain", query{name: "nope.cluster.", qtype: mdns.TypeA}},
		{"nodata", query{name: "web.cluster.", qtype: mdns.TypeAAAA}},
		{"truncated_udp", query{name: "tasks.big.cluster.", qtype: mdns.TypeA}},
		{"refused", query{name: "example.org.", qtype: mdns.TypeA}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			s := newTestServer(t, newFakeCatalog(testServices()))
			r := exchange(t, s.addr, tt.q)
			r.Id = 0
			got := r.String()
			path := filepath.Join("testdata", tt.file+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with go test -run TestGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s %s differs from %s (-want +got):\n%s", tt.q.name, mdns.TypeToString[tt.q.qtype], path, diff)
			}
		})
	}
}
