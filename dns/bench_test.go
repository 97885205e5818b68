package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// manyServices returns n services of 3 instances on 100 nodes, with a tag
// each; every other one has a VIP.
func manyServices(n int) ([]Service, []Node) {
	var nodes []Node
	for i := range 100 {
		nodes = append(nodes, Node{Name: fmt.Sprintf("node-%d", i), Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})})
	}
	services := make([]Service, n)
	for i := range services {
		s := Service{Name: fmt.Sprintf("svc-%d", i)}
		if i%2 == 0 {
			s.VIP = netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)})
		}
		for j := range 3 {
			nd := nodes[(i+j*7)%len(nodes)]
			s.Instances = append(s.Instances, Instance{
				Node: nd.Name, NodeAddr: nd.Addr, ServiceID: fmt.Sprintf("svc-%d-%d", i, j),
				Address: netip.AddrFrom4([4]byte{172, 16 + byte(j), byte(i >> 8), byte(i)}),
				Port:    8000 + j, Tags: []string{fmt.Sprintf("v%d", j)}, Status: StatusPassing,
			})
		}
		services[i] = s
	}
	return services, nodes
}

// discard is a ResponseWriter that only counts.
type discard struct {
	recorder
	n int
}

func (w *discard) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// BenchmarkServeDNS measures the handler alone (what a query costs on
// top of miekg/dns's unpacking and socket I/O) with 10,000 services.
// bench/dns measures the whole server over UDP.
func BenchmarkServeDNS(b *testing.B) {
	s, err := New(DefaultConfig(), newFakeCatalog(manyServices(10_000)))
	if err != nil {
		b.Fatal(err)
	}
	s.rebuild()
	for _, q := range []query{
		{name: "svc-4242.cluster.", qtype: mdns.TypeA},
		{name: "tasks.svc-4243.cluster.", qtype: mdns.TypeA},
		{name: "svc-4243.service.cluster.", qtype: mdns.TypeSRV},
		{name: "v1.svc-4243.service.dc1.cluster.", qtype: mdns.TypeSRV, edns: 1232},
		{name: "nope.cluster.", qtype: mdns.TypeA},
	} {
		b.Run(q.name+"/"+mdns.TypeToString[q.qtype], func(b *testing.B) {
			req := new(mdns.Msg)
			req.SetQuestion(q.name, q.qtype)
			if q.edns != 0 {
				req.SetEdns0(q.edns, false)
			}
			w := &discard{}
			b.ReportAllocs()
			for b.Loop() {
				s.serveDNS(w, req)
			}
			if w.n == 0 {
				b.Fatal("nothing written")
			}
		})
	}
}

// BenchmarkBuildZone measures what a catalog change costs with 10,000
// services: "cold" builds every answer (the first build), "one changed"
// rebuilds one service from a change and reuses the rest.
func BenchmarkBuildZone(b *testing.B) {
	services, nodes := manyServices(10_000)
	s, err := New(DefaultConfig(), newFakeCatalog(nil, nil))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			z, _ := newZoneBuilder(&s.st).build(1, services, nodes)
			if len(z.services) == 0 {
				b.Fatal("no services")
			}
		}
	})
	b.Run("one changed", func(b *testing.B) {
		zb := newZoneBuilder(&s.st)
		zb.build(1, services, nodes)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			services[42].Instances[0].Port = 9000 + i%2
			z, res := zb.update(uint64(i), services[42:43], nil, false)
			if len(z.services) == 0 || res.rebuilt != 1 {
				b.Fatalf("%d services, %d rebuilt; want 1", len(z.services), res.rebuilt)
			}
		}
	})
}

var _ net.Addr = recorderUDP

// histogramMetrics records queries the way the agent's metrics do: a
// Prometheus histogram per rcode.
type histogramMetrics struct{ h *prometheus.HistogramVec }

func (m histogramMetrics) Query(rcode int, d time.Duration) {
	m.h.WithLabelValues(mdns.RcodeToString[rcode]).Observe(float64(d) / float64(time.Millisecond))
}

// BenchmarkServeDNSMetrics is BenchmarkServeDNS's first query with
// Config.Metrics off and on, side by side: the hook's cost.
func BenchmarkServeDNSMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		name := "metrics=off"
		if on {
			name = "metrics=on"
			cfg.Metrics = histogramMetrics{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "q"}, []string{"rcode"})}
		}
		s, err := New(cfg, newFakeCatalog(manyServices(1000)))
		if err != nil {
			b.Fatal(err)
		}
		s.rebuild()
		b.Run(name, func(b *testing.B) {
			req := new(mdns.Msg)
			req.SetQuestion("svc-424.cluster.", mdns.TypeA)
			w := &discard{}
			b.ReportAllocs()
			for b.Loop() {
				s.serveDNS(w, req)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
		})
	}
}
