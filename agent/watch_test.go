package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"
	"github.com/hashicorp/go-hclog"
)

// TestConsulWatchTypes runs `consul watch`'s own engine (the watch
// package of the official client, which the CLI and consul-template's
// watchers use) against a real cairn agent, for each watch type a user
// types: the first result arrives, and a change wakes the watch with the
// new state.
func TestConsulWatchTypes(t *testing.T) {
	r := start(t, devConfig())
	c := r.client
	if _, err := c.KV().Put(&api.KVPair{Key: "cfg/a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		params map[string]any
		change func() error
		// changed reports whether a result shows the change.
		changed func(result any) bool
	}{
		{
			name:   "key",
			params: map[string]any{"type": "key", "key": "cfg/a"},
			change: func() error { _, err := c.KV().Put(&api.KVPair{Key: "cfg/a", Value: []byte("2")}, nil); return err },
			changed: func(res any) bool {
				p, ok := res.(*api.KVPair)
				return ok && p != nil && string(p.Value) == "2"
			},
		},
		{
			name:   "keyprefix",
			params: map[string]any{"type": "keyprefix", "prefix": "cfg/"},
			change: func() error { _, err := c.KV().Put(&api.KVPair{Key: "cfg/b", Value: []byte("x")}, nil); return err },
			changed: func(res any) bool {
				ps, ok := res.(api.KVPairs)
				return ok && len(ps) == 2 && ps[1].Key == "cfg/b"
			},
		},
		{
			name:   "services",
			params: map[string]any{"type": "services"},
			change: func() error {
				return c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "svc-1", Name: "svcwatch", Tags: []string{"t1"}})
			},
			changed: func(res any) bool {
				m, ok := res.(map[string][]string)
				return ok && len(m["svcwatch"]) == 1 && m["svcwatch"][0] == "t1"
			},
		},
		{
			name:   "nodes",
			params: map[string]any{"type": "nodes"},
			change: func() error {
				_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "ext-1", Address: "192.0.2.1"}, nil)
				return err
			},
			changed: func(res any) bool {
				ns, ok := res.([]*api.Node)
				if !ok {
					return false
				}
				for _, n := range ns {
					if n.Node == "ext-1" {
						return true
					}
				}
				return false
			},
		},
		{
			name:   "service",
			params: map[string]any{"type": "service", "service": "web", "passingonly": true},
			change: func() error {
				return c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 80})
			},
			changed: func(res any) bool {
				es, ok := res.([]*api.ServiceEntry)
				return ok && len(es) == 1 && es[0].Service.ID == "web-1"
			},
		},
		{
			name:   "checks",
			params: map[string]any{"type": "checks", "state": "critical"},
			change: func() error {
				return c.Agent().CheckRegister(&api.AgentCheckRegistration{ID: "down", Name: "down",
					AgentServiceCheck: api.AgentServiceCheck{TTL: "1h", Status: api.HealthCritical}})
			},
			changed: func(res any) bool {
				cs, ok := res.([]*api.HealthCheck)
				return ok && len(cs) == 1 && cs[0].CheckID == "down"
			},
		},
		{
			name:   "event",
			params: map[string]any{"type": "event", "name": "deploy"},
			change: func() error {
				_, _, err := c.Event().Fire(&api.UserEvent{Name: "deploy", Payload: []byte("v7")}, nil)
				return err
			},
			changed: func(res any) bool {
				evs, ok := res.([]*api.UserEvent)
				return ok && len(evs) == 1 && string(evs[0].Payload) == "v7"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			results := runWatch(t, c, tc.params)
			waitResult(t, results, "the first result", func(any) bool { return true })
			if err := tc.change(); err != nil {
				t.Fatalf("change: %v", err)
			}
			waitResult(t, results, "the change", tc.changed)
		})
	}
}

// runWatch runs a watch plan until the test ends and returns its results.
func runWatch(t *testing.T, c *api.Client, params map[string]any) <-chan any {
	t.Helper()
	plan, err := watch.Parse(params)
	if err != nil {
		t.Fatalf("watch.Parse(%v): %v", params, err)
	}
	results := make(chan any, 16)
	plan.Handler = func(_ uint64, res any) { results <- res }
	done := make(chan error, 1)
	go func() { done <- plan.RunWithClientAndHclog(c, hclog.NewNullLogger()) }()
	t.Cleanup(func() {
		plan.Stop()
		<-done
	})
	return results
}

// waitResult waits up to 10s for a result that ok accepts.
func waitResult(t *testing.T, results <-chan any, what string, ok func(any) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var last any
	for {
		select {
		case res := <-results:
			if ok(res) {
				return
			}
			last = res
		case <-deadline:
			t.Fatalf("no watch result showing %s within 10s; last: %s", what, fmt.Sprintf("%#v", last))
		}
	}
}
