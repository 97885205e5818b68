package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kvtest"
)

// newFullAPI serves the handler with a real kv server and a catalog of
// one agent, "node-1".
func newFullAPI(t *testing.T) *testAPI {
	t.Helper()
	cat := httpapi.NodeOneCatalog(t)
	self := testSelf()
	self.NodeName = "node-1"
	return serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: self, Catalog: cat}, nil)
}

// Every field of Consul's service definition, Connect's included, is
// kept and answered as registered, by the agent and by the catalog.
func TestServiceDefinitionRoundTrip(t *testing.T) {
	ta, _ := newCatalogAPI(t)
	ag := ta.client.Agent()
	proxy := &api.AgentServiceConnectProxyConfig{
		DestinationServiceName: "web", DestinationServiceID: "web-1",
		LocalServiceAddress: "127.0.0.1", LocalServicePort: 8080,
		Mode:      api.ProxyModeTransparent,
		Config:    map[string]interface{}{"protocol": "http", "connect_timeout_ms": float64(5000)},
		Upstreams: []api.Upstream{{DestinationName: "db", LocalBindPort: 9191}},
		Expose:    api.ExposeConfig{Checks: true, Paths: []api.ExposePath{{Path: "/health", LocalPathPort: 8080, ListenerPort: 21500, Protocol: "http"}}},
	}
	regs := []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Port: 8080, Connect: &api.AgentServiceConnect{Native: true},
			Locality: &api.Locality{Region: "eu-west-1", Zone: "eu-west-1a"}, EnableTagOverride: true,
			Weights: &api.AgentWeights{Passing: 3, Warning: 1}},
		{ID: "web-proxy", Name: "web-proxy", Kind: api.ServiceKindConnectProxy, Port: 21000, Proxy: proxy},
		{ID: "sock", Name: "sock", SocketPath: "/run/sock.sock"},
		{ID: "multi", Name: "multi", Ports: api.ServicePorts{{Name: "http", Port: 80, Default: true}, {Name: "admin", Port: 9000}}},
	}
	for _, r := range regs {
		if err := ag.ServiceRegister(r); err != nil {
			t.Fatalf("register %s: %v", r.ID, err)
		}
	}
	for _, r := range regs {
		got, _, err := ag.Service(r.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := &api.AgentService{
			Kind: r.Kind, ID: r.ID, Service: r.Name, Tags: []string{}, Meta: map[string]string{}, Port: r.Port,
			Ports: r.Ports, SocketPath: r.SocketPath, Weights: api.AgentWeights{Passing: 1, Warning: 1},
			EnableTagOverride: r.EnableTagOverride, Proxy: r.Proxy, Connect: r.Connect, Locality: r.Locality, Datacenter: "dc1",
		}
		if r.Weights != nil {
			want.Weights = *r.Weights
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(api.AgentService{}, "ContentHash")); diff != "" {
			t.Errorf("agent service %s (-want +got):\n%s", r.ID, diff)
		}
	}
	cs, _, err := ta.client.Catalog().Service("web-proxy", "", nil)
	if err != nil || len(cs) != 1 {
		t.Fatalf("catalog web-proxy = %v, %v", cs, err)
	}
	if diff := cmp.Diff(proxy, cs[0].ServiceProxy); diff != "" {
		t.Errorf("catalog ServiceProxy (-want +got):\n%s", diff)
	}
	// Connect-capable instances of web: its proxy and its native instance.
	conn, _, err := ta.client.Catalog().Connect("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range conn {
		ids = append(ids, c.ServiceID)
	}
	if diff := cmp.Diff([]string{"web-1", "web-proxy"}, ids, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("catalog connect web (-want +got):\n%s", diff)
	}
	filtered, _, err := ta.client.Catalog().Connect("web", "", &api.QueryOptions{Filter: "ServiceConnect.Native == true"})
	if err != nil || len(filtered) != 1 || filtered[0].ServiceID != "web-1" {
		t.Errorf("catalog connect web with filter = %v, %v; want web-1 alone", filtered, err)
	}
}

// A sidecar asked for with Connect.SidecarService is registered with its
// service and goes with it.
func TestSidecarService(t *testing.T) {
	ta, _ := newCatalogAPI(t)
	ag := ta.client.Agent()
	if err := ag.ServiceRegister(&api.AgentServiceRegistration{Name: "api", Port: 8000,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}}}); err != nil {
		t.Fatal(err)
	}
	svcs, _ := ag.Services()
	sc, ok := svcs["api-sidecar-proxy"]
	if !ok || sc.Kind != api.ServiceKindConnectProxy || sc.Proxy == nil || sc.Proxy.DestinationServiceID != "api" || sc.Proxy.LocalServicePort != 8000 {
		t.Fatalf("services = %v; want api-sidecar-proxy proxying for api:8000", svcs)
	}
	if err := ag.ServiceDeregister("api"); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := ag.Services(); len(svcs) != 0 {
		t.Errorf("services after deregistering api = %v; want none (the sidecar goes with it)", svcs)
	}
}

// /v1/agent/health/service/id|name judge the local instances, and
// maintenance mode turns them critical until it ends.
func TestAgentHealthAndMaintenance(t *testing.T) {
	ta, _ := newCatalogAPI(t)
	ag := ta.client.Agent()
	if err := ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web",
		Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		t.Helper()
		s, info, err := ag.AgentHealthServiceByID("web-1")
		if err != nil || info == nil {
			t.Fatalf("health by id: %v %v", info, err)
		}
		s2, infos, err := ag.AgentHealthServiceByName("web")
		if err != nil || len(infos) != 1 || s2 != s {
			t.Fatalf("health by name = %s %v %v; want %s and one instance", s2, infos, err, s)
		}
		return s
	}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"registered passing", func() error { return nil }, api.HealthPassing},
		{"service maintenance", func() error { return ag.EnableServiceMaintenance("web-1", "deploy") }, api.HealthCritical},
		{"service maintenance ends", func() error { return ag.DisableServiceMaintenance("web-1") }, api.HealthPassing},
		{"node maintenance", func() error { return ag.EnableNodeMaintenance("") }, api.HealthCritical},
		{"node maintenance ends", func() error { return ag.DisableNodeMaintenance() }, api.HealthPassing},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := status(); got != s.want {
			t.Errorf("%s: health = %s, want %s", s.name, got, s.want)
		}
	}
	if s, _, err := ag.AgentHealthServiceByID("ghost"); err != nil || s != api.HealthCritical {
		t.Errorf("health of an unknown service = %q, %v; want critical (404) without an error", s, err)
	}
	resp, _ := ta.do(t, http.MethodPut, "/v1/agent/service/maintenance/ghost?enable=true", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("maintenance of an unknown service = %d, want 404", resp.StatusCode)
	}
}

// ?hash= blocks until the service changes.
func TestAgentServiceContentHashBlocking(t *testing.T) {
	ta, _ := newCatalogAPI(t)
	ag := ta.client.Agent()
	reg := &api.AgentServiceRegistration{ID: "web", Name: "web", Port: 80}
	if err := ag.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	svc, qm, err := ag.Service("web", nil)
	if err != nil || svc.ContentHash == "" || qm.LastContentHash != svc.ContentHash {
		t.Fatalf("service = %+v, meta %+v, %v; want a ContentHash in the body and the header", svc, qm, err)
	}
	done := make(chan *api.AgentService, 1)
	go func() {
		s, _, _ := ag.Service("web", &api.QueryOptions{WaitHash: qm.LastContentHash, WaitTime: time.Minute})
		done <- s
	}()
	select {
	case s := <-done:
		t.Fatalf("blocking read answered %+v before any change", s)
	case <-time.After(200 * time.Millisecond): // it must still be waiting; the change below wakes it
	}
	reg.Port = 81
	if err := ag.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-done:
		if s == nil || s.Port != 81 || s.ContentHash == svc.ContentHash {
			t.Errorf("after the change: %+v; want port 81 and a new hash", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("blocking read did not answer within 30s of the change")
	}
}

// /v1/txn takes node, service and check operations beside KV, and is all
// or nothing: a KV failure undoes the catalog writes.
func TestTxnCatalogOperations(t *testing.T) {
	ta := newFullAPI(t)
	txn := ta.client.Txn()
	write := api.TxnOps{
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "ext", Address: "10.1.1.1", Meta: map[string]string{"k": "v"}}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "ext", Service: api.AgentService{ID: "db", Service: "db", Port: 5432}}},
		{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: "ext", CheckID: "db-alive", ServiceID: "db", Status: api.HealthPassing,
			Definition: api.HealthCheckDefinition{TCP: "10.1.1.1:5432", IntervalDuration: 10 * time.Second}}}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "a", Value: []byte("1")}},
	}
	ok, ret, _, err := txn.Txn(write, nil)
	if err != nil || !ok || len(ret.Results) != 4 {
		t.Fatalf("write txn = %v %+v %v; want 4 results", ok, ret, err)
	}
	if ret.Results[0].Node.Meta["k"] != "v" || ret.Results[1].Service.Port != 5432 || ret.Results[2].Check.Type != "tcp" || ret.Results[3].KV.Key != "a" {
		t.Errorf("results %+v %+v %+v %+v", ret.Results[0].Node, ret.Results[1].Service, ret.Results[2].Check, ret.Results[3].KV)
	}

	// The KV check fails: the service write before it is undone.
	failing := api.TxnOps{
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "ext", Service: api.AgentService{ID: "cache", Service: "cache", Port: 6379}}},
		{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: "a"}},
	}
	ok, ret, _, err = txn.Txn(failing, nil)
	if err != nil || ok || len(ret.Errors) != 1 || ret.Errors[0].OpIndex != 1 {
		t.Fatalf("failing txn = %v %+v %v; want one error, at operation 1", ok, ret, err)
	}
	node, _, err := ta.client.Catalog().Node("ext", nil)
	if err != nil || node == nil {
		t.Fatal(err)
	}
	if _, ok := node.Services["cache"]; ok || node.Services["db"] == nil {
		t.Errorf("services of ext after the failed txn = %v; want db only", node.Services)
	}

	// Gets of what does not exist fail, naming it.
	ok, ret, _, err = txn.Txn(api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeGet, Node: api.Node{Node: "ghost"}}}}, nil)
	if err != nil || ok || len(ret.Errors) != 1 || ret.Errors[0].What != `node "ghost" doesn't exist` {
		t.Errorf("get of a missing node = %v %+v %v", ok, ret, err)
	}
}
