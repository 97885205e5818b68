package httpapi_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestFilterWithOfficialClient: QueryOptions.Filter narrows every answer
// that Consul filters, with go-bexpr's semantics; an unknown selector or a
// value of the wrong type is a 400 with bexpr's text (Consul's), never a
// silently empty answer.
func TestFilterWithOfficialClient(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Tags: []string{"primary"}, Port: 8080, Meta: map[string]string{"version": "1"},
			Check: &api.AgentServiceCheck{CheckID: "web-1-ttl", TTL: "1h", Status: "passing"}},
		{ID: "web-2", Name: "web", Tags: []string{"canary"}, Port: 8081, Meta: map[string]string{"version": "2"},
			Check: &api.AgentServiceCheck{CheckID: "web-2-ttl", TTL: "1h"}},
		{ID: "db-1", Name: "db", Tags: []string{"primary"}, Port: 5432},
	} {
		if err := agent.ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}

	type read func(q *api.QueryOptions) ([]string, error)
	sorted := func(s []string) []string { slices.Sort(s); return s }
	entryIDs := func(es []*api.ServiceEntry, err error) ([]string, error) {
		var out []string
		for _, e := range es {
			out = append(out, e.Service.ID)
		}
		return sorted(out), err
	}
	checkIDs := func(cs api.HealthChecks, err error) ([]string, error) {
		var out []string
		for _, c := range cs {
			out = append(out, c.CheckID)
		}
		return sorted(out), err
	}
	endpoints := map[string]read{
		"/v1/catalog/nodes": func(q *api.QueryOptions) ([]string, error) {
			ns, _, err := ta.client.Catalog().Nodes(q)
			var out []string
			for _, n := range ns {
				out = append(out, n.Node)
			}
			return out, err
		},
		"/v1/catalog/services": func(q *api.QueryOptions) ([]string, error) {
			m, _, err := ta.client.Catalog().Services(q)
			var out []string
			for name, tags := range m {
				out = append(out, name+"="+strings.Join(tags, ","))
			}
			return sorted(out), err
		},
		"/v1/catalog/service/web": func(q *api.QueryOptions) ([]string, error) {
			ss, _, err := ta.client.Catalog().Service("web", "", q)
			var out []string
			for _, s := range ss {
				out = append(out, s.ServiceID)
			}
			return sorted(out), err
		},
		"/v1/catalog/node/node-1": func(q *api.QueryOptions) ([]string, error) {
			n, _, err := ta.client.Catalog().Node("node-1", q)
			if n == nil {
				return nil, err
			}
			return sorted(slices.Collect(maps.Keys(n.Services))), err
		},
		"/v1/catalog/node-services/node-1": func(q *api.QueryOptions) ([]string, error) {
			l, _, err := ta.client.Catalog().NodeServiceList("node-1", q)
			if l == nil {
				return nil, err
			}
			var out []string
			for _, s := range l.Services {
				out = append(out, s.ID)
			}
			return sorted(out), err
		},
		"/v1/health/service/web": func(q *api.QueryOptions) ([]string, error) {
			es, _, err := ta.client.Health().Service("web", "", false, q)
			return entryIDs(es, err)
		},
		"/v1/health/checks/web": func(q *api.QueryOptions) ([]string, error) {
			cs, _, err := ta.client.Health().Checks("web", q)
			return checkIDs(cs, err)
		},
		"/v1/health/node/node-1": func(q *api.QueryOptions) ([]string, error) {
			cs, _, err := ta.client.Health().Node("node-1", q)
			return checkIDs(cs, err)
		},
		"/v1/health/state/any": func(q *api.QueryOptions) ([]string, error) {
			cs, _, err := ta.client.Health().State("any", q)
			return checkIDs(cs, err)
		},
		"/v1/agent/services": func(q *api.QueryOptions) ([]string, error) {
			m, err := agent.ServicesWithFilterOpts(q.Filter, q)
			return sorted(slices.Collect(maps.Keys(m))), err
		},
		"/v1/agent/checks": func(q *api.QueryOptions) ([]string, error) {
			m, err := agent.ChecksWithFilterOpts(q.Filter, q)
			return sorted(slices.Collect(maps.Keys(m))), err
		},
	}

	tests := []struct {
		endpoint, filter string
		want             []string
		wantErr          string // the 400's body; "" for none
	}{
		{endpoint: "/v1/catalog/nodes", filter: `Node == "node-1"`, want: []string{"node-1"}},
		{endpoint: "/v1/catalog/nodes", filter: `Meta.rack == r1`, want: nil},
		{endpoint: "/v1/catalog/nodes", filter: `Nmae == "node-1"`,
			wantErr: `error finding value in datum: /Nmae at part 0: couldn't find key: struct field with name "Nmae"`},
		{endpoint: "/v1/catalog/services", filter: `ServiceTags contains primary`, want: []string{"db=primary", "web=primary"}},
		{endpoint: "/v1/catalog/services", filter: `ServicePort == 8081`, want: []string{"web=canary"}},
		{endpoint: "/v1/catalog/services", filter: `ServiceNmae == web`,
			wantErr: `error finding value in datum: /ServiceNmae at part 0: couldn't find key: struct field with name "ServiceNmae"`},
		{endpoint: "/v1/catalog/service/web", filter: `ServicePort == 8080`, want: []string{"web-1"}},
		{endpoint: "/v1/catalog/service/web", filter: `ServiceMeta.version != "2"`, want: []string{"web-1"}},
		{endpoint: "/v1/catalog/service/web", filter: `ServicePort == web`,
			wantErr: `error getting match value in expression: strconv.ParseInt: parsing "web": invalid syntax`},
		{endpoint: "/v1/catalog/node/node-1", filter: `Service == web`, want: []string{"web-1", "web-2"}},
		{endpoint: "/v1/catalog/node/node-1", filter: `Sevrice == web`,
			wantErr: `error finding value in datum: /Sevrice at part 0: couldn't find key: struct field with name "Sevrice"`},
		{endpoint: "/v1/catalog/node-services/node-1", filter: `Tags contains primary`, want: []string{"db-1", "web-1"}},
		{endpoint: "/v1/health/service/web", filter: `Service.Tags contains canary`, want: []string{"web-2"}},
		{endpoint: "/v1/health/service/web", filter: `any Checks as c { c.Status == critical }`, want: []string{"web-2"}},
		{endpoint: "/v1/health/service/web", filter: `ServiceNmae == "web"`,
			wantErr: `error finding value in datum: /ServiceNmae at part 0: couldn't find key: struct field with name "ServiceNmae"`},
		{endpoint: "/v1/health/checks/web", filter: `Status == passing`, want: []string{"web-1-ttl"}},
		{endpoint: "/v1/health/checks/web", filter: `Stauts == passing`,
			wantErr: `error finding value in datum: /Stauts at part 0: couldn't find key: struct field with name "Stauts"`},
		{endpoint: "/v1/health/node/node-1", filter: `ServiceName == web and Status == critical`, want: []string{"web-2-ttl"}},
		{endpoint: "/v1/health/state/any", filter: `ServiceID == "web-1"`, want: []string{"web-1-ttl"}},
		{endpoint: "/v1/health/state/any", filter: `ServiceTags == primary`,
			wantErr: `unable to find suitable primitive comparison function for matching`},
		{endpoint: "/v1/agent/services", filter: `Port == 8081`, want: []string{"web-2"}},
		{endpoint: "/v1/agent/services", filter: `Prot == 8081`,
			wantErr: `error finding value in datum: /Prot at part 0: couldn't find key: struct field with name "Prot"`},
		{endpoint: "/v1/agent/checks", filter: `ServiceID == "web-2"`, want: []string{"web-2-ttl"}},
		{endpoint: "/v1/agent/checks", filter: `Service == web`,
			wantErr: `error finding value in datum: /Service at part 0: couldn't find key: struct field with name "Service"`},
		// A filter that does not parse is refused before anything is read.
		{endpoint: "/v1/health/service/web", filter: `Service.Tags contains`,
			wantErr: `Failed to create boolean expression evaluator: 1:22 (21): no match found, expected: [ \t\r\n]`},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.endpoint+"?filter="+tc.filter, func(t *testing.T) {
			covered[tc.endpoint] = true
			got, err := endpoints[tc.endpoint](&api.QueryOptions{Filter: tc.filter})
			if tc.wantErr != "" {
				want := "Unexpected response code: 400 (" + tc.wantErr + ")"
				if err == nil || err.Error() != want {
					t.Errorf("GET %s?filter=%s = %v, %v\nwant error %s", tc.endpoint, tc.filter, got, err, want)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("GET %s?filter=%s = %q, %v; want %q", tc.endpoint, tc.filter, got, err, tc.want)
			}
		})
	}
	for e := range endpoints {
		if !covered[e] {
			t.Errorf("no test case filters %s", e)
		}
	}
}
