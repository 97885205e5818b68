// Command kvload measures a Consul-compatible KV API over HTTP with the
// official client: PUT and GET throughput with p50/p99 latency at several
// client counts, and blocking-query fan-out (time from one PUT to the last
// of N watchers waking). It talks only to the address it is given, which
// must be on this machine.
//
//	kvload -addr 127.0.0.1:8500 -clients 1,16,64 -duration 5s -watchers 1000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kvload:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kvload", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8500", "HTTP address of the agent (loopback only)")
	clients := fs.String("clients", "1,16,64", "comma-separated concurrent client counts")
	duration := fs.Duration("duration", 5*time.Second, "how long each measurement runs")
	watchers := fs.Int("watchers", 1000, "blocking-query watchers for the fan-out test (0 skips it)")
	rounds := fs.Int("rounds", 5, "fan-out rounds")
	opList := fs.String("ops", "put,get", "comma-separated measurements to run, in order: put, get")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q is not a loopback address; kvload only loads this machine", *addr)
	}
	var counts []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive count", s)
		}
		counts = append(counts, n)
	}
	var ops []string
	for _, s := range strings.Split(*opList, ",") {
		op := strings.TrimSpace(s)
		if op != "put" && op != "get" {
			return fmt.Errorf("-ops: %q is neither put nor get", s)
		}
		ops = append(ops, op)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 2048, MaxConnsPerHost: 0}
	client, err := api.NewClient(&api.Config{Address: *addr, HttpClient: &http.Client{Transport: transport}})
	if err != nil {
		return err
	}
	kvc := client.KV()
	if _, err := kvc.Put(&api.KVPair{Key: "kvload/warm", Value: []byte("x")}, nil); err != nil {
		return fmt.Errorf("first PUT to %s: %w", *addr, err)
	}

	fmt.Printf("%-4s %8s %12s %10s %10s %8s\n", "op", "clients", "ops/s", "p50", "p99", "errors")
	value := []byte(strings.Repeat("v", 128))
	for _, op := range ops {
		for _, n := range counts {
			r := measure(n, *duration, func(worker, i int) error {
				key := fmt.Sprintf("kvload/%d/%d", worker, i%64)
				if op == "put" {
					_, err := kvc.Put(&api.KVPair{Key: key, Value: value}, nil)
					return err
				}
				_, _, err := kvc.Get(fmt.Sprintf("kvload/%d/%d", worker%counts[0], 0), nil)
				return err
			})
			fmt.Printf("%-4s %8d %12.0f %10v %10v %8d\n", op, n, r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors)
		}
	}
	if *watchers > 0 {
		return fanout(kvc, *watchers, *rounds)
	}
	return nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	errors   int
}

// measure runs n workers calling do for d and reports rate and latency.
func measure(n int, d time.Duration, do func(worker, i int) error) result {
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w := range n {
		wg.Go(func() {
			var local []time.Duration
			bad := 0
			for i := 0; time.Now().Before(end); i++ {
				t := time.Now()
				if err := do(w, i); err != nil {
					bad++
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	r := result{rate: float64(len(lats)) / elapsed.Seconds(), errors: errs}
	if len(lats) > 0 {
		r.p50 = lats[len(lats)/2]
		r.p99 = lats[len(lats)*99/100]
	}
	return r
}

// fanout parks n blocking queries on one key, PUTs it, and times the last
// wake-up. Each watcher has its own connection, as separate processes would.
func fanout(kvc *api.KV, n, rounds int) error {
	const key = "kvload/fanout"
	var times []time.Duration
	for range rounds {
		_, err := kvc.Put(&api.KVPair{Key: key, Value: []byte("0")}, nil)
		if err != nil {
			return err
		}
		_, meta, err := kvc.Get(key, nil)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var (
			ready, woke sync.WaitGroup
			mu          sync.Mutex
			last        time.Time
			failed      error
		)
		ready.Add(n)
		woke.Add(n)
		for range n {
			go func() {
				defer woke.Done()
				ready.Done()
				_, m, err := kvc.Get(key, (&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute}).WithContext(ctx))
				mu.Lock()
				defer mu.Unlock()
				if err != nil || m.LastIndex <= meta.LastIndex {
					failed = errors.Join(failed, fmt.Errorf("watcher: index %v, %v", m, err))
					return
				}
				if now := time.Now(); now.After(last) {
					last = now
				}
			}()
		}
		ready.Wait()
		// The goroutines are started; give their requests time to reach the
		// server before the write, so the measure is wake-up, not dialing.
		time.Sleep(2 * time.Second)
		put := time.Now()
		if _, err := kvc.Put(&api.KVPair{Key: key, Value: []byte("1")}, nil); err != nil {
			cancel()
			return err
		}
		woke.Wait()
		cancel()
		if failed != nil {
			return failed
		}
		times = append(times, last.Sub(put))
	}
	slices.Sort(times)
	fmt.Printf("fan-out: %d watchers, PUT -> last wake-up over %d rounds: min %v median %v max %v\n",
		n, rounds, times[0].Round(time.Microsecond), times[len(times)/2].Round(time.Microsecond), times[len(times)-1].Round(time.Microsecond))
	return nil
}
