package forward

import (
	"context"
	"fmt"
)

// mRaftStats asks one server for its own Raft statistics (raft.Stats:
// last_log_index, last_log_term, commit_index, last_contact, ...), for
// /v1/operator/autopilot/health and `consul operator raft list-peers`.
const mRaftStats = "raft-stats"

// RaftStats returns the Raft statistics of the server whose Raft address
// is addr: this server's own when it is addr, else asked of that server
// directly (never passed on). Consul's autopilot asks each server the
// same way (Status.RaftStats).
func (r *Router) RaftStats(ctx context.Context, addr string) (map[string]string, error) {
	if r.local != nil && r.local.Addr() == addr {
		return r.local.Stats(), nil
	}
	resp, err := r.pool.Call(ctx, addr, &Request{Method: mRaftStats, Hops: maxHops})
	if err != nil {
		return nil, fmt.Errorf("raft stats of %s: %w", addr, err)
	}
	return resp.RaftStats, nil
}
