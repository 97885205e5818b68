package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// stores are the durable halves of Raft: the log and stable store in one
// bolt file, snapshots as files beside it.
type stores struct {
	bolt   *raftboltdb.BoltStore
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
}

// openStores opens dir/raft.db and dir/snapshots. bolt takes an exclusive
// file lock, so a second agent on the same data dir fails here instead of
// corrupting it.
func openStores(dir string, log *slog.Logger) (st *stores, err error) {
	path := filepath.Join(dir, "raft.db")
	// bbolt panics on some kinds of damage instead of returning an error;
	// turn that into the start-up error the user needs.
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("kv: open raft log %s: the file is damaged (%v); restore the data dir from a backup or move it away to start empty", path, r)
		}
	}()
	b, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("kv: open raft log %s: the file is locked by another process; is another agent running with this -data-dir?", path)
		}
		return nil, fmt.Errorf("kv: open raft log %s: %w; if the file is damaged, restore the data dir from a backup or move it away to start empty", path, err)
	}
	// Read the bounds once: a damaged file that opened often fails here.
	if _, err := b.LastIndex(); err != nil {
		b.Close()
		return nil, fmt.Errorf("kv: read raft log %s: %w; restore the data dir from a backup or move it away to start empty", path, err)
	}
	logs, err := raft.NewLogCache(512, b)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("kv: raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger("raft-snapshot", log))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("kv: open snapshot store in %s: %w", dir, err)
	}
	return &stores{bolt: b, logs: logs, stable: b, snaps: snaps}, nil
}

func (s *stores) close() error { return s.bolt.Close() }

// reapTombstones runs on the leader: tombstones older than TombstoneTTL
// are dropped through Raft so every server forgets them together.
// Consul does the same with its tombstone GC.
func (s *Server) reapTombstones(ctx context.Context) {
	granularity := s.cfg.TombstoneTTL / 4
	if granularity < time.Second {
		granularity = time.Second
	}
	type mark struct {
		at    time.Time
		index uint64
	}
	var marks []mark
	tick := time.NewTicker(granularity)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			marks = append(marks, mark{now, s.State().Index()})
			var upTo uint64
			for len(marks) > 0 && now.Sub(marks[0].at) >= s.cfg.TombstoneTTL {
				upTo = marks[0].index
				marks = marks[1:]
			}
			if upTo == 0 || !s.State().hasTombstones(upTo) {
				continue
			}
			if _, err := s.raftApply(ctx, command{Type: cmdTombstoneReap, Index: upTo}); err != nil {
				s.log.Warn("kv: reap tombstones", "upTo", upTo, "err", err)
			}
		}
	}
}
