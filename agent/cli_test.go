package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestConsulCLICalls makes, with the official client, the HTTP calls that
// `consul` CLI subcommands make (read from the CLI's public source,
// github.com/hashicorp/consul/command/<name>), against a cairn cluster of
// three servers and a client agent, as a user's CLI talks to its local
// (client) agent, and checks what the CLI reads from each answer. Consul
// itself is not a dependency: only its client is.
func TestConsulCLICalls(t *testing.T) {
	cl := startCluster(t, 3, 1)
	c := cl.clients[0].client // c0
	// The snapshot and raft peer commands are served by servers only
	// (cairn answers 501 on a client agent, where Consul forwards them):
	// they talk to the leader here.
	leader := func(t *testing.T) *api.Client {
		t.Helper()
		var found *api.Client
		eventually(t, "a server that is the leader by its own account", 15*time.Second, func() (bool, string) {
			var seen []string
			for _, s := range cl.servers {
				self, err := s.client.Agent().Self()
				if err != nil {
					return false, err.Error()
				}
				cfg, err := s.client.Operator().RaftGetConfiguration(nil)
				if err != nil {
					return false, err.Error()
				}
				for _, p := range cfg.Servers {
					if p.Leader && p.Node == self["Config"]["NodeName"] {
						found = s.client
						return true, ""
					}
					seen = append(seen, fmt.Sprintf("%s leader=%v", p.Node, p.Leader))
				}
			}
			return false, strings.Join(seen, ", ")
		})
		return found
	}

	tests := []struct {
		cmd string // what the user types
		run func(t *testing.T)
	}{
		{"consul event -name=deploy -payload=v1 -service=web", func(t *testing.T) {
			// command/event: NodeName (to check the agent answers), then Fire.
			if _, err := c.Agent().NodeName(); err != nil {
				t.Fatalf("Agent().NodeName: %v", err)
			}
			id, _, err := c.Event().Fire(&api.UserEvent{Name: "deploy", Payload: []byte("v1"), ServiceFilter: "web"}, nil)
			if err != nil || len(id) != 36 {
				t.Fatalf("Event().Fire = %q, %v; the CLI prints \"Event ID: <uuid>\"", id, err)
			}
		}},
		{"consul watch -type=event -name=deploy", func(t *testing.T) {
			// The event fired without a filter reaches every agent; the
			// watch lists it, then blocks on the index of the last one.
			id, _, err := c.Event().Fire(&api.UserEvent{Name: "deploy", Payload: []byte("v2")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "c0 lists the event", 10*time.Second, func() (bool, string) {
				evs, meta, err := c.Event().List("deploy", nil)
				if err != nil {
					return false, err.Error()
				}
				if len(evs) == 0 {
					return false, "no events"
				}
				last := evs[len(evs)-1]
				return last.ID == id && meta.LastIndex == c.Event().IDToIndex(id), fmt.Sprintf("last %s at index %d", last.ID, meta.LastIndex)
			})
		}},
		{"consul exec uptime", func(t *testing.T) {
			// command/exec: Self for the datacenter, a session (delete,
			// 15s TTL), the job acquired under _rexec/<session>/job, the
			// _rexec event, blocking key listings of _rexec/<session>/
			// for acks, output and exit codes, then the session ends and
			// the data goes. These agents keep disable_remote_exec's
			// default (true, as in Consul): the event is accepted and
			// no agent acknowledges. (e2e TestExecAcrossAgents runs jobs
			// on agents that allow it, with the CLI.)
			self, err := c.Agent().Self()
			if err != nil || self["Config"]["Datacenter"] != "dc1" {
				t.Fatalf("Agent().Self()[Config][Datacenter] = %v, %v", self["Config"]["Datacenter"], err)
			}
			sid, _, err := c.Session().Create(&api.SessionEntry{Name: "Remote Exec", Behavior: api.SessionBehaviorDelete, TTL: "15s"}, nil)
			if err != nil {
				t.Fatalf("Session().Create: %v", err)
			}
			job, _ := json.Marshal(map[string]any{"Command": "uptime", "Wait": 2 * time.Second})
			ok, _, err := c.KV().Acquire(&api.KVPair{Key: path.Join("_rexec", sid, "job"), Value: job, Session: sid}, nil)
			if err != nil || !ok {
				t.Fatalf("KV().Acquire(job) = %v, %v", ok, err)
			}
			payload, _ := json.Marshal(map[string]string{"Prefix": "_rexec", "Session": sid})
			id, _, err := c.Event().Fire(&api.UserEvent{Name: "_rexec", Payload: payload}, nil)
			if err != nil || len(id) != 36 {
				t.Fatalf("Event().Fire(_rexec) = %q, %v; want an event ID", id, err)
			}
			keys, meta, err := c.KV().Keys(path.Join("_rexec", sid)+"/", "", &api.QueryOptions{WaitTime: time.Second})
			if err != nil || len(keys) != 1 || meta.LastIndex == 0 {
				t.Errorf("KV().Keys(_rexec/<session>/) = %v (index %d), %v; want only the job: remote exec is off by default", keys, meta.LastIndex, err)
			}
			if _, err := c.Session().Destroy(sid, nil); err != nil {
				t.Errorf("Session().Destroy: %v", err)
			}
			if _, err := c.KV().DeleteTree(path.Join("_rexec", sid), nil); err != nil {
				t.Errorf("KV().DeleteTree: %v", err)
			}
		}},
		{"consul rtt s0", func(t *testing.T) {
			// command/rtt: the second node defaults to the agent's; both
			// coordinates come from /v1/coordinate/nodes.
			me, err := c.Agent().NodeName()
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "coordinates of s0 and "+me, 15*time.Second, func() (bool, string) {
				entries, _, err := c.Coordinate().Nodes(nil)
				if err != nil {
					return false, err.Error()
				}
				found := map[string]*api.CoordinateEntry{}
				for _, e := range entries {
					found[e.Node] = e
				}
				a, b := found["s0"], found[me]
				if a == nil || b == nil {
					return false, fmt.Sprintf("%d entries", len(entries))
				}
				return a.Coord.DistanceTo(b.Coord) > 0, "zero distance"
			})
		}},
		{"consul rtt -wan s1.dc1", func(t *testing.T) {
			// command/rtt -wan: the servers' WAN coordinates, named
			// <node>.<dc>, from /v1/coordinate/datacenters.
			var names []string
			eventually(t, "WAN coordinates of the servers", 15*time.Second, func() (bool, string) {
				dcs, err := c.Coordinate().Datacenters()
				if err != nil {
					return false, err.Error()
				}
				names = names[:0]
				for _, e := range dcs[0].Coordinates {
					names = append(names, e.Node)
				}
				return strings.Join(names, ",") == "s0.dc1,s1.dc1,s2.dc1", strings.Join(names, ",")
			})
		}},
		{"consul members -wan", func(t *testing.T) {
			ms, err := c.Agent().Members(true)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				if m.Tags["role"] != "consul" || m.Status != 1 {
					t.Errorf("WAN member %s: role %q status %d, want consul alive", m.Name, m.Tags["role"], m.Status)
				}
				names = append(names, m.Name)
			}
			if strings.Join(names, ",") != "s0.dc1,s1.dc1,s2.dc1" {
				t.Errorf("Members(wan) = %v, want the servers as <node>.dc1 (an empty list makes the CLI exit 2 silently)", names)
			}
		}},
		{"consul operator raft list-peers", func(t *testing.T) {
			// command/operator/raft/listpeers: the configuration, then the
			// autopilot health for Commit Index and Trails Leader By.
			eventually(t, "every server healthy with its commit index", 15*time.Second, func() (bool, string) {
				cfg, err := c.Operator().RaftGetConfiguration(nil)
				if err != nil || len(cfg.Servers) != 3 {
					return false, fmt.Sprintf("configuration %+v, %v", cfg, err)
				}
				// Write something so the indexes move.
				if _, err := c.KV().Put(&api.KVPair{Key: "list-peers", Value: []byte("x")}, nil); err != nil {
					return false, err.Error()
				}
				h, err := c.Operator().AutopilotServerHealth(nil)
				if err != nil {
					return false, err.Error()
				}
				var leaderIndex uint64
				for _, s := range h.Servers {
					if s.Leader {
						leaderIndex = s.LastIndex
					}
				}
				var seen []string
				ok := h.Healthy && len(h.Servers) == 3 && leaderIndex > 1 && h.FailureTolerance == 1
				for _, s := range h.Servers {
					seen = append(seen, fmt.Sprintf("%s idx=%d healthy=%v serf=%s", s.Name, s.LastIndex, s.Healthy, s.SerfStatus))
					ok = ok && s.LastIndex > 1 && leaderIndex-s.LastIndex < 250 && s.Name != ""
				}
				return ok, strings.Join(seen, "; ")
			})
		}},
		{"consul maint (list)", func(t *testing.T) {
			// Without -enable/-disable the CLI lists the maintenance
			// checks among the agent's checks.
			if _, err := c.Agent().NodeName(); err != nil {
				t.Fatal(err)
			}
			checks, err := c.Agent().Checks()
			if err != nil {
				t.Fatal(err)
			}
			for id := range checks {
				if strings.HasPrefix(id, "_node_maintenance") || strings.HasPrefix(id, "_service_maintenance:") {
					t.Errorf("check %s: no maintenance was enabled", id)
				}
			}
		}},
		{"consul maint -enable -reason=upgrade; consul maint -enable -service=web-1; consul maint -disable", func(t *testing.T) {
			if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 80}); err != nil {
				t.Fatal(err)
			}
			if err := c.Agent().EnableNodeMaintenance("upgrade"); err != nil {
				t.Fatalf("EnableNodeMaintenance: %v", err)
			}
			if err := c.Agent().EnableServiceMaintenance("web-1", ""); err != nil {
				t.Fatalf("EnableServiceMaintenance: %v", err)
			}
			// `consul maint` (no flags) prints these two checks.
			checks, err := c.Agent().Checks()
			if err != nil {
				t.Fatal(err)
			}
			node, svc := checks["_node_maintenance"], checks["_service_maintenance:web-1"]
			if node == nil || node.Status != api.HealthCritical || node.Notes != "upgrade" || svc == nil || svc.ServiceID != "web-1" {
				t.Errorf("maintenance checks = node %+v, service %+v; want both critical, the node's with the reason", node, svc)
			}
			if err := c.Agent().DisableNodeMaintenance(); err != nil {
				t.Fatalf("DisableNodeMaintenance: %v", err)
			}
			if err := c.Agent().DisableServiceMaintenance("web-1"); err != nil {
				t.Fatalf("DisableServiceMaintenance: %v", err)
			}
			checks, _ = c.Agent().Checks()
			for id := range checks {
				if strings.Contains(id, "maintenance") {
					t.Errorf("check %s after -disable", id)
				}
			}
		}},
		{"consul kv put -flags=42 app/a 1; consul kv put -cas -modify-index=N app/a 2; consul kv get -detailed app/a; consul kv get -recurse app/; consul kv get -keys -separator=/ app/; consul kv delete -cas -modify-index=N app/a; consul kv delete -recurse app/", func(t *testing.T) {
			// command/kv/{put,get,del}: Put (with Flags), CAS, Get,
			// List, Keys with a separator, DeleteCAS, DeleteTree.
			kv := c.KV()
			if _, err := kv.Put(&api.KVPair{Key: "app/a", Value: []byte("1"), Flags: 42}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(&api.KVPair{Key: "app/dir/b", Value: []byte("x")}, nil); err != nil {
				t.Fatal(err)
			}
			p, _, err := kv.Get("app/a", nil)
			if err != nil || p == nil || p.Flags != 42 || p.ModifyIndex == 0 || p.CreateIndex == 0 {
				t.Fatalf("Get(app/a) = %+v, %v; -detailed prints Flags, CreateIndex, ModifyIndex", p, err)
			}
			if ok, _, err := kv.CAS(&api.KVPair{Key: "app/a", Value: []byte("2"), ModifyIndex: p.ModifyIndex - 1}, nil); err != nil || ok {
				t.Errorf("CAS at a stale index = %v, %v; want false (the CLI prints \"Error! Did not write to app/a: CAS failed\")", ok, err)
			}
			if ok, _, err := kv.CAS(&api.KVPair{Key: "app/a", Value: []byte("2"), ModifyIndex: p.ModifyIndex}, nil); err != nil || !ok {
				t.Fatalf("CAS = %v, %v", ok, err)
			}
			pairs, _, err := kv.List("app/", nil)
			if err != nil || len(pairs) != 2 {
				t.Errorf("List(app/) = %d pairs, %v; want 2", len(pairs), err)
			}
			keys, _, err := kv.Keys("app/", "/", nil)
			if err != nil || strings.Join(keys, ",") != "app/a,app/dir/" {
				t.Errorf("Keys(app/, /) = %v, %v; want [app/a app/dir/]", keys, err)
			}
			p, _, _ = kv.Get("app/a", nil)
			if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "app/a", ModifyIndex: p.ModifyIndex}, nil); err != nil || !ok {
				t.Errorf("DeleteCAS = %v, %v", ok, err)
			}
			if _, err := kv.DeleteTree("app/", nil); err != nil {
				t.Fatal(err)
			}
			if pairs, _, _ := kv.List("app/", nil); len(pairs) != 0 {
				t.Errorf("List(app/) after DeleteTree = %d pairs", len(pairs))
			}
		}},
		{"consul kv export cfg/; consul kv import (base64 values, flags)", func(t *testing.T) {
			// command/kv/exp lists the prefix; command/kv/imp puts each
			// entry with its flags.
			for i, k := range []string{"cfg/x", "cfg/y"} {
				if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte{0, byte(i), 0xff}, Flags: uint64(i)}, nil); err != nil {
					t.Fatal(err)
				}
			}
			pairs, _, err := c.KV().List("cfg/", nil)
			if err != nil || len(pairs) != 2 || pairs[1].Flags != 1 || string(pairs[1].Value) != "\x00\x01\xff" {
				t.Fatalf("List(cfg/) = %+v, %v", pairs, err)
			}
			for _, p := range pairs {
				if _, err := c.KV().Put(&api.KVPair{Key: "copy/" + p.Key, Flags: p.Flags, Value: p.Value}, nil); err != nil {
					t.Fatal(err)
				}
			}
			got, _, _ := c.KV().Get("copy/cfg/y", nil)
			if got == nil || got.Flags != 1 || string(got.Value) != "\x00\x01\xff" {
				t.Errorf("imported copy/cfg/y = %+v", got)
			}
		}},
		{"consul lock app/leader cmd; consul lock -n=2 app/sem cmd", func(t *testing.T) {
			// command/lock: -n=1 is LockOpts on <prefix>/.lock with the
			// session "Consul lock"; -n>1 is SemaphoreOpts with Limit n.
			l, err := c.LockOpts(&api.LockOptions{Key: "app/leader/.lock", SessionName: "Consul lock", MonitorRetries: 3})
			if err != nil {
				t.Fatal(err)
			}
			lost, err := l.Lock(nil)
			if err != nil || lost == nil {
				t.Fatalf("Lock = %v, %v", lost, err)
			}
			p, _, _ := c.KV().Get("app/leader/.lock", nil)
			if p == nil || p.Session == "" {
				t.Errorf("lock key = %+v, want held by a session", p)
			}
			if err := l.Unlock(); err != nil {
				t.Errorf("Unlock: %v", err)
			}
			var held []*api.Semaphore
			for range 2 {
				s, err := c.SemaphoreOpts(&api.SemaphoreOptions{Prefix: "app/sem", Limit: 2, SessionName: "Consul lock", MonitorRetries: 3})
				if err != nil {
					t.Fatal(err)
				}
				if ch, err := s.Acquire(nil); err != nil || ch == nil {
					t.Fatalf("Semaphore.Acquire = %v, %v", ch, err)
				}
				held = append(held, s)
			}
			third, _ := c.SemaphoreOpts(&api.SemaphoreOptions{Prefix: "app/sem", Limit: 2, SemaphoreTryOnce: true, SemaphoreWaitTime: 100 * time.Millisecond})
			if ch, err := third.Acquire(nil); err != nil || ch != nil {
				t.Errorf("a third holder of a 2-slot semaphore: %v, %v; want refused (nil, nil)", ch, err)
			}
			for _, s := range held {
				if err := s.Release(); err != nil {
					t.Errorf("Release: %v", err)
				}
			}
		}},
		{"consul snapshot save s.snap; consul snapshot restore s.snap", func(t *testing.T) {
			// command/snapshot/{save,restore}: GET then PUT /v1/snapshot.
			if _, err := c.KV().Put(&api.KVPair{Key: "snap/k", Value: []byte("before")}, nil); err != nil {
				t.Fatal(err)
			}
			srv := leader(t)
			rc, meta, err := srv.Snapshot().Save(nil)
			if err != nil {
				t.Fatalf("Snapshot().Save: %v", err)
			}
			var buf strings.Builder
			if _, err := io.Copy(&buf, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if buf.Len() == 0 || meta.LastIndex == 0 {
				t.Fatalf("snapshot of %d bytes at index %d", buf.Len(), meta.LastIndex)
			}
			if _, err := c.KV().Put(&api.KVPair{Key: "snap/k", Value: []byte("after")}, nil); err != nil {
				t.Fatal(err)
			}
			if err := srv.Snapshot().Restore(nil, strings.NewReader(buf.String())); err != nil {
				t.Fatalf("Snapshot().Restore: %v", err)
			}
			eventually(t, "snap/k restored", 10*time.Second, func() (bool, string) {
				p, _, err := c.KV().Get("snap/k", nil)
				if err != nil || p == nil {
					return false, fmt.Sprint(err)
				}
				return string(p.Value) == "before", string(p.Value)
			})
		}},
		{"consul info", func(t *testing.T) {
			// command/info prints Self()["Stats"], section by section.
			self, err := c.Agent().Self()
			if err != nil {
				t.Fatal(err)
			}
			for _, section := range []string{"agent", "build", "runtime"} {
				if _, ok := self["Stats"][section].(map[string]any); !ok {
					t.Errorf("Self()[Stats][%s] = %v, want a section", section, self["Stats"][section])
				}
			}
		}},
		{"consul monitor -log-level=debug", func(t *testing.T) {
			// command/monitor streams /v1/agent/monitor until interrupted.
			stop := make(chan struct{})
			defer close(stop)
			logs, err := c.Agent().Monitor("debug", stop, nil)
			if err != nil {
				t.Fatalf("Agent().Monitor: %v", err)
			}
			// Something to log: a join of nothing fails with a line.
			_ = c.Agent().Join("127.0.0.1:1", false)
			select {
			case line := <-logs:
				if line == "" {
					t.Error("an empty log line")
				}
			case <-time.After(20 * time.Second):
				t.Error("no log line in 20s")
			}
		}},
		{"consul operator raft remove-peer -address=nosuch:8300", func(t *testing.T) {
			// command/operator/raft/removepeer: by address (or -id); an
			// address that is no peer is an error naming it.
			err := leader(t).Operator().RaftRemovePeerByAddress("127.0.0.1:1", nil)
			if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
				t.Errorf("RaftRemovePeerByAddress(unknown) = %v, want an error naming the address", err)
			}
		}},
		{"consul force-leave s2 (alive); consul force-leave nosuch", func(t *testing.T) {
			// Consul leaves a live member alone and succeeds (serf only
			// acts on failed members); an unknown name is an error.
			if err := c.Agent().ForceLeave("s2"); err != nil {
				t.Errorf("ForceLeave(s2) = %v, want nil", err)
			}
			ms, _ := c.Agent().Members(false)
			for _, m := range ms {
				if m.Name == "s2" && m.Status != 1 {
					t.Errorf("s2 status %d after force-leave of a live member, want alive (1)", m.Status)
				}
			}
			if err := c.Agent().ForceLeave("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
				t.Errorf("ForceLeave(nosuch) = %v, want an error naming it", err)
			}
		}},
		{"consul operator raft transfer-leader (last: it moves the leader)", func(t *testing.T) {
			// command/operator/raft/transferleader: POST
			// /v1/operator/raft/transfer-leader; the CLI prints
			// "Success" when the answer says so.
			before, _ := c.Status().Leader()
			r, err := leader(t).Operator().RaftLeaderTransfer("", nil)
			if err != nil || r == nil || !r.Success {
				t.Fatalf("RaftLeaderTransfer = %+v, %v", r, err)
			}
			eventually(t, "a new leader", 20*time.Second, func() (bool, string) {
				now, err := c.Status().Leader()
				return err == nil && now != "" && now != before, now
			})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, tc.run)
	}
}
