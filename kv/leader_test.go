package kv_test

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// TestLeaderWatch: leadership is a signal a caller waits on, not a state
// it polls: the watch fires when the server takes leadership and again
// when it stops leading.
func TestLeaderWatch(t *testing.T) {
	cfg := kv.DefaultConfig("lw", t.TempDir(), "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	s, err := kv.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ws := memdb.NewWatchSet()
	if s.LeaderWatch(ws) {
		t.Fatal("LeaderWatch = true before Run; want false")
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	wait := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ws.WatchCtx(ctx) != nil {
			t.Fatalf("LeaderWatch did not fire within 10s when %s", what)
		}
	}
	wait("the server bootstrapped")
	ws = memdb.NewWatchSet()
	if !s.LeaderWatch(ws) {
		t.Fatal("LeaderWatch = false after its watch fired on a bootstrapped single server; want true")
	}
	stop()
	wait("Run ended")
	if s.LeaderWatch(memdb.NewWatchSet()) {
		t.Error("LeaderWatch = true after Run ended; want false")
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil
}
