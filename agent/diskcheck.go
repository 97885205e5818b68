package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/kv"
)

// diskCheckID is the check on a server's "consul" service that shows its
// data dir's disk fault (full, read-only, I/O error). A server whose
// disk refuses writes cannot take part in commits, so its "consul"
// instance turns critical and leaves consul.service.consul and
// ?passing answers; the node and its other services stay as they are,
// since the fault is the Raft store's, not theirs.
const diskCheckID = "cairn-disk"

// diskRecheck is how often a disk fault is looked at again while it
// lasts: without writes nothing else would notice it is over.
const diskRecheck = 5 * time.Second

// diskCheckPart keeps the disk check in step with the store's disk
// condition: it waits for the condition to change and, while there is
// one, looks again every diskRecheck.
func (w *wiring) diskCheckPart(cat *catalog.Catalog) (part, bool) {
	if w.store == nil || !w.cfg.Server {
		return part{}, false
	}
	store, log := w.store, w.log
	return part{"disk health check", func(ctx context.Context) error {
		for {
			changed := store.DiskChanged()
			cond := store.RecheckDisk()
			var err error
			if cond == nil {
				err = cat.ClearConditionCheck(diskCheckID)
			} else {
				err = cat.SetConditionCheck(diskCheck(cond))
			}
			if err != nil {
				// The catalog's own log may be on the failing disk.
				log.Warn("could not show the disk condition in the catalog; trying again", "err", err)
			}
			var again <-chan time.Time
			if cond != nil || err != nil {
				again = time.After(diskRecheck)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-again:
			}
		}
	}}, true
}

func diskCheck(c *kv.DiskCondition) checks.Definition {
	return checks.Definition{
		ID:        diskCheckID,
		Name:      "Data directory disk",
		Notes:     "The server's Raft store cannot write to its data dir; reads still answer. Writes resume on their own once the disk takes them again.",
		ServiceID: "consul",
		Status:    checks.Critical,
		Output:    fmt.Sprintf("%s since %s: %s", c.Kind, c.Since.UTC().Format(time.RFC3339), c.Error),
	}
}
