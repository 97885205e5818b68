package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// target is an HTTP API the load goes to.
type target struct {
	name  string
	bin   int // which of cfg.bins runs it; len(cfg.bins) for the bare servers
	like  int // for a bare server: the target of bin 0 it is the ceiling of
	kv    *api.KV
	procs []*agent // every agent of its cluster, whose CPU time a run counts
}

// throughput runs the same PUT load against a one-server agent and a
// three-server cluster (its leader, and a client agent) of every binary,
// taking turns at each concurrency (and, over -throughput-rounds, in
// alternating order) so that drift on the machine hits all alike. It
// prints the median of each, its ratio to the one-server agent of the
// same binary, and its ratio to the first binary's same target.
func throughput(ctx context.Context, cfg config, dir string) error {
	var targets []target
	for b, bin := range cfg.bins {
		single, err := startCluster(ctx, bin, dir, fmt.Sprintf("single-%d", b), 1, 0)
		if err != nil {
			return err
		}
		defer single.close()
		triple, err := startCluster(ctx, bin, dir, fmt.Sprintf("triple-%d", b), 3, 1)
		if err != nil {
			return err
		}
		defer triple.close()
		leader := triple.leader()
		if leader == nil {
			return fmt.Errorf("the three-server cluster of %s has no leader", bin)
		}
		for _, t := range []struct {
			name  string
			a     *agent
			procs []*agent
		}{
			{"1 server", single.servers[0], single.all()},
			{"3 servers: leader " + leader.name, leader, triple.all()},
			{"3 servers: client agent c0", triple.clients[0], triple.all()},
		} {
			transport := &http.Transport{MaxIdleConnsPerHost: 2048}
			cl, err := api.NewClient(&api.Config{Address: addr(t.a.ports.http), HttpClient: &http.Client{Transport: transport}})
			if err != nil {
				return err
			}
			targets = append(targets, target{name: t.name, bin: b, kv: cl.KV(), procs: t.procs})
		}
	}

	perBin := len(targets) / len(cfg.bins)
	if cfg.bare != "" {
		// One bare server, the ceiling of bin 0's one server; and three,
		// a leader with two followers, the ceiling of its three-server
		// cluster through the leader.
		var followers [4]*agent
		for i := range followers {
			f, err := startBare(cfg.bare, dir, "bare-f"+strconv.Itoa(i), true)
			if err != nil {
				return err
			}
			defer f.stop(syscall.SIGKILL, 10*time.Second)
			followers[i] = f
		}
		to := func(fs []*agent) string { return addr(fs[0].ports.server) + "," + addr(fs[1].ports.server) }
		for i, b := range []struct {
			name  string
			args  []string
			like  int
			procs []*agent
		}{
			{"bare durable server", nil, 0, nil},
			{"bare durable, 3 replicas", []string{"-replicate", to(followers[0:2])}, 1, followers[0:2]},
			{"bare, 3, send after sync", []string{"-replicate", to(followers[2:4]), "-send-after-sync"}, 1, followers[2:4]},
		} {
			a, err := startBare(cfg.bare, dir, "bare-"+strconv.Itoa(i), false, b.args...)
			if err != nil {
				return err
			}
			defer a.stop(syscall.SIGKILL, 10*time.Second)
			cl, err := api.NewClient(&api.Config{Address: addr(a.ports.http), HttpClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2048}}})
			if err != nil {
				return err
			}
			targets = append(targets, target{name: b.name, bin: len(cfg.bins), like: b.like, kv: cl.KV(), procs: append([]*agent{a}, b.procs...)})
		}
	}

	value := []byte(strings.Repeat("v", 128))
	fmt.Printf("throughput: PUT of 128-byte values to keys bench/<client>/<0..63> with consul/api, %v per run after a 1 s warm-up, median of %d\n", cfg.duration, cfg.tpRounds)
	fmt.Println("  CPU/PUT: CPU time (user+system) of all the cluster's agents per PUT; paired: median over rounds of the ratio to bin 0's run of the same round")
	for b, bin := range cfg.bins {
		fmt.Printf("  bin %d: %s\n", b, bin)
	}
	if cfg.bare != "" {
		fmt.Printf("  bin %d: %s -durable: the same PUTs only appended to a preallocated log and synced (fdatasync, in groups) before the answer; its ratios are to bin 0's one server\n", len(cfg.bins), cfg.bare)
		fmt.Printf("  bin %d, 3 replicas: the same, and sent to two followers while the leader writes (each syncs in groups), answered once a majority has synced; its ratios are to bin 0's three servers via the leader\n", len(cfg.bins))
		fmt.Printf("  bin %d, 3, send after sync: the same, but the leader sends a PUT only once its own sync covers it, as hashicorp/raft's leader does\n", len(cfg.bins))
	}
	fmt.Println()
	fmt.Printf("%-8s %-4s %-30s %10s %10s %10s %7s %7s %9s %8s %9s %9s\n", "clients", "bin", "target", "PUT/s", "p50", "p99", "errors", "vs 1", "vs bin 0", "paired", "CPU/PUT", "vs bin 0")
	for _, n := range cfg.clients {
		results := make([][]result, len(targets))
		for round := range cfg.tpRounds {
			order := make([]int, len(targets))
			for i := range order {
				order[i] = i
			}
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, i := range order {
				if err := ctx.Err(); err != nil {
					return context.Cause(ctx)
				}
				tg := targets[i]
				put := func(ctx context.Context, worker, i int) error {
					_, err := tg.kv.Put(&api.KVPair{Key: fmt.Sprintf("bench/%d/%d", worker, i%64), Value: value}, (&api.WriteOptions{}).WithContext(ctx))
					return err
				}
				measure(ctx, n, time.Second, put) // warm-up: connections, pools
				cpu0 := cpuTime(tg.procs)
				r := measure(ctx, n, cfg.duration, put)
				if r.puts > 0 {
					r.cpuPerPut = (cpuTime(tg.procs) - cpu0) / time.Duration(r.puts)
				}
				results[i] = append(results[i], r)
			}
		}
		med := make([]result, len(targets))
		for i, rs := range results {
			med[i] = medianResult(rs)
		}
		for i, tg := range targets {
			r := med[i]
			// Each target is compared with the one-server agent of its
			// own binary (vs 1) and with its like of bin 0; a bare
			// server with bin 0's target it is the ceiling of.
			own, like := tg.bin*perBin, i%perBin
			if tg.bin == len(cfg.bins) {
				own, like = i, tg.like
			}
			vs1, vsBin, cpuVsBin := "1.00", "1.00", "1.00"
			if base := med[own].rate; base > 0 {
				vs1 = fmt.Sprintf("%.2f", r.rate/base)
			}
			if base := med[like].rate; base > 0 {
				vsBin = fmt.Sprintf("%.2f", r.rate/base)
			}
			cpu := medianCPU(results[i])
			if base := medianCPU(results[like]); base > 0 {
				cpuVsBin = fmt.Sprintf("%.2f", float64(cpu)/float64(base))
			}
			paired := pairedRatio(results[i], results[like])
			fmt.Printf("%-8d %-4d %-30s %10.0f %10v %10v %7d %7s %9s %8s %9v %9s\n", n, tg.bin, tg.name, r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, vs1, vsBin, paired, cpu.Round(time.Microsecond), cpuVsBin)
			if r.errors > 0 {
				fmt.Printf("         first error: %v\n", r.firstErr)
			}
		}
	}
	fmt.Println()
	return nil
}

// startBare starts bench/barekv -durable on free ports, a follower
// taking a leader's records on its server port, and waits until it
// answers.
func startBare(bin, dir, name string, follower bool, args ...string) (*agent, error) {
	p, err := pickPorts()
	if err != nil {
		return nil, err
	}
	a := &agent{name: name, ports: p, dataDir: filepath.Join(dir, name), logPath: filepath.Join(dir, name+".log")}
	if err := os.MkdirAll(a.dataDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	args = append([]string{"-addr", addr(p.http), "-durable", a.dataDir}, args...)
	if follower {
		args = append(args, "-follow", addr(p.server))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func() {
		a.err = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr(p.http))
		if err == nil {
			c.Close()
			return a, nil
		}
		if !a.running() || time.Now().After(deadline) {
			a.stop(syscall.SIGKILL, time.Second)
			return nil, fmt.Errorf("%s did not answer on %s (log: %s)", bin, addr(p.http), a.logPath)
		}
		select {
		case <-a.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// medianResult is the run with the median rate (errors summed over all).
func medianResult(rs []result) result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b result) int { return cmp.Compare(a.rate, b.rate) })
	m := sorted[len(sorted)/2]
	m.errors = 0
	for _, r := range rs {
		m.errors += r.errors
		if m.firstErr == nil {
			m.firstErr = r.firstErr
		}
	}
	return m
}

type result struct {
	rate      float64
	puts      int
	p50, p99  time.Duration
	errors    int
	firstErr  error
	cpuPerPut time.Duration // of every agent of the target's cluster; 0 when unknown
}

// pairedRatio is the median over rounds of rs's rate over base's in the
// same round: runs of one round are seconds apart, so drift of the
// machine's load between rounds cancels out.
func pairedRatio(rs, base []result) string {
	var ratios []float64
	for i := range min(len(rs), len(base)) {
		if base[i].rate > 0 {
			ratios = append(ratios, rs[i].rate/base[i].rate)
		}
	}
	if len(ratios) == 0 {
		return "-"
	}
	slices.Sort(ratios)
	return fmt.Sprintf("%.2f", ratios[len(ratios)/2])
}

// medianCPU is the median CPU time per PUT of rs.
func medianCPU(rs []result) time.Duration {
	cpus := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		cpus = append(cpus, r.cpuPerPut)
	}
	slices.Sort(cpus)
	return cpus[len(cpus)/2]
}

// cpuTime is the CPU time, user and system, the agents' processes have
// used so far (from /proc; 0 where there is none). Unlike the rate, it
// does not depend on what else the machine runs meanwhile.
func cpuTime(agents []*agent) time.Duration {
	var total time.Duration
	for _, a := range agents {
		if !a.running() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and
		// may hold spaces: state is the 3rd field, utime the 14th and
		// stime the 15th, in clock ticks (USER_HZ, 100 on Linux).
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
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
	r := result{rate: float64(len(lats)) / elapsed.Seconds(), puts: len(lats), errors: errs, firstErr: firstErr}
	if len(lats) > 0 {
		r.p50 = lats[len(lats)/2]
		r.p99 = lats[len(lats)*99/100]
	}
	return r
}
