package forward_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkLocalList is a GET ?recurse the leader answers itself, as the
// HTTP API asks it: the router's own cost on top of the store's.
func BenchmarkLocalList(b *testing.B) {
	s := kvtest.NewServer(b)
	for i := range 100 {
		if _, err := s.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: fmt.Sprintf("bench/key%03d", i), Value: make([]byte, 48)}); err != nil {
			b.Fatal(err)
		}
	}
	pool := forward.NewPool(time.Second)
	b.Cleanup(pool.Close)
	r := forward.NewRouter(s, nil, pool)
	// An HTTP request's context can be cancelled: a child's timer
	// registers with it.
	reqCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, es, err := r.List(reqCtx, kv.QueryOptions{}, "bench/"); err != nil || len(es) != 100 {
			b.Fatal(len(es), err)
		}
	}
}
