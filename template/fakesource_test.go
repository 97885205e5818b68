package template

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeSource is an in-memory catalog and KV store with Consul's blocking
// queries: one index for everything (as a Raft index is), bumped by every
// change, which closes the watch channel blocked queries wait on.
type fakeSource struct {
	mu       sync.Mutex
	index    uint64
	changed  chan struct{}
	nodes    map[string]*api.Node
	services map[string][]*api.ServiceEntry // by service name
	kv       map[string]*api.KVPair
	dcs      []string
	self     string
	failures int           // the next n queries fail
	blocked  int           // queries waiting right now
	blockedC chan struct{} // closed (and replaced) when blocked changes
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		index:    1,
		changed:  make(chan struct{}),
		nodes:    map[string]*api.Node{},
		services: map[string][]*api.ServiceEntry{},
		kv:       map[string]*api.KVPair{},
		dcs:      []string{"dc1"},
		self:     "node1",
		blockedC: make(chan struct{}),
	}
}

// setBlocked changes the number of blocked queries; f.mu is held.
func (f *fakeSource) setBlocked(delta int) {
	f.blocked += delta
	close(f.blockedC)
	f.blockedC = make(chan struct{})
}

// awaitBlocked waits until n queries are blocked at the source, or fails
// the test after timeout with the count last seen.
func (f *fakeSource) awaitBlocked(t interface {
	Helper()
	Fatalf(string, ...any)
}, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		blocked, ch := f.blocked, f.blockedC
		f.mu.Unlock()
		if blocked >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d queries blocked at the source after %s, want %d", blocked, timeout, n)
		}
	}
}

// update applies fn under the lock and wakes the blocked queries.
func (f *fakeSource) update(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeSource) putKV(key, value string) {
	f.update(func() {
		f.kv[key] = &api.KVPair{Key: key, Value: []byte(value), CreateIndex: f.index + 1, ModifyIndex: f.index + 1}
	})
}

func (f *fakeSource) addNode(name, addr string, meta map[string]string) {
	f.update(func() {
		f.nodes[name] = &api.Node{ID: "id-" + name, Node: name, Address: addr, Datacenter: "dc1", Meta: meta,
			TaggedAddresses: map[string]string{"lan": addr}}
	})
}

// addService registers an instance on node with the given check status
// ("" for no check).
func (f *fakeSource) addService(node string, svc *api.AgentService, status string) {
	f.update(func() {
		var checks api.HealthChecks
		if status != "" {
			checks = api.HealthChecks{{Node: node, CheckID: "service:" + svc.ID, Name: "check " + svc.ID,
				Status: status, ServiceID: svc.ID, ServiceName: svc.Service}}
		}
		f.services[svc.Service] = append(f.services[svc.Service], &api.ServiceEntry{Node: f.nodes[node], Service: svc, Checks: checks})
	})
}

// failNext makes the next n queries fail.
func (f *fakeSource) failNext(n int) {
	f.mu.Lock()
	f.failures = n
	f.mu.Unlock()
}

func (f *fakeSource) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked
}

// wait blocks as a Consul blocking query does, then calls read under the
// lock and returns the index.
func (f *fakeSource) wait(ctx context.Context, what string, q QueryOptions, read func()) (uint64, error) {
	f.mu.Lock()
	if f.failures > 0 {
		f.failures--
		f.mu.Unlock()
		return 0, fmt.Errorf("fake: %s failed", what)
	}
	if q.WaitIndex >= f.index {
		ch := f.changed
		f.setBlocked(1)
		f.mu.Unlock()
		var timeout <-chan time.Time
		if q.WaitTime > 0 {
			t := time.NewTimer(q.WaitTime)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ctx.Done():
		case <-ch:
		case <-timeout:
		}
		f.mu.Lock()
		f.setBlocked(-1)
		if ctx.Err() != nil {
			f.mu.Unlock()
			return 0, ctx.Err()
		}
	}
	defer f.mu.Unlock()
	read()
	return f.index, nil
}

func (f *fakeSource) HealthService(ctx context.Context, service, tag string, passingOnly bool, q QueryOptions) ([]*api.ServiceEntry, uint64, error) {
	var out []*api.ServiceEntry
	idx, err := f.wait(ctx, "health "+service, q, func() {
		for _, e := range f.services[service] {
			if tag != "" && !slices.Contains(e.Service.Tags, tag) {
				continue
			}
			if passingOnly && e.Checks.AggregatedStatus() != api.HealthPassing {
				continue
			}
			out = append(out, e)
		}
	})
	return out, idx, err
}

func (f *fakeSource) CatalogServices(ctx context.Context, q QueryOptions) (map[string][]string, uint64, error) {
	out := map[string][]string{}
	idx, err := f.wait(ctx, "services", q, func() {
		for name, list := range f.services {
			var tags []string
			for _, e := range list {
				for _, t := range e.Service.Tags {
					if !slices.Contains(tags, t) {
						tags = append(tags, t)
					}
				}
			}
			out[name] = tags
		}
	})
	return out, idx, err
}

func (f *fakeSource) CatalogNodes(ctx context.Context, q QueryOptions) ([]*api.Node, uint64, error) {
	var out []*api.Node
	idx, err := f.wait(ctx, "nodes", q, func() {
		for _, name := range slices.Sorted(maps.Keys(f.nodes)) {
			out = append(out, f.nodes[name])
		}
	})
	return out, idx, err
}

func (f *fakeSource) CatalogNode(ctx context.Context, node string, q QueryOptions) (*api.CatalogNode, uint64, error) {
	var out *api.CatalogNode
	idx, err := f.wait(ctx, "node "+node, q, func() {
		if node == "" {
			node = f.self
		}
		n := f.nodes[node]
		if n == nil {
			return
		}
		out = &api.CatalogNode{Node: n, Services: map[string]*api.AgentService{}}
		for _, list := range f.services {
			for _, e := range list {
				if e.Node != nil && e.Node.Node == node {
					out.Services[e.Service.ID] = e.Service
				}
			}
		}
	})
	return out, idx, err
}

func (f *fakeSource) KVGet(ctx context.Context, key string, q QueryOptions) (*api.KVPair, uint64, error) {
	var out *api.KVPair
	idx, err := f.wait(ctx, "kv "+key, q, func() { out = f.kv[key] })
	return out, idx, err
}

func (f *fakeSource) KVList(ctx context.Context, prefix string, q QueryOptions) (api.KVPairs, uint64, error) {
	var out api.KVPairs
	idx, err := f.wait(ctx, "kv-list "+prefix, q, func() {
		for _, k := range slices.Sorted(maps.Keys(f.kv)) {
			if strings.HasPrefix(k, prefix) {
				out = append(out, f.kv[k])
			}
		}
	})
	return out, idx, err
}

func (f *fakeSource) Datacenters(ctx context.Context, q QueryOptions) ([]string, uint64, error) {
	var out []string
	idx, err := f.wait(ctx, "datacenters", q, func() { out = slices.Clone(f.dcs) })
	return out, idx, err
}

// fixture fills a fakeSource with the fixed catalog and KV of the golden
// tests: three nodes; "web" on all three (one critical, one with its own
// address), "api" and "db"; and a KV tree.
func fixture() *fakeSource {
	f := newFakeSource()
	f.addNode("node1", "10.0.0.1", map[string]string{"rack": "r1"})
	f.addNode("node2", "10.0.0.2", map[string]string{"rack": "r2"})
	f.addNode("node3", "10.0.0.3", map[string]string{"rack": "r1"})
	web := func(id string, port int, addr string, tags ...string) *api.AgentService {
		return &api.AgentService{ID: id, Service: "web", Port: port, Address: addr, Tags: tags,
			Meta: map[string]string{"version": strings.TrimPrefix(id, "web-")}, Weights: api.AgentWeights{Passing: 1, Warning: 1}}
	}
	f.addService("node2", web("web-b", 8080, "10.1.0.2", "v2", "canary"), api.HealthPassing)
	f.addService("node1", web("web-a", 8080, "", "v1", "primary"), api.HealthPassing)
	f.addService("node1", web("web-c", 8081, "", "v1"), api.HealthPassing)
	f.addService("node3", web("web-d", 8080, "", "v1"), api.HealthCritical)
	f.addService("node1", &api.AgentService{ID: "api-1", Service: "api", Port: 9000, Tags: []string{"internal", "v1"}}, api.HealthPassing)
	f.addService("node2", &api.AgentService{ID: "api-2", Service: "api", Port: 9000, Tags: []string{"internal"}}, api.HealthWarning)
	f.addService("node3", &api.AgentService{ID: "db-1", Service: "db", Port: 5432, Tags: []string{"primary"}}, "")
	for _, kv := range [][2]string{
		{"app/name", "shop"},
		{"app/port", "8080"},
		{"app/limits/conns", "512"},
		{"app/limits/rate", "100r/s"},
		{"app/features/", ""},
		{"app/features/cart", "on"},
		{"app/features/search", "off"},
		{"app/empty", ""},
		{"nginx/worker_connections", "1024"},
	} {
		f.putKV(kv[0], kv[1])
	}
	return f
}
