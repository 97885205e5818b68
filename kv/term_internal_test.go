package kv

import (
	"context"
	"errors"
	"testing"
)

// TestReadsNeedThisTermsBarrier: a leader answers non-stale reads only
// once the barrier of its current term has applied every earlier entry.
// Leadership lost and won back between two looks of Run leaves ready
// closed from the old term (seen once as a stale consistent read in the
// linearizability test under load); the term of the barrier tells, and
// such a read is refused as retryable instead of answered from old state.
func TestReadsNeedThisTermsBarrier(t *testing.T) {
	cfg := DefaultConfig("s1", t.TempDir(), "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	s := startServer(t, cfg)
	ctx := context.Background()

	term := s.raft.CurrentTerm()
	if got := s.readyTerm.Load(); got != term {
		t.Fatalf("readyTerm = %d after the barrier; want the current term %d", got, term)
	}
	// What a leader sees when its ready is an earlier term's.
	s.readyTerm.Store(term - 1)
	for _, q := range []QueryOptions{{Consistent: true}, {}} {
		if _, _, err := s.Get(ctx, q, "k"); !errors.Is(err, ErrNotLeader) {
			t.Errorf("Get(%+v) with an earlier term's barrier = %v; want ErrNotLeader (retry)", q, err)
		}
	}
	if _, _, err := s.Get(ctx, QueryOptions{Stale: true}, "k"); err != nil {
		t.Errorf("stale Get = %v; want an answer (stale reads need no leader)", err)
	}
	s.readyTerm.Store(term)
	if _, _, err := s.Get(ctx, QueryOptions{Consistent: true}, "k"); err != nil {
		t.Errorf("consistent Get with this term's barrier = %v; want an answer", err)
	}
}
