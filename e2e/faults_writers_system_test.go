//go:build system && unix

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestSystemWritersRideOutLeaderFaults: 16 writers through a client
// agent, each request with a 10 s client timeout, while the leader is
// killed (kill -9), then paused (SIGSTOP) and resumed. No write may fail:
// the agent holds each one through the election (rpc_hold_timeout) and
// sends it again to the new leader, at most once in effect. Every
// acknowledged write must be there afterwards.
func TestSystemWritersRideOutLeaderFaults(t *testing.T) {
	c := newCluster(t, 3, 1)
	through := c.clients[0]
	cl, err := api.NewClient(&api.Config{Address: through.ports.httpAddr(), HttpClient: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, fault := range []struct {
		name string
		do   func(leader *clusterNode)
		undo func(leader *clusterNode)
	}{
		{"SIGKILL", func(l *clusterNode) { l.kill() }, func(l *clusterNode) { c.restart(l); c.waitReady(l) }},
		{"SIGSTOP", func(l *clusterNode) { l.proc.signal(syscall.SIGSTOP) }, func(l *clusterNode) { l.proc.signal(syscall.SIGCONT) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			leader := c.leader()
			ctx, stop := context.WithCancel(context.Background())
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				failures []string
				acked    []string
				slowest  time.Duration
			)
			for w := range 16 {
				wg.Go(func() {
					for i := 0; ctx.Err() == nil; i++ {
						key := fmt.Sprintf("writers/%s/%d-%d", fault.name, w, i)
						start := time.Now()
						_, err := cl.KV().Put(&api.KVPair{Key: key, Value: []byte("v")}, nil)
						took := time.Since(start)
						mu.Lock()
						slowest = max(slowest, took)
						if err != nil {
							failures = append(failures, fmt.Sprintf("%s after %v: %v", key, took.Round(time.Millisecond), err))
						} else {
							acked = append(acked, key)
						}
						mu.Unlock()
					}
				})
			}
			progress := func(n int) {
				t.Helper()
				mu.Lock()
				want := len(acked) + n
				mu.Unlock()
				eventually(t, fmt.Sprintf("%d more acknowledged writes", n), 30*time.Second, func() (bool, string) {
					mu.Lock()
					defer mu.Unlock()
					return len(acked) >= want, fmt.Sprintf("%d acknowledged, %d failed", len(acked), len(failures))
				})
			}
			progress(100)
			fault.do(leader)
			t0 := time.Now()
			// The writers go on through the election: wait for writes
			// acknowledged by the new leader.
			var next *clusterNode
			eventually(t, "a new leader", 30*time.Second, func() (bool, string) {
				for _, s := range c.followers(leader) {
					if addr, err := s.api.Status().Leader(); err == nil && addr != "" && addr != leader.ports.serverAddr() {
						next = s
						return true, ""
					}
				}
				return false, "none yet"
			})
			t.Logf("%s of leader %s: %s leads after %v", fault.name, leader.name, next.name, time.Since(t0).Round(time.Millisecond))
			progress(200)
			fault.undo(leader)
			progress(100)
			stop()
			wg.Wait()

			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d writes acknowledged, %d failed, slowest %v", len(acked), len(failures), slowest.Round(time.Millisecond))
			if len(failures) > 0 {
				t.Errorf("%d writes failed through %s during the %s of the leader; want 0:\n%s", len(failures), through.name, fault.name, strings.Join(failures[:min(len(failures), 10)], "\n"))
			}
			pairs, _, err := c.leader().api.KV().List("writers/"+fault.name+"/", &api.QueryOptions{RequireConsistent: true})
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, p := range pairs {
				have[p.Key] = true
			}
			var lost []string
			for _, k := range acked {
				if !have[k] {
					lost = append(lost, k)
				}
			}
			slices.Sort(lost)
			if len(lost) > 0 {
				t.Errorf("%d acknowledged writes lost: %v", len(lost), lost[:min(len(lost), 10)])
			}
		})
	}
}
