package kv_test

import (
	"fmt"
	"testing"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkGet is one default-consistency read of an existing key on the
// leader: the store's share of a GET /v1/kv request.
func BenchmarkGet(b *testing.B) {
	s := kvtest.NewServer(b)
	if _, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, e, err := s.Get(ctx, kv.QueryOptions{}, "bench/key"); err != nil || e == nil {
			b.Fatal(e, err)
		}
	}
}

// BenchmarkSet is one acknowledged write (Raft commit with fsync), with
// each Raft log.
func BenchmarkSet(b *testing.B) {
	for _, logs := range []string{kv.LogStoreWAL, kv.LogStoreBolt} {
		b.Run(logs, func(b *testing.B) {
			s := kvtest.NewServer(b, func(c *kv.Config) { c.LogStore = logs })
			v := make([]byte, 128)
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: v}); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkSetParallel is acknowledged writes from 64 concurrent callers
// (b.SetParallelism(32) on 2 CPUs): how well Raft groups them into
// appends, each with one fsync (two with bolt).
func BenchmarkSetParallel(b *testing.B) {
	for _, logs := range []string{kv.LogStoreWAL, kv.LogStoreBolt} {
		b.Run(logs, func(b *testing.B) {
			s := kvtest.NewServer(b, func(c *kv.Config) { c.LogStore = logs })
			v := make([]byte, 128)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ok, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: v}); err != nil || !ok {
						b.Error(ok, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkList is one default-consistency listing of 100 keys on the
// leader (GET /v1/kv/<prefix>?recurse's share in the store).
func BenchmarkList(b *testing.B) {
	s := kvtest.NewServer(b)
	for i := range 100 {
		if _, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: fmt.Sprintf("bench/key%03d", i), Value: make([]byte, 48)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, es, err := s.List(ctx, kv.QueryOptions{}, "bench/"); err != nil || len(es) != 100 {
			b.Fatal(len(es), err)
		}
	}
}
