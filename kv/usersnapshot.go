package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// SnapshotMeta describes a user snapshot: the Raft index and term its
// state is at and how many bytes the state has.
type SnapshotMeta struct {
	ID    string
	Index uint64
	Term  uint64
	Size  int64
}

// Snapshot takes a Raft snapshot now (Consul's snapshot save) and
// returns its meta and its state, which the caller must close. Any
// server answers, a follower with its own (possibly stale) state.
func (s *Server) Snapshot() (SnapshotMeta, io.ReadCloser, error) {
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return SnapshotMeta{}, nil, fmt.Errorf("kv: snapshot: %w (the store has applied nothing yet)", err)
		}
		return SnapshotMeta{}, nil, fmt.Errorf("kv: snapshot: %w", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return SnapshotMeta{}, nil, fmt.Errorf("kv: open the snapshot just taken: %w", err)
	}
	return SnapshotMeta{ID: meta.ID, Index: meta.Index, Term: meta.Term, Size: meta.Size}, rc, nil
}

// Restore replaces the whole replicated state (keys, sessions, the VIP
// table and everything else kept in the store) with a snapshot's, on
// every server: Raft's user snapshot restore, which the leader installs
// at an index above any it has used. The restored entries keep their own
// indexes, often below what clients have seen, so the queries parked on
// the old state answer at once (blockingQuery's Abandoned).
// The state is checked before Raft gets it, so a damaged one changes
// nothing. TTL sessions of the restored state get fresh timers.
//
// meta is the saved snapshot's (Index and Size are used): the restored
// log continues above both its index and this cluster's own.
func (s *Server) Restore(ctx context.Context, meta SnapshotMeta, state io.Reader) error {
	if s.raft.State() != raft.Leader {
		if s.Leader() == "" {
			return ErrNoLeader
		}
		return ErrNotLeader
	}
	timeout := 2 * time.Minute
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	// A leader just elected may not have committed its configuration
	// yet, which Restore needs: a barrier waits for it.
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		return fmt.Errorf("kv: barrier before restore: %w", err)
	}
	if err := s.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: meta.Index, Term: meta.Term, Size: meta.Size}, state, timeout); err != nil {
		return fmt.Errorf("kv: restore snapshot: %w", err)
	}
	// Every entry committed before is applied; a barrier makes the new
	// state visible to reads that follow (Consul does the same).
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		return fmt.Errorf("kv: barrier after restore: %w", err)
	}
	s.sessions.rearm()
	return nil
}

// rearm replaces the session timers after a restore: the sessions that
// are gone lose theirs, the ones restored get one. A no-op when not
// leading.
func (t *sessionTimers) rearm() {
	t.mu.Lock()
	leading := t.ctx != nil
	if leading {
		for id, tm := range t.timers {
			tm.Stop()
			delete(t.timers, id)
		}
	}
	t.mu.Unlock()
	if !leading {
		return
	}
	_, list, err := t.s.State().Sessions(nil, "")
	if err != nil {
		t.s.log.Error("kv: list sessions for TTL timers after restore", "err", err)
		return
	}
	for _, sess := range list {
		t.reset(sess.ID, sess.TTL)
	}
}

// StateSummary is what a snapshot's state holds, for `cairn snapshot
// inspect`: counts by kind, and keys by their first path segment.
type StateSummary struct {
	Keys       int
	Sessions   int
	Tombstones int
	// Prefixes counts keys by first segment ("vip/", "service/", ...);
	// a key with no "/" counts under itself.
	Prefixes map[string]int
	// LastIndex is the highest modify index of any key or session.
	LastIndex uint64
}

// SummarizeState decodes a snapshot's state (what Snapshot returns) and
// counts what it holds; a state that does not decode is an error, the
// same check Restore's servers would make.
func SummarizeState(state io.Reader) (StateSummary, error) {
	var snap snapshot
	if err := json.NewDecoder(state).Decode(&snap); err != nil {
		return StateSummary{}, fmt.Errorf("decode snapshot state: %w", err)
	}
	if _, err := restoreState(&snap); err != nil {
		return StateSummary{}, fmt.Errorf("snapshot state does not load: %w", err)
	}
	sum := StateSummary{Keys: len(snap.Entries), Sessions: len(snap.Sessions), Tombstones: len(snap.Tombstones), Prefixes: map[string]int{}}
	for _, e := range snap.Entries {
		seg, _, found := strings.Cut(e.Key, "/")
		if found {
			seg += "/"
		}
		sum.Prefixes[seg]++
		sum.LastIndex = max(sum.LastIndex, e.ModifyIndex)
	}
	for _, se := range snap.Sessions {
		sum.LastIndex = max(sum.LastIndex, se.ModifyIndex)
	}
	return sum, nil
}

// SortedPrefixes is Prefixes in name order.
func (s StateSummary) SortedPrefixes() []string {
	out := make([]string, 0, len(s.Prefixes))
	for p := range s.Prefixes {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
