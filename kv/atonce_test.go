package kv_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// TestReadAtOnceRefusesToWait: a read made AtOnce answers when it needs
// no wait and refuses with ErrWouldWait where it would wait (a
// ?consistent read always asks a quorum), so a caller can retry it with
// its own bound on the wait.
func TestReadAtOnceRefusesToWait(t *testing.T) {
	s := kvtest.NewServer(t)
	ctx := context.Background()
	if _, err := s.Apply(ctx, kv.Op{Verb: kv.VerbSet, Key: "a/b", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    kv.QueryOptions
		want error
	}{
		{"stale", kv.QueryOptions{Stale: true, AtOnce: true}, nil},
		{"consistent", kv.QueryOptions{Consistent: true, AtOnce: true}, kv.ErrWouldWait},
		{"consistent, waiting allowed", kv.QueryOptions{Consistent: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e, err := s.Get(ctx, tt.q, "a/b")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Get: %v, want %v", err, tt.want)
			}
			if tt.want == nil && (e == nil || string(e.Value) != "v") {
				t.Fatalf("Get: %+v", e)
			}
			_, es, err := s.List(ctx, tt.q, "a/")
			if !errors.Is(err, tt.want) {
				t.Fatalf("List: %v, want %v", err, tt.want)
			}
			if tt.want == nil && len(es) != 1 {
				t.Fatalf("List: %d entries", len(es))
			}
		})
	}
}
