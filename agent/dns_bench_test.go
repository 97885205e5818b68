package agent

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/dns"
)

// loadCatalog fills a catalog with services × instances, one instance of
// each service on each of `instances` remote agents, each with a TTL
// check, as gossip would.
func loadCatalog(b *testing.B, services, instances int) *catalog.Catalog {
	b.Helper()
	cfg := catalog.DefaultConfig()
	cfg.NodeName, cfg.Address = "self", "10.0.0.1"
	cat, err := catalog.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for n := range instances {
		name := fmt.Sprintf("node-%03d", n)
		ns := catalog.NodeState{Node: &catalog.Node{Node: name, Address: fmt.Sprintf("10.1.%d.%d", n/256, n%256), Datacenter: "dc1"}}
		for s := range services {
			svc := fmt.Sprintf("svc-%05d", s)
			id := fmt.Sprintf("%s-%d", svc, n)
			ns.Services = append(ns.Services, &catalog.Service{ID: id, Name: svc, Port: 8000 + n, Tags: []string{"v1"}})
			ns.Checks = append(ns.Checks, &catalog.Check{CheckID: "service:" + id, Name: "ttl", Status: catalog.StatusPassing,
				ServiceID: id, ServiceName: svc, Type: catalog.CheckTTL, Definition: catalog.Definition{TTL: 30 * time.Second}})
		}
		cat.LoadRemote(name, 1, []catalog.NodeState{ns})
	}
	return cat
}

// BenchmarkDNSOneChange measures what one service's health flip costs
// the DNS answers: from the catalog's change to the new zone being
// served. "full" is the path every change took before the change feed
// (a whole Snapshot and zone build); "feed" is Changes plus rebuilding
// the changed service alone.
//
// cpu-ms/op is the process's CPU time per change (the catalog's own
// apply excluded): what the "< 2 ms of CPU" is about. ns/op is
// the wall time until the new answers are served, which includes the
// DNS server's pause of twice its last build time between rebuilds.
//
//	go test -run '^$' -bench DNSOneChange -benchtime 50x ./agent
func BenchmarkDNSOneChange(b *testing.B) {
	for _, size := range []struct{ services, instances int }{{10_000, 3}, {10_000, 10}} {
		cat := loadCatalog(b, size.services, size.instances)
		version := uint64(1) // node-000's, across the sub-benchmarks
		for _, mode := range []string{"full", "feed"} {
			b.Run(fmt.Sprintf("services=%d/instances=%d/%s", size.services, size.instances, mode), func(b *testing.B) {
				adapter := newDNSCatalog(cat, nil, slog.New(slog.DiscardHandler))
				var dc dns.Catalog = adapter
				if mode == "full" {
					// Changes that never answer: every rebuild reads
					// everything, as before the feed.
					dc = snapshotOnly{adapter}
				}
				cfg := dns.DefaultConfig()
				cfg.Addr = "127.0.0.1:0"
				started := make(chan struct{})
				cfg.NotifyStarted = func() { close(started) }
				srv, err := dns.New(cfg, dc)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- srv.Run(ctx) }()
				defer func() { cancel(); <-done }()
				<-started
				var cpu time.Duration
				status := []string{catalog.StatusCritical, catalog.StatusPassing}
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					// node-000 flips svc-00042's check.
					b.StopTimer()
					ns := catalog.NodeState{Node: &catalog.Node{Node: "node-000", Address: "10.1.0.0", Datacenter: "dc1"}}
					for s := range size.services {
						svc := fmt.Sprintf("svc-%05d", s)
						id := fmt.Sprintf("%s-0", svc)
						st := catalog.StatusPassing
						if s == 42 {
							st = status[i%2]
						}
						ns.Services = append(ns.Services, &catalog.Service{ID: id, Name: svc, Port: 8000, Tags: []string{"v1"}})
						ns.Checks = append(ns.Checks, &catalog.Check{CheckID: "service:" + id, Name: "ttl", Status: st,
							ServiceID: id, ServiceName: svc, Type: catalog.CheckTTL, Definition: catalog.Definition{TTL: 30 * time.Second}})
					}
					i++
					version++
					cat.LoadRemote("node-000", version, []catalog.NodeState{ns})
					before := srv.Index()
					b.StartTimer()
					cpu0 := cpuTime()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := srv.WaitIndex(ctx, before+1)
					cancel()
					cpu += cpuTime() - cpu0
					if err != nil {
						b.Fatalf("the change did not reach the DNS answers: %v", err)
					}
				}
				b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// snapshotOnly is the adapter without its change feed.
type snapshotOnly struct{ *dnsCatalog }

func (snapshotOnly) Changes(memdb.WatchSet, uint64) (dns.Delta, bool) { return dns.Delta{}, false }
