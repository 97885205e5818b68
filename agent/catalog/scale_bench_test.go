package catalog_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/httpapi"
)

// noStore stands in for the KV store, which catalog reads never touch.
type noStore struct{ httpapi.Store }

const (
	scaleServices  = 10_000
	scaleInstances = 10
	scaleNodes     = 1_000 // 100 instances per node
)

// loadScale fills c with scaleServices services of scaleInstances
// instances each, spread over scaleNodes agents (each publishing its node
// with 100 services, each service with a TTL check), as gossip would.
func loadScale(c *catalog.Catalog) {
	perNode := scaleServices * scaleInstances / scaleNodes
	groups := scaleNodes / scaleInstances // nodes n and n+groups*k host the same services
	for n := range scaleNodes {
		name := fmt.Sprintf("node-%04d", n)
		ns := catalog.NodeState{Node: &catalog.Node{
			ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", n), Node: name, Datacenter: "dc1",
			Address:         fmt.Sprintf("10.%d.%d.%d", n/65536, n/256%256, n%256),
			TaggedAddresses: map[string]string{"lan": "10.0.0.1"},
			Meta:            map[string]string{"consul-network-segment": "", "rack": fmt.Sprintf("r%d", n%8)},
		}}
		for j := range perNode {
			s := (n%groups)*perNode + j
			svc := fmt.Sprintf("svc-%05d", s)
			id := fmt.Sprintf("%s-%d", svc, n)
			ns.Services = append(ns.Services, &catalog.Service{
				ID: id, Name: svc, Port: 20000 + j, Tags: []string{"v1", fmt.Sprintf("zone-%d", n%3)},
				Meta: map[string]string{"version": "1.2.3"}, Weights: catalog.Weights{Passing: 1, Warning: 1},
			})
			ns.Checks = append(ns.Checks, &catalog.Check{
				CheckID: "service:" + id, Name: "Service '" + svc + "' check", Status: catalog.StatusPassing,
				Output: "ok", ServiceID: id, ServiceName: svc, ServiceTags: []string{"v1"}, Type: catalog.CheckTTL,
				Definition: catalog.Definition{TTL: 30 * time.Second},
			})
		}
		c.LoadRemote(name, 1, []catalog.NodeState{ns})
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkHealthServiceAtScale answers /v1/health/service/<name> over
// HTTP from a catalog holding 10,000 services of 10 instances each
// (100,000 instances with their checks, on 1,000 nodes). It reports the
// heap the catalog takes (heap-MB), how long loading took (load-s), and
// per op the latency of one query of a random service.
//
//	go test -run '^$' -bench HealthServiceAtScale -benchtime 2000x ./agent/catalog
func BenchmarkHealthServiceAtScale(b *testing.B) {
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "self", "10.255.0.1"
	before := heapAlloc()
	c, err := catalog.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	loadScale(c)
	load := time.Since(start)
	after := heapAlloc()
	_, svcs := c.Services(nil, catalog.Filter{})
	if len(svcs) != scaleServices+0 {
		b.Fatalf("loaded %d services, want %d", len(svcs), scaleServices)
	}

	h, err := httpapi.NewHandler(httpapi.Config{Store: noStore{}, Catalog: c, Self: httpapi.Self{NodeName: "self"}})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	client := ts.Client()
	rng := rand.New(rand.NewPCG(1, 2))
	get := func() int {
		url := fmt.Sprintf("%s/v1/health/service/svc-%05d?passing", ts.URL, rng.IntN(scaleServices))
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d", url, resp.StatusCode)
		}
		return int(n)
	}
	size := get()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(after-before)/(1<<20), "heap-MB")
	b.ReportMetric(load.Seconds(), "load-s")
	b.ReportMetric(float64(size), "answer-bytes")
	runtime.KeepAlive(c)
}
