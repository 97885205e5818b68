package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/template"
)

// TestACLCatalogTxn: a transaction with catalog operations needs the
// catalog rights Consul asks for (service and node write), nothing
// more; the record cairn keeps for crash atomicity (_cairn/txn/) is the
// agent's business, not the caller's. A token without the rights is
// refused and nothing is applied.
func TestACLCatalogTxn(t *testing.T) {
	t.Run("on a server", func(t *testing.T) { testACLCatalogTxn(t, start(t, aclDevConfig(t))) })
	t.Run("through a client agent", func(t *testing.T) {
		server := clusterConfig(t, "s0", true, 1)
		server.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny", InitialManagement: "root"}
		s := startAgent(t, server)
		client := clusterConfig(t, "c0", false, 0, s.SerfAddr())
		client.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny"}
		c := startAgent(t, client)
		waitLeader(t, s.client)
		waitLeader(t, c.client)
		testACLCatalogTxn(t, c, s)
	})
}

// others are more agents of r's cluster, which must see what r registers:
// its records reach them signed, with the gossip key r bound with its
// agent token.
func testACLCatalogTxn(t *testing.T, r *running, others ...*running) {
	root := aclClient(t, r, "root")
	waitToken(t, root)
	a := root.ACL()
	node := r.Config().NodeName
	mk := func(name, rules string) string {
		t.Helper()
		pol, _, err := a.PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := a.TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok.SecretID
	}
	// The agent's own token: node:write on its node, as Consul asks of
	// every agent under default deny (it keeps the txn's record).
	if _, err := root.Agent().UpdateAgentACLToken(mk("agent", `node "`+node+`" { policy = "write" }`), nil); err != nil {
		t.Fatal(err)
	}
	writer := mk("web-writer", `service "web" { policy = "write" }
key_prefix "app/" { policy = "write" }`)
	reader := mk("web-reader", `service "web" { policy = "read" }
node_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }`)

	ops := func(id string) api.TxnOps {
		return api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "app/" + id, Value: []byte("v")}},
			{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: api.AgentService{ID: id, Service: "web", Port: 80}}},
		}
	}
	ok, resp, _, err := aclClient(t, r, writer).Txn().Txn(ops("web-1"), nil)
	if err != nil || !ok {
		t.Fatalf("txn with service and node write: ok=%v err=%v errors=%+v", ok, err, resp)
	}
	ok, _, _, err = aclClient(t, r, reader).Txn().Txn(ops("web-2"), nil)
	if err == nil && ok {
		t.Fatal("txn registering a service with only service read succeeded")
	}
	svcs, _, err := root.Catalog().Service("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].ServiceID != "web-1" {
		t.Errorf("catalog after the two txns = %+v, want web-1 alone", svcs)
	}
	if kv, _, err := root.KV().Get("app/web-2", nil); err != nil || kv != nil {
		t.Errorf("the refused txn's KV half: %+v, %v; want nothing", kv, err)
	}
	for _, o := range others {
		eventually(t, "another agent sees the service", 15*time.Second, func() (bool, string) {
			svcs, _, err := aclClient(t, o, "root").Catalog().Service("web", "", nil)
			return err == nil && len(svcs) == 1 && svcs[0].ServiceID == "web-1", fmt.Sprint(svcs, err)
		})
	}
	// The record of the committed txn is deleted by the agent (with its
	// own token): nothing stays under _cairn/txn/.
	eventually(t, "the txn record is deleted", 10*time.Second, func() (bool, string) {
		keys, _, err := root.KV().Keys("_cairn/txn/", "", nil)
		return err == nil && len(keys) == 0, fmt.Sprint(keys, err)
	})
}

// TestACLSnapshotRoundTrip: a snapshot carries the ACL system (tokens,
// policies), so a token made on one cluster works on the cluster the
// snapshot is restored into, with the same rights.
func TestACLSnapshotRoundTrip(t *testing.T) {
	a, b := start(t, aclDevConfig(t)), start(t, aclDevConfig(t))
	rootA, rootB := aclClient(t, a, "root"), aclClient(t, b, "root")
	waitToken(t, rootA)
	waitToken(t, rootB)
	pol, _, err := rootA.ACL().PolicyCreate(&api.ACLPolicy{Name: "app", Rules: `key_prefix "app/" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := rootA.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _, err := rootA.Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := rootB.Snapshot().Restore(nil, snap); err != nil {
		t.Fatal(err)
	}
	onB := aclClient(t, b, tok.SecretID)
	if self, _, err := onB.ACL().TokenReadSelf(nil); err != nil || self.AccessorID != tok.AccessorID {
		t.Fatalf("the token on the restored cluster: %+v, %v", self, err)
	}
	if _, err := onB.KV().Put(&api.KVPair{Key: "app/x", Value: []byte("1")}, nil); err != nil {
		t.Errorf("a write the token's policy allows: %v", err)
	}
	if _, err := onB.KV().Put(&api.KVPair{Key: "other/x", Value: []byte("1")}, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a write the token's policy does not allow: %v, want 403", err)
	}
}

// TestACLAgentTemplateReadsWithTheAgentToken: templates an agent renders
// in process are its own configuration: on a client agent their KV reads
// reach the servers with the agent token, not as the anonymous token
// (which default deny refuses).
func TestACLAgentTemplateReadsWithTheAgentToken(t *testing.T) {
	server := clusterConfig(t, "s0", true, 1)
	server.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny", InitialManagement: "root"}
	s := startAgent(t, server)
	client := clusterConfig(t, "c0", false, 0, s.SerfAddr())
	client.ACL = ACLConfig{Enabled: true, DefaultPolicy: "deny"}
	c := startAgent(t, client)
	waitLeader(t, s.client)
	waitLeader(t, c.client)
	root := aclClient(t, s, "root")
	waitToken(t, root)
	if _, err := root.KV().Put(&api.KVPair{Key: "app/greeting", Value: []byte("hello")}, nil); err != nil {
		t.Fatal(err)
	}
	src := sourceOf(c)
	if src == nil {
		t.Fatal("the client agent has no in-process template source")
	}
	if _, _, err := src.KVGet(t.Context(), "app/greeting", template.QueryOptions{}); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("without an agent token: %v, want the anonymous token's refusal", err)
	}
	pol, _, err := root.ACL().PolicyCreate(&api.ACLPolicy{Name: "c0", Rules: `node "c0" { policy = "write" }
key_prefix "app/" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := root.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aclClient(t, c, "root").Agent().UpdateAgentACLToken(tok.SecretID, nil); err != nil {
		t.Fatal(err)
	}
	pair, _, err := src.KVGet(t.Context(), "app/greeting", template.QueryOptions{})
	if err != nil || pair == nil || string(pair.Value) != "hello" {
		t.Fatalf("with the agent token: %+v, %v", pair, err)
	}
}
