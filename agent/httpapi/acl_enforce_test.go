package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/preparedquery"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/hashicorp/consul/api"
)

// ---- a rule-table Authorizer and Resolver (the real ones are agent/acl's) ----

// rule grants (or, with acl.Deny, takes) access on one name, or on every
// name under a prefix, as Consul's key/key_prefix rules do.
type rule struct {
	res    acl.Resource
	name   string
	prefix bool
	access acl.Access
}

func (r rule) String() string {
	kind := string(r.res)
	if r.prefix {
		kind += "_prefix"
	}
	lvl := map[acl.Access]string{acl.Deny: "deny", acl.Read: "read", acl.List: "list", acl.Write: "write"}[r.access]
	if r.res == acl.Operator || r.res == acl.ACL || r.res == acl.Keyring || r.res == acl.Mesh {
		return fmt.Sprintf("%s = %q", r.res, lvl)
	}
	return fmt.Sprintf("%s %q { policy = %q }", kind, r.name, lvl)
}

// fakeAuthz is one token's rules with default deny: the exact rule for a
// name wins over prefix rules, the longest prefix over shorter ones.
type fakeAuthz struct {
	accessor string
	rules    []rule
}

func (a fakeAuthz) AccessorID() string { return a.accessor }

func (a fakeAuthz) match(r acl.Resource, name string) (acl.Access, bool) {
	best, bestLen, exact := acl.Unset, -1, false
	for _, ru := range a.rules {
		if ru.res != r {
			continue
		}
		switch {
		case !ru.prefix && ru.name == name:
			best, exact = ru.access, true
		case ru.prefix && strings.HasPrefix(name, ru.name) && !exact && len(ru.name) > bestLen:
			best, bestLen = ru.access, len(ru.name)
		}
	}
	return best, best != acl.Unset
}

func (a fakeAuthz) Allowed(r acl.Resource, name string, want acl.Access) bool {
	got, ok := a.match(r, name)
	return ok && got != acl.Deny && got >= want
}

func (a fakeAuthz) AllowedUnder(r acl.Resource, prefix string, want acl.Access) bool {
	if !a.Allowed(r, prefix, want) {
		return false
	}
	for _, ru := range a.rules {
		if ru.res == r && strings.HasPrefix(ru.name, prefix) && (ru.access == acl.Deny || ru.access < want) {
			return false
		}
	}
	return true
}

// fakeResolver maps secrets to rule tables; "" is the anonymous token
// (no rules: default deny), an unknown secret is acl.ErrNotFound.
type fakeResolver struct {
	mu      sync.Mutex
	tokens  map[string]fakeAuthz
	resolve int // how many times Authorizer was called
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{tokens: map[string]fakeAuthz{"": {accessor: "00000000-0000-0000-0000-000000000002"}}}
}

func (f *fakeResolver) set(secret, accessor string, rules ...rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[secret] = fakeAuthz{accessor: accessor, rules: rules}
}

func (f *fakeResolver) Authorizer(_ context.Context, secret string) (acl.Authorizer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolve++
	a, ok := f.tokens[secret]
	if !ok {
		return nil, acl.ErrNotFound
	}
	return a, nil
}

// ---- the endpoint table ----

// How an endpoint answers a token without the permission.
const (
	refuses = "403"      // 403, Consul's text naming the first rule
	filters = "filtered" // 200 (or Consul's 404 for an empty KV list), less what the token may not read, with the header
	txnFail = "409"      // /v1/txn: 409, the refusal as the operation's error
	open    = "none"     // no check at all
)

type aclCase struct {
	method, path, body string
	need               []rule // what the endpoint needs, in the order it checks
	denied             string // refuses, filters, txnFail or open
	// deniedStatus is the status of a filtered answer (200 unless set);
	// hides is a string that the allowed answer has and the filtered one
	// must not.
	deniedStatus int
	hides        string
	// setup runs before each variant; it may return a replacement for
	// "{}" in path.
	setup func(t *testing.T, e *aclEnv) string
}

func (c aclCase) name() string { return c.method + " " + c.path }

// aclEnv is one set of backends served twice: with ACLs (the fake
// resolver) and without.
type aclEnv struct {
	on, off *testAPI
	res     *fakeResolver
	store   *kv.Server
	cat     *catalog.Catalog
	queries *preparedquery.Registry
}

type fakeSnapshots struct{}

func (fakeSnapshots) Save(_ context.Context, w io.Writer, started func(uint64)) error {
	started(1)
	_, err := w.Write([]byte("snapshot"))
	return err
}
func (fakeSnapshots) Restore(_ context.Context, r io.Reader) error {
	_, err := io.ReadAll(r)
	return err
}

type fakeRaft struct{}

func (fakeRaft) RemovePeer(context.Context, string, string) error { return nil }
func (fakeRaft) TransferLeader(context.Context, string) error     { return nil }

func newACLEnv(t *testing.T) *aclEnv {
	t.Helper()
	store := kvtest.NewServer(t)
	cat := httpapi.NodeOneCatalog(t)
	mcfg := membership.DefaultConfig()
	mcfg.NodeName, mcfg.BindAddr, mcfg.BindPort, mcfg.Fast = "node-1", "127.0.0.1", 0, true
	ml, err := membership.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	ev, err := ml.NewEvents(membership.FirstComponentKind+1, membership.EventsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ev.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	queries, err := preparedquery.New(preparedquery.Config{Store: store, Catalog: cat, NodeName: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	self := testSelf()
	self.NodeName = "node-1"
	res := newFakeResolver()
	cfg := httpapi.Config{
		Store: store, Self: self, Catalog: cat, Events: ev, Coordinates: ml, PreparedQueries: queries,
		Cluster: &fakeCluster{members: []httpapi.Member{{Name: "node-1", Addr: "127.0.0.1", Port: 8301, Status: httpapi.MemberAlive}}},
		Ops: httpapi.Ops{
			Metrics:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{}") }),
			Snapshots: fakeSnapshots{},
			Reload:    func(context.Context) error { return nil },
			Host:      func() (any, error) { return map[string]string{"os": "linux"}, nil },
			Raft:      fakeRaft{},
			Profiling: func() bool { return true },
		},
	}
	e := &aclEnv{off: serveConfig(t, cfg, nil), res: res, store: store, cat: cat, queries: queries}
	cfg.ACL = res
	e.on = serveConfig(t, cfg, nil)

	// The data every case reads.
	e.put(t, "app/x", "1")
	e.put(t, httpapi.ReservedACLPrefix+"token/secret", "the-secret")
	e.must(t, http.MethodPut, "/v1/agent/service/register", `{"ID":"web-1","Name":"web","Port":80,"Check":{"CheckID":"web-ttl","TTL":"60s","Status":"passing"}}`)
	e.must(t, http.MethodPut, "/v1/event/fire/deploy", "")
	e.must(t, http.MethodPost, "/v1/query", `{"Name":"q1","Service":{"Service":"web"}}`)
	return e
}

func (e *aclEnv) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := e.store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
}

// must sends a request with ACLs off and fails the test unless it
// answers 200; it returns the body.
func (e *aclEnv) must(t *testing.T, method, path, body string) string {
	t.Helper()
	resp, out := e.off.do(t, method, path, strings.NewReader(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("setup %s %s = %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

func (e *aclEnv) queryID(t *testing.T, name string) string {
	t.Helper()
	var qs []struct{ ID, Name string }
	if err := json.Unmarshal([]byte(e.must(t, http.MethodGet, "/v1/query", "")), &qs); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Name == name {
			return q.ID
		}
	}
	t.Fatalf("no prepared query %q", name)
	return ""
}

func newSession(t *testing.T, e *aclEnv) string {
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(e.must(t, http.MethodPut, "/v1/session/create", `{"Node":"node-1"}`)), &out); err != nil {
		t.Fatal(err)
	}
	return out.ID
}

func r(res acl.Resource, name string, a acl.Access) rule {
	return rule{res: res, name: name, access: a}
}
func rp(res acl.Resource, name string, a acl.Access) rule {
	return rule{res: res, name: name, prefix: true, access: a}
}

var (
	agentRead     = r(acl.Agent, "node-1", acl.Read)
	agentWrite    = r(acl.Agent, "node-1", acl.Write)
	nodeRead      = r(acl.Node, "node-1", acl.Read)
	nodeWrite     = r(acl.Node, "node-1", acl.Write)
	webRead       = r(acl.Service, "web", acl.Read)
	webWrite      = r(acl.Service, "web", acl.Write)
	operatorRead  = r(acl.Operator, "", acl.Read)
	operatorWrite = r(acl.Operator, "", acl.Write)
)

// aclCases is every endpoint: what it needs and what a token without it
// gets. docs/acl-enforcement.md is generated from it.
func aclCases() []aclCase {
	get, put, del, post := http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost
	return []aclCase{
		{method: get, path: "/v1/kv/app/x", need: []rule{r(acl.Key, "app/x", acl.Read)}, denied: refuses},
		{method: get, path: "/v1/kv/app?recurse", need: []rule{r(acl.Key, "app/x", acl.Read)}, denied: filters, deniedStatus: 404, hides: "app/x"},
		{method: get, path: "/v1/kv/app?keys", need: []rule{r(acl.Key, "app/x", acl.Read)}, denied: filters, deniedStatus: 404, hides: "app/x"},
		{method: put, path: "/v1/kv/app/y", body: "v", need: []rule{r(acl.Key, "app/y", acl.Write)}, denied: refuses},
		{method: del, path: "/v1/kv/app/y", need: []rule{r(acl.Key, "app/y", acl.Write)}, denied: refuses},
		{method: del, path: "/v1/kv/tmp?recurse", need: []rule{rp(acl.Key, "tmp", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/txn", body: `[{"KV":{"Verb":"set","Key":"app/t","Value":"dg=="}}]`, need: []rule{r(acl.Key, "app/t", acl.Write)}, denied: txnFail},
		{method: put, path: "/v1/session/create", body: `{"Node":"node-1"}`, need: []rule{r(acl.Session, "node-1", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/session/destroy/{}", need: []rule{r(acl.Session, "node-1", acl.Write)}, denied: refuses, setup: newSession},
		{method: put, path: "/v1/session/renew/{}", need: []rule{r(acl.Session, "node-1", acl.Write)}, denied: refuses, setup: newSession},
		{method: get, path: "/v1/session/info/{}", need: []rule{r(acl.Session, "node-1", acl.Read)}, denied: filters, hides: "node-1", setup: newSession},
		{method: get, path: "/v1/session/node/node-1", need: []rule{r(acl.Session, "node-1", acl.Read)}, denied: filters, hides: "node-1", setup: newSession},
		{method: get, path: "/v1/session/list", need: []rule{r(acl.Session, "node-1", acl.Read)}, denied: filters, hides: "node-1", setup: newSession},
		{method: get, path: "/v1/status/leader", denied: open},
		{method: get, path: "/v1/status/peers", denied: open},
		{method: get, path: "/v1/agent/self", need: []rule{agentRead}, denied: refuses},
		{method: get, path: "/v1/agent/members", need: []rule{nodeRead}, denied: filters, hides: "node-1"},
		{method: put, path: "/v1/agent/join/10.0.0.2", need: []rule{agentWrite}, denied: refuses},
		{method: put, path: "/v1/agent/leave", need: []rule{agentWrite}, denied: refuses},
		{method: put, path: "/v1/agent/force-leave/node-2", need: []rule{operatorWrite}, denied: refuses},
		{method: get, path: "/v1/operator/raft/configuration", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/v1/agent/connect/ca/roots", denied: open},
		{method: get, path: "/v1/connect/ca/roots", denied: open},
		{method: get, path: "/v1/catalog/datacenters", denied: open},
		{method: get, path: "/v1/catalog/services", need: []rule{webRead}, denied: filters, hides: "web"},
		{method: get, path: "/v1/catalog/service/web", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-1"},
		{method: get, path: "/v1/catalog/nodes", need: []rule{nodeRead}, denied: filters, hides: "node-1"},
		{method: get, path: "/v1/catalog/node/node-1", need: []rule{nodeRead, webRead}, denied: filters, hides: "node-1"},
		{method: get, path: "/v1/catalog/node-services/node-1", need: []rule{nodeRead, webRead}, denied: filters, hides: "node-1"},
		{method: put, path: "/v1/catalog/register", body: `{"Node":"ext","Address":"10.1.1.1","Service":{"Service":"ext-svc"}}`,
			need: []rule{r(acl.Node, "ext", acl.Write), r(acl.Service, "ext-svc", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/catalog/deregister", body: `{"Node":"ext2","ServiceID":"ext2-svc"}`, need: []rule{r(acl.Service, "ext2-svc", acl.Write)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string {
				e.must(t, http.MethodPut, "/v1/catalog/register", `{"Node":"ext2","Address":"10.1.1.2","Service":{"ID":"ext2-svc","Service":"ext2-svc"}}`)
				return ""
			}},
		{method: get, path: "/v1/catalog/connect/web", need: []rule{nodeRead, webRead}, denied: filters},
		{method: get, path: "/v1/health/connect/web", need: []rule{nodeRead, webRead}, denied: filters},
		{method: get, path: "/v1/health/service/web", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-1"},
		{method: get, path: "/v1/health/checks/web", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-ttl"},
		{method: get, path: "/v1/health/node/node-1", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-ttl"},
		{method: get, path: "/v1/health/state/any", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-ttl"},
		{method: get, path: "/v1/agent/services", need: []rule{webRead}, denied: filters, hides: "web-1"},
		{method: put, path: "/v1/agent/service/register", body: `{"ID":"api-1","Name":"api"}`, need: []rule{r(acl.Service, "api", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/agent/service/deregister/tmp-1", need: []rule{r(acl.Service, "tmp", acl.Write)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string {
				e.must(t, http.MethodPut, "/v1/agent/service/register", `{"ID":"tmp-1","Name":"tmp"}`)
				return ""
			}},
		{method: put, path: "/v1/agent/service/maintenance/web-1?enable=false", need: []rule{webWrite}, denied: refuses},
		{method: put, path: "/v1/agent/maintenance?enable=false", need: []rule{nodeWrite}, denied: refuses},
		{method: get, path: "/v1/agent/health/service/id/web-1", need: []rule{webRead}, denied: refuses},
		{method: get, path: "/v1/agent/health/service/name/web", need: []rule{webRead}, denied: refuses},
		{method: get, path: "/v1/agent/service/web-1", need: []rule{webRead}, denied: refuses},
		{method: get, path: "/v1/agent/checks", need: []rule{webRead}, denied: filters, hides: "web-ttl"},
		{method: put, path: "/v1/agent/check/register", body: `{"ID":"node-ttl","Name":"node-ttl","TTL":"60s","Status":"passing"}`, need: []rule{nodeWrite}, denied: refuses},
		{method: put, path: "/v1/agent/check/deregister/tmp-ttl", need: []rule{nodeWrite}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string {
				e.must(t, http.MethodPut, "/v1/agent/check/register", `{"ID":"tmp-ttl","Name":"tmp-ttl","TTL":"60s","Status":"passing"}`)
				return ""
			}},
		{method: put, path: "/v1/agent/check/pass/web-ttl", need: []rule{webWrite}, denied: refuses},
		{method: put, path: "/v1/agent/check/warn/web-ttl", need: []rule{webWrite}, denied: refuses},
		{method: put, path: "/v1/agent/check/fail/web-ttl", need: []rule{webWrite}, denied: refuses},
		{method: put, path: "/v1/agent/check/update/web-ttl", body: `{"Status":"passing"}`, need: []rule{webWrite}, denied: refuses},
		{method: put, path: "/v1/event/fire/deploy", need: []rule{r(acl.Event, "deploy", acl.Write)}, denied: refuses},
		{method: get, path: "/v1/event/list", need: []rule{r(acl.Event, "deploy", acl.Read)}, denied: filters, hides: "deploy"},
		{method: get, path: "/v1/coordinate/datacenters", denied: open},
		{method: get, path: "/v1/coordinate/nodes", need: []rule{nodeRead}, denied: filters, hides: "node-1"},
		{method: get, path: "/v1/coordinate/node/node-1", need: []rule{nodeRead}, denied: filters, deniedStatus: 404, hides: "node-1"},
		{method: put, path: "/v1/coordinate/update", body: `{"Node":"node-1","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Height":0.00001}}`, need: []rule{nodeWrite}, denied: refuses},
		{method: post, path: "/v1/query", body: `{"Name":"q2","Service":{"Service":"web"}}`, need: []rule{r(acl.Query, "q2", acl.Write)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string {
				var qs []struct{ ID, Name string }
				json.Unmarshal([]byte(e.must(t, http.MethodGet, "/v1/query", "")), &qs)
				for _, q := range qs {
					if q.Name == "q2" {
						e.must(t, http.MethodDelete, "/v1/query/"+q.ID, "")
					}
				}
				return ""
			}},
		{method: get, path: "/v1/query", need: []rule{rp(acl.Query, "q", acl.Read)}, denied: filters, hides: "q1"},
		{method: get, path: "/v1/query/{}", need: []rule{r(acl.Query, "q1", acl.Read)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string { return e.queryID(t, "q1") }},
		{method: put, path: "/v1/query/{}", body: `{"Name":"q1","Service":{"Service":"web"}}`, need: []rule{r(acl.Query, "q1", acl.Write)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string { return e.queryID(t, "q1") }},
		{method: del, path: "/v1/query/{}", need: []rule{r(acl.Query, "qd", acl.Write)}, denied: refuses,
			setup: func(t *testing.T, e *aclEnv) string {
				var qs []struct{ ID, Name string }
				json.Unmarshal([]byte(e.must(t, http.MethodGet, "/v1/query", "")), &qs)
				for _, q := range qs {
					if q.Name == "qd" {
						return q.ID // still there: the last variant was refused
					}
				}
				var out struct{ ID string }
				json.Unmarshal([]byte(e.must(t, http.MethodPost, "/v1/query", `{"Name":"qd","Service":{"Service":"web"}}`)), &out)
				return out.ID
			}},
		{method: get, path: "/v1/query/q1/execute", need: []rule{nodeRead, webRead}, denied: filters, hides: "web-1"},
		{method: get, path: "/v1/query/q1/explain", need: []rule{r(acl.Query, "q1", acl.Read)}, denied: refuses},
		{method: get, path: "/v1/operator/autopilot/health", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/v1/operator/keyring", need: []rule{r(acl.Keyring, "", acl.Read)}, denied: refuses},
		{method: http.MethodPost, path: "/v1/operator/keyring", need: []rule{r(acl.Keyring, "", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/operator/keyring", need: []rule{r(acl.Keyring, "", acl.Write)}, denied: refuses},
		{method: http.MethodDelete, path: "/v1/operator/keyring", need: []rule{r(acl.Keyring, "", acl.Write)}, denied: refuses},
		{method: get, path: "/v1/agent/metrics", need: []rule{agentRead}, denied: refuses},
		{method: put, path: "/v1/agent/reload", need: []rule{agentWrite}, denied: refuses},
		{method: get, path: "/v1/agent/monitor", need: []rule{agentRead}, denied: refuses},
		{method: get, path: "/v1/agent/host", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/v1/snapshot", need: []rule{r(acl.ACL, "", acl.Write)}, denied: refuses},
		{method: put, path: "/v1/snapshot", body: "x", need: []rule{r(acl.ACL, "", acl.Write)}, denied: refuses},
		{method: del, path: "/v1/operator/raft/peer?id=x", need: []rule{operatorWrite}, denied: refuses},
		{method: post, path: "/v1/operator/raft/transfer-leader", need: []rule{operatorWrite}, denied: refuses},
		{method: put, path: "/v1/operator/raft/transfer-leader", need: []rule{operatorWrite}, denied: refuses},
		{method: get, path: "/debug/pprof/goroutine", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/debug/pprof/heap", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/debug/pprof/profile?seconds=0.01", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/debug/pprof/trace?seconds=0.01", need: []rule{operatorRead}, denied: refuses},
		{method: get, path: "/", denied: open},
	}
}

// deniedText is Consul's 403 body for a token that lacks ru.
func deniedText(accessor string, ru rule) string {
	lvl := map[acl.Access]string{acl.Read: "read", acl.List: "list", acl.Write: "write"}[ru.access]
	who := fmt.Sprintf("token with AccessorID '%s'", accessor)
	if accessor == "00000000-0000-0000-0000-000000000002" {
		who = "anonymous token"
	}
	s := fmt.Sprintf("Permission denied: %s lacks permission '%s:%s'", who, ru.res, lvl)
	if ru.name != "" {
		s += fmt.Sprintf(" on %q", ru.name)
	}
	if accessor == "00000000-0000-0000-0000-000000000002" {
		s += ". The anonymous token is used implicitly when a request does not specify a token."
	}
	return s
}

// TestACLEnforcementTable: every endpoint, with a token holding exactly
// the rules it needs (allowed), a known token with none (denied), no
// token under default deny (anonymous), and ACLs off: the status, the
// 403 text, the filtered answer and X-Consul-Results-Filtered-By-ACLs.
func TestACLEnforcementTable(t *testing.T) {
	e := newACLEnv(t)
	e.res.set("none", "acc-none")
	cases := aclCases()
	for i, tc := range cases {
		t.Run(tc.name(), func(t *testing.T) {
			allowed := fmt.Sprintf("allowed-%d", i)
			e.res.set(allowed, "acc-allowed", tc.need...)
			type variant struct {
				name, token, accessor string
				api                   *testAPI
			}
			variants := []variant{
				{"denied", "none", "acc-none", e.on},
				{"anonymous", "", "00000000-0000-0000-0000-000000000002", e.on},
				{"allowed", allowed, "acc-allowed", e.on},
				{"off", "", "", e.off},
			}
			bodies := map[string]string{}
			for _, v := range variants {
				path := tc.path
				if tc.setup != nil {
					if sub := tc.setup(t, e); sub != "" {
						path = strings.Replace(path, "{}", sub, 1)
					}
				}
				req, err := http.NewRequest(tc.method, v.api.url+path, strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				if v.token != "" {
					req.Header.Set("X-Consul-Token", v.token)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req = req.WithContext(ctx)
				resp, err := v.api.http.Do(req)
				if err != nil {
					cancel()
					t.Fatalf("%s: %v", v.name, err)
				}
				var b []byte
				if tc.path == "/v1/agent/monitor" && resp.StatusCode == 200 {
					b = []byte("(stream)")
				} else {
					b, _ = io.ReadAll(resp.Body)
				}
				resp.Body.Close()
				cancel()
				body := string(b)
				bodies[v.name] = body
				hdr := resp.Header.Get("X-Consul-Results-Filtered-By-ACLs")
				restricted := v.name == "denied" || v.name == "anonymous"
				switch {
				case !restricted || tc.denied == open:
					if resp.StatusCode == http.StatusForbidden || hdr != "" {
						t.Errorf("%s %s as %s = %d (filtered header %q) %s, want no ACL refusal or filtering", tc.method, path, v.name, resp.StatusCode, hdr, body)
					}
				case tc.denied == refuses:
					if want := deniedText(v.accessor, tc.need[0]); resp.StatusCode != http.StatusForbidden || body != want {
						t.Errorf("%s %s as %s = %d %q, want 403 %q", tc.method, path, v.name, resp.StatusCode, body, want)
					}
				case tc.denied == txnFail:
					if want := deniedText(v.accessor, tc.need[0]); resp.StatusCode != http.StatusConflict || !strings.Contains(body, `"OpIndex":0,"What":`+mustJSON(want)) {
						t.Errorf("%s %s as %s = %d %s, want 409 with the operation's error %q", tc.method, path, v.name, resp.StatusCode, body, want)
					}
				case tc.denied == filters:
					want := tc.deniedStatus
					if want == 0 {
						want = http.StatusOK
					}
					if resp.StatusCode != want {
						t.Errorf("%s %s as %s = %d %s, want %d", tc.method, path, v.name, resp.StatusCode, body, want)
					}
					if tc.hides != "" {
						if hdr != "true" {
							t.Errorf("%s %s as %s: X-Consul-Results-Filtered-By-ACLs = %q, want true", tc.method, path, v.name, hdr)
						}
						if strings.Contains(body, tc.hides) {
							t.Errorf("%s %s as %s answered %s, which shows %q", tc.method, path, v.name, body, tc.hides)
						}
					}
				}
			}
			if tc.hides != "" && !strings.Contains(bodies["allowed"], tc.hides) {
				t.Errorf("%s %s as allowed answered %s, want it to show %q", tc.method, tc.path, bodies["allowed"], tc.hides)
			}
		})
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestACLEveryRouteHasACase: a new endpoint cannot be added without
// saying what it needs (and so without a row in the docs' table).
func TestACLEveryRouteHasACase(t *testing.T) {
	routes, err := httpapi.RoutesOf(httpapi.Config{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range aclCases() {
		covered[tc.method+" "+routeOf(routes, tc.method, tc.path)] = true
	}
	for _, rt := range routes {
		if p := strings.Fields(rt)[1]; strings.HasPrefix(p, "/v1/acl/") || p == "/v1/agent/token/" {
			continue // the ACL system's own endpoints, which check for themselves (acl.go)
		}
		if !covered[rt] {
			t.Errorf("endpoint %s has no case in aclCases: add what it needs", rt)
		}
	}
}

// routeOf is the route pattern path is served by, as the handler matches.
func routeOf(routes []string, method, path string) string {
	p, _, _ := strings.Cut(path, "?")
	for _, rt := range routes {
		m, pat, _ := strings.Cut(rt, " ")
		if m != method {
			continue
		}
		if pat == p || (strings.HasSuffix(pat, "/") && pat != "/" && strings.HasPrefix(p, pat)) {
			return pat
		}
	}
	return p
}

// TestACLDocs: docs/acl-enforcement.md's table is aclCases; go test
// -update rewrites it.
func TestACLDocs(t *testing.T) {
	var b strings.Builder
	b.WriteString(aclDocHead)
	b.WriteString("| Request (as tested) | Needs (Consul rule) | Without it |\n|---|---|---|\n")
	rows := map[string]bool{}
	var lines []string
	for _, tc := range aclCases() {
		var needs []string
		for _, ru := range tc.need {
			needs = append(needs, "`"+ru.String()+"`")
		}
		need := strings.Join(needs, " and ")
		if need == "" {
			need = "nothing"
		}
		what := map[string]string{refuses: "403", filters: "filtered", txnFail: "409, per operation", open: "—"}[tc.denied]
		ep := tc.method + " " + strings.Replace(tc.path, "{}", "<id>", 1)
		line := fmt.Sprintf("| `%s` | %s | %s |\n", ep, need, what)
		if !rows[line] {
			rows[line] = true
			lines = append(lines, line)
		}
	}
	for _, l := range lines {
		b.WriteString(l)
	}
	b.WriteString(aclDocTail)
	path := "../../docs/acl-enforcement.md"
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run go test ./agent/httpapi -run TestACLDocs -update", err)
	}
	if string(got) != b.String() {
		t.Errorf("docs/acl-enforcement.md is not what aclCases says; run go test ./agent/httpapi -run TestACLDocs -update and read the diff")
	}
}

const aclDocHead = `# ACL enforcement: what each endpoint needs

<!-- Generated by TestACLDocs in agent/httpapi/acl_enforce_test.go from the
table that TestACLEnforcementTable runs; do not edit by hand:
go test ./agent/httpapi -run TestACLDocs -update -->

With ACLs on (` + "`acl { enabled = true }`" + `), every request's token
(` + "`X-Consul-Token`" + `, ` + "`Authorization: Bearer`" + `, ` + "`?token=`" + `; none is the
anonymous token) is resolved once and checked by the endpoint before it
acts, with Consul's rules. The table is tested: each row is sent with a
token holding exactly the rules listed (allowed), a known token without
them, no token under default deny, and with ACLs off. Names are the
test's: the agent's node is ` + "`node-1`" + `, ` + "`web`" + ` a service on it (check
` + "`web-ttl`" + `), ` + "`q1`" + ` a prepared query; ` + "`agent`" + ` rules name the agent's node.

- **403**: the answer is 403 with Consul's text, e.g.
  ` + "`Permission denied: token with AccessorID '…' lacks permission 'key:read' on \"app/x\"`" + `
  (for no token: ` + "`Permission denied: anonymous token lacks permission …`" + `).
  An unknown token is 403 ` + "`ACL not found`" + ` on every endpoint that checks.
- **filtered**: the answer leaves out what the token may not read and carries
  ` + "`X-Consul-Results-Filtered-By-ACLs: true`" + `; a KV list left empty is a 404,
  as in Consul.
- **409, per operation**: ` + "`/v1/txn`" + ` vets every operation first (Consul's
  Txn preCheck); one refusal fails the whole transaction with 409 and the
  refusal as that operation's ` + "`Errors[].What`" + `. KV ` + "`get`/`get-tree`" + ` results are
  filtered instead; ` + "`check-index`/`check-session`" + ` need read, other verbs write,
  ` + "`delete-tree`" + ` write on everything under the prefix.

`

const aclDocTail = `
Where a row names several rules, each is needed; the 403 names the first
one missing, in the order listed. Details the table does not show:

- KV keys under ` + "`_cairn/acl/`" + ` (the ACL system's tokens and policies) are never
  readable, listable or writable through ` + "`/v1/kv`" + ` or ` + "`/v1/txn`" + `, whatever the
  token; recursive reads and key lists that reach them skip them, and a
  recursive delete that would reach them is refused (with ACLs off, a
  recursive delete of the root works as before). Use ` + "`/v1/acl/*`" + `.
- ` + "`?recurse`" + ` and ` + "`?keys`" + ` need no rule up front, as Consul without
  ` + "`acl.enable_key_list_policy`" + `; with it they need ` + "`list`" + ` on the prefix,
  checked by the agent that takes the request and again by the server
  that serves a forwarded one.
- Catalog registration: node write unless ` + "`SkipNodeUpdate`" + `, service write
  on the service, and for each check service write (a service's check) or
  node write (a node check). Deregistration: service write on the service
  (or on the service of the check) removed, node write for a node check or
  the node.
- Sessions: ` + "`destroy`" + ` and ` + "`renew`" + ` need session write on the node of the
  existing session; a session that does not exist needs nothing.
- Prepared queries: an unnamed query needs no rule to create; only a
  token with ` + "`acl = \"write\"`" + ` (management) sees unnamed queries, and tokens
  stored in queries are shown as ` + "`<hidden>`" + ` to others. Execute answers
  what the caller may read (node and service read).
- The server port: a server checks again the token every forwarded KV,
  session and transaction request carries (agent/forward/enforce.go), so
  a client agent cannot be bypassed by talking to a server directly.
  Requests the agent makes itself (VIP allocation, prepared queries) are
  marked internal on their context, a mark no
  HTTP request can set; forwarded, they carry the agent token
  (` + "`acl.tokens.agent`" + `), which therefore needs ` + "`key_prefix \"_cairn/vip/\"`" + ` and
  ` + "`key_prefix \"_cairn/query/\"`" + ` write on client agents (it falls back to
  ` + "`acl.tokens.default`" + `). Over the server port the ACL system decides who
  reaches ` + "`_cairn/acl/`" + ` (agent/acl/reserved.go): a token's own record,
  policies and roles for any caller (token resolution on client agents),
  the rest with ` + "`acl = \"read\"`" + `; writes with ` + "`acl = \"write\"`" + ` or the first bootstrap.
- DNS answers with the dns token's view (` + "`acl.tokens.dns`" + `), else the default
  token's (` + "`acl.tokens.default`" + `), else the anonymous token's: services and nodes
  it cannot read are not answered (NXDOMAIN). Setting an agent token, or an
  ACL write this agent sees, rebuilds the answers at once; a change made
  through another agent shows within twice token_ttl (its cache).
`

// TestACLReservedKeys: the ACL system's keys are out of reach of /v1/kv
// and /v1/txn for every token, the management one included, and with
// ACLs off; reads of the root skip them.
func TestACLReservedKeys(t *testing.T) {
	e := newACLEnv(t)
	e.res.set("mgmt", "acc-mgmt", rp(acl.Key, "", acl.Write), r(acl.ACL, "", acl.Write))
	const key = httpapi.ReservedACLPrefix + "token/secret"
	for _, v := range []struct {
		name, token string
		api         *testAPI
	}{{"management", "mgmt", e.on}, {"off", "", e.off}} {
		t.Run(v.name, func(t *testing.T) {
			send := func(method, path, body string) (int, string, http.Header) {
				req, _ := http.NewRequest(method, v.api.url+path, strings.NewReader(body))
				req.Header.Set("X-Consul-Token", v.token)
				resp, err := v.api.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), resp.Header
			}
			refused := []struct{ method, path, body string }{
				{http.MethodGet, "/v1/kv/" + key, ""},
				{http.MethodGet, "/v1/kv/" + key + "?raw", ""},
				{http.MethodGet, "/v1/kv/_cairn/acl/?recurse", ""},
				{http.MethodGet, "/v1/kv/_cairn/acl/?keys", ""},
				{http.MethodPut, "/v1/kv/" + key, "stolen"},
				{http.MethodDelete, "/v1/kv/" + key, ""},
				{http.MethodDelete, "/v1/kv/_cairn/acl/token?recurse", ""},
			}
			if v.name != "off" {
				// Prefixes above them: refused while ACLs are on.
				refused = append(refused, struct{ method, path, body string }{http.MethodDelete, "/v1/kv/?recurse", ""},
					struct{ method, path, body string }{http.MethodDelete, "/v1/kv/_cairn?recurse", ""})
			}
			for _, rq := range refused {
				code, body, _ := send(rq.method, rq.path, rq.body)
				if code != http.StatusForbidden || !strings.HasPrefix(body, "Permission denied: ") || !strings.Contains(body, "_cairn/acl/") {
					t.Errorf("%s %s = %d %q, want 403 Permission denied naming _cairn/acl/", rq.method, rq.path, code, body)
				}
			}
			for _, op := range []string{
				`[{"KV":{"Verb":"get","Key":"` + key + `"}}]`,
				`[{"KV":{"Verb":"get-tree","Key":"_cairn/acl/"}}]`,
				`[{"KV":{"Verb":"set","Key":"` + key + `","Value":"eA=="}}]`,
				`[{"KV":{"Verb":"delete-tree","Key":"_cairn/acl/"}}]`,
			} {
				code, body, _ := send(http.MethodPut, "/v1/txn", op)
				if code != http.StatusConflict || !strings.Contains(body, "Permission denied") {
					t.Errorf("txn %s = %d %s, want 409 Permission denied", op, code, body)
				}
			}
			if v.name != "off" {
				code, body, _ := send(http.MethodPut, "/v1/txn", `[{"KV":{"Verb":"delete-tree","Key":""}}]`)
				if code != http.StatusConflict || !strings.Contains(body, "Permission denied") {
					t.Errorf("txn delete-tree of the root = %d %s, want 409 Permission denied", code, body)
				}
			}
			// Recursive reads of the root and of _cairn/ skip them.
			for _, path := range []string{"/v1/kv/?recurse", "/v1/kv/?keys", "/v1/kv/_cairn/?keys&separator=/", "/v1/kv/_c?recurse"} {
				code, body, _ := send(http.MethodGet, path, "")
				if strings.Contains(body, "_cairn/acl") || strings.Contains(body, "the-secret") || code == http.StatusForbidden {
					t.Errorf("GET %s = %d %s, want the ACL keys left out", path, code, body)
				}
			}
			code, body, _ := send(http.MethodPut, "/v1/txn", `[{"KV":{"Verb":"get-tree","Key":""}}]`)
			if code != http.StatusOK || strings.Contains(body, "_cairn/acl") || !strings.Contains(body, "app/x") {
				t.Errorf("txn get-tree of the root = %d %s, want 200 with app/x and without the ACL keys", code, body)
			}
			// The key is still there, unchanged.
			if _, ent, err := e.store.Get(context.Background(), kv.QueryOptions{}, key); err != nil || ent == nil || string(ent.Value) != "the-secret" {
				t.Fatalf("the ACL key after the attempts = %v %v", ent, err)
			}
		})
	}
}

// TestACLTokenResolution: an unknown token is 403 "ACL not found" where
// an endpoint checks, and does not fail the endpoints that check nothing;
// a token is resolved once per request, however long the list it filters.
func TestACLTokenResolution(t *testing.T) {
	e := newACLEnv(t)
	for i := range 20 {
		e.must(t, http.MethodPut, "/v1/agent/service/register", fmt.Sprintf(`{"ID":"svc-%d","Name":"svc-%d"}`, i, i))
	}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/v1/kv/app/x", 403, "ACL not found"},
		{"/v1/catalog/services", 403, "ACL not found"},
		{"/v1/agent/self", 403, "ACL not found"},
		{"/v1/status/leader", 200, ""},
		{"/v1/catalog/datacenters", 200, `["dc1"]`},
	} {
		resp, body := e.on.do(t, http.MethodGet, tc.path+"?token=nobody-knows-me", nil)
		if resp.StatusCode != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("GET %s with an unknown token = %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	e.res.set("some", "acc-some", rp(acl.Service, "svc-1", acl.Read), rp(acl.Node, "", acl.Read))
	e.res.mu.Lock()
	before := e.res.resolve
	e.res.mu.Unlock()
	resp, body := e.on.do(t, http.MethodGet, "/v1/agent/services?token=some", nil)
	e.res.mu.Lock()
	n := e.res.resolve - before
	e.res.mu.Unlock()
	if n != 1 {
		t.Errorf("GET /v1/agent/services resolved the token %d times, want once", n)
	}
	var got map[string]any
	json.Unmarshal([]byte(body), &got)
	if len(got) != 11 || resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" { // svc-1, svc-10..svc-19
		t.Errorf("GET /v1/agent/services with service_prefix svc-1 = %d services (%s), header %q; want 11 and true", len(got), body, resp.Header.Get("X-Consul-Results-Filtered-By-ACLs"))
	}
}

// TestACLOfficialClient: what the official client (and so consul-template
// and the consul CLI) sees: the 403 text in its error, and QueryMeta's
// ResultsFilteredByACLs.
func TestACLOfficialClient(t *testing.T) {
	e := newACLEnv(t)
	e.put(t, "app/y", "2")
	e.res.set("reader", "acc-reader", r(acl.Key, "app/x", acl.Read))
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = strings.TrimPrefix(e.on.url, "http://")
	cfg.Token = "reader"
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pair, _, err := c.KV().Get("app/x", nil)
	if err != nil || pair == nil || string(pair.Value) != "1" {
		t.Fatalf("Get(app/x) with key read = %v, %v", pair, err)
	}
	_, _, err = c.KV().Get("app/y", nil)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied: token with AccessorID 'acc-reader' lacks permission 'key:read' on \"app/y\"") {
		t.Errorf("Get(app/y) without key read: err = %v, want the client's 403 with Consul's text", err)
	}
	pairs, meta, err := c.KV().List("app/", nil)
	if err != nil || len(pairs) != 1 || pairs[0].Key != "app/x" || !meta.ResultsFilteredByACLs {
		t.Errorf("List(app/) = %v, filtered %v, %v; want [app/x], true", pairs, meta != nil && meta.ResultsFilteredByACLs, err)
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "app/x", Value: []byte("2")}, nil); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("Put(app/x) with key read only: err = %v, want Permission denied", err)
	}
}
