package forward_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/hashicorp/raft"
)

var ctx = context.Background()

type node struct {
	kv     *kv.Server
	router *forward.Router
	addr   string
	served *servedLog
}

// servedLog counts the forwarded requests a server served, by method and
// hops, from the debug line its Endpoint logs for each.
type servedLog struct {
	mu     sync.Mutex
	counts map[string]int // "method hops" -> requests
}

func (l *servedLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *servedLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *servedLog) WithGroup(string) slog.Handler            { return l }
func (l *servedLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "forward: served a forwarded request" {
		return nil
	}
	var method, hops string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "hops":
			hops = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[method+" "+hops]++
	return nil
}

// take returns the counts since the last take and starts again.
func (l *servedLog) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = map[string]int{}
	return c
}

// startServer runs a kv server whose Raft and forwarded requests share one
// multiplexed port, as an agent's do; opts adjust its kv configuration.
func startServer(t *testing.T, id string, opts ...func(*kv.Config)) *node {
	t.Helper()
	mux, err := forward.Listen("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: mux.RaftLayer(), MaxPool: 3, Timeout: 5 * time.Second})
	cfg := kv.DefaultConfig(id, t.TempDir(), "")
	cfg.Transport, cfg.Fast = trans, true
	for _, o := range opts {
		o(&cfg)
	}
	s, err := kv.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := forward.NewPool(time.Second)
	served := &servedLog{counts: map[string]int{}}
	r := forward.NewRouter(s, nil, pool, forward.Logger(slog.New(served)))
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
			if err := <-done; err != nil {
				t.Errorf("server %s: %v", id, err)
			}
		}
	})
	return &node{kv: s, router: r, addr: mux.Addr().String(), served: served}
}

func startCluster(t *testing.T, n int, opts ...func(*kv.Config)) []*node {
	t.Helper()
	var (
		nodes []*node
		peers []kv.Peer
	)
	for i := range n {
		nd := startServer(t, fmt.Sprintf("s%d", i), opts...)
		nodes = append(nodes, nd)
		peers = append(peers, kv.Peer{ID: nd.kv.NodeID(), Address: nd.addr})
	}
	for _, nd := range nodes {
		if err := nd.kv.BootstrapCluster(peers); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, nd := range nodes {
			if nd.kv.IsLeader() {
				kvtest.WaitLeader(t, nd.kv, 10*time.Second)
				return nodes
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader among %d servers within 10s", n)
		}
		time.Sleep(10 * time.Millisecond) // polling Raft state of in-process servers; no event spans all of them
	}
}

func follower(nodes []*node) *node {
	for _, nd := range nodes {
		if !nd.kv.IsLeader() {
			return nd
		}
	}
	return nil
}

func TestForwardingFromFollowerAndClient(t *testing.T) {
	nodes := startCluster(t, 3)
	f := follower(nodes)
	client := forward.NewRouter(nil, func() []string { return []string{f.addr} }, forward.NewPool(time.Second))

	// A write through a client agent travels client -> follower -> leader.
	ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v1")})
	if err != nil || !ok {
		t.Fatalf("Apply through client = %v, %v", ok, err)
	}
	m, e, err := client.Get(ctx, kv.QueryOptions{}, "k")
	if err != nil || e == nil || string(e.Value) != "v1" || !m.KnownLeader {
		t.Fatalf("Get through client = %+v, %v, %v", e, m, err)
	}

	// A blocking query through the client wakes on a write made through
	// the follower.
	got := make(chan string, 1)
	go func() {
		_, e, err := client.Get(ctx, kv.QueryOptions{MinIndex: m.Index, MaxWait: time.Minute}, "k")
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(e.Value)
	}()
	if ok, err := f.router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v2")}); !ok || err != nil {
		t.Fatalf("Apply through follower = %v, %v", ok, err)
	}
	select {
	case v := <-got:
		if v != "v2" {
			t.Fatalf("blocking Get through client woke with %q, want v2", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking Get through client did not wake within 10s")
	}

	// Sessions and txn go the same way.
	sid, err := client.CreateSession(ctx, kv.Session{Name: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.RenewSession(ctx, sid); err != nil {
		t.Fatalf("RenewSession through client: %v", err)
	}
	if _, _, errs, err := client.Txn(ctx, kv.QueryOptions{}, []kv.Op{{Verb: kv.VerbLock, Key: "l", Session: sid}}); err != nil || errs != nil {
		t.Fatalf("Txn through client: %v %v", err, errs)
	}
	if leader := client.Leader(); leader == "" {
		t.Error("client knows no leader")
	}
	if peers, err := client.Peers(); err != nil || len(peers) != 3 {
		t.Errorf("Peers through client = %v, %v; want 3", peers, err)
	}
}

// TestClientGoesStraightToTheLeader: a client agent learns the leader from
// the servers' answers (Response.LeaderHint) and sends what needs the
// leader straight to it, not through a follower that would forward it;
// after a new election it follows the new leader. Stale reads still go
// to any server.
func TestClientGoesStraightToTheLeader(t *testing.T) {
	nodes := startCluster(t, 3)
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.addr)
	}
	client := forward.NewRouter(nil, func() []string { return addrs }, forward.NewPool(time.Second))
	// leaderOf waits for a leader other than not, ready to serve.
	leaderOf := func(not *node) *node {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, nd := range nodes {
				if nd != not && nd.kv.IsLeader() {
					kvtest.WaitLeader(t, nd.kv, 10*time.Second)
					return nd
				}
			}
			time.Sleep(10 * time.Millisecond) // polling Raft state of in-process servers, as startCluster does
		}
		t.Fatal("no new leader within 10s")
		return nil
	}
	// load sends n writes and n default reads through the client; the
	// first write may go through a follower (the client knows no leader
	// yet). It returns what the servers served of the rest.
	load := func(n int) map[*node]map[string]int {
		t.Helper()
		if ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "first", Value: []byte("v")}); !ok || err != nil {
			t.Fatalf("Apply through client = %v, %v", ok, err)
		}
		for _, nd := range nodes {
			nd.served.take()
		}
		for i := range n {
			if ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: fmt.Sprintf("k%d", i), Value: []byte("v")}); !ok || err != nil {
				t.Fatalf("Apply through client = %v, %v", ok, err)
			}
			if _, e, err := client.Get(ctx, kv.QueryOptions{}, fmt.Sprintf("k%d", i)); err != nil || e == nil {
				t.Fatalf("Get through client = %v, %v", e, err)
			}
		}
		out := map[*node]map[string]int{}
		for _, nd := range nodes {
			out[nd] = nd.served.take()
		}
		return out
	}
	check := func(when string, served map[*node]map[string]int, leader *node) {
		t.Helper()
		for nd, got := range served {
			want := map[string]int{}
			if nd == leader {
				want = map[string]int{"apply 1": 10, "get 1": 10}
			}
			if !maps.Equal(got, want) {
				t.Errorf("%s: server %s (leader: %v) served %v, want %v", when, nd.kv.NodeID(), nd == leader, got, want)
			}
		}
	}
	leader := leaderOf(nil)
	check("first leader", load(10), leader)

	if err := leader.kv.TransferLeadership("", ""); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	newLeader := leaderOf(leader)
	check("after a new election", load(10), newLeader)

	// Stale reads do not need the leader: they spread.
	for _, nd := range nodes {
		nd.served.take()
	}
	for range 60 {
		if _, _, err := client.Get(ctx, kv.QueryOptions{Stale: true}, "k1"); err != nil {
			t.Fatalf("stale Get through client: %v", err)
		}
	}
	for _, nd := range nodes {
		if got := nd.served.take()["get 1"]; got == 0 {
			t.Errorf("server %s served none of 60 stale reads; want them spread over all three", nd.kv.NodeID())
		}
	}
}

func TestForwardedErrorsKeepTheirKind(t *testing.T) {
	nodes := startCluster(t, 1)
	client := forward.NewRouter(nil, func() []string { return []string{nodes[0].addr} }, forward.NewPool(time.Second))
	_, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet})
	if !errors.Is(err, kv.ErrInvalidRequest) || !strings.Contains(err.Error(), "key is empty") {
		t.Errorf("forwarded empty-key write = %v, want ErrInvalidRequest: key is empty", err)
	}
	_, err = client.RenewSession(ctx, "nope")
	if !errors.Is(err, kv.ErrSessionNotFound) {
		t.Errorf("forwarded renew of unknown session = %v, want ErrSessionNotFound", err)
	}
	lonely := forward.NewRouter(nil, nil, forward.NewPool(time.Second))
	_, _, err = lonely.Get(ctx, kv.QueryOptions{}, "x")
	if !errors.Is(err, kv.ErrNoLeader) || !strings.Contains(err.Error(), "-retry-join") {
		t.Errorf("client with no servers = %v, want ErrNoLeader saying to join", err)
	}
}

func TestStaleReadOnFollowerIsLocal(t *testing.T) {
	nodes := startCluster(t, 3)
	f := follower(nodes)
	if _, err := f.router.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "s", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// Stop the leader's Raft: the follower still answers stale reads.
	for _, nd := range nodes {
		if nd.kv.IsLeader() {
			nd.kv.Shutdown()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, e, err := f.router.Get(ctx, kv.QueryOptions{Stale: true}, "s")
		if err == nil && e != nil && string(e.Value) == "x" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale Get on follower = %+v, %v", e, err)
		}
		time.Sleep(10 * time.Millisecond) // the write may still be on its way to this follower
	}
}

// TestClientSkipsADeadServer: a client agent whose chosen server is gone
// sends the request to another one instead of failing it.
func TestClientSkipsADeadServer(t *testing.T) {
	nodes := startCluster(t, 3)
	dead := follower(nodes)
	// A port nothing listens on, and a server that stops. Port 1, not a
	// port just closed: tests of other packages, run at the same time,
	// may be given that one again, and a write that reaches their
	// listener and loses its connection may have been applied.
	const nowhere = "127.0.0.1:1"
	var live []string
	for _, nd := range nodes {
		if nd != dead {
			live = append(live, nd.addr)
		}
	}
	client := forward.NewRouter(nil, func() []string { return append([]string{nowhere, dead.addr}, live...) }, forward.NewPool(time.Second))
	// Warm a pooled connection to the server that is about to stop.
	if _, _, err := client.Get(ctx, kv.QueryOptions{Stale: true}, "x"); err != nil {
		t.Fatal(err)
	}
	dead.kv.Shutdown()
	for i := range 20 {
		ok, err := client.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: fmt.Sprint("k", i), Value: []byte("v")})
		if err != nil || !ok {
			t.Fatalf("write %d through a client with a dead and a missing server listed = %v, %v", i, ok, err)
		}
	}
	all := forward.NewRouter(nil, func() []string { return []string{nowhere} }, forward.NewPool(time.Second))
	_, err := all.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "k", Value: []byte("v")})
	if !errors.Is(err, kv.ErrNoLeader) || !strings.Contains(err.Error(), "no server answered (tried "+nowhere+")") {
		t.Errorf("write with no reachable server = %v", err)
	}
}

// TestClientStatusSkipsASilentServer: a client's leader and peers
// questions are held like any request, so a server that takes the
// connection and never answers (a paused process) costs one try, and
// the others answer.
func TestClientStatusSkipsASilentServer(t *testing.T) {
	nodes := startCluster(t, 3)
	silent, _ := forward.SilentServer(t)
	servers := []string{silent}
	for _, nd := range nodes {
		servers = append(servers, nd.addr)
	}
	client := forward.NewRouter(nil, func() []string { return servers }, forward.NewPool(time.Second), forward.HoldTimeout(3*time.Second))
	var want string
	for _, nd := range nodes {
		if nd.kv.IsLeader() {
			want = nd.kv.Leader()
		}
	}
	if got := client.Leader(); got != want || got == "" {
		t.Errorf("Leader() through a client listing a silent server first = %q, want %q", got, want)
	}
	if peers, err := client.Peers(); err != nil || len(peers) != 3 {
		t.Errorf("Peers() = %v, %v; want the 3 servers", peers, err)
	}

	// An agent that knows no server answers at once; the hold, a
	// minute, would fail the deadline below.
	none := forward.NewRouter(nil, func() []string { return nil }, forward.NewPool(time.Second), forward.HoldTimeout(time.Minute))
	answered := make(chan error, 1)
	go func() { _, err := none.Peers(); answered <- err }()
	select {
	case err := <-answered:
		if !errors.Is(err, kv.ErrNoLeader) || !strings.Contains(err.Error(), "knows no server") {
			t.Errorf("Peers() on an agent that knows no server = %v, want it to say so", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Peers() on an agent that knows no server was still waiting after 10s")
	}

	alone := forward.NewRouter(nil, func() []string { return servers[:1] }, forward.NewPool(time.Second), forward.HoldTimeout(time.Second))
	if got := alone.Leader(); got != "" {
		t.Errorf("Leader() with only a silent server = %q, want none", got)
	}
	if _, err := alone.Peers(); !errors.Is(err, kv.ErrNoLeader) {
		t.Errorf("Peers() with only a silent server = %v, want no leader once the hold runs out", err)
	}
}
