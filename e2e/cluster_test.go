//go:build unix

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

// TestClusterForms: three servers that retry-join the first one elect a
// leader; a write through a client agent is readable on every agent; and
// `cairn members` lists all five as alive, with their types.
func TestClusterForms(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, 2)
	c.leader()

	if _, err := c.clients[0].api.KV().Put(&api.KVPair{Key: "hello", Value: []byte("world")}, nil); err != nil {
		t.Fatalf("PUT hello through client c0: %v", err)
	}
	for _, n := range c.all() {
		kv, _, err := n.api.KV().Get("hello", nil)
		if err != nil || kv == nil || string(kv.Value) != "world" {
			t.Errorf("GET hello on %s = %s, %v; want world", n.name, kvValue(kv), err)
		}
	}
	// Every server holds the write itself: a stale read answers from the
	// local copy.
	for _, s := range c.servers {
		eventually(t, "hello replicated to "+s.name, 10*time.Second, func() (bool, string) {
			kv, _, err := s.api.KV().Get("hello", &api.QueryOptions{AllowStale: true})
			return err == nil && kv != nil && string(kv.Value) == "world", fmt.Sprint(kvValue(kv), errText(err))
		})
	}

	var want []string
	for _, n := range c.all() {
		typ := "client"
		if n.server {
			typ = "server"
		}
		want = append(want, strings.Join([]string{n.name, n.ports.serfAddr(), "alive", typ, "dc1"}, " "))
	}
	var got []string
	eventually(t, "cairn members on c1 listing five alive members", 15*time.Second, func() (bool, string) {
		code, stdout, stderr := cairn(t, nil, "", "members", "-http-addr", c.clients[1].ports.httpAddr())
		if code != 0 {
			return false, fmt.Sprintf("exit %d, stderr %q", code, stderr)
		}
		got = membersRows(stdout)
		return cmp.Equal(want, got), stdout
	})

	eventually(t, "three voters in the Raft configuration", 10*time.Second, func() (bool, string) {
		rs, err := c.clients[0].api.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return false, err.Error()
		}
		voters, leaders := 0, 0
		for _, s := range rs.Servers {
			if s.Voter {
				voters++
			}
			if s.Leader {
				leaders++
			}
		}
		return voters == 3 && leaders == 1 && len(rs.Servers) == 3, fmt.Sprintf("%+v", rs.Servers)
	})
}

// membersRows reads `cairn members`' table as "node address status type
// dc" rows, without the header and the build and protocol columns.
func membersRows(table string) []string {
	var rows []string
	for i, line := range strings.Split(strings.TrimSpace(table), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) != 7 {
			continue
		}
		rows = append(rows, strings.Join([]string{f[0], f[1], f[2], f[3], f[6]}, " "))
	}
	return rows
}

func kvValue(kv *api.KVPair) string {
	if kv == nil {
		return "<no key>"
	}
	return strconv.Quote(string(kv.Value))
}

// TestLeaderKilledElectsNewLeaderAndRejoins: kill -9 the leader; the two
// others elect a new one; writes through every remaining agent go on; the
// old leader, started again on its data dir and ports, rejoins and
// catches up.
func TestLeaderKilledElectsNewLeaderAndRejoins(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, 1)
	old := c.leader()
	if _, err := old.api.KV().Put(&api.KVPair{Key: "k", Value: []byte("before")}, nil); err != nil {
		t.Fatalf("PUT k before the kill: %v", err)
	}

	old.kill()
	leader := c.leader()
	if leader == old {
		t.Fatalf("the killed server %s is still the leader", old.name)
	}
	t.Logf("leader %s killed; %s leads now", old.name, leader.name)

	// Each agent gets a deadline to succeed: a client agent forwards each
	// request to a random server it believes alive, and until gossip
	// marks the dead one failed (about 5 s) some requests go there and
	// fail.
	var latest string
	for _, n := range append(c.followers(old), c.clients...) {
		latest = "after-via-" + n.name
		eventually(t, "a write through "+n.name+" after the leader died", 20*time.Second, func() (bool, string) {
			_, err := n.api.KV().Put(&api.KVPair{Key: "k", Value: []byte(latest)}, nil)
			return err == nil, errText(err)
		})
	}
	kv, _, err := leader.api.KV().Get("k", &api.QueryOptions{RequireConsistent: true})
	if err != nil || kv == nil || string(kv.Value) != latest {
		t.Fatalf("consistent GET k = %s, %v; want %q", kvValue(kv), err, latest)
	}

	c.restart(old)
	eventually(t, "the restarted "+old.name+" serving the latest value from its own copy", 20*time.Second, func() (bool, string) {
		if old.proc.exited() {
			t.Fatalf("%s exited after its restart: %v", old.name, old.proc.state)
		}
		kv, _, err := old.api.KV().Get("k", &api.QueryOptions{AllowStale: true})
		return err == nil && kv != nil && string(kv.Value) == latest, kvValue(kv) + errText(err)
	})
	eventually(t, old.name+" alive again and a voter", 20*time.Second, func() (bool, string) {
		ms, err := leader.members()
		if err != nil {
			return false, err.Error()
		}
		rs, err := leader.raftServers()
		if err != nil {
			return false, err.Error()
		}
		voter := slices.Contains(rs, old.name) || slices.Contains(rs, old.name+"*")
		return slices.Contains(ms, old.name+" alive") && len(rs) == 3 && voter,
			fmt.Sprintf("members %v, raft %v", ms, rs)
	})
}

// TestMinorityAndMajorityLoss: with one of three servers killed while
// writers run, every write the cluster acknowledged is still there. With
// two of three killed, writes fail with a 5xx that says why (never a
// success), and the survivor still answers stale reads.
func TestMinorityAndMajorityLoss(t *testing.T) {
	t.Parallel()
	// A short hold: with two of three servers dead, every write waits
	// it out before failing.
	c := newCluster(t, 3, 1, "-rpc-hold-timeout", "2s")
	leader := c.leader()
	followers := c.followers(leader)
	victim, survivor := followers[0], followers[1]

	// Writers through the leader, the follower that stays and the client.
	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		count   atomic.Int64
		failed  atomic.Int64
		writing sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for w, n := range []*clusterNode{leader, survivor, c.clients[0]} {
		writing.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("acked/%s/%06d", n.name, i), fmt.Sprintf("w%d-%d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := n.api.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, (&api.WriteOptions{}).WithContext(wctx))
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
				count.Add(1)
			}
		})
	}
	waitCount := func(what string, n int64) {
		t.Helper()
		eventually(t, what, 30*time.Second, func() (bool, string) {
			return count.Load() >= n, fmt.Sprintf("%d acknowledged, %d failed", count.Load(), failed.Load())
		})
	}
	waitCount("100 acknowledged writes before the kill", 100)
	victim.kill()
	killedAt := count.Load()
	waitCount("200 more acknowledged writes after killing "+victim.name, killedAt+200)
	stop()
	writing.Wait()
	t.Logf("%s killed after %d acknowledged writes; %d acknowledged, %d failed in all", victim.name, killedAt, len(acked), failed.Load())

	got := readKeys(t, leader.api, "acked/", &api.QueryOptions{RequireConsistent: true})
	var lost []string
	for k, v := range acked {
		if got[k] != v {
			lost = append(lost, fmt.Sprintf("%s=%q (found %q)", k, v, got[k]))
		}
	}
	slices.Sort(lost)
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost with one server of three killed: %s", len(lost), len(acked), strings.Join(lost[:min(len(lost), 10)], ", "))
	}

	// Majority loss: kill the other follower too. The leader is left
	// alone; it must step down rather than acknowledge anything.
	var probe string
	for k := range acked {
		probe = k
		break
	}
	survivor.kill()
	lone := leader
	for _, n := range []*clusterNode{lone, c.clients[0]} {
		// Each waits out the hold time (-rpc-hold-timeout) for a
		// leader that cannot come.
		for i := range 2 {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			resp, err := rawPut(ctx, n.ports.httpAddr(), "after-majority-loss", fmt.Sprintf("%s-%d", n.name, i))
			cancel()
			if err != nil {
				t.Fatalf("PUT through %s with two of three servers dead: %v; want an answer (a 5xx)", n.name, err)
			}
			// A write the lone leader appended before it stepped down
			// may still commit once the others return: it is
			// reported as such, never as "no leader".
			unknown := resp.code == 503 && strings.HasPrefix(resp.body, "the write may have been applied")
			if !unknown && (resp.code < 500 || !strings.HasPrefix(resp.body, "No cluster leader")) {
				t.Fatalf("PUT through %s with two of three servers dead = %v; want a 5xx saying \"No cluster leader...\" (or 503 \"the write may have been applied...\")", n.name, resp)
			}
			if i == 0 {
				t.Logf("PUT through %s with two of three servers dead = %v", n.name, resp)
			}
		}
	}
	eventually(t, "a stale read on "+lone.name+" knowing there is no leader", 15*time.Second, func() (bool, string) {
		kv, meta, err := lone.api.KV().Get(probe, &api.QueryOptions{AllowStale: true})
		if err != nil {
			return false, err.Error()
		}
		if kv == nil || string(kv.Value) != acked[probe] {
			t.Fatalf("stale GET %s on %s = %s; want %q", probe, lone.name, kvValue(kv), acked[probe])
		}
		return !meta.KnownLeader, fmt.Sprintf("X-Consul-KnownLeader: %v", meta.KnownLeader)
	})
	if got := readKeys(t, lone.api, "acked/", &api.QueryOptions{AllowStale: true}); len(got) < len(acked) {
		t.Errorf("stale list on %s has %d keys; want at least the %d acknowledged", lone.name, len(got), len(acked))
	}
}

// TestJoinMistakesAreExplained: agents that cannot join say why and exit
// non-zero, and the running cluster does not notice them; an agent that
// retry-joins an address where nothing listens yet logs each attempt and
// joins once a member appears there.
func TestJoinMistakesAreExplained(t *testing.T) {
	t.Parallel()
	key := keygen(t)
	c := newCluster(t, 1, 1, "-encrypt", key)
	s0, c0 := c.servers[0], c.clients[0]
	before, err := s0.members()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c0 alive", "s0 alive"}; !slices.Equal(before, want) {
		t.Fatalf("members before = %v, want %v", before, want)
	}
	nowhere := clusterPorts(t).serfAddr() // nothing listens there

	t.Run("join mistakes", func(t *testing.T) {
		tests := []struct {
			name         string
			node         string
			flags        []string
			wantInStderr []string
		}{
			{
				name:  "another encryption key",
				node:  "intruder",
				flags: []string{"-encrypt", keygen(t), "-join", s0.ports.serfAddr()},
				wantInStderr: []string{
					"cairn agent: -join: join " + s0.ports.serfAddr() + ": no reply we could decrypt: is -encrypt the same on every agent?",
				},
			},
			{
				name:  "no encryption key",
				node:  "plain",
				flags: []string{"-join", s0.ports.serfAddr()},
				wantInStderr: []string{
					"cairn agent: -join: join " + s0.ports.serfAddr() + ": the agent there encrypts gossip but this one has no -encrypt; give every agent the same -encrypt",
				},
			},
			{
				name:  "a node name already in use",
				node:  "c0",
				flags: []string{"-encrypt", key, "-join", s0.ports.serfAddr()},
				wantInStderr: []string{
					`cairn agent: -join: join ` + s0.ports.serfAddr() + `: node name "c0" is already used by ` + c0.ports.serfAddr() + ` in this cluster; give this agent another -node`,
				},
			},
			{
				name:  "nothing listening at the join address",
				node:  "lost",
				flags: []string{"-encrypt", key, "-join", nowhere},
				wantInStderr: []string{
					"cairn agent: -join: join " + nowhere + ": nothing is listening there; is the agent up, and is that its -serf-lan-port?",
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				args := append([]string{"agent", "-node", tt.node, "-data-dir", t.TempDir()}, clusterPorts(t).flags()...)
				p := start(t, tt.name, append(args, tt.flags...)...)
				if code := p.wait(30 * time.Second); code == 0 {
					t.Errorf("exit code = 0, want non-zero")
				}
				stderr := p.errOut.String()
				for _, want := range tt.wantInStderr {
					if !strings.Contains(stderr, want) {
						t.Errorf("stderr lacks %q:\n%s", want, stderr)
					}
				}
			})
		}
	})

	// The cluster is as it was: the same members at the same addresses,
	// and it still takes writes.
	ms, err := s0.api.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	var after []string
	for _, m := range ms {
		after = append(after, fmt.Sprintf("%s %s:%d %s", m.Name, m.Addr, m.Port, memberStatusName(m.Status)))
	}
	slices.Sort(after)
	want := []string{"c0 " + c0.ports.serfAddr() + " alive", "s0 " + s0.ports.serfAddr() + " alive"}
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("members after the failed joins (-want +got):\n%s", diff)
	}
	if _, err := c0.api.KV().Put(&api.KVPair{Key: "still", Value: []byte("works")}, nil); err != nil {
		t.Errorf("PUT through c0 after the failed joins: %v", err)
	}

	t.Run("retry-join until a member appears", func(t *testing.T) {
		landing := clusterPorts(t) // the address the patient agent waits for
		args := append([]string{"agent", "-node", "patient", "-data-dir", t.TempDir(), "-encrypt", key, "-retry-join", landing.serfAddr()}, clusterPorts(t).flags()...)
		patient := start(t, "patient", args...)
		failedAttempt := func(n int) string {
			return fmt.Sprintf(`msg="join failed; will retry" attempt=%d error="join %s: nothing is listening there;`, n, landing.serfAddr())
		}
		eventually(t, "two failed attempts logged with the address", 15*time.Second, func() (bool, string) {
			if patient.exited() {
				t.Fatalf("patient exited (%v) while retrying; stderr:\n%s", patient.state, patient.errOut.String())
			}
			stderr := patient.errOut.String()
			return strings.Contains(stderr, failedAttempt(1)) && strings.Contains(stderr, failedAttempt(2)), stderr
		})

		// A member appears at the address: an agent that joins the cluster.
		args = append([]string{"agent", "-node", "landing", "-data-dir", t.TempDir(), "-encrypt", key, "-join", s0.ports.serfAddr()}, landing.flags()...)
		start(t, "landing", args...)
		eventually(t, "patient alive in the cluster", 30*time.Second, func() (bool, string) {
			if patient.exited() {
				t.Fatalf("patient exited (%v); stderr:\n%s", patient.state, patient.errOut.String())
			}
			ms, err := s0.members()
			return slices.Contains(ms, "patient alive"), fmt.Sprint(ms, errText(err))
		})
		if !strings.Contains(patient.errOut.String(), `msg="joined the cluster"`) {
			t.Errorf("patient's log lacks \"joined the cluster\":\n%s", patient.errOut.String())
		}
	})
}

// keygen runs `cairn keygen` and returns the key it prints.
func keygen(t *testing.T) string {
	t.Helper()
	code, stdout, stderr := cairn(t, nil, "", "keygen")
	if code != 0 || stderr != "" {
		t.Fatalf("cairn keygen = exit %d, stderr %q", code, stderr)
	}
	return strings.TrimSpace(stdout)
}

// TestGracefulLeave: agents that stop gracefully leave. A client stopped
// with SIGTERM is "left", never "failed", for the others; a server
// stopped with SIGTERM is left and out of the Raft configuration; `cairn
// leave` makes the leader leave and exit 0, and the last server carries
// on alone.
func TestGracefulLeave(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, 2)
	leader := c.leader()
	c0, c1 := c.clients[0], c.clients[1]

	// watchLeft polls observer until name is left; seeing it failed on the
	// way is an error.
	watchLeft := func(observer *clusterNode, name string) {
		t.Helper()
		eventually(t, observer.name+" seeing "+name+" left", 20*time.Second, func() (bool, string) {
			ms, err := observer.members()
			if err != nil {
				return false, err.Error()
			}
			if slices.Contains(ms, name+" failed") {
				t.Fatalf("%s sees %s failed after a graceful stop; members %v", observer.name, name, ms)
			}
			return slices.Contains(ms, name+" left"), fmt.Sprint(ms)
		})
	}

	c1.term()
	watchLeft(leader, "c1")
	watchLeft(c0, "c1")

	follower := c.followers(leader)[0]
	follower.term()
	watchLeft(leader, follower.name)
	eventually(t, follower.name+" out of the Raft configuration", 20*time.Second, func() (bool, string) {
		rs, err := c0.raftServers()
		if err != nil {
			return false, err.Error()
		}
		return len(rs) == 2 && !slices.ContainsFunc(rs, func(s string) bool { return strings.HasPrefix(s, follower.name) }), fmt.Sprint(rs)
	})

	code, stdout, stderr := cairn(t, nil, "", "leave", "-http-addr", leader.ports.httpAddr())
	if code != 0 || stdout != "Graceful leave complete\n" || stderr != "" {
		t.Errorf("cairn leave against %s = exit %d, stdout %q, stderr %q; want exit 0 and \"Graceful leave complete\"", leader.name, code, stdout, stderr)
	}
	if code := leader.proc.wait(30 * time.Second); code != 0 {
		t.Errorf("%s exit code after cairn leave = %d, want 0", leader.name, code)
	}
	last := c.followers(leader)[0]
	watchLeft(last, leader.name)
	if got := c.leader(); got != last {
		t.Fatalf("leader = %s, want %s, the last server", got.name, last.name)
	}
	eventually(t, "the last server alone in the Raft configuration", 20*time.Second, func() (bool, string) {
		rs, err := c0.raftServers()
		return slices.Equal(rs, []string{last.name + "*"}), fmt.Sprint(rs, errText(err))
	})
	eventually(t, "a write through c0 to the last server", 20*time.Second, func() (bool, string) {
		_, err := c0.api.KV().Put(&api.KVPair{Key: "alone", Value: []byte("yes")}, nil)
		return err == nil, errText(err)
	})
}
