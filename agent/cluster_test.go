package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// clusterConfig is an agent on 127.0.0.1 with every port free and the
// timings of one machine.
func clusterConfig(t *testing.T, name string, server bool, expect int, join ...string) Config {
	c := DefaultConfig()
	c.NodeName = name
	c.DataDir = t.TempDir()
	c.Server = server
	c.BootstrapExpect = expect
	c.BindAddr = "127.0.0.1"
	c.Ports = testPorts
	c.Fast = true
	c.Join = join
	return c
}

type testCluster struct {
	servers []*running
	clients []*running
}

func (c *testCluster) all() []*running {
	return append(append([]*running(nil), c.servers...), c.clients...)
}

// startCluster starts n servers (bootstrap-expect n) and m clients, all
// joined through the first server, and waits until every agent knows the
// leader.
func startCluster(t *testing.T, n, m int) *testCluster {
	t.Helper()
	var c testCluster
	first := startAgent(t, clusterConfig(t, "s0", true, n))
	c.servers = append(c.servers, first)
	for i := 1; i < n; i++ {
		c.servers = append(c.servers, startAgent(t, clusterConfig(t, fmt.Sprintf("s%d", i), true, n, first.SerfAddr())))
	}
	for i := range m {
		c.clients = append(c.clients, startAgent(t, clusterConfig(t, fmt.Sprintf("c%d", i), false, 0, first.SerfAddr())))
	}
	for _, a := range c.all() {
		waitLeader(t, a.client)
	}
	return &c
}

// eventually polls cond against a deadline, reporting the last state it saw.
func eventually(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		var ok bool
		ok, last = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v; last seen: %s", what, within, last)
		}
		time.Sleep(20 * time.Millisecond) // other agents' state: polled through their APIs
	}
}

func TestClusterFormsAndForwards(t *testing.T) {
	c := startCluster(t, 3, 2)

	// A write through a client is readable on every agent.
	if _, err := c.clients[0].client.KV().Put(&api.KVPair{Key: "hello", Value: []byte("world")}, nil); err != nil {
		t.Fatalf("PUT through a client agent: %v", err)
	}
	for _, a := range c.all() {
		p, _, err := a.client.KV().Get("hello", nil)
		if err != nil || p == nil || string(p.Value) != "world" {
			t.Errorf("GET hello on %s = %v, %v; want world", a.Config().NodeName, p, err)
		}
	}

	// Every agent sees five members, three servers in the Raft group.
	for _, a := range c.all() {
		eventually(t, "members on "+a.Config().NodeName, 5*time.Second, func() (bool, string) {
			ms, err := a.client.Agent().Members(false)
			if err != nil {
				return false, err.Error()
			}
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%s/%s/%d", m.Name, m.Tags["role"], m.Status))
			}
			slices.Sort(got)
			want := []string{"c0/node/1", "c1/node/1", "s0/consul/1", "s1/consul/1", "s2/consul/1"}
			return slices.Equal(got, want), strings.Join(got, " ")
		})
	}
	cfg, err := c.clients[1].client.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatalf("raft configuration through a client: %v", err)
	}
	leaders := 0
	for _, s := range cfg.Servers {
		if !s.Voter {
			t.Errorf("server %s is not a voter", s.Node)
		}
		if s.Leader {
			leaders++
		}
	}
	if len(cfg.Servers) != 3 || leaders != 1 {
		t.Errorf("raft configuration = %+v; want 3 voters, 1 leader", cfg.Servers)
	}
	peers, err := c.clients[0].client.Status().Peers()
	if err != nil || len(peers) != 3 {
		t.Errorf("status/peers through a client = %v, %v; want 3", peers, err)
	}
}

func leaderOf(t *testing.T, c *testCluster) *running {
	t.Helper()
	var leader *running
	eventually(t, "a leader among the servers", 10*time.Second, func() (bool, string) {
		for _, s := range c.servers {
			if s.isLeader() {
				leader = s
				return true, s.Config().NodeName
			}
		}
		return false, "none"
	})
	return leader
}

func (r *running) isLeader() bool {
	addr, err := r.client.Status().Leader()
	return err == nil && addr != "" && addr == r.ServerAddr()
}

// TestLeaderLossAndRejoin stops the leader gracefully: a new one is
// elected, writes through any agent go on, and the old leader comes back
// on the same data dir and catches up.
func TestLeaderLossAndRejoin(t *testing.T) {
	c := startCluster(t, 3, 1)
	old := leaderOf(t, c)
	oldCfg := old.Config()
	if err := old.stop(t); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	var rest []*running
	for _, s := range c.servers {
		if s != old {
			rest = append(rest, s)
		}
	}
	c.servers = rest

	var n int
	eventually(t, "a write through the client after the leader stopped", 15*time.Second, func() (bool, string) {
		n++
		_, err := c.clients[0].client.KV().Put(&api.KVPair{Key: "after", Value: []byte(fmt.Sprint(n))}, nil)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	want := fmt.Sprint(n)

	// The old leader rejoins on its data dir and catches up.
	oldCfg.Join = []string{rest[0].SerfAddr()}
	seenGone(t, rest[0], oldCfg.NodeName)
	back := startAgent(t, oldCfg)
	eventually(t, "the old leader catching up", 15*time.Second, func() (bool, string) {
		p, _, err := back.client.KV().Get("after", &api.QueryOptions{AllowStale: true})
		if err != nil || p == nil {
			return false, fmt.Sprint(p, err)
		}
		return string(p.Value) == want, string(p.Value)
	})
	eventually(t, "three voters again", 15*time.Second, func() (bool, string) {
		cfg, err := back.client.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return false, err.Error()
		}
		return len(cfg.Servers) == 3, fmt.Sprint(len(cfg.Servers))
	})
}

// TestFailedNodeEndsItsSessions: a node that stops without leaving is
// failed; its sessions end and its locks are released, so a dead lock
// holder frees the lock (Consul's serfHealth).
func TestFailedNodeEndsItsSessions(t *testing.T) {
	c := startCluster(t, 1, 1)
	holderCfg := clusterConfig(t, "holder", false, 0, c.servers[0].SerfAddr())
	holderCfg.LeaveOnTerminate = false
	holder := startAgent(t, holderCfg)
	waitLeader(t, holder.client)

	sid, _, err := holder.client.Session().Create(&api.SessionEntry{Name: "lock", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := holder.client.KV().Acquire(&api.KVPair{Key: "lock", Value: []byte("mine"), Session: sid}, nil)
	if err != nil || !ok {
		t.Fatalf("acquire = %v, %v", ok, err)
	}
	if err := holder.stop(t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead holder's lock released", 10*time.Second, func() (bool, string) {
		p, _, err := c.clients[0].client.KV().Get("lock", nil)
		if err != nil || p == nil {
			return false, fmt.Sprint(p, err)
		}
		return p.Session == "", "held by " + p.Session
	})
	ms, _ := c.servers[0].client.Agent().Members(false)
	for _, m := range ms {
		if m.Name == "holder" && m.Status != 4 {
			t.Errorf("holder status = %d, want 4 (failed)", m.Status)
		}
	}
}

// TestGracefulLeaveIsLeft: a stopping agent leaves, and others see "left".
func TestGracefulLeaveIsLeft(t *testing.T) {
	c := startCluster(t, 1, 2)
	if err := c.clients[1].stop(t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c1 left", 10*time.Second, func() (bool, string) {
		ms, err := c.servers[0].client.Agent().Members(false)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.Name == "c1" {
				return m.Status == 3, fmt.Sprint("status ", m.Status)
			}
		}
		return false, "c1 not listed"
	})
}
