package catalog

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Blocking-query limits, Consul's (the same as the KV store's).
const (
	DefaultQueryWait = 5 * time.Minute
	MaxQueryWait     = 10 * time.Minute
)

// Block runs read until the index it reports is above minIndex, or the
// wait runs out (then it answers with what it read last): Consul's
// blocking-query contract for catalog reads, shared by the HTTP API and
// the in-process template source. wait 0 means DefaultQueryWait; it is
// capped at MaxQueryWait and gets up to wait/16 of jitter, as Consul adds.
// A minIndex above this catalog's own index (from another agent, or from
// before a restart) is answered at once, so the caller starts over
// instead of hanging. The error is ctx's, when it ends first.
func (c *Catalog) Block(ctx context.Context, minIndex uint64, wait time.Duration, read func(ws memdb.WatchSet) uint64) (uint64, error) {
	wctx := ctx
	if minIndex > 0 {
		if wait <= 0 {
			wait = DefaultQueryWait
		}
		wait = min(wait, MaxQueryWait)
		wait += rand.N(wait/16 + 1)
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	for {
		ws := memdb.NewWatchSet()
		idx := read(ws)
		if minIndex == 0 || idx > minIndex || minIndex > c.Index() {
			return idx, nil
		}
		if err := ws.WatchCtx(wctx); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return idx, nil
		}
	}
}
