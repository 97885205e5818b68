// Package blocking runs Consul's blocking queries, the "?index=&wait="
// contract, for every store in cairn: the kv store (kv.Server), the
// service catalog (agent/catalog) and the in-process template source.
// It owns the rules they share, so that they cannot drift apart:
//
//   - wait 0 means DefaultWait; a longer wait than MaxWait is cut to it;
//     up to wait/16 of random jitter is added, as Consul does, so that
//     clients woken together do not come back together;
//   - an index below 1 is answered as 1, so that a client never sends
//     ?index=0 (which does not block) and spins (Consul's rule);
//   - a MinIndex above the store's current index (the store restarted,
//     or the index came from another agent) is answered at once, so the
//     client starts over instead of hanging for the whole wait;
//   - when the wait runs out the answer is the last read, with no error;
//     when the caller's context ends first, the context's error.
//
// A Tracker counts the queries blocked at any time, for metrics; the
// count is itself watchable.
//
// blocking is a leaf: it imports nothing of cairn's (the dependency test
// pins it), so kv and agent/catalog can both use it.
package blocking

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Consul's blocking-query limits.
const (
	// DefaultWait is how long a query waits when it gives no wait.
	DefaultWait = 5 * time.Minute
	// MaxWait is the longest a query waits, before jitter.
	MaxWait = 10 * time.Minute
)

// Wait is how long a query that asked for wait waits: DefaultWait for 0
// (or less), at most MaxWait, plus a random jitter of up to 1/16 of that.
func Wait(wait time.Duration) time.Duration {
	if wait <= 0 {
		wait = DefaultWait
	}
	wait = min(wait, MaxWait)
	return wait + rand.N(wait/16+1)
}

// Query says when a read answers.
type Query struct {
	// MinIndex makes the read block until its index is above MinIndex;
	// 0 answers at once.
	MinIndex uint64
	// Wait bounds the blocking (see Wait).
	Wait time.Duration
	// Current, when set, is the store's whole index: a MinIndex above it
	// is answered at once (the index went backwards; the client resets).
	Current func() uint64
	// Abandoned, when set, reports whether the store the query began on
	// was replaced (a snapshot restored): the read after that is the
	// answer whatever its index, as Consul's blocking queries bail out
	// when the state store is abandoned. The restored data may sit at
	// indexes the client has already seen, so waiting for a higher one
	// would hide the change.
	Abandoned func() bool
}

// Read reads the answer and adds to ws the channels that close when it
// may have changed; it returns the answer's index.
type Read func(ws memdb.WatchSet) (uint64, error)

// Tracker counts the queries in flight. The zero Tracker is ready; a nil
// *Tracker counts nothing. Safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed when n changes; nil until watched
}

// InFlight is the number of queries blocked now (those with a MinIndex,
// from their first read to their answer); it adds to ws a channel that
// closes when the number changes.
func (t *Tracker) InFlight(ws memdb.WatchSet) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	ws.Add(t.changed)
	return t.n
}

func (t *Tracker) add(d int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n += d
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// Run answers q: it runs read until the index it returns is above
// q.MinIndex, or the wait runs out, waking when a channel read added to
// its watch set closes. It returns the last read's index (at least 1),
// read's error, or ctx's error when ctx ends first.
func (t *Tracker) Run(ctx context.Context, q Query, read Read) (uint64, error) {
	wctx := ctx
	if q.MinIndex > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, Wait(q.Wait))
		defer cancel()
		t.add(1)
		defer t.add(-1)
	}
	for {
		ws := memdb.NewWatchSet()
		idx, err := read(ws)
		if err != nil {
			return 0, err
		}
		idx = max(idx, 1)
		if q.MinIndex == 0 || idx > q.MinIndex || (q.Current != nil && q.MinIndex > q.Current()) || (q.Abandoned != nil && q.Abandoned()) {
			return idx, nil
		}
		if err := ws.WatchCtx(wctx); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return idx, nil // the wait ran out: the last read is the answer
		}
	}
}

// Run is Tracker.Run for a query that no Tracker counts.
func Run(ctx context.Context, q Query, read Read) (uint64, error) {
	return (*Tracker)(nil).Run(ctx, q, read)
}
