package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

func TestTxnCommits(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "txn/existing", "old")
	existing := ta.get(t, "txn/existing")

	ok, resp, _, err := ta.client.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "txn/a", Value: []byte("1"), Flags: 3}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "txn/existing", Value: []byte("new"), Index: existing.ModifyIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVGet, Key: "txn/a"}},
	}, nil)
	if err != nil || !ok {
		t.Fatalf("Txn = %v, %+v, %v; want committed", ok, resp, err)
	}
	if len(resp.Errors) != 0 {
		t.Errorf("Txn errors = %+v, want none", resp.Errors)
	}
	if len(resp.Results) != 3 {
		t.Fatalf("Txn results = %d, want 3", len(resp.Results))
	}
	if r := resp.Results[0].KV; r == nil || r.Key != "txn/a" || r.Flags != 3 || r.ModifyIndex == 0 {
		t.Errorf("result 0 = %+v, want txn/a flags 3 with its index", r)
	}
	if r := resp.Results[2].KV; r == nil || string(r.Value) != "1" {
		t.Errorf("result 2 (get) = %+v, want value 1", r)
	}
	if got := string(ta.get(t, "txn/existing").Value); got != "new" {
		t.Errorf("txn/existing = %q, want new", got)
	}
}

func TestTxnRollsBack(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "txn/existing", "old")

	ok, resp, _, err := ta.client.KV().Txn(api.KVTxnOps{
		{Verb: api.KVSet, Key: "txn/new", Value: []byte("never")},
		{Verb: api.KVCAS, Key: "txn/existing", Value: []byte("x"), Index: 999999},
	}, nil)
	if err != nil || ok {
		t.Fatalf("Txn = %v, %v; want rolled back (false, nil)", ok, err)
	}
	if len(resp.Results) != 0 {
		t.Errorf("rolled back Txn results = %+v, want none", resp.Results)
	}
	if len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || resp.Errors[0].What == "" {
		t.Errorf("rolled back Txn errors = %+v, want one for op 1 saying why", resp.Errors)
	}
	if p := ta.get(t, "txn/new"); p != nil {
		t.Errorf("txn/new = %+v after a rolled back Txn, want nothing written", p)
	}
	if got := string(ta.get(t, "txn/existing").Value); got != "old" {
		t.Errorf("txn/existing = %q, want old", got)
	}

	// On the wire: 409, Results null, Errors with OpIndex and What.
	body := `[{"KV":{"Verb":"check-index","Key":"txn/existing","Index":999999}}]`
	r, got := ta.do(t, http.MethodPut, "/v1/txn", strings.NewReader(body))
	if r.StatusCode != http.StatusConflict || !strings.HasPrefix(got, `{"Results":null,"Errors":[{"OpIndex":0,"What":"`) {
		t.Errorf("PUT /v1/txn (failing check) = %d %s, want 409 {\"Results\":null,\"Errors\":[{\"OpIndex\":0,\"What\":...}]}", r.StatusCode, got)
	}
}

func TestTxnReadOnlyHasQueryMeta(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	ta.put(t, "ro/a", "1")
	ta.put(t, "ro/b", "2")

	ok, resp, qm, err := ta.client.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVGetTree, Key: "ro/"}},
	}, &api.QueryOptions{AllowStale: true})
	if err != nil || !ok {
		t.Fatalf("read-only Txn = %v, %v; want ok", ok, err)
	}
	var keys []string
	for _, r := range resp.Results {
		keys = append(keys, r.KV.Key+"="+string(r.KV.Value))
	}
	if diff := cmp.Diff([]string{"ro/a=1", "ro/b=2"}, keys); diff != "" {
		t.Errorf("get-tree results (-want +got):\n%s", diff)
	}
	if qm.LastIndex == 0 || !qm.KnownLeader {
		t.Errorf("read-only Txn meta = index %d known leader %v, want index > 0 and a known leader", qm.LastIndex, qm.KnownLeader)
	}

	r, _ := ta.do(t, http.MethodPut, "/v1/txn?stale", strings.NewReader(`[{"KV":{"Verb":"get","Key":"ro/a"}}]`))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/txn?stale = %d, want 200", r.StatusCode)
	}
	checkReadHeaders(t, r, "stale")
}

// TestTxnLimitsAndErrors checks the client-visible refusals: the official
// client turns any status but 200 and 409 into "Failed request: <body>".
func TestTxnLimitsAndErrors(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, nil)
	many := make(api.TxnOps, 129)
	for i := range many {
		many[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "k", Value: []byte("v")}}
	}
	tests := []struct {
		name    string
		ops     api.TxnOps
		wantErr string
	}{
		{"too many operations", many, "Transaction contains too many operations (129 > 128)"},
		{"node operation without a catalog", api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeGet, Node: api.Node{Node: "n"}}}}, "this agent has no service catalog"},
		{"unknown verb", api.TxnOps{{KV: &api.KVTxnOp{Verb: "explode", Key: "k"}}}, `unknown KV verb "explode"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, _, _, err := ta.client.Txn().Txn(tt.ops, nil)
			if err == nil || ok || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Txn = %v, %v; want an error containing %q", ok, err, tt.wantErr)
			}
		})
	}
	if p := ta.get(t, "k"); p != nil {
		t.Errorf("k = %+v after refused transactions, want nothing written", p)
	}
}

// TestTxnConcurrentCASOnOneService races transactions that each CAS the
// same service (at the index they all read) and write a key of their
// own: exactly one commits; every other fails whole, with Consul's error
// for the operation that lost and its key unwritten.
func TestTxnConcurrentCASOnOneService(t *testing.T) {
	t.Parallel()
	ta := newFullAPI(t)
	c := ta.client
	if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "ext1", Address: "10.0.0.2",
		Service: &api.AgentService{ID: "web-1", Service: "web", Port: 80}}, nil); err != nil {
		t.Fatal(err)
	}
	node, _, err := c.Catalog().Node("ext1", nil)
	if err != nil || node.Services["web-1"] == nil {
		t.Fatalf("Catalog().Node(ext1) = %+v, %v", node, err)
	}
	index := node.Services["web-1"].ModifyIndex

	const racers = 8
	type outcome struct {
		ok   bool
		resp *api.TxnResponse
		err  error
	}
	out := make([]outcome, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, resp, _, err := c.Txn().Txn(api.TxnOps{
				{KV: &api.KVTxnOp{Verb: api.KVSet, Key: fmt.Sprintf("race/%d", i), Value: []byte("x")}},
				{Service: &api.ServiceTxnOp{Verb: api.ServiceCAS, Node: "ext1", Service: api.AgentService{
					ID: "web-1", Service: "web", Port: 8000 + i, ModifyIndex: index}}},
			}, nil)
			out[i] = outcome{ok, resp, err}
		}()
	}
	wg.Wait()
	winners := 0
	wantErr := `failed to set service "web-1" on node "ext1", index is stale`
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("racer %d: %v", i, o.err)
		}
		p, _, err := c.KV().Get(fmt.Sprintf("race/%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if o.ok {
			winners++
			if p == nil {
				t.Errorf("racer %d committed but its key is missing", i)
			}
			svc, _, _ := c.Catalog().Node("ext1", nil)
			if got := svc.Services["web-1"].Port; got != 8000+i {
				t.Errorf("racer %d committed; web-1 port = %d, want %d", i, got, 8000+i)
			}
			continue
		}
		if p != nil {
			t.Errorf("racer %d failed but wrote race/%d", i, i)
		}
		if len(o.resp.Errors) != 1 || o.resp.Errors[0].OpIndex != 1 || o.resp.Errors[0].What != wantErr {
			t.Errorf("racer %d errors = %+v, want [{OpIndex:1 What:%q}]", i, o.resp.Errors, wantErr)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d racers committed, want exactly 1", winners, racers)
	}
}

// TestTxnCatalogErrorsAreConsuls checks the texts of the catalog
// operations' errors against Consul's state store (txnNode, txnService,
// txnCheck), and that a failing catalog operation leaves the KV ones
// unwritten.
func TestTxnCatalogErrorsAreConsuls(t *testing.T) {
	t.Parallel()
	ta := newFullAPI(t)
	c := ta.client
	if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "ext1", Address: "10.0.0.2",
		Service: &api.AgentService{ID: "web-1", Service: "web", Port: 80},
		Check:   &api.AgentCheck{CheckID: "c1", Name: "c1", Status: api.HealthPassing}}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   *api.TxnOp
		want string
	}{
		{"node cas", &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeCAS, Node: api.Node{Node: "ext1", Address: "10.0.0.2", ModifyIndex: 1}}},
			`failed to set node "ext1", index is stale`},
		{"node delete-cas", &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDeleteCAS, Node: api.Node{Node: "ext1", ModifyIndex: 1}}},
			`failed to delete node "ext1", index is stale`},
		{"service delete-cas", &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceDeleteCAS, Node: "ext1", Service: api.AgentService{ID: "web-1", ModifyIndex: 1}}},
			`failed to delete service "web-1" on node "ext1", index is stale`},
		{"check cas", &api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckCAS, Check: api.HealthCheck{Node: "ext1", CheckID: "c1", Name: "c1", Status: api.HealthCritical, ModifyIndex: 1}}},
			`failed to set check "c1" on node "ext1", index is stale`},
		{"service get", &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceGet, Node: "ext1", Service: api.AgentService{ID: "nosuch"}}},
			`service "nosuch" on node "ext1" doesn't exist`},
		{"unknown verb", &api.TxnOp{Check: &api.CheckTxnOp{Verb: "frob", Check: api.HealthCheck{Node: "ext1", CheckID: "c1"}}},
			`unknown Check verb "frob"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "errs/" + strings.ReplaceAll(tc.name, " ", "-")
			ok, resp, _, err := c.Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: []byte("x")}}, tc.op}, nil)
			if err != nil || ok {
				t.Fatalf("Txn = %v, %v; want rolled back", ok, err)
			}
			if len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || resp.Errors[0].What != tc.want {
				t.Errorf("Txn errors = %+v, want [{OpIndex:1 What:%q}]", resp.Errors, tc.want)
			}
			if p, _, _ := c.KV().Get(key, nil); p != nil {
				t.Errorf("%s written by a failed transaction", key)
			}
		})
	}
}
