// Package templatetest checks that a template.Source keeps the contract
// the template runner relies on: Consul's answers and blocking queries.
// Run it against every Source (the agent's in-process one, HTTPSource on
// an agent) so that templates render the same through each. It imports
// template only.
package templatetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/template"
	"github.com/hashicorp/consul/api"
)

// Backend changes the data behind the Source under test.
type Backend interface {
	PutKV(key, value string) error
	DeleteKV(key string) error
	// RegisterService registers an instance of name, with no checks (so
	// passing), on the agent's own node.
	RegisterService(id, name, address string, port int, tags []string) error
	DeregisterService(id string) error
}

// within bounds every answer the contract says comes at once.
const within = 10 * time.Second

// Conformance runs the checks as subtests. The Source must start without
// keys under "conformance/" and without a service named
// "conformance-web".
func Conformance(t *testing.T, src template.Source, b Backend) {
	t.Run("kv", func(t *testing.T) { kvConformance(t, src, b) })
	t.Run("services", func(t *testing.T) { serviceConformance(t, src, b) })
	t.Run("datacenters", func(t *testing.T) {
		dcs, _, err := src.Datacenters(ctx(t), template.QueryOptions{})
		if err != nil || len(dcs) == 0 {
			t.Errorf("Datacenters() = %v, %v; want at least the agent's own", dcs, err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// result is one answer of a query run in the background.
type result[T any] struct {
	v   T
	idx uint64
	err error
}

// background runs a query and returns its answer on a channel.
func background[T any](q func() (T, uint64, error)) <-chan result[T] {
	ch := make(chan result[T], 1)
	go func() {
		v, idx, err := q()
		ch <- result[T]{v, idx, err}
	}()
	return ch
}

func await[T any](t *testing.T, what string, ch <-chan result[T]) result[T] {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r
	case <-time.After(within):
		t.Fatalf("%s: no answer within %s", what, within)
		return result[T]{}
	}
}

func kvConformance(t *testing.T, src template.Source, b Backend) {
	pair, idx, err := src.KVGet(ctx(t), "conformance/a", template.QueryOptions{})
	if err != nil || pair != nil || idx == 0 {
		t.Fatalf("KVGet of a missing key = %v, %d, %v; want nil, an index > 0, nil", pair, idx, err)
	}
	must(t, b.PutKV("conformance/a", "1"))
	must(t, b.PutKV("conformance/dir/b", "2"))
	pair, idx, err = src.KVGet(ctx(t), "conformance/a", template.QueryOptions{})
	if err != nil || pair == nil || string(pair.Value) != "1" || pair.Key != "conformance/a" {
		t.Fatalf("KVGet = %+v, %v; want conformance/a = 1", pair, err)
	}
	list, _, err := src.KVList(ctx(t), "conformance/", template.QueryOptions{})
	must(t, err)
	var keys []string
	for _, p := range list {
		keys = append(keys, p.Key)
	}
	if want := []string{"conformance/a", "conformance/dir/b"}; !slices.Equal(keys, want) {
		t.Errorf("KVList(conformance/) keys = %v, want %v (sorted)", keys, want)
	}

	// A blocking query whose wait runs out answers the same data.
	c := ctx(t)
	same := await(t, "KVGet with a short wait", background(func() (*api.KVPair, uint64, error) {
		return src.KVGet(c, "conformance/a", template.QueryOptions{WaitIndex: idx, WaitTime: 100 * time.Millisecond})
	}))
	if same.v == nil || string(same.v.Value) != "1" || same.idx < idx {
		t.Errorf("after the wait ran out: %+v at %d, want the same value at index >= %d", same.v, same.idx, idx)
	}

	// A change ends a blocking query, with a higher index.
	changed := background(func() (*api.KVPair, uint64, error) {
		return src.KVGet(c, "conformance/a", template.QueryOptions{WaitIndex: idx, WaitTime: time.Minute})
	})
	must(t, b.PutKV("conformance/a", "2"))
	r := await(t, "KVGet blocked on a change", changed)
	if r.v == nil || string(r.v.Value) != "2" || r.idx <= idx {
		t.Errorf("blocked KVGet after a change = %+v at %d; want value 2 at an index > %d", r.v, r.idx, idx)
	}

	// Deleting is a change too.
	listIdx := r.idx
	gone := background(func() (api.KVPairs, uint64, error) {
		return src.KVList(c, "conformance/", template.QueryOptions{WaitIndex: listIdx, WaitTime: time.Minute})
	})
	must(t, b.DeleteKV("conformance/dir/b"))
	if r := await(t, "KVList blocked on a delete", gone); len(r.v) != 1 {
		t.Errorf("KVList after a delete = %d pairs, want 1", len(r.v))
	}

	// A cancelled query returns at once, with an error.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ch := background(func() (*api.KVPair, uint64, error) {
		return src.KVGet(cancelled, "conformance/a", template.QueryOptions{WaitIndex: r.idx + 1000, WaitTime: time.Minute})
	})
	select {
	case res := <-ch:
		if res.err == nil {
			t.Errorf("KVGet with a cancelled context answered %+v without an error", res.v)
		}
	case <-time.After(within):
		t.Errorf("KVGet with a cancelled context did not return within %s", within)
	}
}

func serviceConformance(t *testing.T, src template.Source, b Backend) {
	const name = "conformance-web"
	must(t, b.RegisterService(name+"-1", name, "127.0.0.10", 8001, []string{"v1", "blue"}))
	must(t, b.RegisterService(name+"-2", name, "", 8002, []string{"v2"}))

	entries, idx, err := src.HealthService(ctx(t), name, "", true, template.QueryOptions{})
	must(t, err)
	if len(entries) != 2 || idx == 0 {
		t.Fatalf("HealthService(%s) = %d entries at %d, want 2 at an index > 0", name, len(entries), idx)
	}
	for _, e := range entries {
		if e.Node == nil || e.Node.Node == "" || e.Node.Address == "" || e.Service == nil || e.Service.Service != name {
			t.Errorf("entry %+v: want the node (name, address) and the service", e)
		}
	}
	tagged, _, err := src.HealthService(ctx(t), name, "v1", true, template.QueryOptions{})
	if err != nil || len(tagged) != 1 || tagged[0].Service.ID != name+"-1" || tagged[0].Service.Address != "127.0.0.10" || tagged[0].Service.Port != 8001 {
		t.Errorf("HealthService(%s, tag v1) = %v, %v; want %s-1 at 127.0.0.10:8001", name, tagged, err, name)
	}

	services, _, err := src.CatalogServices(ctx(t), template.QueryOptions{})
	must(t, err)
	if tags, ok := services[name]; !ok || !slices.Contains(tags, "v1") || !slices.Contains(tags, "v2") {
		t.Errorf("CatalogServices()[%s] = %v, %v; want the tags of both instances", name, tags, ok)
	}
	node, _, err := src.CatalogNode(ctx(t), "", template.QueryOptions{})
	must(t, err)
	if node == nil || node.Node == nil || node.Services[name+"-1"] == nil {
		t.Fatalf("CatalogNode(\"\") = %+v; want this agent's node with %s-1", node, name)
	}
	nodes, _, err := src.CatalogNodes(ctx(t), template.QueryOptions{})
	must(t, err)
	if !slices.ContainsFunc(nodes, func(n *api.Node) bool { return n.Node == node.Node.Node }) {
		t.Errorf("CatalogNodes() does not list this agent's node %s", node.Node.Node)
	}

	c := ctx(t)
	gone := background(func() ([]*api.ServiceEntry, uint64, error) {
		return src.HealthService(c, name, "", true, template.QueryOptions{WaitIndex: idx, WaitTime: time.Minute})
	})
	must(t, b.DeregisterService(name+"-2"))
	if r := await(t, "HealthService blocked on a deregistration", gone); len(r.v) != 1 || r.idx <= idx {
		t.Errorf("after a deregistration: %d entries at %d, want 1 at an index > %d", len(r.v), r.idx, idx)
	}
	must(t, b.DeregisterService(name+"-1"))
}
