package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkMetricsCost is the price of metrics on the hot paths, side
// by side in one run: KV GET over HTTP and DNS queries over UDP against
// a -dev agent with metrics on and with -disable-metrics. q/s is the
// rate of one sequential client; compare the on/off pairs.
//
//	go test -run '^$' -bench MetricsCost -benchtime 3s ./agent
func BenchmarkMetricsCost(b *testing.B) {
	type target struct {
		name     string
		httpBase string
		dnsAddr  string
	}
	// Both agents run for the whole benchmark, and each pair runs back
	// to back, so that the machine's load hits both alike.
	var targets []target
	for _, off := range []bool{true, false} {
		name := "metrics=on"
		if off {
			name = "metrics=off"
		}
		cfg := devConfig()
		cfg.Ports.DNS = 0
		cfg.DisableMetrics = off
		a, stop := benchAgent(b, cfg)
		defer stop()
		client, err := api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := client.KV().Put(&api.KVPair{Key: "bench/key", Value: make([]byte, 128)}, nil); err != nil {
			b.Fatal(err)
		}
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.0.0.1", Port: 80}); err != nil {
			b.Fatal(err)
		}
		dnsAddr := a.DNSAddr().String()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := dnsQuery(dnsAddr, "web.service.consul.", mdns.TypeA)
			if err == nil && len(r.Answer) == 1 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("DNS does not answer web.service.consul: %v %v", r, err)
			}
			time.Sleep(10 * time.Millisecond) // the agent's DNS rebuild runs in its own goroutine
		}
		targets = append(targets, target{name, "http://" + a.HTTPAddr().String(), dnsAddr})
	}
	for _, tg := range targets {
		b.Run("kv-get/"+tg.name, func(b *testing.B) {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for b.Loop() {
				resp, err := hc.Get(tg.httpBase + "/v1/kv/bench/key")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
		})
	}
	for _, tg := range targets {
		b.Run("dns/"+tg.name, func(b *testing.B) {
			c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
			conn, err := c.Dial(tg.dnsAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			m := new(mdns.Msg)
			m.SetQuestion("web.service.consul.", mdns.TypeA)
			for b.Loop() {
				r, _, err := c.ExchangeWithConn(m, conn)
				if err != nil || len(r.Answer) != 1 {
					b.Fatal(r, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
		})
	}
}

// benchAgent runs an agent for a benchmark until stop.
func benchAgent(b *testing.B, cfg Config) (*Agent, func()) {
	b.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Started():
	case err := <-done:
		b.Fatalf("Run: %v", err)
	}
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if l, err := client.Status().Leader(); err == nil && l != "" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader within 15s")
		}
		time.Sleep(20 * time.Millisecond) // the leader is elected in Raft's goroutines
	}
	return a, func() {
		cancel()
		<-done
	}
}

// BenchmarkMetricsCostKVGetHandler is the server's share of GET
// /v1/kv/<key> without the network (as httpapi's BenchmarkKVGet), with
// the agent's metrics wrapping (the request observer and the timed
// store) and without: the network-free view of the same cost, which the
// machine's noise hides less.
func BenchmarkMetricsCostKVGetHandler(b *testing.B) {
	store := kvtest.NewServer(b)
	if _, err := store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	tel := newTelemetry("bench")
	for _, tc := range []struct {
		name string
		cfg  httpapi.Config
	}{
		{"metrics=off", httpapi.Config{Store: store}},
		{"metrics=on", httpapi.Config{Store: tel.store(store), Ops: httpapi.Ops{Observer: tel.observer()}}},
	} {
		h, err := httpapi.NewHandler(tc.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/key", nil)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
			// CPU time is what metrics cost; wall time on a shared
			// machine mostly measures the neighbours.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkMetricsCostRounds is the cost of metrics in alternating
// rounds: two -dev agents (metrics on, -disable-metrics), and in each
// round the same number of KV GETs over HTTP, then of DNS queries over
// UDP, to each, the order flipped every round so that a burst of load on
// the machine hits both alike. It reports the median over the rounds of
// on/off for q/s (wall time) and for the process's CPU time per query
// (the agents and the client run in this process; one agent is busy at
// a time). A ratio of 1 is free; the goal is q/s ≥ 0.95.
//
//	go test -run '^$' -bench MetricsCostRounds -benchtime 1x ./agent
func BenchmarkMetricsCostRounds(b *testing.B) {
	const rounds, perRound = 15, 1500
	type target struct {
		httpBase string
		dnsAddr  string
	}
	var on, off target
	for _, disable := range []bool{false, true} {
		cfg := devConfig()
		cfg.Ports.DNS = 0
		cfg.DisableMetrics = disable
		a, stop := benchAgent(b, cfg)
		defer stop()
		client, err := api.NewClient(&api.Config{Address: a.HTTPAddr().String()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := client.KV().Put(&api.KVPair{Key: "bench/key", Value: make([]byte, 128)}, nil); err != nil {
			b.Fatal(err)
		}
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.0.0.1", Port: 80}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := dnsQuery(a.DNSAddr().String(), "web.service.consul.", mdns.TypeA)
			if err == nil && len(r.Answer) == 1 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("DNS does not answer web.service.consul: %v %v", r, err)
			}
			time.Sleep(10 * time.Millisecond) // the agent's DNS rebuild runs in its own goroutine
		}
		tg := target{"http://" + a.HTTPAddr().String(), a.DNSAddr().String()}
		if disable {
			off = tg
		} else {
			on = tg
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	kvRun := func(tg target) (wall, cpu time.Duration) {
		start, cpu0 := time.Now(), cpuTime()
		for range perRound {
			resp, err := hc.Get(tg.httpBase + "/v1/kv/bench/key")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
		return time.Since(start), cpuTime() - cpu0
	}
	dnsConns := map[string]*mdns.Conn{}
	dc := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	for _, tg := range []target{on, off} {
		conn, err := dc.Dial(tg.dnsAddr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		dnsConns[tg.dnsAddr] = conn
	}
	q := new(mdns.Msg)
	q.SetQuestion("web.service.consul.", mdns.TypeA)
	dnsRun := func(tg target) (wall, cpu time.Duration) {
		start, cpu0 := time.Now(), cpuTime()
		for range perRound {
			r, _, err := dc.ExchangeWithConn(q, dnsConns[tg.dnsAddr])
			if err != nil || len(r.Answer) != 1 {
				b.Fatal(r, err)
			}
		}
		return time.Since(start), cpuTime() - cpu0
	}
	for b.Loop() {
		var kvQPS, kvCPU, dnsQPS, dnsCPU []float64
		for round := range rounds {
			pair := func(run func(target) (time.Duration, time.Duration)) (qps, cpu float64) {
				var onW, onC, offW, offC time.Duration
				if round%2 == 0 {
					onW, onC = run(on)
					offW, offC = run(off)
				} else {
					offW, offC = run(off)
					onW, onC = run(on)
				}
				// on/off of q/s is off/on of the time taken; of CPU per
				// query, on/off.
				return offW.Seconds() / onW.Seconds(), onC.Seconds() / offC.Seconds()
			}
			a, c := pair(kvRun)
			kvQPS, kvCPU = append(kvQPS, a), append(kvCPU, c)
			a, c = pair(dnsRun)
			dnsQPS, dnsCPU = append(dnsQPS, a), append(dnsCPU, c)
		}
		b.ReportMetric(median(kvQPS), "kv-qps-on/off")
		b.ReportMetric(median(kvCPU), "kv-cpu-on/off")
		b.ReportMetric(median(dnsQPS), "dns-qps-on/off")
		b.ReportMetric(median(dnsCPU), "dns-cpu-on/off")
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
