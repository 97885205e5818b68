package agent

import (
	"context"
	"fmt"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// sessionChecksPart ends, on the leader, every session whose health
// checks are not all healthy, as Consul does when a check a session
// depends on turns critical or is deregistered. The checks may be any of
// the node's: an agent's own, or ones registered through
// /v1/catalog/register. (A failed or left node's sessions are ended by
// agent/servers.) It is level-triggered: it waits on the catalog's
// checks, the sessions and leadership, and re-reads all of them.
func (w *wiring) sessionChecksPart() (part, bool, error) {
	if w.store == nil {
		return part{}, false, nil
	}
	store, cat, log := w.store, w.cat, w.log
	return part{"session checks", func(ctx context.Context) error {
		// seen holds the checks each session's node has been seen to
		// have: the catalog here is a gossip replica, so a check that a
		// session was just created with on another agent may not have
		// arrived yet. Only a check that was here and went away ends the
		// session.
		seen := map[string]map[string]bool{}
		for {
			ws := memdb.NewWatchSet()
			if store.LeaderWatch(ws) {
				_, sessions, err := store.State().Sessions(ws, "")
				if err != nil {
					return err
				}
				live := map[string]bool{}
				for _, s := range sessions {
					live[s.ID] = true
					if seen[s.ID] == nil {
						seen[s.ID] = map[string]bool{}
					}
					if why := sessionUnhealthy(ws, cat, s, seen[s.ID]); why != "" {
						log.Info("ending session: a check it depends on is not healthy", "session", s.ID, "node", s.Node, "reason", why)
						if err := store.DestroySession(ctx, s.ID); err != nil && ctx.Err() == nil {
							log.Warn("could not end a session", "session", s.ID, "err", err)
						}
					}
				}
				for id := range seen {
					if !live[id] {
						delete(seen, id)
					}
				}
			}
			if err := ws.WatchCtx(ctx); err != nil {
				return nil
			}
		}
	}}, true, nil
}

// sessionUnhealthy says why s must end ("" when it may live): one of its
// checks, other than serfHealth (membership's business), is critical, or
// is gone from its node after having been seen there (seen, which it
// updates).
func sessionUnhealthy(ws memdb.WatchSet, cat *catalog.Catalog, s *kv.Session, seen map[string]bool) string {
	ids := make([]string, 0, len(s.NodeChecks)+len(s.ServiceChecks))
	for _, id := range s.NodeChecks {
		if id != kv.NodeHealthCheck {
			ids = append(ids, id)
		}
	}
	for _, sc := range s.ServiceChecks {
		ids = append(ids, sc.ID)
	}
	if len(ids) == 0 {
		return ""
	}
	_, checks := cat.NodeChecks(ws, s.Node)
	for _, id := range ids {
		var found *catalog.Check
		for _, c := range checks {
			if c.CheckID == id {
				found = c
				break
			}
		}
		switch {
		case found == nil && seen[id]:
			return fmt.Sprintf("check %q was deregistered", id)
		case found == nil:
		case found.Status == catalog.StatusCritical:
			return fmt.Sprintf("check %q is critical", id)
		default:
			seen[id] = true
		}
	}
	return ""
}
