package catalog

import (
	"context"
	"time"

	"github.com/cairn-dev/cairn/blocking"
	"github.com/hashicorp/go-memdb"
)

// Blocking-query limits, Consul's; package blocking owns them.
const (
	DefaultQueryWait = blocking.DefaultWait
	MaxQueryWait     = blocking.MaxWait
)

// Block runs read until the index it reports is above minIndex, or the
// wait runs out (then it answers with what it read last): Consul's
// blocking-query contract for catalog reads, shared by the HTTP API and
// the in-process template source, with package blocking's rules (wait
// clamp and jitter, an index of at least 1). A minIndex above this
// catalog's own index (from another agent, or from before a restart) is
// answered at once, so the caller starts over instead of hanging. The
// error is ctx's, when it ends first.
func (c *Catalog) Block(ctx context.Context, minIndex uint64, wait time.Duration, read func(ws memdb.WatchSet) uint64) (uint64, error) {
	return c.blocking.Run(ctx, blocking.Query{MinIndex: minIndex, Wait: wait, Current: c.Index},
		func(ws memdb.WatchSet) (uint64, error) { return read(ws), nil })
}

// BlockingQueries is the number of blocking queries this catalog is
// answering now (for metrics); it adds to ws a channel that closes when
// the number changes.
func (c *Catalog) BlockingQueries(ws memdb.WatchSet) int { return c.blocking.InFlight(ws) }
