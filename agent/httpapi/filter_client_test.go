package httpapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestFilterWithOfficialClient: QueryOptions.Filter narrows health,
// catalog and agent answers.
func TestFilterWithOfficialClient(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Tags: []string{"primary"}, Port: 8080, Meta: map[string]string{"version": "1"}},
		{ID: "web-2", Name: "web", Tags: []string{"canary"}, Port: 8081, Meta: map[string]string{"version": "2"}},
	} {
		if err := agent.ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(entries []*api.ServiceEntry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, e.Service.ID)
		}
		slices.Sort(out)
		return out
	}
	entries, _, err := ta.client.Health().Service("web", "", false, &api.QueryOptions{Filter: `Service.Tags contains canary`})
	if err != nil || !slices.Equal(ids(entries), []string{"web-2"}) {
		t.Errorf("health filter = %v, %v; want [web-2]", ids(entries), err)
	}
	entries, _, err = ta.client.Health().Service("web", "", false, &api.QueryOptions{Filter: `Service.Meta.version != "2"`})
	if err != nil || !slices.Equal(ids(entries), []string{"web-1"}) {
		t.Errorf("health filter on meta = %v, %v; want [web-1]", ids(entries), err)
	}
	svcs, _, err := ta.client.Catalog().Service("web", "", &api.QueryOptions{Filter: `ServicePort == 8080`})
	if err != nil || len(svcs) != 1 || svcs[0].ServiceID != "web-1" {
		t.Errorf("catalog filter = %+v, %v; want web-1", svcs, err)
	}
	list, _, err := ta.client.Catalog().NodeServiceList("node-1", &api.QueryOptions{Filter: `Tags contains primary`})
	if err != nil || len(list.Services) != 1 || list.Services[0].ID != "web-1" {
		t.Errorf("node-services filter = %+v, %v; want web-1", list, err)
	}
	local, err := agent.ServicesWithFilter(`Port == 8081`)
	if err != nil || len(local) != 1 || local["web-2"] == nil {
		t.Errorf("agent services filter = %v, %v; want web-2", local, err)
	}
	_, _, err = ta.client.Health().Service("web", "", false, &api.QueryOptions{Filter: `Service.Tags contains`})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "Failed to create boolean expression evaluator") {
		t.Errorf("bad filter = %v, want a 400 naming the evaluator", err)
	}
}
