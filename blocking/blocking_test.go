package blocking

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-memdb"
)

func TestWait(t *testing.T) {
	tests := []struct {
		name     string
		wait     time.Duration
		min, max time.Duration
	}{
		{"zero is the default", 0, DefaultWait, DefaultWait + DefaultWait/16},
		{"negative is the default", -time.Second, DefaultWait, DefaultWait + DefaultWait/16},
		{"a short wait is kept", 16 * time.Second, 16 * time.Second, 17 * time.Second},
		{"a long wait is cut to the maximum", time.Hour, MaxWait, MaxWait + MaxWait/16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 1000 {
				if got := Wait(tc.wait); got < tc.min || got > tc.max {
					t.Fatalf("Wait(%v) = %v, want between %v and %v", tc.wait, got, tc.min, tc.max)
				}
			}
		})
	}
}

// store is a one-value store with a watch channel, like a memdb table.
type store struct {
	mu      sync.Mutex
	idx     uint64
	changed chan struct{}
}

func newStore(idx uint64) *store { return &store{idx: idx, changed: make(chan struct{})} }

func (s *store) read(ws memdb.WatchSet) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws.Add(s.changed)
	return s.idx, nil
}

func (s *store) set(idx uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx = idx
	close(s.changed)
	s.changed = make(chan struct{})
}

// result is one Run's answer and how long it took (synctest's clock).
type result struct {
	idx  uint64
	err  error
	took time.Duration
}

func run(ctx context.Context, tr *Tracker, q Query, read Read) <-chan result {
	out := make(chan result, 1)
	start := time.Now()
	go func() {
		idx, err := tr.Run(ctx, q, read)
		out <- result{idx, err, time.Since(start)}
	}()
	return out
}

func TestRun(t *testing.T) {
	t.Run("no MinIndex answers at once, at least index 1", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := <-run(t.Context(), nil, Query{}, newStore(0).read)
			if r.idx != 1 || r.err != nil || r.took != 0 {
				t.Errorf("Run(MinIndex 0) on index 0 = %d, %v after %v; want 1, nil at once", r.idx, r.err, r.took)
			}
		})
	})
	t.Run("a change above MinIndex wakes the query", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newStore(5)
			var tr Tracker
			res := run(t.Context(), &tr, Query{MinIndex: 5, Wait: time.Minute}, s.read)
			synctest.Wait()
			if n := tr.InFlight(memdb.NewWatchSet()); n != 1 {
				t.Fatalf("InFlight while blocked = %d, want 1", n)
			}
			time.Sleep(10 * time.Second) // synctest's clock
			s.set(5)                     // a write that does not move this answer's index
			synctest.Wait()
			select {
			case r := <-res:
				t.Fatalf("Run woke on a change that kept index 5: %+v", r)
			default:
			}
			s.set(6)
			r := <-res
			if r.idx != 6 || r.err != nil || r.took != 10*time.Second {
				t.Errorf("Run = %d, %v after %v; want 6, nil after 10s", r.idx, r.err, r.took)
			}
			if n := tr.InFlight(memdb.NewWatchSet()); n != 0 {
				t.Errorf("InFlight after the answer = %d, want 0", n)
			}
		})
	})
	t.Run("the wait runs out with the last read, jitter included", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := <-run(t.Context(), nil, Query{MinIndex: 5, Wait: 16 * time.Second}, newStore(5).read)
			if r.idx != 5 || r.err != nil || r.took < 16*time.Second || r.took > 17*time.Second {
				t.Errorf("Run = %d, %v after %v; want 5, nil after 16s to 17s", r.idx, r.err, r.took)
			}
		})
	})
	t.Run("a wait above the maximum is cut", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := <-run(t.Context(), nil, Query{MinIndex: 5, Wait: time.Hour}, newStore(5).read)
			if r.took < MaxWait || r.took > MaxWait+MaxWait/16 {
				t.Errorf("Run(wait 1h) answered after %v; want %v plus at most 1/16", r.took, MaxWait)
			}
		})
	})
	t.Run("a MinIndex above the store's index answers at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := Query{MinIndex: 100, Wait: time.Minute, Current: func() uint64 { return 7 }}
			r := <-run(t.Context(), nil, q, newStore(7).read)
			if r.idx != 7 || r.err != nil || r.took != 0 {
				t.Errorf("Run(MinIndex 100) on a store at 7 = %d, %v after %v; want 7, nil at once", r.idx, r.err, r.took)
			}
		})
	})
	t.Run("a store replaced while the query waits answers with its next read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newStore(9)
			var replaced atomic.Bool
			res := run(t.Context(), nil, Query{MinIndex: 9, Wait: time.Minute, Abandoned: replaced.Load}, s.read)
			time.Sleep(time.Second)
			replaced.Store(true)
			s.set(4) // a restore: older data, at an index the client has seen
			r := <-res
			if r.idx != 4 || r.err != nil || r.took != time.Second {
				t.Errorf("Run across a restore = %d, %v after %v; want 4, nil after 1s", r.idx, r.err, r.took)
			}
		})
	})
	t.Run("the caller going away ends the query with its error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			var tr Tracker
			res := run(ctx, &tr, Query{MinIndex: 5}, newStore(5).read)
			synctest.Wait()
			ws := memdb.NewWatchSet()
			if n := tr.InFlight(ws); n != 1 {
				t.Fatalf("InFlight = %d, want 1", n)
			}
			time.Sleep(time.Second)
			cancel()
			r := <-res
			if !errors.Is(r.err, context.Canceled) || r.took != time.Second {
				t.Errorf("Run after cancel = %d, %v after %v; want context.Canceled after 1s", r.idx, r.err, r.took)
			}
			if ws.WatchCtx(t.Context()) != nil || tr.InFlight(memdb.NewWatchSet()) != 0 {
				t.Error("InFlight did not fire and drop to 0 when the query ended")
			}
		})
	})
	t.Run("a read error is the answer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			boom := errors.New("boom")
			r := <-run(t.Context(), nil, Query{MinIndex: 5}, func(memdb.WatchSet) (uint64, error) { return 0, boom })
			if r.err != boom {
				t.Errorf("Run with a failing read = %v, want boom", r.err)
			}
		})
	})
}
