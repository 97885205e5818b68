package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestUserEventsReachEveryAgent fires events through one agent and reads
// them on every other with the official client: the filters are judged
// where the event arrives (Consul's shouldProcessUserEvent), the payload
// and fields come back as fired, and a blocking List wakes on the next
// event.
func TestUserEventsReachEveryAgent(t *testing.T) {
	c := startCluster(t, 1, 2)
	all := c.all() // s0, c0, c1
	if err := all[1].client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Tags: []string{"blue"}}); err != nil {
		t.Fatal(err)
	}
	if err := all[2].client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "db"}); err != nil {
		t.Fatal(err)
	}

	fire := func(ev *api.UserEvent) string {
		t.Helper()
		id, _, err := all[0].client.Event().Fire(ev, nil)
		if err != nil {
			t.Fatalf("Fire(%s): %v", ev.Name, err)
		}
		return id
	}
	fire(&api.UserEvent{Name: "deploy", Payload: []byte("v2")})
	fire(&api.UserEvent{Name: "only-c1", NodeFilter: "^c1$"})
	fire(&api.UserEvent{Name: "web-blue", ServiceFilter: "^web$", TagFilter: "^blue$"})
	last := fire(&api.UserEvent{Name: "web-green", ServiceFilter: "^web$", TagFilter: "^green$"})

	want := map[string][]string{
		"s0": {"deploy"},
		"c0": {"deploy", "web-blue"},
		"c1": {"deploy", "only-c1"},
	}
	for _, a := range all {
		name := a.cfg.NodeName
		eventually(t, name+" has its events", 10*time.Second, func() (bool, string) {
			evs, _, err := a.client.Event().List("", nil)
			if err != nil {
				return false, err.Error()
			}
			var names []string
			for _, e := range evs {
				names = append(names, e.Name)
			}
			slices.Sort(names)
			return slices.Equal(names, want[name]), fmt.Sprint(names)
		})
	}
	_ = last

	evs, meta, err := all[1].client.Event().List("deploy", nil)
	if err != nil || len(evs) != 1 {
		t.Fatalf("List(deploy) on c0 = %v, %v; want one event", evs, err)
	}
	e := evs[0]
	if string(e.Payload) != "v2" || e.Version != 1 || e.LTime == 0 || e.ID == "" {
		t.Errorf("List(deploy)[0] = %+v; want payload v2, version 1, an LTime and an ID", e)
	}
	if got, want := meta.LastIndex, all[1].client.Event().IDToIndex(e.ID); got != want {
		t.Errorf("List(deploy) index = %d, want IDToIndex(ID) = %d", got, want)
	}

	// A blocking List with the current index waits for the next event.
	got := make(chan []*api.UserEvent, 1)
	go func() {
		evs, _, err := all[2].client.Event().List("deploy", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second})
		if err != nil {
			t.Errorf("blocking List: %v", err)
		}
		got <- evs
	}()
	fire(&api.UserEvent{Name: "deploy", Payload: []byte("v3")})
	select {
	case evs := <-got:
		if len(evs) != 2 || string(evs[1].Payload) != "v3" {
			t.Errorf("blocking List woke with %d events, want 2 ending with payload v3", len(evs))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a blocking List did not wake within 15s of the next event")
	}
}

func TestUserEventFireErrors(t *testing.T) {
	r := start(t, devConfig())
	tests := []struct {
		name string
		ev   api.UserEvent
		want string
	}{
		{"bad regexp", api.UserEvent{Name: "x", NodeFilter: "("}, "Invalid node filter"},
		{"tag without service", api.UserEvent{Name: "x", TagFilter: "a"}, "cannot provide tag filter without service filter"},
		{"too large", api.UserEvent{Name: "x", Payload: []byte(strings.Repeat("p", 600))}, "exceeds limit of 512 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.client.Event().Fire(&tc.ev, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Fire(%+v) = %v, want an error containing %q", tc.ev, err, tc.want)
			}
		})
	}
}

// TestCoordinatesFromGossip reads the coordinates that probes measure on
// every agent, and sorts by them with ?near=.
func TestCoordinatesFromGossip(t *testing.T) {
	c := startCluster(t, 1, 2)
	for _, a := range c.all() {
		eventually(t, a.cfg.NodeName+" knows every coordinate", 15*time.Second, func() (bool, string) {
			cs, _, err := a.client.Coordinate().Nodes(nil)
			if err != nil {
				return false, err.Error()
			}
			var names []string
			for _, e := range cs {
				if e.Coord == nil || len(e.Coord.Vec) == 0 {
					return false, "an entry without a coordinate: " + e.Node
				}
				names = append(names, e.Node)
			}
			return slices.Equal(names, []string{"c0", "c1", "s0"}), fmt.Sprint(names)
		})
	}
	cl := c.clients[0].client
	one, _, err := cl.Coordinate().Node("s0", nil)
	if err != nil || len(one) != 1 || one[0].Node != "s0" {
		t.Fatalf("Coordinate().Node(s0) = %v, %v; want one entry", one, err)
	}
	if _, _, err := cl.Coordinate().Node("nope", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Coordinate().Node(nope) = %v, want a 404", err)
	}
	dcs, err := cl.Coordinate().Datacenters()
	if err != nil || len(dcs) != 1 || dcs[0].Datacenter != "dc1" || len(dcs[0].Coordinates) != 1 || dcs[0].Coordinates[0].Node != "s0.dc1" {
		t.Errorf("Coordinate().Datacenters() = %+v, %v; want dc1 with server s0.dc1", dcs, err)
	}

	// Move c1 far away: ?near=_agent on c0 puts it last, in the catalog,
	// in health and in prepared queries. c0's next probe of c1 measures
	// its real coordinate again (as Consul's next update would), so the
	// move is repeated until a read sees it.
	for _, a := range c.all() {
		if err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
			t.Fatal(err)
		}
	}
	qid, _, err := cl.PreparedQuery().Create(&api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web", Near: "_agent"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	far := *one[0].Coord
	far.Vec = slices.Clone(far.Vec)
	far.Vec[0] += 10 // seconds
	near := &api.QueryOptions{Near: "_agent"}
	reads := []struct {
		what string
		read func() ([]string, error)
	}{
		{"Catalog().Nodes", func() ([]string, error) {
			ns, _, err := cl.Catalog().Nodes(near)
			var out []string
			for _, n := range ns {
				out = append(out, n.Node)
			}
			return out, err
		}},
		{"Catalog().Service", func() ([]string, error) {
			ss, _, err := cl.Catalog().Service("web", "", near)
			var out []string
			for _, s := range ss {
				out = append(out, s.Node)
			}
			return out, err
		}},
		{"Health().Service", func() ([]string, error) {
			es, _, err := cl.Health().Service("web", "", false, near)
			var out []string
			for _, e := range es {
				out = append(out, e.Node.Node)
			}
			return out, err
		}},
		{"PreparedQuery().Execute (Near _agent)", func() ([]string, error) {
			r, _, err := cl.PreparedQuery().Execute(qid, nil)
			if err != nil {
				return nil, err
			}
			var out []string
			for _, e := range r.Nodes {
				out = append(out, e.Node.Node)
			}
			return out, nil
		}},
	}
	for _, rd := range reads {
		eventually(t, rd.what+" near _agent on c0 puts the far c1 last", 10*time.Second, func() (bool, string) {
			if _, err := cl.Coordinate().Update(&api.CoordinateEntry{Node: "c1", Coord: &far}, nil); err != nil {
				return false, err.Error()
			}
			order, err := rd.read()
			if err != nil {
				return false, err.Error()
			}
			return len(order) == 3 && order[2] == "c1", fmt.Sprint(order)
		})
	}
	if _, err := cl.Coordinate().Update(&api.CoordinateEntry{Node: "ghost", Coord: &far}, nil); err == nil || !strings.Contains(err.Error(), "Unknown node") {
		t.Errorf("Coordinate().Update(ghost) = %v, want Unknown node", err)
	}
}
