// Package kvtest starts real kv servers for tests, the way httptest starts
// HTTP servers: a bootstrapped single server in a temporary data dir, its
// Raft on loopback, already leading when returned and stopped at cleanup.
package kvtest

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// NewServer starts a single-server cluster in t.TempDir() and waits until
// it leads. opts adjust the config before it opens.
func NewServer(t testing.TB, opts ...func(*kv.Config)) *kv.Server {
	t.Helper()
	cfg := kv.DefaultConfig("test-server", t.TempDir(), "127.0.0.1:0")
	cfg.NodeName = "test-node"
	cfg.Bootstrap = true
	cfg.Fast = true
	for _, o := range opts {
		o(&cfg)
	}
	return Start(t, cfg)
}

// Start opens a server with cfg exactly, runs it until cleanup, and waits
// until it leads.
func Start(t testing.TB, cfg kv.Config) *kv.Server {
	t.Helper()
	s, err := kv.Open(cfg)
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kv server Run: %v", err)
		}
	})
	WaitLeader(t, s, 10*time.Second)
	return s
}

// WaitLeader blocks until s leads and its leader barrier has completed,
// or fails the test after timeout.
func WaitLeader(t testing.TB, s *kv.Server, timeout time.Duration) {
	t.Helper()
	ch := s.Raft().LeaderCh()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !s.IsLeader() {
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("kv server %s did not become leader within %v (leader now %q)", s.NodeID(), timeout, s.Leader())
		}
	}
	// A consistent read succeeds only after the leader barrier.
	for {
		_, _, err := s.Get(context.Background(), kv.QueryOptions{Consistent: true}, "kvtest/ready")
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("kv server %s leads but is not ready for consistent reads within %v: %v", s.NodeID(), timeout, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
