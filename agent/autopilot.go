package agent

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
)

// autopilot adapts the Raft group to httpapi.Autopilot: the
// configuration, each server's own Raft statistics (asked of it over the
// server RPC port, as Consul's autopilot asks Status.RaftStats) and its
// gossip status.
type autopilot struct {
	ml     *membership.Membership
	router *forward.Router

	mu     sync.Mutex
	stable map[string]time.Time // server ID -> since when it answered
}

func (a *autopilot) ServerHealth(ctx context.Context) ([]httpapi.ServerHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	peers, err := a.router.RaftConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]membership.Member{}
	_, ms := a.ml.Members(nil)
	for _, m := range ms {
		byID[m.Meta.NodeID] = m
	}
	out := make([]httpapi.ServerHealth, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		m := byID[p.ID]
		out[i] = httpapi.ServerHealth{
			ID: p.ID, Name: m.Name, Address: p.Address, Version: Version,
			Leader: p.Leader, Voter: p.Voter, SerfStatus: string(m.Status),
		}
		if m.Status == "" {
			out[i].SerfStatus = "none"
		}
		wg.Go(func() {
			stats, err := a.router.RaftStats(ctx, p.Address)
			if err != nil {
				return
			}
			s := &out[i]
			s.Reachable = true
			s.LastIndex, _ = strconv.ParseUint(stats["last_log_index"], 10, 64)
			s.LastTerm, _ = strconv.ParseUint(stats["last_log_term"], 10, 64)
			switch lc := stats["last_contact"]; lc {
			case "never":
				s.LastContact = -1
			default:
				s.LastContact, _ = time.ParseDuration(lc)
			}
			if s.Leader {
				s.LastContact = 0
			}
		})
	}
	wg.Wait()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stable == nil {
		a.stable = map[string]time.Time{}
	}
	for i := range out {
		s := &out[i]
		if !s.Reachable {
			delete(a.stable, s.ID)
			continue
		}
		if _, ok := a.stable[s.ID]; !ok {
			a.stable[s.ID] = now
		}
		s.StableSince = a.stable[s.ID]
	}
	return out, nil
}
