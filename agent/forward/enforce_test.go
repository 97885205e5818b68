package forward_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/hashicorp/raft"
)

// prefixAuthz grants access on the keys (and sessions' nodes, ...) under
// its prefixes; everything else is denied (default deny).
type prefixAuthz map[acl.Resource]map[string]acl.Access

// withAccessor is an authorizer that knows its token's AccessorID, as
// the resolver's do.
type withAccessor struct {
	prefixAuthz
	accessor string
}

func (w withAccessor) AccessorID() string { return w.accessor }

func (a prefixAuthz) Allowed(r acl.Resource, name string, want acl.Access) bool {
	best, bestLen := acl.Unset, -1
	for p, lvl := range a[r] {
		if strings.HasPrefix(name, p) && len(p) > bestLen {
			best, bestLen = lvl, len(p)
		}
	}
	return best != acl.Deny && best >= want
}

func (a prefixAuthz) AllowedUnder(r acl.Resource, prefix string, want acl.Access) bool {
	if !a.Allowed(r, prefix, want) {
		return false
	}
	for p, lvl := range a[r] {
		if strings.HasPrefix(p, prefix) && lvl < want {
			return false
		}
	}
	return true
}

type tokens struct {
	mu sync.Mutex
	m  map[string]acl.Authorizer
}

func (t *tokens) Authorizer(_ context.Context, secret string) (acl.Authorizer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.m[secret]; ok {
		return a, nil
	}
	return nil, acl.ErrNotFound
}

// startACLServer is a single server that checks forwarded requests
// against res.
func startACLServer(t *testing.T, res acl.Resolver, opts ...forward.Option) *node {
	t.Helper()
	mux, err := forward.Listen("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: mux.RaftLayer(), MaxPool: 3, Timeout: 5 * time.Second})
	cfg := kv.DefaultConfig("s0", t.TempDir(), "")
	cfg.Transport, cfg.Fast, cfg.Bootstrap = trans, true, true
	s, err := kv.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := forward.NewPool(time.Second)
	r := forward.NewRouter(s, nil, pool, append([]forward.Option{forward.ACL(func() acl.Resolver { return res })}, opts...)...)
	serve, err := forward.ServeConn(r)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- s.Run(runCtx) }()
	go func() { done <- mux.Serve(serve) }()
	t.Cleanup(func() {
		cancel()
		pool.Close()
		mux.Close()
		for range 2 {
			<-done
		}
	})
	kvtest.WaitLeader(t, s, 10*time.Second)
	return &node{kv: s, router: r, addr: mux.Addr().String()}
}

// TestServerChecksForwardedTokens: a server checks the token a forwarded
// request carries, so a process on the server port gets no more than the
// HTTP API would give it; the agent's own requests (marked Internal) go
// with the agent token; requests a server serves for itself are not
// checked here (its HTTP API did).
func TestServerChecksForwardedTokens(t *testing.T) {
	res := &tokens{m: map[string]acl.Authorizer{
		"":       prefixAuthz{}, // anonymous, default deny
		"writer": prefixAuthz{acl.Key: {"app/": acl.Write}, acl.Session: {"n1": acl.Write}},
		"reader": withAccessor{prefixAuthz{acl.Key: {"app/x": acl.Read}, acl.Session: {"n1": acl.Read}}, "4c8796f0-1450-401a-9241-ed728f43a222"},
		"agent":  prefixAuthz{acl.Key: {"_cairn/vip/": acl.Write}},
		"mgmt":   prefixAuthz{acl.Key: {"": acl.Write}, acl.ACL: {"": acl.Write}, acl.Session: {"": acl.Write}},
	}}
	srv := startACLServer(t, res)
	// The server's own agent writes without a token: not checked here.
	for _, k := range []string{"app/x", "app/y", "_cairn/acl/token/s"} {
		if _, err := srv.router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: k, Value: []byte("v")}); err != nil {
			t.Fatalf("local Apply(%s): %v", k, err)
		}
	}
	pool := forward.NewPool(time.Second)
	t.Cleanup(pool.Close)
	client := forward.NewRouter(nil, func() []string { return []string{srv.addr} }, pool, forward.HoldTimeout(time.Second),
		forward.AgentToken(func() string { return "agent" }))
	as := func(tok string) context.Context { return kv.WithToken(ctx, tok) }

	// Writes: checked per key.
	for _, tc := range []struct {
		token, key string
		want       error
	}{
		{"writer", "app/z", nil},
		{"reader", "app/z", acl.ErrPermissionDenied},
		{"", "app/z", acl.ErrPermissionDenied},
		{"unknown", "app/z", acl.ErrNotFound},
		{"writer", "_cairn/acl/token/s", acl.ErrPermissionDenied},
		{"mgmt", "_cairn/acl/token/s2", nil},
	} {
		_, err := client.Apply(as(tc.token), kv.Op{Verb: kv.VerbSet, Key: tc.key, Value: []byte("v")})
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Apply(%s) as %q = %v, want %v", tc.key, tc.token, err, tc.want)
		}
	}
	_, err := client.Apply(as("reader"), kv.Op{Verb: kv.VerbSet, Key: "app/x", Value: []byte("v")})
	if err == nil || err.Error() != `Permission denied: token with AccessorID '4c8796f0-1450-401a-9241-ed728f43a222' lacks permission 'key:write' on "app/x"` {
		t.Errorf("the refusal's text crossed the wire as %v", err)
	}
	if _, err := client.Apply(as("writer"), kv.Op{Verb: kv.VerbDeleteTree, Key: ""}); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("delete-tree of the root as writer (app/ only) = %v, want Permission denied", err)
	}

	// Reads: a key is refused, a list is filtered and says so.
	if _, _, err := client.Get(as("reader"), kv.QueryOptions{}, "app/y"); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("Get(app/y) as reader = %v, want Permission denied", err)
	}
	m, es, err := client.List(as("reader"), kv.QueryOptions{}, "")
	if err != nil || len(es) != 1 || es[0].Key != "app/x" || !m.ResultsFilteredByACLs {
		t.Errorf("List(\"\") as reader = %d entries, filtered %v, %v; want only app/x, filtered", len(es), m.ResultsFilteredByACLs, err)
	}
	if _, ks, _ := client.Keys(as("mgmt"), kv.QueryOptions{}, "", ""); len(ks) != 5 {
		t.Errorf("Keys as management = %v, want all 5 keys, the ACL ones included", ks)
	}

	// A transaction is refused whole, with the refusal as the op's error.
	_, _, txnErrs, err := client.Txn(as("reader"), kv.QueryOptions{}, []kv.Op{
		{Verb: kv.VerbGet, Key: "app/x"},
		{Verb: kv.VerbSet, Key: "app/x", Value: []byte("w")},
	})
	if err != nil || len(txnErrs) != 1 || txnErrs[0].OpIndex != 1 || !strings.Contains(txnErrs[0].What, "Permission denied") {
		t.Errorf("Txn as reader = %v, %v; want op 1 refused", txnErrs, err)
	}

	// Sessions: session write on the node to create, read to see.
	if _, err := client.CreateSession(as("reader"), kv.Session{Node: "n1"}); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("CreateSession(n1) as reader = %v, want Permission denied", err)
	}
	id, err := client.CreateSession(as("writer"), kv.Session{Node: "n1", Behavior: kv.BehaviorRelease})
	if err != nil {
		t.Fatalf("CreateSession(n1) as writer: %v", err)
	}
	if _, ss, _ := client.Sessions(as(""), kv.QueryOptions{}); len(ss) != 0 {
		t.Errorf("Sessions as anonymous = %v, want none", ss)
	}
	if _, ss, _ := client.Sessions(as("reader"), kv.QueryOptions{}); len(ss) != 1 || ss[0].ID != id {
		t.Errorf("Sessions as reader = %v, want the n1 session", ss)
	}
	if err := client.DestroySession(as("reader"), id); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("DestroySession as reader = %v, want Permission denied", err)
	}

	// The agent's own requests carry the agent token, whatever the
	// context carried; the same request unmarked is the caller's.
	vip := kv.Op{Verb: kv.VerbSet, Key: "_cairn/vip/service/web", Value: []byte("10.0.0.1")}
	if _, err := client.Internal().Apply(as("reader"), vip); err != nil {
		t.Errorf("internal Apply(_cairn/vip/...) = %v, want it allowed by the agent token", err)
	}
	if _, err := client.Apply(as(""), vip); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("the same Apply, not internal, as anonymous = %v, want Permission denied", err)
	}
	if _, err := client.Internal().Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "app/q", Value: []byte("v")}); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Errorf("internal Apply(app/q), which the agent token may not write = %v, want Permission denied", err)
	}
}

// TestFilteredAnswersLeaveTheStoreAlone: a server filters a forwarded
// listing into a new list; the store's listing cache hands out its own
// slice, so filtering it in place would hide keys from every later reader
// of the prefix (and leave nil entries that a key listing dereferences).
func TestFilteredAnswersLeaveTheStoreAlone(t *testing.T) {
	res := &tokens{m: map[string]acl.Authorizer{
		"reader": prefixAuthz{acl.Key: {"app/b": acl.Read}},
		"mgmt":   prefixAuthz{acl.Key: {"": acl.Write}},
	}}
	srv := startACLServer(t, res)
	all := []string{"app/a", "app/b", "app/c"}
	for _, k := range all {
		if _, err := srv.router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	pool := forward.NewPool(time.Second)
	t.Cleanup(pool.Close)
	client := forward.NewRouter(nil, func() []string { return []string{srv.addr} }, pool, forward.HoldTimeout(time.Second))
	for range 2 { // the first read fills the listing cache, the second is served from it
		_, es, err := client.List(kv.WithToken(ctx, "reader"), kv.QueryOptions{}, "app/")
		if err != nil || len(es) != 1 || es[0].Key != "app/b" {
			t.Fatalf("List(app/) as reader = %v, %v; want app/b alone", es, err)
		}
	}
	_, es, err := srv.router.List(ctx, kv.QueryOptions{}, "app/")
	var got []string
	for _, e := range es {
		if e == nil {
			got = append(got, "<nil>")
		} else {
			got = append(got, e.Key)
		}
	}
	if err != nil || !slices.Equal(got, all) {
		t.Errorf("the server's own List(app/) after filtered forwarded ones = %v, %v; want %v", got, err, all)
	}
	if _, ks, err := client.Keys(kv.WithToken(ctx, "mgmt"), kv.QueryOptions{}, "app/", ""); err != nil || !slices.Equal(ks, all) {
		t.Errorf("Keys(app/) as management = %v, %v; want %v", ks, err, all)
	}
}

// TestServerKeyListPolicy: with acl.enable_key_list_policy a server
// refuses a forwarded recursive read or key listing unless the token has
// "list" on the prefix; without it the answer is only filtered.
func TestServerKeyListPolicy(t *testing.T) {
	res := &tokens{m: map[string]acl.Authorizer{
		"reader": prefixAuthz{acl.Key: {"app/": acl.Read}},
		"lister": prefixAuthz{acl.Key: {"app/": acl.List}},
	}}
	for _, policy := range []bool{false, true} {
		srv := startACLServer(t, res, forward.KeyListPolicy(policy))
		if _, err := srv.router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "app/x", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		pool := forward.NewPool(time.Second)
		t.Cleanup(pool.Close)
		client := forward.NewRouter(nil, func() []string { return []string{srv.addr} }, pool, forward.HoldTimeout(time.Second))
		for _, tc := range []struct {
			token   string
			refused bool
		}{
			{"reader", policy},
			{"lister", false},
		} {
			as := kv.WithToken(ctx, tc.token)
			_, es, listErr := client.List(as, kv.QueryOptions{}, "app/")
			_, ks, keysErr := client.Keys(as, kv.QueryOptions{}, "app/", "")
			for what, err := range map[string]error{"List": listErr, "Keys": keysErr} {
				if tc.refused != errors.Is(err, acl.ErrPermissionDenied) {
					t.Errorf("policy %v: %s(app/) as %s = %v; want refused: %v", policy, what, tc.token, err, tc.refused)
				}
			}
			if !tc.refused && (len(es) != 1 || len(ks) != 1) {
				t.Errorf("policy %v: as %s got %d entries and %d keys; want app/x", policy, tc.token, len(es), len(ks))
			}
		}
	}
}
