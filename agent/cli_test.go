package agent

import (
	"encoding/json"
	"fmt"
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
	// Let the elections of the start end (autopilot: every server healthy)
	// so that the writes below are not refused for want of a leader.
	eventually(t, "three healthy servers", 30*time.Second, func() (bool, string) {
		h, err := c.Operator().AutopilotServerHealth(nil)
		if err != nil {
			return false, err.Error()
		}
		return h.Healthy && len(h.Servers) == 3, fmt.Sprintf("healthy %v, %d servers", h.Healthy, len(h.Servers))
	})

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
	}
	for _, tc := range tests {
		t.Run(tc.cmd, tc.run)
	}
}
