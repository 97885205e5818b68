// Command httpload measures GET throughput of HTTP endpoints on this
// machine: -conns keep-alive connections each sending one request after
// the other for -duration, against each -url in turn, -rounds times, so
// that several servers (cairn before and after a change, a bare server
// answering the same bytes) are measured side by side. It prints the
// rate and p50/p99 latency of every run and the median rate per URL.
//
//	httpload -conns 16 -duration 4s -rounds 3 \
//	    -url http://127.0.0.1:18500/v1/health/service/web?passing \
//	    -url http://127.0.0.1:18501/v1/health/service/web?passing
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

type urls []string

func (u *urls) String() string     { return fmt.Sprint(*u) }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("httpload", flag.ContinueOnError)
	var targets urls
	fs.Var(&targets, "url", "URL to GET (repeatable; loopback only)")
	conns := fs.Int("conns", 16, "concurrent connections")
	duration := fs.Duration("duration", 4*time.Second, "how long each run lasts")
	rounds := fs.Int("rounds", 3, "rounds over the URLs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("give at least one -url")
	}
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("-url %q is not on a loopback address; httpload only loads this machine", t)
		}
	}
	rates := map[string][]float64{}
	for r := range *rounds {
		for _, t := range targets {
			rate, p50, p99, errs := load(t, *conns, *duration)
			rates[t] = append(rates[t], rate)
			fmt.Printf("round %d %-60s %9.0f/s  p50 %-10v p99 %-10v errors %d\n", r+1, t, rate, p50, p99, errs)
		}
	}
	for _, t := range targets {
		rs := rates[t]
		slices.Sort(rs)
		fmt.Printf("median %-60s %9.0f/s\n", t, rs[len(rs)/2])
	}
	return nil
}

func load(target string, conns int, d time.Duration) (rate float64, p50, p99 time.Duration, errs int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range conns {
		wg.Go(func() {
			var local []time.Duration
			bad := 0
			for time.Now().Before(end) {
				t := time.Now()
				resp, err := client.Get(target)
				if err != nil {
					bad++
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
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
	slices.Sort(lats)
	if len(lats) > 0 {
		p50, p99 = lats[len(lats)/2].Round(time.Microsecond), lats[len(lats)*99/100].Round(time.Microsecond)
	}
	return float64(len(lats)) / time.Since(start).Seconds(), p50, p99, errs
}
