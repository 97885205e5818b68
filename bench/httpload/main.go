// Command httpload measures GET throughput of HTTP endpoints on this
// machine: -conns keep-alive connections each sending one request after
// the other for -duration, against each -url in turn, -rounds times, so
// that several servers (cairn before and after a change, a bare server
// answering the same bytes) are measured side by side. It prints the
// rate and p50/p99 latency of every run and the median rate per URL;
// with -pid, the server's CPU time per request too, and with -group,
// each URL's ratios to its group's last, round by round.
//
//	httpload -conns 16 -duration 4s -rounds 3 -group 2 \
//	    -url http://127.0.0.1:18500/v1/health/service/web?passing -pid $cairn \
//	    -url http://127.0.0.1:18501/v1/health/service/web?passing -pid $bare
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
	"strconv"
	"strings"
	"sync"
	"time"
)

type urls []string

func (u *urls) String() string     { return fmt.Sprint(*u) }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

type pids []int

func (p *pids) String() string { return fmt.Sprint(*p) }
func (p *pids) Set(s string) error {
	n, err := strconv.Atoi(s)
	*p = append(*p, n)
	return err
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

// result is one run against one URL.
type result struct {
	rate float64
	cpu  time.Duration // the server's CPU time per request; 0 when unknown
}

func run(args []string) error {
	fs := flag.NewFlagSet("httpload", flag.ContinueOnError)
	var (
		targets urls
		servers pids
	)
	fs.Var(&targets, "url", "URL to GET (repeatable; loopback only)")
	fs.Var(&servers, "pid", "process ID of the server of each -url, in the same order (repeatable; 0: unknown), to report its CPU time per request")
	conns := fs.Int("conns", 16, "concurrent connections")
	duration := fs.Duration("duration", 4*time.Second, "how long each run lasts")
	rounds := fs.Int("rounds", 3, "rounds over the URLs")
	group := fs.Int("group", 0, "compare in groups of this many consecutive URLs: each to the group's last (the ceiling), round by round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("give at least one -url")
	}
	if *group < 0 || (*group > 0 && len(targets)%*group != 0) {
		return fmt.Errorf("-group %d does not divide the %d URLs", *group, len(targets))
	}
	if len(servers) > 0 && len(servers) != len(targets) {
		return fmt.Errorf("%d -pid for %d -url; give one per URL (0 for none)", len(servers), len(targets))
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
	// Results by URL index (a URL may be given twice), compared round by
	// round with the group's last URL: on a shared machine whose load
	// moves from second to second, the ratio of runs seconds apart says
	// more than the ratio of two medians, and the server's CPU time per
	// request more than its rate (other processes take the CPU from
	// server and client alike, not from what a request costs).
	res := make([][]result, len(targets))
	rateRatios := make([][]float64, len(targets))
	cpuRatios := make([][]float64, len(targets))
	for r := range *rounds {
		for i, t := range targets {
			pid := 0
			if len(servers) > 0 {
				pid = servers[i]
			}
			before := cpuTime(pid)
			rate, n, p50, p99, errs := load(t, *conns, *duration)
			x := result{rate: rate}
			if after := cpuTime(pid); before > 0 && after > 0 && n > 0 {
				x.cpu = (after - before) / time.Duration(n)
			}
			res[i] = append(res[i], x)
			fmt.Printf("round %d %-55s %7.0f/s  cpu/req %-8v p50 %-9v p99 %-9v errors %d\n", r+1, t, rate, x.cpu, p50, p99, errs)
		}
		if *group > 0 {
			for i := range targets {
				last := res[i/(*group)*(*group)+*group-1][r]
				x := res[i][r]
				if last.rate > 0 {
					rateRatios[i] = append(rateRatios[i], x.rate/last.rate)
				}
				if x.cpu > 0 && last.cpu > 0 {
					cpuRatios[i] = append(cpuRatios[i], float64(last.cpu)/float64(x.cpu))
				}
			}
		}
	}
	for i, t := range targets {
		var rates, cpus []float64
		for _, x := range res[i] {
			rates = append(rates, x.rate)
			cpus = append(cpus, float64(x.cpu))
		}
		line := fmt.Sprintf("median %-55s %7.0f/s  cpu/req %v", t, median(rates), time.Duration(median(cpus)).Round(time.Microsecond/10))
		if *group > 0 && (i+1)%*group != 0 {
			line += fmt.Sprintf("  vs the group's last: rate %.2fx", median(rateRatios[i]))
			if len(cpuRatios[i]) > 0 {
				line += fmt.Sprintf(", cpu/req %.2fx (its cpu/req over this one's)", median(cpuRatios[i]))
			}
		}
		fmt.Println(line)
	}
	return nil
}

// cpuTime is the CPU time process pid has used, user and system, from
// every thread's /proc schedstat (nanoseconds, where /proc/pid/stat
// counts 10 ms ticks); 0 when unknown.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if err != nil {
			continue // the thread just ended
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)/2]
}

func load(target string, conns int, d time.Duration) (rate float64, n int, p50, p99 time.Duration, errs int) {
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
	return float64(len(lats)) / time.Since(start).Seconds(), len(lats), p50, p99, errs
}
