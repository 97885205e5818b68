package forward_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/kv"
)

// TestWritesHeldThroughLeaderLoss: when the leader goes away, writes
// through a client agent wait for the new leader (the hold) instead of
// failing, and each is applied once.
func TestWritesHeldThroughLeaderLoss(t *testing.T) {
	nodes := startCluster(t, 3)
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.addr)
	}
	client := forward.NewRouter(nil, func() []string { return addrs }, forward.NewPool(time.Second), forward.HoldTimeout(10*time.Second))
	var leader *node
	for _, nd := range nodes {
		if nd.kv.IsLeader() {
			leader = nd
		}
	}
	leader.kv.Shutdown()
	for i := range 20 {
		ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: fmt.Sprint("held/", i), Value: []byte("v")})
		if err != nil || !ok {
			t.Fatalf("write %d after the leader stopped = %v, %v; want it held until a new leader takes it", i, ok, err)
		}
	}
	// A CAS held through the same is answered once: true.
	ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbCAS, Key: "held/cas", Index: 0, Value: []byte("v")})
	if err != nil || !ok {
		t.Fatalf("cas = %v, %v; want true", ok, err)
	}
	_, keys, err := client.Keys(ctx, kv.QueryOptions{}, "held/", "")
	if err != nil || len(keys) != 21 {
		t.Fatalf("keys = %v, %v; want the 21 written", keys, err)
	}
}

// TestHoldEndsWithoutQuorum: with no majority, a write waits the hold
// time, then fails saying there is no leader and that nothing was
// written, never "may have been applied" (nothing reached a leader).
func TestHoldEndsWithoutQuorum(t *testing.T) {
	nodes := startCluster(t, 3)
	survivor := follower(nodes)
	for _, nd := range nodes {
		if nd != survivor {
			nd.kv.Shutdown()
		}
	}
	client := forward.NewRouter(nil, func() []string { return []string{survivor.addr} }, forward.NewPool(time.Second), forward.HoldTimeout(500*time.Millisecond))
	_, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v")})
	if !errors.Is(err, kv.ErrNoLeader) || errors.Is(err, kv.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "hold time") {
		t.Fatalf("write without quorum = %v; want no cluster leader after the hold time", err)
	}
	// A read is held the same way and fails the same way.
	if _, _, err := client.Get(ctx, kv.QueryOptions{}, "k"); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("read without quorum = %v; want no cluster leader", err)
	}
	// A stale read needs no leader.
	if _, _, err := client.Get(ctx, kv.QueryOptions{Stale: true}, "k"); err != nil {
		t.Fatalf("stale read without quorum = %v", err)
	}
}

// TestSessionNodeMustExist: a session for a node the catalog does not
// know is refused (its failure could never end the session).
func TestSessionNodeMustExist(t *testing.T) {
	nodes := startCluster(t, 1)
	known := map[string]bool{"n1": true}
	r := forward.NewRouter(nodes[0].kv, nil, forward.NewPool(time.Second), forward.NodeExists(func(n string) bool { return known[n] }))
	if _, err := r.CreateSession(ctx, kv.Session{Node: "ghost"}); !errors.Is(err, kv.ErrInvalidRequest) || !strings.Contains(err.Error(), `node "ghost" is not in the catalog`) {
		t.Fatalf("session for an unknown node: %v; want invalid request naming it", err)
	}
	if _, err := r.CreateSession(ctx, kv.Session{Node: "n1"}); err != nil {
		t.Fatalf("session for a known node: %v", err)
	}
}

// TestWriteCutOffByItsCallerIsOutcomeUnknown is the sequence of a server
// agent stopping (SIGTERM: it hands leadership over, then its HTTP server
// cancels the requests still running) while one of them, a CAS it
// forwarded to the new leader, is applied there. The caller must hear
// that the write may have been applied, not its context's error: the
// HTTP layer took that for a client that went away and answered nothing,
// which net/http sent as an empty 200, and Consul's client read it as a
// CAS that did not swap (TestLinearizableThroughLeaderChanges).
func TestWriteCutOffByItsCallerIsOutcomeUnknown(t *testing.T) {
	// The leader, once it has applied the write, cancels the caller's
	// context and holds its answer back until the caller has returned.
	nodes, onCommit := startClusterWithCommitHook(t, 3)
	f := follower(nodes)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	returned := make(chan struct{})
	cut := func() {
		cancel()
		<-returned
	}
	onCommit.Store(&cut)

	ok, err := f.router.Apply(wctx, kv.Op{Verb: kv.VerbCAS, Key: "k", Index: 0, Value: []byte("v")})
	close(returned)
	if !errors.Is(err, kv.ErrOutcomeUnknown) || errors.Is(err, context.Canceled) {
		t.Errorf("CAS cut off by its caller after the leader applied it = %v, %v; want kv.ErrOutcomeUnknown, not context.Canceled", ok, err)
	}
	_, e, err := f.router.Get(ctx, kv.QueryOptions{Consistent: true}, "k")
	if err != nil || e == nil || string(e.Value) != "v" {
		t.Fatalf("k after the CAS = %v, %v; want the CAS's value (it was applied)", e, err)
	}
}

// TestTxnThatReadsIsNotSentAgain: a write transaction that also reads
// values goes without a write ID, since the state machine does not keep
// what it read for a repeat; once it may have been applied it is not
// sent again, and the caller learns the outcome is unknown, as Consul's
// would. A transaction that only writes is sent again and gets the first
// answer. Here the leader holds the first answer past the try's deadline.
func TestTxnThatReadsIsNotSentAgain(t *testing.T) {
	nodes, onCommit := startClusterWithCommitHook(t, 3)
	var servers []string
	for _, nd := range nodes {
		servers = append(servers, nd.addr)
	}
	if _, err := nodes[0].router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "a", Value: []byte("read me")}); err != nil {
		t.Fatal(err)
	}
	pool := forward.NewPool(time.Second)
	t.Cleanup(pool.Close)
	client := forward.NewRouter(nil, func() []string { return servers }, pool, forward.HoldTimeout(3*time.Second))
	for _, tc := range []struct {
		name string
		ops  []kv.Op
		want error // nil: answered
	}{
		{"writes only", []kv.Op{{Verb: kv.VerbSet, Key: "w", Value: []byte("v")}}, nil},
		{"reads and writes", []kv.Op{{Verb: kv.VerbGet, Key: "a"}, {Verb: kv.VerbSet, Key: "rw", Value: []byte("v")}}, kv.ErrOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			hold := func() { <-release }
			onCommit.Store(&hold)
			_, res, errs, err := client.Txn(ctx, kv.QueryOptions{}, tc.ops)
			close(release)
			switch {
			case tc.want == nil && (err != nil || len(errs) > 0 || len(res) != len(tc.ops)):
				t.Errorf("Txn whose first answer was held back = %v, %v, %v; want it answered", res, errs, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("Txn whose first answer was held back = %v, %v, %v; want %v", res, errs, err, tc.want)
			}
			last := tc.ops[len(tc.ops)-1].Key
			if _, e, err := client.Get(ctx, kv.QueryOptions{Consistent: true}, last); err != nil || e == nil {
				t.Errorf("%s after the transaction = %v, %v; want it written", last, e, err)
			}
		})
	}
}

// startClusterWithCommitHook starts n servers; the next write a server
// commits after a function is stored in the hook runs it (once) before
// the write is answered.
func startClusterWithCommitHook(t *testing.T, n int) ([]*node, *atomic.Pointer[func()]) {
	t.Helper()
	hook := new(atomic.Pointer[func()])
	nodes := startCluster(t, n, func(c *kv.Config) {
		c.OnCommit = func(time.Duration) {
			if f := hook.Swap(nil); f != nil {
				(*f)()
			}
		}
	})
	return nodes, hook
}
