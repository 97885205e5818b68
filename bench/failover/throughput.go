package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// target is an HTTP API the load goes to.
type target struct {
	name string
	kv   *api.KV
}

// throughput runs the same PUT load against a one-server agent and a
// three-server cluster (its leader, and a client agent), taking turns at
// each concurrency so that drift on the machine hits all three alike.
func throughput(ctx context.Context, cfg config, dir string) error {
	single, err := startCluster(ctx, cfg.bin, dir, "single", 1, 0)
	if err != nil {
		return err
	}
	defer single.close()
	triple, err := startCluster(ctx, cfg.bin, dir, "triple", 3, 1)
	if err != nil {
		return err
	}
	defer triple.close()
	leader := triple.leader()
	if leader == nil {
		return fmt.Errorf("the three-server cluster has no leader")
	}
	mk := func(name string, a *agent) (target, error) {
		transport := &http.Transport{MaxIdleConnsPerHost: 2048}
		cl, err := api.NewClient(&api.Config{Address: addr(a.ports.http), HttpClient: &http.Client{Transport: transport}})
		if err != nil {
			return target{}, err
		}
		return target{name: name, kv: cl.KV()}, nil
	}
	var targets []target
	for _, t := range []struct {
		name string
		a    *agent
	}{
		{"1 server", single.servers[0]},
		{"3 servers: leader " + leader.name, leader},
		{"3 servers: client agent c0", triple.clients[0]},
	} {
		tg, err := mk(t.name, t.a)
		if err != nil {
			return err
		}
		targets = append(targets, tg)
	}

	value := []byte(strings.Repeat("v", 128))
	fmt.Printf("throughput: PUT of 128-byte values to keys bench/<client>/<0..63> with consul/api, %v per run, after a 1 s warm-up\n\n", cfg.duration)
	fmt.Printf("%-8s %-30s %10s %10s %10s %7s %9s\n", "clients", "target", "PUT/s", "p50", "p99", "errors", "vs 1")
	for _, n := range cfg.clients {
		var base float64
		for i, tg := range targets {
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			put := func(ctx context.Context, worker, i int) error {
				_, err := tg.kv.Put(&api.KVPair{Key: fmt.Sprintf("bench/%d/%d", worker, i%64), Value: value}, (&api.WriteOptions{}).WithContext(ctx))
				return err
			}
			measure(ctx, n, time.Second, put) // warm-up: connections, pools
			r := measure(ctx, n, cfg.duration, put)
			ratio := "1.00"
			if i == 0 {
				base = r.rate
			} else if base > 0 {
				ratio = fmt.Sprintf("%.2f", r.rate/base)
			}
			fmt.Printf("%-8d %-30s %10.0f %10v %10v %7d %9s\n", n, tg.name, r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, ratio)
			if r.errors > 0 {
				fmt.Printf("         first error: %v\n", r.firstErr)
			}
		}
	}
	fmt.Println()
	return nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	errors   int
	firstErr error
}

// measure runs n workers calling do for d and reports the rate of
// successful calls and their latency (bench/kvload's method). A call
// still running 10 s after the end is cut off.
func measure(ctx context.Context, n int, d time.Duration, do func(ctx context.Context, worker, i int) error) result {
	ctx, cancel := context.WithTimeout(ctx, d+10*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		lats     []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w := range n {
		wg.Go(func() {
			var local []time.Duration
			bad := 0
			var first error
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				t := time.Now()
				if err := do(ctx, w, i); err != nil {
					bad++
					if first == nil {
						first = err
					}
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += bad
			if firstErr == nil {
				firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	r := result{rate: float64(len(lats)) / elapsed.Seconds(), errors: errs, firstErr: firstErr}
	if len(lats) > 0 {
		r.p50 = lats[len(lats)/2]
		r.p99 = lats[len(lats)*99/100]
	}
	return r
}
