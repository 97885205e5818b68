package forward

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// TestOnlyASilentServerIsMarkedBad: a server that lets a try's deadline
// pass is tried last for a while; a request its caller gave up on (a
// blocking query ended on a template reload) says nothing of the server.
func TestOnlyASilentServerIsMarkedBad(t *testing.T) {
	addr, got := SilentServer(t)
	pool := NewPool(time.Second)
	t.Cleanup(pool.Close)
	r := NewRouter(nil, func() []string { return []string{addr} }, pool, HoldTimeout(time.Second))
	isBad := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, bad := r.bad[addr]
		return bad
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := r.Get(ctx, kv.QueryOptions{MinIndex: 5, MaxWait: time.Minute}, "k")
		done <- err
	}()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the server within 10s")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get after its caller went away = %v, want context.Canceled", err)
	}
	if isBad() {
		t.Error("the server is marked bad because a caller went away")
	}

	if _, _, err := r.Get(context.Background(), kv.QueryOptions{}, "k"); err == nil {
		t.Fatal("a Get from a server that never answers succeeded")
	}
	if !isBad() {
		t.Error("a server that let the try's deadline pass is not marked bad")
	}
}
