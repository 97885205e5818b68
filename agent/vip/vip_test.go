package vip

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
)

// TestVIPs runs the whole part on a server: a registration gets a VIP
// through the real store, the data plane gets it, lookups answer it,
// and a leave removes the rules.
func TestVIPs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		dp := newRecorder()
		v, err := New(Config{CIDR: netip.MustParsePrefix("10.200.0.0/16"), Store: s, Leader: s, Catalog: cat, Dataplane: dp})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx) }()
		synctest.Wait()

		ws := memdb.NewWatchSet()
		if _, ok := v.Virtual(ws, "web"); ok {
			t.Errorf("Virtual(web) before web exists: ok")
		}
		dp.note("web registers on two host ports, vip_port 80")
		cat.set("web", inst("10.0.0.1", 32768, pass, "vip_port=80"), inst("10.0.0.2", 32771, pass, "vip_port=80"))
		synctest.Wait()
		if !fired(ws) {
			t.Errorf("the watch set of Virtual did not fire when web got its VIP")
		}
		got, ok := v.Virtual(nil, "Web")
		if want := netip.MustParseAddrPort("10.200.0.1:80"); !ok || got != want {
			t.Errorf("Virtual(Web) = %v, %v, want %v, true", got, ok, want)
		}
		if a, ok := v.Lookup("web"); !ok || a.String() != "10.200.0.1" {
			t.Errorf("Lookup(web) = %v, %v, want 10.200.0.1, true", a, ok)
		}
		if st := v.Status(); !st.Leading || st.Allocated != 1 || st.Size != "65534" {
			t.Errorf("Status() = %+v, want Leading, Allocated 1, Size 65534", st)
		}
		wantStats := map[string]string{
			"range": "10.200.0.0/16", "dataplane": "fake", "allocations": "1", "allocating": "true",
			"allocated": "1", "released": "0", "exhausted_total": "0",
		}
		if diff := cmp.Diff(wantStats, v.Stats()); diff != "" {
			t.Errorf("Stats() (-want +got):\n%s", diff)
		}
		dp.note("leave")
		if err := v.Leave(t.Context()); err != nil {
			t.Errorf("Leave = %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		want := `sync 0
# web registers on two host ports, vip_port 80
update set web 10.200.0.1 tcp/80 -> 10.0.0.1:32768,10.0.0.2:32771
# leave
flush
`
		if diff := cmp.Diff(want, dp.transcript()); diff != "" {
			t.Errorf("data plane transcript (-want +got):\n%s", diff)
		}
	})
}

// fired reports whether a channel of ws has closed.
func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

// TestPin is the rule for a VIP's target ports (README, "Service
// VIPs"): decided once, changed only by another vip_port/vip_proto.
func TestPin(t *testing.T) {
	pinned := func(ports, portMeta, protoMeta string) Pinned {
		p := Pinned{PortMeta: portMeta, ProtoMeta: protoMeta}
		if ports != "" {
			ps, err := parsePorts(ports, TCP)
			if err != nil {
				panic(err)
			}
			p.Ports = ps
		}
		return p
	}
	type want struct {
		Ports, PortMeta, ProtoMeta string
		Problem                    string
	}
	tests := []struct {
		name  string
		old   Pinned
		insts []catalog.Instance
		want  want
	}{
		// The first decision.
		{"most common port", Pinned{}, []catalog.Instance{inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 8080, pass), inst("10.0.0.3", 9090, pass)}, want{Ports: "8080/tcp"}},
		{"tie goes to the lowest port", Pinned{}, []catalog.Instance{inst("10.0.0.1", 9090, pass), inst("10.0.0.2", 8080, pass)}, want{Ports: "8080/tcp"}},
		{"vip_proto udp", Pinned{}, []catalog.Instance{inst("10.0.0.1", 53, pass, "vip_proto=udp")}, want{Ports: "53/udp", ProtoMeta: "udp"}},
		{"vip_port wins over the port", Pinned{}, []catalog.Instance{inst("10.0.0.1", 32768, pass, "vip_port=80")}, want{Ports: "80/tcp", PortMeta: "80"}},
		{"vip_port with protocols", Pinned{}, []catalog.Instance{inst("10.0.0.1", 53, pass, "vip_port=53/udp, 53/tcp,53/TCP")}, want{Ports: "53/tcp,53/udp", PortMeta: "53/udp, 53/tcp,53/TCP"}},
		{"vip_port most common value", Pinned{}, []catalog.Instance{inst("10.0.0.1", 1, pass, "vip_port=81"), inst("10.0.0.2", 1, pass, "vip_port=80"), inst("10.0.0.3", 1, pass, "vip_port=81")}, want{Ports: "81/tcp", PortMeta: "81"}},
		{"bad vip_port", Pinned{}, []catalog.Instance{inst("10.0.0.1", 8080, pass, "vip_port=http")}, want{Ports: "8080/tcp", Problem: `meta vip_port="http": "http" is not a port from 1 to 65535; write e.g. "80" or "80/tcp,53/udp"; using the most common instance port instead`}},
		{"bad vip_port protocol", Pinned{}, []catalog.Instance{inst("10.0.0.1", 8080, pass, "vip_port=80/sctp")}, want{Ports: "8080/tcp", Problem: `meta vip_port="80/sctp": protocol "sctp" is neither tcp nor udp; using the most common instance port instead`}},
		{"no port at all: undecided", Pinned{}, []catalog.Instance{inst("10.0.0.1", 0, pass)}, want{}},

		// Later: instances on other ports change nothing.
		{"instances moved to another common port", pinned("8080/tcp", "", ""), []catalog.Instance{inst("10.0.0.1", 9090, pass), inst("10.0.0.2", 9090, pass)}, want{Ports: "8080/tcp"}},
		{"Meta dropped keeps the ports", pinned("80/tcp", "80", ""), []catalog.Instance{inst("10.0.0.1", 9090, pass)}, want{Ports: "80/tcp", PortMeta: "80"}},
		{"same vip_port, other host ports", pinned("80/tcp", "80", ""), []catalog.Instance{inst("10.0.0.1", 32770, pass, "vip_port=80")}, want{Ports: "80/tcp", PortMeta: "80"}},
		// Another explicit Meta changes them.
		{"another vip_port", pinned("80/tcp", "80", ""), []catalog.Instance{inst("10.0.0.1", 32770, pass, "vip_port=8080")}, want{Ports: "8080/tcp", PortMeta: "8080"}},
		{"a first vip_port", pinned("32768/tcp", "", ""), []catalog.Instance{inst("10.0.0.1", 32768, pass, "vip_port=80")}, want{Ports: "80/tcp", PortMeta: "80"}},
		{"another vip_proto keeps the number", pinned("53/tcp", "", ""), []catalog.Instance{inst("10.0.0.1", 5353, pass, "vip_proto=udp")}, want{Ports: "53/udp", ProtoMeta: "udp"}},
		{"vip_proto with a kept vip_port", pinned("53/tcp", "53", ""), []catalog.Instance{inst("10.0.0.1", 5353, pass, "vip_proto=udp")}, want{Ports: "53/udp", PortMeta: "53", ProtoMeta: "udp"}},
		{"a bad new vip_port keeps the ports", pinned("80/tcp", "80", ""), []catalog.Instance{inst("10.0.0.1", 8080, pass, "vip_port=eighty")}, want{Ports: "80/tcp", PortMeta: "80",
			Problem: `meta vip_port="eighty": "eighty" is not a port from 1 to 65535; write e.g. "80" or "80/tcp,53/udp"; keeping the VIP's ports 80/tcp`}},
		{"undecided gets a port", Pinned{}, []catalog.Instance{inst("10.0.0.1", 0, pass), inst("10.0.0.2", 81, pass)}, want{Ports: "81/tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, problem := pin(tt.old, shapeOf(tt.insts))
			got := want{Ports: FormatPorts(p.Ports), PortMeta: p.PortMeta, ProtoMeta: p.ProtoMeta, Problem: problem}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pin (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShapeOf(t *testing.T) {
	s := shapeOf([]catalog.Instance{inst("10.0.0.2", 80, pass), inst("10.0.0.1", 8080, pass), inst("10.0.0.3", 80, crit), inst("10.0.0.4", 0, pass)})
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:80")}
	if diff := cmp.Diff(want, s.backends, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("backends: the passing instances with a port (-want +got):\n%s", diff)
	}
	if s.common != 80 {
		t.Errorf("common = %d, want 80 (all instances vote, healthy or not)", s.common)
	}
	if s := shapeOf([]catalog.Instance{inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, pass, "endpoint_mode=dnsrr")}); !s.dnsrr {
		t.Errorf("one instance with endpoint_mode=dnsrr: dnsrr = false")
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"80", "80/tcp,53/udp", " 53/udp, 53/TCP", "http", "80/sctp", ",", "65536", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ps, err := parsePorts(spec, TCP)
		if err != nil {
			return
		}
		if len(ps) == 0 {
			t.Fatalf("parsePorts(%q) = no ports, no error", spec)
		}
		for i, p := range ps {
			if p.Port == 0 || (p.Proto != TCP && p.Proto != UDP) {
				t.Fatalf("parsePorts(%q) gave %+v", spec, p)
			}
			if i > 0 && comparePort(ps[i-1], p) >= 0 {
				t.Fatalf("parsePorts(%q) = %+v: not sorted and unique", spec, ps)
			}
		}
	})
}
