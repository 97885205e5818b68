package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// benchCluster starts n client agents in this process (Fast timings,
// 127.0.0.1), joined through the first, and waits until each sees all n.
func benchCluster(b *testing.B, n int, tweak ...func(*Agent)) []*api.Client {
	b.Helper()
	var (
		clients []*api.Client
		first   string
	)
	for i := range n {
		cfg := DefaultConfig()
		cfg.NodeName = fmt.Sprintf("b%d", i)
		cfg.DataDir = b.TempDir()
		cfg.BindAddr = "127.0.0.1"
		cfg.Ports = testPorts
		cfg.Fast = true
		if i > 0 {
			cfg.Join = []string{first}
		}
		a, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range tweak {
			f(a)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
		select {
		case <-a.Started():
		case err := <-done:
			b.Fatalf("agent %d: %v", i, err)
		}
		if i == 0 {
			first = a.SerfAddr()
		}
		c, err := api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for {
			ms, err := c.Agent().Members(false)
			alive := 0
			for _, m := range ms {
				if m.Status == 1 {
					alive++
				}
			}
			if err == nil && alive == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("cluster of %d did not form within 30s (%d alive, %v)", n, alive, err)
			}
			time.Sleep(20 * time.Millisecond) // other agents' state: polled through their APIs
		}
	}
	return clients
}

// BenchmarkCatalogConvergence measures how long a registration on one
// agent takes to be visible on every agent of the cluster: each op
// registers a new service on the next agent and waits, with a blocking
// health query per agent (so no polling delay), until all N answer it.
// The agents run in this process with Fast timings (gossip every 50 ms)
// on 127.0.0.1. Reported: the median and the maximum over the ops.
//
//	go test -run '^$' -bench CatalogConvergence -benchtime 20x ./agent
//
// The "big" cases give every agent 100 services (with a TTL check each)
// first, so that each change sends a state of some 3 KB, too large for a
// gossip packet: it goes over TCP.
func BenchmarkCatalogConvergence(b *testing.B) {
	for _, tc := range []struct {
		n   int
		big bool
	}{{3, false}, {10, false}, {30, false}, {10, true}, {30, true}} {
		name := fmt.Sprintf("agents=%d", tc.n)
		if tc.big {
			name += "/services-per-agent=100"
		}
		n := tc.n
		b.Run(name, func(b *testing.B) {
			clients := benchCluster(b, n)
			if tc.big {
				for j, c := range clients {
					for k := range 100 {
						err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
							ID: fmt.Sprintf("bulk-%d-%d", j, k), Name: fmt.Sprintf("bulk-%d", k), Port: 1000 + k,
							Tags: []string{"v1"}, Check: &api.AgentServiceCheck{TTL: "1h"},
						})
						if err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			measureConvergence(b, clients)
		})
	}
}

// measureConvergence runs the ops of BenchmarkCatalogConvergence on
// clients and reports the median and maximum time to converge.
func measureConvergence(b *testing.B, clients []*api.Client) {
	n := len(clients)
	var times []time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("conv-%d", i)
		origin := clients[i%n]
		i++
		// Every agent's current index for the service, then a
		// blocking query from there.
		idx := make([]uint64, n)
		for j, c := range clients {
			_, m, err := c.Health().Service(name, "", false, nil)
			if err != nil {
				b.Fatal(err)
			}
			idx[j] = m.LastIndex
		}
		var wg sync.WaitGroup
		seen := make([]time.Time, n)
		start := time.Now()
		for j, c := range clients {
			wg.Go(func() {
				wait := idx[j]
				for {
					es, m, err := c.Health().Service(name, "", false, &api.QueryOptions{WaitIndex: wait, WaitTime: 30 * time.Second})
					if err != nil {
						b.Error(err)
						return
					}
					if len(es) == 1 {
						seen[j] = time.Now()
						return
					}
					wait = m.LastIndex
				}
			})
		}
		if err := origin.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: name, Port: 80}); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		var last time.Time
		for _, t := range seen {
			if t.After(last) {
				last = t
			}
		}
		times = append(times, last.Sub(start))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}
