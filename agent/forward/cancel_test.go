package forward_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// waitBlocking waits until the leader answers want blocking queries, or
// fails after within, naming the last count seen.
func waitBlocking(t *testing.T, s *kv.Server, want int, within time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		n := s.BlockingQueries(ws)
		if n == want {
			return
		}
		if ws.WatchCtx(ctx) != nil {
			t.Fatalf("%s: the leader answers %d blocking queries after %v; want %d", what, n, within, want)
		}
	}
}

// TestForwardedQueryEndsWithItsCaller: a blocking query forwarded client
// -> follower -> leader stops on the leader within a second of its caller
// going away (cancelled, or its deadline passing), instead of running
// out its 10-minute wait there.
func TestForwardedQueryEndsWithItsCaller(t *testing.T) {
	nodes := startCluster(t, 3)
	f := follower(nodes)
	var leader *kv.Server
	for _, nd := range nodes {
		if nd.kv.IsLeader() {
			leader = nd.kv
		}
	}
	client := forward.NewRouter(nil, func() []string { return []string{f.addr} }, forward.NewPool(5*time.Second))
	m, _, err := client.Get(ctx, kv.QueryOptions{}, "k")
	if err != nil {
		t.Fatal(err)
	}
	q := kv.QueryOptions{MinIndex: m.Index, MaxWait: 10 * time.Minute}

	t.Run("cancelled", func(t *testing.T) {
		callCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, _, err := client.Get(callCtx, q, "k")
			done <- err
		}()
		waitBlocking(t, leader, 1, 10*time.Second, "a forwarded blocking query")
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("the caller's Get = %v, want context.Canceled", err)
		}
		waitBlocking(t, leader, 0, time.Second, "after its caller was cancelled")
	})
	t.Run("deadline", func(t *testing.T) {
		callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, _, err := client.Get(callCtx, q, "k")
			done <- err
		}()
		waitBlocking(t, leader, 1, 10*time.Second, "a forwarded blocking query")
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the caller's Get = %v, want context.DeadlineExceeded", err)
		}
		waitBlocking(t, leader, 0, time.Second, "after its caller's deadline")
	})
}
