package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/httpapi"
)

// noStore stands in for the KV store, which the catalog endpoints never
// touch; calling it panics.
type noStore struct{ httpapi.Store }

// newCatalogAPI serves the handler on a catalog of one agent, "node-1"
// at 10.0.0.1, without gossip.
func newCatalogAPI(t *testing.T, opts ...func(*catalog.Config)) (*testAPI, *catalog.Catalog) {
	t.Helper()
	return newCatalogAPIObserved(t, nil, opts...)
}

// newCatalogAPIObserved is newCatalogAPI with an observer of requests (see
// signal).
func newCatalogAPIObserved(t *testing.T, observe func(*http.Request), opts ...func(*catalog.Config)) (*testAPI, *catalog.Catalog) {
	t.Helper()
	cat := httpapi.NodeOneCatalog(t, opts...)
	self := testSelf()
	self.NodeName = "node-1"
	ta := serveConfig(t, httpapi.Config{Store: noStore{}, Self: self, Catalog: cat}, observe)
	return ta, cat
}

func TestAgentServiceRegisterAndCatalogReads(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	regs := []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Tags: []string{"v1", "primary"}, Port: 8080, Meta: map[string]string{"version": "1"},
			Check: &api.AgentServiceCheck{TTL: "30s"}},
		{ID: "web-2", Name: "web", Tags: []string{"v2"}, Port: 8081, Address: "10.0.0.9",
			Weights: &api.AgentWeights{Passing: 3, Warning: 1}},
		{Name: "db", Port: 5432},
	}
	for _, r := range regs {
		if err := agent.ServiceRegister(r); err != nil {
			t.Fatalf("ServiceRegister(%s): %v", r.Name, err)
		}
	}

	services, err := agent.Services()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*api.AgentService{
		"web-1": {ID: "web-1", Service: "web", Tags: []string{"v1", "primary"}, Port: 8080, Meta: map[string]string{"version": "1"},
			Weights: api.AgentWeights{Passing: 1, Warning: 1}, Datacenter: "dc1"},
		"web-2": {ID: "web-2", Service: "web", Tags: []string{"v2"}, Port: 8081, Address: "10.0.0.9", Meta: map[string]string{},
			Weights: api.AgentWeights{Passing: 3, Warning: 1}, Datacenter: "dc1"},
		"db": {ID: "db", Service: "db", Tags: []string{}, Port: 5432, Meta: map[string]string{},
			Weights: api.AgentWeights{Passing: 1, Warning: 1}, Datacenter: "dc1"},
	}
	if diff := cmp.Diff(want, services); diff != "" {
		t.Errorf("Agent().Services() (-want +got):\n%s", diff)
	}
	one, _, err := agent.Service("web-2", nil)
	if err != nil || one.Address != "10.0.0.9" {
		t.Errorf("Agent().Service(web-2) = %+v, %v", one, err)
	}
	if _, _, err := agent.Service("nope", nil); err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "unknown service ID: nope") {
		t.Errorf("Agent().Service(nope) = %v, want 404 unknown service ID", err)
	}

	names, meta, err := ta.client.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta.LastIndex == 0 || !meta.KnownLeader {
		t.Errorf("catalog services meta = %+v; want an index and a known leader", meta)
	}
	if diff := cmp.Diff(map[string][]string{"web": {"primary", "v1", "v2"}, "db": {}}, names); diff != "" {
		t.Errorf("Catalog().Services (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		tags []string
		want []string // service IDs
	}{
		{"all", nil, []string{"web-1", "web-2"}},
		{"one tag", []string{"v2"}, []string{"web-2"}},
		{"tags match without case", []string{"V1"}, []string{"web-1"}},
		{"every tag must match", []string{"v1", "primary"}, []string{"web-1"}},
		{"no match", []string{"v1", "v2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := ta.client.Catalog().ServiceMultipleTags("web", tt.tags, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ServiceID)
				if s.Node != "node-1" || s.Address != "10.0.0.1" || s.Datacenter != "dc1" {
					t.Errorf("instance %s: node %s at %s in %s; want node-1 at 10.0.0.1 in dc1", s.ServiceID, s.Node, s.Address, s.Datacenter)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("catalog service web ?tag=%v = %v, want %v", tt.tags, ids, tt.want)
			}
		})
	}

	nodes, _, err := ta.client.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 1 || nodes[0].Node != "node-1" || nodes[0].TaggedAddresses["lan"] != "10.0.0.1" {
		t.Errorf("Catalog().Nodes = %+v, %v", nodes, err)
	}
	node, _, err := ta.client.Catalog().Node("node-1", nil)
	if err != nil || node == nil || len(node.Services) != 3 || node.Services["db"].Port != 5432 {
		t.Errorf("Catalog().Node(node-1) = %+v, %v", node, err)
	}
	missing, _, err := ta.client.Catalog().Node("nobody", nil)
	if err != nil || missing != nil {
		t.Errorf("Catalog().Node(nobody) = %+v, %v; want nil, nil", missing, err)
	}
	dcs, err := ta.client.Catalog().Datacenters()
	if err != nil || !slices.Equal(dcs, []string{"dc1"}) {
		t.Errorf("Catalog().Datacenters = %v, %v", dcs, err)
	}

	// Deregistering removes the service and its check.
	if err := agent.ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := agent.ServiceDeregister("web-1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("deregistering twice = %v, want 404", err)
	}
	checks, err := agent.Checks()
	if err != nil || len(checks) != 0 {
		t.Errorf("Agent().Checks after deregistering web-1 = %v, %v; want none", checks, err)
	}
}

func TestTTLCheckTransitions(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	agent := ta.client.Agent()
	err := agent.ServiceRegister(&api.AgentServiceRegistration{
		Name: "web", Port: 80,
		Checks: api.AgentServiceChecks{
			{CheckID: "web-ttl", TTL: "30s", Notes: "the app says"},
			{CheckID: "web-ok", TTL: "1m", Status: api.HealthPassing},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	status := func() (string, string, string) {
		t.Helper()
		checks, err := agent.Checks()
		if err != nil {
			t.Fatal(err)
		}
		c := checks["web-ttl"]
		entries, _, err := ta.client.Health().Service("web", "", false, nil)
		if err != nil || len(entries) != 1 {
			t.Fatalf("Health().Service(web) = %v, %v", entries, err)
		}
		return c.Status, c.Output, entries[0].Checks.AggregatedStatus()
	}
	steps := []struct {
		name       string
		do         func() error
		wantStatus string
		wantOutput string
		wantAgg    string
	}{
		{"initial", func() error { return nil }, "critical", "", "critical"},
		{"pass", func() error { return agent.PassTTL("web-ttl", "all good") }, "passing", "all good", "passing"},
		{"warn", func() error { return agent.WarnTTL("web-ttl", "slow") }, "warning", "slow", "warning"},
		{"fail", func() error { return agent.FailTTL("web-ttl", "down") }, "critical", "down", "critical"},
		{"update", func() error { return agent.UpdateTTL("web-ttl", "back", api.HealthPassing) }, "passing", "back", "passing"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		st, out, agg := status()
		if st != s.wantStatus || out != s.wantOutput || agg != s.wantAgg {
			t.Errorf("%s: check %s %q, service %s; want %s %q, %s", s.name, st, out, agg, s.wantStatus, s.wantOutput, s.wantAgg)
		}
	}

	passing, _, err := ta.client.Health().Service("web", "", true, nil)
	if err != nil || len(passing) != 1 {
		t.Fatalf("?passing = %v, %v", passing, err)
	}
	got := passing[0]
	var ids []string
	for _, c := range got.Checks {
		ids = append(ids, c.CheckID+"="+c.Status)
	}
	if want := []string{"serfHealth=passing", "web-ok=passing", "web-ttl=passing"}; !slices.Equal(ids, want) {
		t.Errorf("checks of the web instance = %v, want %v", ids, want)
	}
	ttl := got.Checks[2]
	if ttl.Type != "ttl" || ttl.ServiceName != "web" || ttl.Notes != "the app says" || ttl.Node != "node-1" {
		t.Errorf("web-ttl = %+v", ttl)
	}

	errs := []struct {
		name string
		do   func() error
		want string
	}{
		{"unknown check", func() error { return agent.PassTTL("nope", "") }, `404 (Unknown check ID "nope". Ensure that the check ID is passed, not the check name.)`},
		{"bad status", func() error {
			resp, body := ta.do(t, http.MethodPut, "/v1/agent/check/update/web-ttl", strings.NewReader(`{"Status":"fine"}`))
			return httpErr(resp, body)
		}, `400 Invalid check status: 'fine'; use passing, warning or critical`},
	}
	for _, e := range errs {
		if err := e.do(); err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("%s: %v, want %q", e.name, err, e.want)
		}
	}
}

type statusError struct{ msg string }

func (e statusError) Error() string { return e.msg }

func httpErr(resp *http.Response, body string) error {
	if resp.StatusCode == 200 {
		return nil
	}
	return statusError{strings.TrimSuffix(resp.Status[:3], " ") + " " + body}
}

// TestBlockingHealthQuery: a blocking health query on web wakes on a
// change to web's check and not on a change to another service.
func TestBlockingHealthQuery(t *testing.T) {
	t.Parallel()
	observe, blocked := signal(blockingRead("/v1/health/service/web"))
	ta, cat := newCatalogAPIObserved(t, observe)
	agent := ta.client.Agent()
	for _, name := range []string{"web", "db"} {
		if err := agent.ServiceRegister(&api.AgentServiceRegistration{Name: name, Check: &api.AgentServiceCheck{CheckID: name, TTL: "1m"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, meta, err := ta.client.Health().Service("web", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	}
	done := make(chan result, 1)
	go func() {
		e, m, err := ta.client.Health().Service("web", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- result{e, m, err}
	}()
	// A change to db while the query waits: it keeps waiting (it would
	// otherwise answer with no passing web).
	waitSignal(t, blocked, 1, "the blocking query to arrive")
	if err := agent.PassTTL("db", ""); err != nil {
		t.Fatal(err)
	}
	if err := agent.PassTTL("web", "up"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.entries) != 1 || r.meta.LastIndex <= meta.LastIndex {
			t.Errorf("blocking query answered %d passing web at index %d (was %d); want 1 and a higher index", len(r.entries), r.meta.LastIndex, meta.LastIndex)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not wake within 10s of web's check passing")
	}

	// The index of db's answers moved with db; web's did not move with db.
	_, webMeta, _ := ta.client.Health().Service("web", "", false, nil)
	if err := agent.FailTTL("db", ""); err != nil {
		t.Fatal(err)
	}
	_, webMeta2, _ := ta.client.Health().Service("web", "", false, nil)
	if webMeta2.LastIndex != webMeta.LastIndex {
		t.Errorf("web's index moved %d -> %d on a change to db", webMeta.LastIndex, webMeta2.LastIndex)
	}

	// An index from the future (another agent, a restart) is answered at
	// once.
	start := time.Now()
	_, m, err := ta.client.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: cat.Index() + 1000, WaitTime: 30 * time.Second})
	if err != nil || time.Since(start) > 5*time.Second {
		t.Errorf("a query with an index ahead of the agent's took %v (err %v); want an answer at once", time.Since(start), err)
	}
	if m != nil && m.LastIndex > cat.Index() {
		t.Errorf("answer index %d is above the catalog's %d", m.LastIndex, cat.Index())
	}
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	tests := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"not json", "/v1/agent/service/register", `{`, 400, "Request decode failed: unexpected end of JSON input; send a service registration as JSON"},
		{"empty body", "/v1/agent/service/register", ``, 400, "Request decode failed: the body is empty; send a service registration as JSON"},
		{"no name", "/v1/agent/service/register", `{"Port": 80}`, 400, `Missing service name: give the service a "Name"`},
		{"bad port", "/v1/agent/service/register", `{"Name":"web","Port":65536}`, 400, `Invalid service port 65536 for service "web": a port is 0-65535 (0: none)`},
		{"bad interval", "/v1/agent/service/register", `{"Name":"web","Check":{"HTTP":"http://127.0.0.1/","Interval":"often"}}`, 400, `check "service:web": Interval="often": invalid duration; give one with a unit, such as "10s" or "1m30s"`},
		{"no check type", "/v1/agent/service/register", `{"Name":"web","Check":{"Interval":"10s"}}`, 400, `Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval: check "service:web" has none of TTL, HTTP, TCP and ScriptArgs`},
		{"tcp without interval", "/v1/agent/service/register", `{"Name":"web","Check":{"TCP":"127.0.0.1:80"}}`, 400, `check "service:web": TCP checks need an Interval, such as "10s"`},
		{"script disabled", "/v1/agent/service/register", `{"Name":"web","Check":{"ScriptArgs":["/bin/true"],"Interval":"10s"}}`, 400, `check "service:web": script checks are disabled on this agent; start it with -enable-script-checks to run ScriptArgs, or use an HTTP, TCP or TTL check`},
		{"h2ping", "/v1/agent/service/register", `{"Name":"web","Check":{"H2PING":"127.0.0.1:1","Interval":"10s"}}`, 400, `check "service:web": H2PING checks are not supported by cairn; use an HTTP, TCP, TTL or script (ScriptArgs) check`},
		{"unknown kind", "/v1/agent/service/register", `{"Name":"web","Kind":"sidecar"}`, 400, `Invalid service kind: "sidecar"; use connect-proxy, mesh-gateway, terminating-gateway, ingress-gateway, api-gateway, or none`},
		{"proxy without port", "/v1/agent/service/register", `{"Name":"web-proxy","Kind":"connect-proxy","Proxy":{"DestinationServiceName":"web"}}`, 400, `Port or SocketPath must be set for a connect-proxy`},
		{"other namespace", "/v1/agent/service/register", `{"Name":"web","Namespace":"ops"}`, 400, `service "web": Namespace "ops": cairn has one namespace and one partition, "default"; leave Namespace out`},
		{"check without name", "/v1/agent/check/register", `{"TTL":"10s"}`, 400, `Missing check name: give the check a "Name"`},
		{"check of unknown service", "/v1/agent/check/register", `{"Name":"c","TTL":"10s","ServiceID":"ghost"}`, 400, `check "c": ServiceID "ghost" is not a service of this agent; register the service first, or leave ServiceID out for a node check`},
		{"numeric duration", "/v1/agent/check/register", `{"Name":"n","TTL":10000000000}`, 200, ``},
		{"deregister unknown", "/v1/agent/service/deregister/ghost", ``, 404, `Unknown service ID "ghost". Ensure that the service ID is passed, not the service name.`},
		{"catalog: no node", "/v1/catalog/register", `{"Address":"1.2.3.4"}`, 400, `Must provide node: give the registration a "Node"`},
		{"catalog: no address", "/v1/catalog/register", `{"Node":"ext"}`, 400, `Must provide address: node "ext" needs an "Address"`},
		{"catalog: other dc", "/v1/catalog/register", `{"Node":"ext","Address":"1.2.3.4","Datacenter":"dc2"}`, 400, `Datacenter "dc2" is not this agent's "dc1", and cairn does not federate datacenters; leave Datacenter out`},
		{"catalog: own node", "/v1/catalog/deregister", `{"Node":"node-1"}`, 400, `node "node-1" is this agent's own node and cannot be deregistered; stop the agent with leave instead, or name a ServiceID or CheckID`},
		{"filter", "/v1/agent/services?filter=Service%20%3D%3D", ``, 400, "Failed to create boolean expression evaluator: 1:11 (10): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]"},
		{"filter with an unknown selector", "/v1/catalog/nodes?filter=Nmae%3D%3D%22node-1%22", ``, 400, `error finding value in datum: /Nmae at part 0: couldn't find key: struct field with name "Nmae"`},
		{"bad state", "/v1/health/state/broken", ``, 400, `Invalid state "broken": use /v1/health/state/ with any, passing, warning or critical`},
		{"bad node-meta", "/v1/catalog/nodes?node-meta=rack", ``, 400, `Invalid node-meta: ?node-meta="rack" is not key:value; give e.g. ?node-meta=rack:r1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPut
			if strings.Contains(tt.path, "?") || strings.HasPrefix(tt.path, "/v1/health") {
				method = http.MethodGet
			}
			resp, body := ta.do(t, method, tt.path, strings.NewReader(tt.body))
			if resp.StatusCode != tt.code || (tt.want != "" && body != tt.want) {
				t.Errorf("%s %s = %d %q\nwant %d %q", method, tt.path, resp.StatusCode, body, tt.code, tt.want)
			}
		})
	}
}

func TestCatalogRegisterExternalNode(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	cat := ta.client.Catalog()
	_, err := cat.Register(&api.CatalogRegistration{
		Node: "google", Address: "8.8.8.8", NodeMeta: map[string]string{"external": "true"},
		Service: &api.AgentService{ID: "search1", Service: "search", Port: 443, Tags: []string{"https"}},
		Checks: api.HealthChecks{
			{CheckID: "search-ok", Name: "search", Status: api.HealthPassing, ServiceID: "search1"},
			{CheckID: "ping", Name: "ping", Status: api.HealthWarning},
		},
	}, nil)
	if err != nil {
		t.Fatalf("Catalog().Register: %v", err)
	}
	got, _, err := cat.Service("search", "", &api.QueryOptions{NodeMeta: map[string]string{"external": "true"}})
	if err != nil || len(got) != 1 || got[0].Node != "google" || got[0].Address != "8.8.8.8" || got[0].ServicePort != 443 {
		t.Fatalf("catalog service search ?node-meta=external:true = %+v, %v", got, err)
	}
	if none, _, _ := cat.Service("search", "", &api.QueryOptions{NodeMeta: map[string]string{"external": "false"}}); len(none) != 0 {
		t.Errorf("?node-meta=external:false matched %d", len(none))
	}
	entries, _, err := ta.client.Health().Service("search", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatal(entries, err)
	}
	if agg := entries[0].Checks.AggregatedStatus(); agg != api.HealthWarning {
		t.Errorf("search's aggregated status = %s; want warning (the node's ping check)", agg)
	}
	if passing, _, _ := ta.client.Health().Service("search", "", true, nil); len(passing) != 0 {
		t.Errorf("?passing kept an instance with a warning check")
	}
	nodeChecks, _, err := ta.client.Health().Node("google", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range nodeChecks {
		ids = append(ids, c.CheckID)
	}
	if !slices.Equal(ids, []string{"ping", "search-ok"}) {
		t.Errorf("Health().Node(google) = %v", ids)
	}
	warning, _, err := ta.client.Health().State(api.HealthWarning, nil)
	if err != nil || len(warning) != 1 || warning[0].CheckID != "ping" {
		t.Errorf("Health().State(warning) = %+v, %v", warning, err)
	}
	svcChecks, _, err := ta.client.Health().Checks("search", nil)
	if err != nil || len(svcChecks) != 1 || svcChecks[0].CheckID != "search-ok" {
		t.Errorf("Health().Checks(search) = %+v, %v", svcChecks, err)
	}

	if _, err := cat.Deregister(&api.CatalogDeregistration{Node: "google", ServiceID: "search1"}, nil); err != nil {
		t.Fatal(err)
	}
	if left, _, _ := cat.Service("search", "", nil); len(left) != 0 {
		t.Errorf("search after deregistering its service: %v", left)
	}
	if _, err := cat.Deregister(&api.CatalogDeregistration{Node: "google"}, nil); err != nil {
		t.Fatal(err)
	}
	nodes, _, _ := cat.Nodes(nil)
	if len(nodes) != 1 || nodes[0].Node != "node-1" {
		t.Errorf("nodes after deregistering google: %+v", nodes)
	}
}

// TestHealthServiceShape pins the JSON of /v1/health/service against the
// official client's types: every field Consul fills, filled.
func TestHealthServiceShape(t *testing.T) {
	t.Parallel()
	ta, _ := newCatalogAPI(t)
	err := ta.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Port: 80, Tags: []string{"a"},
		Check: &api.AgentServiceCheck{CheckID: "web-http", HTTP: "http://127.0.0.1:1/health", Interval: "10s", Timeout: "2s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := ta.client.Health().Service("web", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatal(entries, err)
	}
	e := entries[0]
	want := &api.ServiceEntry{
		Node: &api.Node{ID: "0d1c8a1e-6a35-4b2c-9f0e-2f4b1c3d5e6f", Node: "node-1", Address: "10.0.0.1", Datacenter: "dc1",
			TaggedAddresses: map[string]string{"lan": "10.0.0.1", "lan_ipv4": "10.0.0.1", "wan": "10.0.0.1", "wan_ipv4": "10.0.0.1"},
			Meta:            map[string]string{"consul-network-segment": ""}},
		// Consul's health answers carry Proxy and Connect, empty, on
		// every service (consul/api's TestAPI_ClientTxnWrite pins it).
		Service: &api.AgentService{ID: "web-1", Service: "web", Tags: []string{"a"}, Port: 80, Meta: map[string]string{},
			Weights: api.AgentWeights{Passing: 1, Warning: 1},
			Proxy:   &api.AgentServiceConnectProxyConfig{}, Connect: &api.AgentServiceConnect{}},
		Checks: api.HealthChecks{
			{Node: "node-1", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", ServiceTags: []string{}},
			{Node: "node-1", CheckID: "web-http", Name: "Service 'web' check", Status: "critical", ServiceID: "web-1", ServiceName: "web",
				ServiceTags: []string{"a"}, Type: "http",
				Definition: api.HealthCheckDefinition{HTTP: "http://127.0.0.1:1/health",
					IntervalDuration: 10 * time.Second, TimeoutDuration: 2 * time.Second,
					Interval: api.ReadableDuration(10 * time.Second), Timeout: api.ReadableDuration(2 * time.Second)}},
		},
	}
	ignoreIndexes := cmpopts.IgnoreFields(api.Node{}, "CreateIndex", "ModifyIndex")
	ignoreSvc := cmpopts.IgnoreFields(api.AgentService{}, "CreateIndex", "ModifyIndex")
	ignoreChk := cmpopts.IgnoreFields(api.HealthCheck{}, "CreateIndex", "ModifyIndex")
	if diff := cmp.Diff(want, e, ignoreIndexes, ignoreSvc, ignoreChk); diff != "" {
		t.Errorf("health service entry (-want +got):\n%s", diff)
	}
	if e.Node.CreateIndex == 0 || e.Service.ModifyIndex == 0 || e.Checks[1].ModifyIndex == 0 {
		t.Errorf("indexes missing: node %d, service %d, check %d", e.Node.CreateIndex, e.Service.ModifyIndex, e.Checks[1].ModifyIndex)
	}
}
