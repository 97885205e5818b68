package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/httpapi"
)

// newCachedACLAPI serves one handler (so one cache of answers) with ACLs
// on over a catalog of service "web" on nodes n1 and n2, registered with
// token "admin".
func newCachedACLAPI(t *testing.T) (*testAPI, *fakeResolver) {
	t.Helper()
	cat := httpapi.NodeOneCatalog(t)
	res := newFakeResolver()
	res.set("admin", "a-admin", rule{acl.Node, "", true, acl.Write}, rule{acl.Service, "", true, acl.Write})
	self := testSelf()
	self.NodeName = "node-1"
	ta := serveConfig(t, httpapi.Config{Store: noStore{}, Self: self, Catalog: cat, ACL: res}, nil)
	for _, n := range []string{"n1", "n2"} {
		registerWeb(t, ta, n)
	}
	return ta, res
}

func registerWeb(t *testing.T, ta *testAPI, node string) {
	t.Helper()
	body := fmt.Sprintf(`{"Node":%q,"Address":"10.1.0.1","Service":{"ID":"web","Service":"web","Port":80}}`, node)
	req, _ := http.NewRequest(http.MethodPut, ta.url+"/v1/catalog/register", strings.NewReader(body))
	req.Header.Set("X-Consul-Token", "admin")
	resp, err := ta.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register web on %s: %d", node, resp.StatusCode)
	}
}

// nodesSeen GETs path with token and returns the nodes of the answer
// and whether it says the ACLs filtered it.
func nodesSeen(t *testing.T, ta *testAPI, path, token string) (nodes string, filtered bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ta.url+path, nil)
	req.Header.Set("X-Consul-Token", token)
	resp, err := ta.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as %s = %d", path, token, resp.StatusCode)
	}
	var out []struct {
		Node any // a string in the catalog's answer, an object in health's
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range out {
		switch n := e.Node.(type) {
		case string:
			names = append(names, n)
		case map[string]any:
			names = append(names, n["Node"].(string))
		}
	}
	slices.Sort(names)
	return strings.Join(names, " "), resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true"
}

// TestCachedAnswersKeepEachTokensView: a token that may read only part
// of a service's instances never gets the cached answer another token
// filled, nor leaves its own cut answer for others, whatever the order
// of the requests; tokens that see everything share one answer, which
// follows the catalog.
func TestCachedAnswersKeepEachTokensView(t *testing.T) {
	t.Parallel()
	ta, res := newCachedACLAPI(t)
	read := func(p rule) rule { p.access = acl.Read; return p }
	allNodes, allServices := read(rule{acl.Node, "", true, 0}), read(rule{acl.Service, "", true, 0})
	res.set("all", "a-all", allNodes, allServices)
	res.set("n1", "a-n1", read(rule{acl.Node, "n1", false, 0}), allServices)
	res.set("not-n2", "a-not-n2", allNodes, rule{acl.Node, "n2", false, acl.Deny}, allServices)
	res.set("web", "a-web", allNodes, read(rule{acl.Service, "web", false, 0}))
	res.set("WEB", "a-WEB", allNodes, read(rule{acl.Service, "WEB", false, 0})) // another service's name
	res.set("nodes", "a-nodes", allNodes)

	type view struct {
		token, nodes string
		filtered     bool
	}
	// Every order of the tokens: the ones that see all before and
	// after those that see part.
	views := []view{
		{"all", "n1 n2", false}, {"n1", "n1", true}, {"all", "n1 n2", false},
		{"not-n2", "n1", true}, {"web", "n1 n2", false}, {"WEB", "", true},
		{"nodes", "", true}, {"all", "n1 n2", false}, {"n1", "n1", true},
	}
	for _, path := range []string{"/v1/health/service/web?passing", "/v1/health/service/web", "/v1/catalog/service/web", "/v1/health/service/WEB"} {
		for i, v := range views {
			if strings.HasSuffix(path, "WEB") && v.token == "web" {
				v = view{"web", "n1 n2", false} // the instances are named "web", whatever the case asked
			}
			nodes, filtered := nodesSeen(t, ta, path, v.token)
			if nodes != v.nodes || filtered != v.filtered {
				t.Errorf("%s, request %d as %s: nodes %q, filtered %v; want %q, %v", path, i, v.token, nodes, filtered, v.nodes, v.filtered)
			}
		}
	}

	registerWeb(t, ta, "n3")
	for _, v := range []view{{"n1", "n1", true}, {"all", "n1 n2 n3", false}, {"not-n2", "n1 n3", true}, {"all", "n1 n2 n3", false}, {"n1", "n1", true}} {
		if nodes, filtered := nodesSeen(t, ta, "/v1/health/service/web?passing", v.token); nodes != v.nodes || filtered != v.filtered {
			t.Errorf("after n3 joined, as %s: nodes %q, filtered %v; want %q, %v", v.token, nodes, filtered, v.nodes, v.filtered)
		}
	}
}

// TestCachedAnswersWakeBlockingQueries: a blocking query on an answer
// the cache holds waits while nothing changes and returns the new answer
// as soon as the service changes, for every view of it.
func TestCachedAnswersWakeBlockingQueries(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	reg := func(id string, status string) {
		t.Helper()
		err := agent.ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Port: 80,
			Check: &api.AgentServiceCheck{CheckID: "ttl-" + id, TTL: "1h", Status: status}})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg("web-1", api.HealthPassing)
	reg("web-2", api.HealthCritical)

	type answer struct {
		ids   string
		index uint64
	}
	views := map[string]func(q *api.QueryOptions) (answer, error){
		"health passing": func(q *api.QueryOptions) (answer, error) {
			es, meta, err := ta.client.Health().Service("web", "", true, q)
			if err != nil {
				return answer{}, err
			}
			var ids []string
			for _, e := range es {
				ids = append(ids, e.Service.ID)
			}
			return answer{strings.Join(ids, " "), meta.LastIndex}, nil
		},
		"catalog": func(q *api.QueryOptions) (answer, error) {
			ss, meta, err := ta.client.Catalog().Service("web", "", q)
			if err != nil {
				return answer{}, err
			}
			var ids []string
			for _, s := range ss {
				ids = append(ids, s.ServiceID)
			}
			return answer{strings.Join(ids, " "), meta.LastIndex}, nil
		},
	}
	// In this order: the catalog step registers web-3, passing, which
	// the health step's first answer would then hold.
	for _, step := range []struct {
		name string
		want [2]string
	}{
		{"health passing", [2]string{"web-1", "web-1 web-2"}}, // web-2's check passes
		{"catalog", [2]string{"web-1 web-2", "web-1 web-2 web-3"}},
	} {
		name, want := step.name, step.want
		view := views[name]
		var before answer
		for range 3 { // the last ones from the cache
			var err error
			if before, err = view(nil); err != nil {
				t.Fatal(err)
			}
		}
		if before.ids != want[0] {
			t.Fatalf("%s: %q before, want %q", name, before.ids, want[0])
		}
		done := make(chan answer, 1)
		errs := make(chan error, 1)
		go func() {
			a, err := view(&api.QueryOptions{WaitIndex: before.index, WaitTime: time.Minute})
			if err != nil {
				errs <- err
				return
			}
			done <- a
		}()
		// The query parks (the request is in flight) and must not come
		// back before the change; then it must come back well before
		// its minute runs out.
		select {
		case a := <-done:
			t.Fatalf("%s: blocking query returned %+v before any change (index %d)", name, a, before.index)
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(200 * time.Millisecond):
		}
		if name == "health passing" {
			if err := agent.UpdateTTL("ttl-web-2", "up", api.HealthPassing); err != nil {
				t.Fatal(err)
			}
		} else {
			reg("web-3", api.HealthPassing)
		}
		select {
		case a := <-done:
			if a.ids != want[1] || a.index <= before.index {
				t.Errorf("%s: woke with %q at %d, want %q after %d", name, a.ids, a.index, want[1], before.index)
			}
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the blocking query did not wake within 30s of the change", name)
		}
	}
}

// TestCachedAnswersSameAsUncached: an answer from the cache has the
// bytes and headers of the one it was encoded for, with its length;
// ?filter= and ?near= answers, which bypass it, stay right after it is
// filled.
func TestCachedAnswersSameAsUncached(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	for _, id := range []string{"web-1", "web-2"} {
		err := ta.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Port: 80, Tags: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/v1/health/service/web?passing", "/v1/catalog/service/web", "/v1/health/service/web?tag=web-2"} {
		first, firstBody := ta.do(t, http.MethodGet, path, nil)
		for range 2 {
			again, body := ta.do(t, http.MethodGet, path, nil)
			if body != firstBody {
				t.Errorf("%s: cached body differs:\n%s\nfirst:\n%s", path, body, firstBody)
			}
			for _, h := range []string{"Content-Type", "Content-Length", "X-Consul-Index", "X-Consul-Knownleader", "X-Consul-Lastcontact"} {
				if again.Header.Get(h) != first.Header.Get(h) || again.Header.Get(h) == "" {
					t.Errorf("%s: %s = %q, first %q", path, h, again.Header.Get(h), first.Header.Get(h))
				}
			}
		}
	}
	_, body := ta.do(t, http.MethodGet, "/v1/health/service/web?filter="+strings.ReplaceAll(`Service.ID == "web-2"`, " ", "%20"), nil)
	if strings.Contains(body, `"web-1"`) || !strings.Contains(body, `"web-2"`) {
		t.Errorf("?filter= after the cache was filled: %s", body)
	}
	_, body = ta.do(t, http.MethodGet, "/v1/catalog/service/web?near=_agent", nil)
	if !strings.Contains(body, `"web-1"`) || !strings.Contains(body, `"web-2"`) {
		t.Errorf("?near= after the cache was filled: %s", body)
	}
}
