//go:build unix

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestKill9KeepsAcknowledgedKVWrites kills a server with SIGKILL again
// and again while clients write, restarts it on its data dir each time,
// and at the end checks that every write any server acknowledged is on
// every server. It runs on one server (a kill can tear the log's last
// write) and on three (the killed leader comes back with entries the new
// leader never had and truncates them: the case raft-wal v0.4.0 could
// not reopen after, hashicorp/raft-wal#31).
//
// CAIRN_KILL_CYCLES sets the kills per cluster (3 by default; the
// write-ahead log was made the default after 50 on each) and
// CAIRN_KILL_LOGSTORE the Raft log of the data dirs ("wal" by default,
// or "boltdb").
func TestKill9KeepsAcknowledgedKVWrites(t *testing.T) {
	cycles := 3
	if s := os.Getenv("CAIRN_KILL_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CAIRN_KILL_CYCLES=%q is not a positive number", s)
		}
		cycles = n
	}
	backend := "wal"
	if s := os.Getenv("CAIRN_KILL_LOGSTORE"); s != "" {
		backend = s
	}
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d servers", servers), func(t *testing.T) {
			t.Parallel()
			killCycles(t, servers, cycles, backend)
		})
	}
}

func killCycles(t *testing.T, servers, cycles int, backend string) {
	cfg := filepath.Join(t.TempDir(), "logstore.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "raft_logstore { backend = %q }\n", backend), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, servers, 0, "-config-file", cfg)
	for _, s := range c.servers {
		if _, err := os.Stat(filepath.Join(s.dataDir, "raft", map[string]string{"wal": "wal", "boltdb": "raft.db"}[backend])); err != nil {
			t.Fatalf("%s: the data dir has no %s log: %v", s.name, backend, err)
		}
	}

	// Writers put fresh keys through any server (a follower forwards to
	// the leader) and note each acknowledged one with its value.
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		count atomic.Int64
		apis  = make([]*api.Client, len(c.servers))
	)
	for i, s := range c.servers {
		apis[i] = s.api
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var writing sync.WaitGroup
	for w := range 4 {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("kill/w%d/%07d", w, i)
				value := fmt.Sprintf("%s %s", key, strings.Repeat("v", 100))
				kv := apis[rand.IntN(len(apis))].KV()
				if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(value)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
					continue
				}
				mu.Lock()
				acked[key] = value
				mu.Unlock()
				count.Add(1)
			}
		}()
	}

	for cycle := range cycles {
		// Some writes in flight and acknowledged since the last kill.
		from := count.Load()
		eventually(t, fmt.Sprintf("cycle %d: 100 more acknowledged writes", cycle), 60*time.Second, func() (bool, string) {
			n := count.Load()
			return n >= from+100, fmt.Sprintf("%d acknowledged", n-from)
		})
		victim := c.servers[0]
		if servers > 1 {
			victim = c.leader()
			if cycle%2 == 1 {
				victim = c.followers(victim)[rand.IntN(servers-1)]
			}
		}
		victim.kill()
		c.restart(victim)
		victim.proc.waitLeader(victim.ports.httpAddr())
	}
	stop()
	writing.Wait()
	t.Logf("%d writes acknowledged over %d kills", len(acked), cycles)

	// Every server holds every acknowledged write once it has caught up
	// with the leader.
	leader := c.leader()
	idx := lastIndex(t, leader.api, true)
	for _, s := range c.servers {
		eventually(t, s.name+" caught up with the leader", 30*time.Second, func() (bool, string) {
			got := lastIndex(t, s.api, false)
			return got >= idx, fmt.Sprintf("index %d, leader's %d", got, idx)
		})
		pairs, _, err := s.api.KV().List("kill/", &api.QueryOptions{AllowStale: true})
		if err != nil {
			t.Fatalf("%s: list: %v", s.name, err)
		}
		have := make(map[string]string, len(pairs))
		for _, p := range pairs {
			have[p.Key] = string(p.Value)
		}
		var lost []string
		for k, v := range acked {
			if have[k] != v {
				lost = append(lost, fmt.Sprintf("%s=%.20q", k, have[k]))
			}
		}
		slices.Sort(lost)
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d acknowledged writes lost or changed after %d kills: %s", s.name, len(lost), len(acked), cycles, strings.Join(lost[:min(len(lost), 10)], ", "))
		}
	}
}

// lastIndex is the index of the KV store as a server answers it.
func lastIndex(t *testing.T, c *api.Client, consistent bool) uint64 {
	t.Helper()
	_, meta, err := c.KV().Get("kill/none", &api.QueryOptions{RequireConsistent: consistent, AllowStale: !consistent})
	if err != nil {
		t.Fatalf("read the index: %v", err)
	}
	return meta.LastIndex
}
