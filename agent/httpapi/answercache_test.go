package httpapi_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestCachedAnswersFollowChanges: health and catalog answers of a
// service, read again and again (so served from the cache of encoded
// answers), change as soon as the service does: a check's status, a
// tag, a new instance, a deregistration; each filter has its own answer.
func TestCachedAnswersFollowChanges(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	register := func(id string, tags ...string) {
		t.Helper()
		err := agent.ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "web", Port: 80, Tags: tags,
			Check: &api.AgentServiceCheck{CheckID: "ttl-" + id, TTL: "1h", Status: "passing"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// read returns what each view shows: instance IDs with their tags.
	read := func() (passing, tagged, all []string) {
		t.Helper()
		for range 3 { // the same answer each time: from the cache after the first
			passing, tagged, all = nil, nil, nil
			hs, _, err := ta.client.Health().Service("web", "", true, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range hs {
				passing = append(passing, e.Service.ID)
			}
			ts, _, err := ta.client.Health().Service("web", "v2", false, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ts {
				tagged = append(tagged, e.Service.ID)
			}
			cs, _, err := ta.client.Catalog().Service("web", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range cs {
				all = append(all, s.ServiceID+"@"+strings.Join(s.ServiceTags, " "))
			}
		}
		return passing, tagged, all
	}
	steps := []struct {
		name                 string
		change               func()
		passing, tagged, all string
	}{
		{"one instance", func() { register("web-1", "v1") }, "web-1", "", "web-1@v1"},
		{"its check fails", func() {
			if err := agent.UpdateTTL("ttl-web-1", "down", api.HealthCritical); err != nil {
				t.Fatal(err)
			}
		}, "", "", "web-1@v1"},
		{"a second instance", func() { register("web-2", "v2") }, "web-2", "web-2", "web-1@v1 web-2@v2"},
		{"a new tag", func() { register("web-1", "v2") }, "web-2", "web-1 web-2", "web-1@v2 web-2@v2"},
		{"the check passes again", func() {
			if err := agent.UpdateTTL("ttl-web-1", "up", api.HealthPassing); err != nil {
				t.Fatal(err)
			}
		}, "web-1 web-2", "web-1 web-2", "web-1@v2 web-2@v2"},
		{"deregistered", func() {
			if err := agent.ServiceDeregister("web-2"); err != nil {
				t.Fatal(err)
			}
		}, "web-1", "web-1", "web-1@v2"},
	}
	for _, s := range steps {
		s.change()
		passing, tagged, all := read()
		if got := strings.Join(passing, " "); got != s.passing {
			t.Errorf("%s: passing instances = %q, want %q", s.name, got, s.passing)
		}
		if got := strings.Join(tagged, " "); got != s.tagged {
			t.Errorf("%s: instances tagged v2 = %q, want %q", s.name, got, s.tagged)
		}
		if got := strings.Join(all, " "); got != s.all {
			t.Errorf("%s: catalog = %q, want %q", s.name, got, s.all)
		}
	}
}

// TestCachedKVListFollowsChanges: ?recurse answers, read again and again
// (so served from the cache of encoded answers), follow every write
// under the prefix: a new key, a new value, a deletion, a lock.
func TestCachedKVListFollowsChanges(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	kvc := ta.client.KV()
	sid, _, err := ta.client.Session().Create(&api.SessionEntry{Name: "holder"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		change func() error
		want   string
	}{
		{"two keys", func() error {
			if _, err := kvc.Put(&api.KVPair{Key: "app/a", Value: []byte("1")}, nil); err != nil {
				return err
			}
			_, err := kvc.Put(&api.KVPair{Key: "app/b", Value: []byte("2")}, nil)
			return err
		}, "app/a=1 app/b=2"},
		{"a new value", func() error {
			_, err := kvc.Put(&api.KVPair{Key: "app/b", Value: []byte("3")}, nil)
			return err
		}, "app/a=1 app/b=3"},
		{"a deletion", func() error {
			_, err := kvc.Delete("app/b", nil)
			return err
		}, "app/a=1"},
		{"a lock", func() error {
			_, _, err := kvc.Acquire(&api.KVPair{Key: "app/a", Value: []byte("1"), Session: sid}, nil)
			return err
		}, "app/a=1@" + sid},
		{"outside the prefix", func() error {
			_, err := kvc.Put(&api.KVPair{Key: "other", Value: []byte("x")}, nil)
			return err
		}, "app/a=1@" + sid},
	}
	for _, s := range steps {
		if err := s.change(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for range 3 {
			pairs, _, err := kvc.List("app/", nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pairs {
				v := p.Key + "=" + string(p.Value)
				if p.Session != "" {
					v += "@" + p.Session
				}
				got = append(got, v)
			}
			if g := strings.Join(got, " "); g != s.want {
				t.Errorf("%s: list = %q, want %q", s.name, g, s.want)
			}
		}
	}
}

// TestCachedAnswersFollowNodeMeta: an answer cut by ?node-meta= follows
// the nodes: a node whose meta changes leaves it or joins it, although
// its service did not change.
func TestCachedAnswersFollowNodeMeta(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	register := func(node, rack string) {
		t.Helper()
		_, err := ta.client.Catalog().Register(&api.CatalogRegistration{
			Node: node, Address: "10.2.0.1", NodeMeta: map[string]string{"rack": rack},
			Service: &api.AgentService{ID: "web", Service: "web", Port: 80},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		var got string
		for range 3 { // from the cache after the first
			es, _, err := ta.client.Health().Service("web", "", false, &api.QueryOptions{NodeMeta: map[string]string{"rack": "a"}})
			if err != nil {
				t.Fatal(err)
			}
			var nodes []string
			for _, e := range es {
				nodes = append(nodes, e.Node.Node)
			}
			got = strings.Join(nodes, " ")
		}
		return got
	}
	register("n1", "a")
	register("n2", "b")
	if got := read(); got != "n1" {
		t.Fatalf("rack a = %q, want n1", got)
	}
	register("n2", "a")
	if got := read(); got != "n1 n2" {
		t.Errorf("after n2 moved to rack a: %q, want n1 n2", got)
	}
	register("n1", "b")
	if got := read(); got != "n2" {
		t.Errorf("after n1 moved to rack b: %q, want n2", got)
	}
}
