package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// attempt is one write of a round: when it was sent and answered,
// relative to the stop.
type attempt struct {
	sent, done time.Duration
	ok         bool
	err        string
}

// round is one measured leader stop.
type round struct {
	leader   string
	elected  time.Duration // a remaining server first names a new leader
	recovery time.Duration // see recovery
	failed   int           // PUTs that failed on the way
	firstErr string        // the first failed PUT's error
	slowest  time.Duration // the longest any PUT of the round took
}

// failover measures cfg.rounds leader stops of each kind on one cluster
// of three servers and a client agent.
func failover(ctx context.Context, cfg config, dir string) error {
	c, err := startCluster(ctx, cfg.bin, dir, "failover", 3, 1)
	if err != nil {
		return err
	}
	defer c.close()
	fmt.Printf("failover: 3 servers + 1 client agent; after the leader is stopped, a fresh PUT through the client agent every 10 ms\n")
	fmt.Printf("  recovery = stop -> first successful PUT after the longest stretch with none (a PUT a leaving leader still acknowledges ends no outage)\n")
	fmt.Printf("  elected  = stop -> a remaining server names a new leader (polled every 10 ms)\n\n")
	fmt.Printf("  PUT max  = the longest a single PUT took (each has a 10 s client timeout)\n\n")
	fmt.Printf("%-8s %6s | %-28s | %-28s | %-20s | %s\n", "stop", "rounds", "recovery min/median/max", "elected min/median/max", "failed PUTs med/max", "PUT max")
	for _, mode := range cfg.stops {
		var rounds []round
		for i := range cfg.rounds {
			r, err := failoverRound(ctx, c, mode, i)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", mode.name, i+1, err)
			}
			if cfg.verbose {
				fmt.Printf("  %s round %2d: leader %s, recovery %v, elected %v, %d failed PUTs, slowest PUT %v\n", mode.name, i+1, r.leader, ms(r.recovery), ms(r.elected), r.failed, ms(r.slowest))
				if r.firstErr != "" {
					fmt.Printf("    first error: %s\n", r.firstErr)
				}
			}
			rounds = append(rounds, r)
		}
		rec := stats(rounds, func(r round) time.Duration { return r.recovery })
		el := stats(rounds, func(r round) time.Duration { return r.elected })
		failed := make([]int, len(rounds))
		for i, r := range rounds {
			failed[i] = r.failed
		}
		slices.Sort(failed)
		slowest := time.Duration(0)
		for _, r := range rounds {
			slowest = max(slowest, r.slowest)
		}
		fmt.Printf("%-8s %6d | %-28s | %-28s | %-20s | %s\n", mode.name, len(rounds), rec, el, fmt.Sprintf("%d / %d", failed[len(failed)/2], failed[len(failed)-1]), ms(slowest))
	}
	fmt.Println()
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }

func stats(rs []round, f func(round) time.Duration) string {
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return fmt.Sprintf("%s / %s / %s", ms(ds[0]), ms(median(ds)), ms(ds[len(ds)-1]))
}

func median(ds []time.Duration) time.Duration {
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

// failoverRound stops the leader with mode's signal and sends a fresh PUT
// through the client agent every 10 ms, each with its own 10 s timeout,
// until a remaining server names a new leader, a PUT sent after that has
// succeeded, and 300 ms more have passed. Then it starts the stopped
// server again and waits until the cluster is whole and the server has
// caught up.
func failoverRound(ctx context.Context, c *cluster, mode stopMode, n int) (round, error) {
	leader := c.leader()
	if leader == nil {
		return round{}, fmt.Errorf("no leader before the stop")
	}
	oldAddr := addr(leader.ports.server)
	var others []*agent
	for _, s := range c.servers {
		if s != leader {
			others = append(others, s)
		}
	}
	// Its own connections, so no request waits behind another's.
	// Its connections are closed at the end of the round: the agent
	// limits how many one client holds (http_max_conns_per_client, 200).
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	cl, err := api.NewClient(&api.Config{Address: addr(c.clients[0].ports.http), HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		return round{}, err
	}

	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		attempts []attempt
		writes   sync.WaitGroup
		watch    sync.WaitGroup
		elected  = time.Duration(-1)
	)
	t0 := time.Now()
	if err := leader.signal(mode.sig); err != nil {
		return round{}, err
	}
	watch.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, s := range others {
				if l, err := s.api.Status().Leader(); err == nil && l != "" && l != oldAddr {
					mu.Lock()
					elected = time.Since(t0)
					mu.Unlock()
					return
				}
			}
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	// done reports whether a PUT sent after the election has succeeded
	// (and when it was answered).
	done := func() (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		if elected < 0 {
			return 0, false
		}
		for _, a := range attempts {
			if a.ok && a.sent >= elected {
				return a.done, true
			}
		}
		return 0, false
	}

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	inflight := make(chan struct{}, 100)
	for i := 0; ; i++ {
		if at, ok := done(); ok && time.Since(t0) > at+300*time.Millisecond {
			break
		}
		select {
		case <-rctx.Done():
			writes.Wait()
			watch.Wait()
			mu.Lock()
			defer mu.Unlock()
			return round{}, fmt.Errorf("no PUT through %s succeeded after a new leader was elected, within 60s of the stop (new leader after %v, %d PUTs sent)", c.clients[0].name, elected, len(attempts))
		case <-tick.C:
		}
		select {
		case inflight <- struct{}{}:
		default:
			continue // 100 PUTs outstanding: skip this tick
		}
		writes.Go(func() {
			defer func() { <-inflight }()
			actx, acancel := context.WithTimeout(rctx, 10*time.Second)
			defer acancel()
			sent := time.Since(t0)
			_, err := cl.KV().Put(&api.KVPair{Key: "bench/failover", Value: fmt.Appendf(nil, "round-%d-%d", n, i)}, (&api.WriteOptions{}).WithContext(actx))
			answered := time.Since(t0)
			mu.Lock()
			a := attempt{sent: sent, done: answered, ok: err == nil}
			if err != nil {
				a.err = err.Error()
			}
			attempts = append(attempts, a)
			mu.Unlock()
		})
	}
	writes.Wait() // each PUT has 10 s at most
	watch.Wait()
	cancel()
	r := round{leader: leader.name, elected: elected}
	r.recovery, r.failed = recovery(attempts)
	for _, a := range attempts {
		r.slowest = max(r.slowest, a.done-a.sent)
		if !a.ok && r.firstErr == "" {
			r.firstErr = a.err
		}
	}

	if mode.sig == syscall.SIGSTOP {
		// A pause ends: the old leader resumes and must rejoin as a
		// follower; nothing restarts.
		if err := leader.signal(syscall.SIGCONT); err != nil {
			return round{}, err
		}
		leader.signalled = false // running again: a later stop must signal it
	} else if err := leader.stop(mode.sig, 30*time.Second); err != nil {
		return round{}, err
	}
	// A last write, then the old leader comes back and must hold it in
	// its own copy. It goes to the new leader directly: the client agent
	// may still pick the stopped server until gossip marks it failed.
	final := fmt.Sprintf("final-%d", n)
	// A resumed leader may still call itself leader, or make the
	// others look again, for a moment: wait (bounded) for one.
	now := c.leader()
	for wait := time.Now().Add(20 * time.Second); now == nil && time.Now().Before(wait); now = c.leader() {
		select {
		case <-ctx.Done():
			return round{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if now == nil {
		return round{}, fmt.Errorf("no leader within 20s after the failover")
	}
	if _, err := now.api.KV().Put(&api.KVPair{Key: "bench/failover", Value: []byte(final)}, nil); err != nil {
		return round{}, fmt.Errorf("PUT through the new leader %s: %w", now.name, err)
	}
	if mode.sig != syscall.SIGSTOP {
		if err := c.restart(leader); err != nil {
			return round{}, err
		}
	}
	if err := c.waitHealthy(ctx, "bench/failover", final); err != nil {
		return round{}, fmt.Errorf("after restarting %s: %w", leader.name, err)
	}
	return r, nil
}

// recovery is the end of the longest stretch after the stop with no
// successful PUT answered: the time from the stop to the first
// successful PUT after the outage. A PUT a leaving leader still
// acknowledges right after SIGTERM ends no outage. failed counts the PUTs
// sent before that moment that failed.
func recovery(as []attempt) (d time.Duration, failed int) {
	var oks []time.Duration
	for _, a := range as {
		if a.ok {
			oks = append(oks, a.done)
		}
	}
	slices.Sort(oks)
	prev, longest := time.Duration(0), time.Duration(-1)
	for _, t := range oks {
		if t-prev > longest {
			longest, d = t-prev, t
		}
		prev = t
	}
	for _, a := range as {
		if !a.ok && a.sent < d {
			failed++
		}
	}
	return d, failed
}
