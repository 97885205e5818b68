package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"
)

// registerInstances registers web instances on a dev agent: tags, meta
// and health vary so that each filter of a prepared query keeps a
// different set.
func registerInstances(t *testing.T, c *api.Client) {
	t.Helper()
	regs := []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Port: 8001, Tags: []string{"v1", "primary"}, Meta: map[string]string{"zone": "a"}},
		{ID: "web-2", Name: "web", Port: 8002, Tags: []string{"v2"}, Meta: map[string]string{"zone": "b"},
			Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthWarning, CheckID: "web-2-ttl"}},
		{ID: "web-3", Name: "web", Port: 8003, Tags: []string{"v2"},
			Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthCritical, CheckID: "web-3-ttl"}},
		{ID: "api-1", Name: "api-eu", Port: 9001},
	}
	for _, r := range regs {
		if err := c.Agent().ServiceRegister(r); err != nil {
			t.Fatalf("ServiceRegister(%s): %v", r.ID, err)
		}
	}
}

func ids(resp *api.PreparedQueryExecuteResponse) []string {
	var out []string
	for _, n := range resp.Nodes {
		out = append(out, n.Service.ID)
	}
	slices.Sort(out)
	return out
}

func TestPreparedQueryExecute(t *testing.T) {
	r := start(t, devConfig())
	c := r.client
	registerInstances(t, c)
	pq := c.PreparedQuery()

	tests := []struct {
		name string
		svc  api.ServiceQuery
		want []string
	}{
		{"healthy: warning counts", api.ServiceQuery{Service: "web"}, []string{"web-1", "web-2"}},
		{"only passing", api.ServiceQuery{Service: "web", OnlyPassing: true}, []string{"web-1"}},
		{"ignored check", api.ServiceQuery{Service: "web", IgnoreCheckIDs: []string{"web-3-ttl"}}, []string{"web-1", "web-2", "web-3"}},
		{"tag", api.ServiceQuery{Service: "web", Tags: []string{"V2"}}, []string{"web-2"}},
		{"negated tag", api.ServiceQuery{Service: "web", Tags: []string{"!primary"}}, []string{"web-2"}},
		{"service meta", api.ServiceQuery{Service: "web", ServiceMeta: map[string]string{"zone": "a"}}, []string{"web-1"}},
		{"node meta that no node has", api.ServiceQuery{Service: "web", NodeMeta: map[string]string{"rack": "r9"}}, nil},
		// cairn has one datacenter: with no healthy instance, a failover
		// has nowhere to go, and the answer is Consul's when no failover
		// datacenter exists (unknown ones are skipped): no nodes, the
		// local datacenter, Failovers 0.
		{"failover with no other datacenter", api.ServiceQuery{Service: "web", Tags: []string{"v9"},
			Failover: api.QueryFailoverOptions{NearestN: 3, Datacenters: []string{"dc2", "dc3"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, _, err := pq.Create(&api.PreparedQueryDefinition{Service: tc.svc, DNS: api.QueryDNSOptions{TTL: "10s"}}, nil)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			resp, _, err := pq.Execute(id, nil)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got := ids(resp); !slices.Equal(got, tc.want) {
				t.Errorf("Execute(%+v) = %v, want %v", tc.svc, got, tc.want)
			}
			if resp.Service != "web" || resp.Datacenter != "dc1" || resp.DNS.TTL != "10s" || resp.Failovers != 0 {
				t.Errorf("Execute answer = %+v; want Service web, Datacenter dc1, DNS TTL 10s, Failovers 0", resp)
			}
		})
	}

	// The client has no ?limit= option; the CLI and DNS users send it.
	var limited api.PreparedQueryExecuteResponse
	getJSON(t, r, "/v1/query/"+mustCreate(t, pq, &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web"}})+"/execute?limit=1", &limited)
	if len(limited.Nodes) != 1 {
		t.Errorf("execute?limit=1 answered %d instances, want 1", len(limited.Nodes))
	}
}

func mustCreate(t *testing.T, pq *api.PreparedQuery, def *api.PreparedQueryDefinition) string {
	t.Helper()
	id, _, err := pq.Create(def, nil)
	if err != nil {
		t.Fatalf("Create(%+v): %v", def, err)
	}
	return id
}

func TestPreparedQueryLifecycle(t *testing.T) {
	r := start(t, devConfig())
	c := r.client
	registerInstances(t, c)
	pq := c.PreparedQuery()

	id := mustCreate(t, pq, &api.PreparedQueryDefinition{Name: "my-web", Service: api.ServiceQuery{Service: "web", OnlyPassing: true}})
	got, _, err := pq.Get(id, nil)
	if err != nil || len(got) != 1 || got[0].Name != "my-web" || got[0].ID != id {
		t.Fatalf("Get(%s) = %+v, %v", id, got, err)
	}
	// By name as well as by ID.
	resp, _, err := pq.Execute("my-web", nil)
	if err != nil || !slices.Equal(ids(resp), []string{"web-1"}) {
		t.Fatalf("Execute(my-web) = %v, %v", resp, err)
	}
	// Update: another service, same name.
	if _, err := pq.Update(&api.PreparedQueryDefinition{ID: id, Name: "my-web", Service: api.ServiceQuery{Service: "api-eu"}}, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
	resp, _, err = pq.Execute("my-web", nil)
	if err != nil || !slices.Equal(ids(resp), []string{"api-1"}) {
		t.Fatalf("Execute(my-web) after Update = %v, %v", resp, err)
	}
	list, _, err := pq.List(nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want 1", list, err)
	}

	errTests := []struct {
		name string
		def  *api.PreparedQueryDefinition
		want string
	}{
		{"name taken", &api.PreparedQueryDefinition{Name: "my-web", Service: api.ServiceQuery{Service: "web"}}, "aliases an existing query"},
		{"no service", &api.PreparedQueryDefinition{Name: "x"}, "Must provide a Service name to query"},
		{"bad TTL", &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web"}, DNS: api.QueryDNSOptions{TTL: "soon"}}, "Bad DNS TTL"},
		{"bad template type", &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web"}, Template: api.QueryTemplate{Type: "glob"}}, "Bad Template.Type"},
		{"bad regexp", &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web"}, Template: api.QueryTemplate{Type: "name_prefix_match", Regexp: "("}}, "Bad Regexp"},
		{"bad variable", &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "${nope}"}, Template: api.QueryTemplate{Type: "name_prefix_match"}}, "unknown variable"},
		{"unknown session", &api.PreparedQueryDefinition{Service: api.ServiceQuery{Service: "web"}, Session: "1b4a1ac4-0000-4000-8000-000000000000"}, "invalid session"},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pq.Create(tc.def, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create(%+v) = %v, want an error containing %q", tc.def, err, tc.want)
			}
		})
	}

	if _, err := pq.Delete(id, nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := pq.Get(id, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Get after Delete = %v, want 404", err)
	}
	if _, _, err := pq.Execute("my-web", nil); err == nil || !strings.Contains(err.Error(), "Query not found") {
		t.Errorf("Execute after Delete = %v, want Query not found", err)
	}
	// The name is free again.
	mustCreate(t, pq, &api.PreparedQueryDefinition{Name: "my-web", Service: api.ServiceQuery{Service: "web"}})
}

func TestPreparedQueryTemplates(t *testing.T) {
	r := start(t, devConfig())
	c := r.client
	registerInstances(t, c)
	pq := c.PreparedQuery()
	mustCreate(t, pq, &api.PreparedQueryDefinition{
		Name:     "",
		Template: api.QueryTemplate{Type: "name_prefix_match"},
		Service:  api.ServiceQuery{Service: "${name.full}"},
	})
	mustCreate(t, pq, &api.PreparedQueryDefinition{
		Name:     "geo-",
		Template: api.QueryTemplate{Type: "name_prefix_match", Regexp: "^geo-(.+?)-(.+)$", RemoveEmptyTags: true},
		Service:  api.ServiceQuery{Service: "${match(2)}-${match(1)}", Tags: []string{"${match(3)}"}},
	})

	tests := []struct{ name, service string }{
		{"web", "web"},           // the catch-all
		{"geo-eu-api", "api-eu"}, // the longer prefix, with the regexp's groups
	}
	for _, tc := range tests {
		resp, _, err := pq.Execute(tc.name, nil)
		if err != nil {
			t.Fatalf("Execute(%s): %v", tc.name, err)
		}
		if resp.Service != tc.service || len(resp.Nodes) == 0 {
			t.Errorf("Execute(%s) = service %q with %d nodes, want %q with some", tc.name, resp.Service, len(resp.Nodes), tc.service)
		}
	}
	var exp struct{ Query api.PreparedQueryDefinition }
	getJSON(t, r, "/v1/query/geo-eu-api/explain", &exp)
	if exp.Query.Service.Service != "api-eu" || len(exp.Query.Service.Tags) != 0 {
		t.Errorf("Explain(geo-eu-api) = %+v; want service api-eu and the empty tag removed", exp.Query.Service)
	}
}

// getJSON GETs path on the agent's HTTP API and decodes the 200 answer.
func getJSON(t *testing.T, r *running, path string, out any) {
	t.Helper()
	resp, err := http.Get("http://" + r.HTTPAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
}

// TestPreparedQueryDNS asks <query>.query.consul with a real DNS client:
// the query's own health rule (warning counts unless OnlyPassing), its
// DNS TTL, the datacenter form, templates, and NXDOMAIN for no query.
func TestPreparedQueryDNS(t *testing.T) {
	cfg := devConfig()
	cfg.Ports.DNS = 0
	r := start(t, cfg)
	c := r.client
	for i, st := range []string{api.HealthPassing, api.HealthWarning} {
		id := fmt.Sprintf("web-%d", i+1)
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "web", Address: fmt.Sprintf("127.0.0.%d", 21+i), Port: 8001 + i,
			Check: &api.AgentServiceCheck{CheckID: id, TTL: "1h", Status: st},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pq := c.PreparedQuery()
	mustCreate(t, pq, &api.PreparedQueryDefinition{Name: "myq", Service: api.ServiceQuery{Service: "web"}, DNS: api.QueryDNSOptions{TTL: "7s"}})
	mustCreate(t, pq, &api.PreparedQueryDefinition{Name: "strict", Service: api.ServiceQuery{Service: "web", OnlyPassing: true}})
	mustCreate(t, pq, &api.PreparedQueryDefinition{Name: "", Template: api.QueryTemplate{Type: "name_prefix_match"}, Service: api.ServiceQuery{Service: "${name.full}"}})

	dnsAddr := r.DNSAddr().String()
	tests := []struct {
		question string
		qtype    uint16
		rcode    int
		answer   string
		ttl      uint32
	}{
		{"myq.query.consul", mdns.TypeA, mdns.RcodeSuccess, "A 127.0.0.21, A 127.0.0.22", 7},
		{"myq.query.dc1.consul", mdns.TypeSRV, mdns.RcodeSuccess, "SRV 8001 7f000015.addr.dc1.consul., SRV 8002 7f000016.addr.dc1.consul.", 7},
		{"strict.query.cluster", mdns.TypeA, mdns.RcodeSuccess, "A 127.0.0.21", 0},
		{"web.query.consul", mdns.TypeA, mdns.RcodeSuccess, "A 127.0.0.21, A 127.0.0.22", 0},
		{"nosuchservice.query.consul", mdns.TypeA, mdns.RcodeNameError, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.question, func(t *testing.T) {
			m, err := dnsQuery(dnsAddr, tt.question, tt.qtype)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tt.rcode || records(m.Answer) != tt.answer {
				t.Fatalf("%s = %s [%s], want %s [%s]", tt.question, mdns.RcodeToString[m.Rcode], records(m.Answer), mdns.RcodeToString[tt.rcode], tt.answer)
			}
			for _, rr := range m.Answer {
				if rr.Header().Ttl != tt.ttl {
					t.Errorf("%s: TTL %d, want %d", rr.Header().Name, rr.Header().Ttl, tt.ttl)
				}
			}
		})
	}
}
