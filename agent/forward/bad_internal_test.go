package forward

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// TestOnlyASilentServerIsMarkedBad: a server that lets a try's deadline
// pass is tried last for a while; a request its caller gave up on (a
// blocking query ended on a template reload) says nothing of the server.
func TestOnlyASilentServerIsMarkedBad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan struct{}, 16) // a request reached the server
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					select {
					case got <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	addr := ln.Addr().String()
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
