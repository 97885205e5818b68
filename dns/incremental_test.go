package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// dumpZone lists every record a zone answers, one line each, sorted: two
// zones that answer the same dump the same.
func dumpZone(z *zone) string {
	var lines []string
	add := func(owner string, e *entry) {
		if e == nil {
			return
		}
		for _, a := range e.a {
			lines = append(lines, fmt.Sprintf("%s A %s ttl=%d", owner, a.A, a.Hdr.Ttl))
		}
		for _, a := range e.aaaa {
			lines = append(lines, fmt.Sprintf("%s AAAA %s", owner, a.AAAA))
		}
		for d, srvs := range e.srv {
			for _, s := range srvs {
				lines = append(lines, fmt.Sprintf("%s SRV[%d] %d %s", owner, d, s.Port, s.Target))
			}
			if d < len(e.extra) {
				for _, rr := range e.extra[d] {
					lines = append(lines, fmt.Sprintf("%s EXTRA[%d] %s", owner, d, strings.ReplaceAll(rr.String(), "\t", " ")))
				}
			}
		}
		for _, p := range e.ptr {
			lines = append(lines, fmt.Sprintf("%s PTR %s", owner, p.Ptr))
		}
		if e.servfail {
			lines = append(lines, owner+" SERVFAIL")
		}
	}
	for name, a := range z.services {
		add(name+" svc", a.svc)
		add(name+" tasks", a.tasks)
		add(name+" all", a.all)
		for tag, e := range a.tags {
			add(name+" tag "+tag, e)
		}
	}
	for name, e := range z.nodes {
		add(name+" node", e)
	}
	for name, e := range z.ptr {
		// PTR records of one name may come in another order.
		ptrs := slices.Clone(e.ptr)
		slices.SortFunc(ptrs, func(a, b mdns.PTR) int { return strings.Compare(a.Ptr, b.Ptr) })
		add(name, &entry{ptr: ptrs})
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestIncrementalMatchesFullBuild: after every kind of catalog change,
// the zone built from the change alone answers exactly what a zone built
// from a full snapshot answers.
func TestIncrementalMatchesFullBuild(t *testing.T) {
	services, nodes := testServices()
	cat := newFakeCatalog(services, nodes)
	s, err := New(DefaultConfig(), cat)
	if err != nil {
		t.Fatal(err)
	}
	s.rebuild()
	edit := func(f func(ss []Service, ns []Node) ([]Service, []Node)) func() {
		return func() {
			ss, ns := cloneCatalog(cat.services, cat.nodes)
			cat.Set(f(ss, ns))
		}
	}
	byName := func(ss []Service, name string) *Service {
		for i := range ss {
			if ss[i].Name == name {
				return &ss[i]
			}
		}
		t.Fatalf("no service %q", name)
		return nil
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"health flip", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "web").Instances[0].Status = StatusCritical
			return ss, ns
		})},
		{"an instance moves to its own address", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "api").Instances[0].Address = ip("172.17.0.9")
			return ss, ns
		})},
		{"two services share an address", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "db").Instances[0].Address = ip("172.17.0.9")
			return ss, ns
		})},
		{"one of them leaves it", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "api").Instances[0].Address = ip("172.17.0.10")
			return ss, ns
		})},
		{"a VIP goes", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "web").VIP = netip.Addr{}
			return ss, ns
		})},
		{"a service goes", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			return slices.DeleteFunc(ss, func(s Service) bool { return s.Name == "api" }), ns
		})},
		{"a service comes in another case", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			api := Service{Name: "API", Instances: []Instance{{Node: "n1", NodeAddr: ip("10.0.0.1"), ServiceID: "api9", Port: 81, Status: StatusPassing}}}
			return append(ss, api), ns
		})},
		{"a second service of the same DNS name", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			api := Service{Name: "api", Instances: []Instance{{Node: "n2", NodeAddr: ip("10.0.0.2"), ServiceID: "api8", Port: 82, Status: StatusPassing}}}
			return append(ss, api), ns
		})},
		{"a node's address changes", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			ns[0].Addr = ip("10.0.0.11")
			return ss, ns
		})},
		{"a node shares a service's address", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			return ss, append(ns, Node{Name: "n9", Addr: ip("172.17.0.4")})
		})},
		{"a VIP with no instance stays answered", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "db").Instances = nil
			byName(ss, "db").VIP = ip("10.10.0.7")
			return ss, ns
		})},
		{"api's VIP is held (not known yet)", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "api").Hold = true
			return ss, ns
		})},
		{"api gets its VIP", edit(func(ss []Service, ns []Node) ([]Service, []Node) {
			byName(ss, "api").Hold = false
			byName(ss, "api").VIP = ip("10.10.0.8")
			return ss, ns
		})},
		{"nothing changes", edit(func(ss []Service, ns []Node) ([]Service, []Node) { return ss, ns })},
	}
	for _, step := range steps {
		step.do()
		before := cat.snapshots
		s.rebuild()
		if cat.snapshots != before {
			t.Errorf("%s: the rebuild read a full snapshot; want the change alone", step.name)
		}
		got := dumpZone(s.zone.Load())
		full, _ := newZoneBuilder(&s.st).build(cat.index, cat.services, cat.nodes)
		if diff := cmp.Diff(dumpZone(full), got); diff != "" {
			t.Errorf("%s: incremental zone differs from a full build (-full +incremental):\n%s", step.name, diff)
		}
	}

	// When the catalog cannot say what changed, dns reads everything.
	cat.forget = true
	cat.Set(cloneCatalog(cat.services, cat.nodes))
	before := cat.snapshots
	s.rebuild()
	if cat.snapshots != before+1 {
		t.Errorf("Changes could not answer and dns read %d snapshots, want 1", cat.snapshots-before)
	}
}

func cloneCatalog(ss []Service, ns []Node) ([]Service, []Node) {
	out := slices.Clone(ss)
	for i := range out {
		out[i].Instances = slices.Clone(out[i].Instances)
	}
	return out, slices.Clone(ns)
}

// TestNodesSharingAnAddress: every node at one address is a PTR record
// of its reverse name, once each, in name order; the records are
// gathered once per build, not copied once per node.
func TestNodesSharingAnAddress(t *testing.T) {
	var nodes []Node
	for _, name := range []string{"ext-3", "ext-1", "ext-2"} {
		nodes = append(nodes, Node{Name: name, Addr: ip("192.0.2.7")})
	}
	nodes = append(nodes, Node{Name: "ext-1", Addr: ip("192.0.2.7")}, Node{Name: "other", Addr: ip("192.0.2.8")})
	s, err := New(DefaultConfig(), newFakeCatalog(nil, nodes))
	if err != nil {
		t.Fatal(err)
	}
	z, _ := newZoneBuilder(&s.st).build(1, nil, nodes)
	want := "7.2.0.192.in-addr.arpa. PTR ext-1.node.dc1.cluster.\n" +
		"7.2.0.192.in-addr.arpa. PTR ext-2.node.dc1.cluster.\n" +
		"7.2.0.192.in-addr.arpa. PTR ext-3.node.dc1.cluster."
	var got []string
	for _, p := range z.ptr["7.2.0.192.in-addr.arpa."].ptr {
		got = append(got, "7.2.0.192.in-addr.arpa. PTR "+p.Ptr)
	}
	if diff := cmp.Diff(want, strings.Join(got, "\n")); diff != "" {
		t.Errorf("PTR records of the shared address (-want +got):\n%s", diff)
	}
	if n := len(z.ptr["8.2.0.192.in-addr.arpa."].ptr); n != 1 {
		t.Errorf("the other address has %d PTR records; want 1", n)
	}
}

// TestRebuildWait: answers wait twice the last build's time before the
// next build, so that rebuilds take at most a third of a core under
// churn, but never more than maxRebuildWait: a long build was waiting
// (the agent's first, for its ACL token to resolve), not working.
func TestRebuildWait(t *testing.T) {
	for _, tc := range []struct{ last, want time.Duration }{
		{0, 0},
		{3 * time.Millisecond, 6 * time.Millisecond},
		{900 * time.Millisecond, 1800 * time.Millisecond},
		{1860 * time.Millisecond, maxRebuildWait},
	} {
		if got := rebuildWait(tc.last); got != tc.want {
			t.Errorf("rebuildWait(%v) = %v, want %v", tc.last, got, tc.want)
		}
	}
}
