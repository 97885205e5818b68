package kv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// stores are the durable halves of Raft: the log and stable store, and
// snapshots as files beside them.
//
// The log of a new data dir is a write-ahead log (hashicorp/raft-wal, as
// Consul uses) in raft/wal/: an append costs one write and one fsync,
// where bolt's copy-on-write B+tree costs two fdatasyncs (pages, then
// meta page) and rewrites pages. raft_logstore { backend = "boltdb" }
// (Config.LogStore) makes a new data dir use bolt, raft/raft.db. A data
// dir keeps the log it was made with (one made by an earlier version
// holds bolt): nothing in it is ever lost or converted behind the user's
// back.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	closer func() error
}

// walSegmentSize is the size of one segment file of the log (each is
// allocated at this size on creation; old ones go once a snapshot covers
// them).
const walSegmentSize = 16 << 20

// The Raft log stores a data dir can use (Config.LogStore).
const (
	LogStoreBolt = "boltdb"
	LogStoreWAL  = "wal"
)

// openStores opens the log and dir/snapshots. The log is the one the
// data dir already has (dir/raft.db or dir/wal), else backend's (the
// write-ahead log unless backend is LogStoreBolt). It is
// locked, so a second agent on the same data dir fails here instead of
// corrupting it.
func openStores(dir, backend string, log *slog.Logger) (*stores, error) {
	var (
		logs   raft.LogStore
		stable raft.StableStore
		closer func() error
	)
	boltPath, walDir := filepath.Join(dir, "raft.db"), filepath.Join(dir, "wal")
	useWAL := backend != LogStoreBolt
	if _, err := os.Stat(boltPath); err == nil {
		useWAL = false
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kv: read raft log %s: %w", boltPath, err)
	} else if _, err := os.Stat(walDir); err == nil {
		useWAL = true
	}
	if useWAL {
		if backend == LogStoreBolt {
			log.Info("kv: this data dir's raft log is a write-ahead log (raft_logstore backend \"wal\"); it keeps it (bolt is for new data dirs)", "path", walDir)
		}
		w, release, err := openWAL(walDir, log)
		if err != nil {
			return nil, err
		}
		logs, stable = w, w
		closer = func() error {
			defer release()
			return w.Close()
		}
	} else {
		if backend != LogStoreBolt {
			log.Info("kv: this data dir's raft log is bolt (raft_logstore backend \"boltdb\"); it keeps it (the write-ahead log is for new data dirs)", "path", boltPath)
		}
		b, err := openBolt(boltPath)
		if err != nil {
			return nil, err
		}
		logs, stable, closer = b, b, b.Close
	}
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		closer()
		return nil, fmt.Errorf("kv: raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger("raft-snapshot", log))
	if err != nil {
		closer()
		return nil, fmt.Errorf("kv: open snapshot store in %s: %w", dir, err)
	}
	return &stores{logs: cached, stable: stable, snaps: snaps, closer: closer}, nil
}

// openWAL opens (or creates) the write-ahead log in dir, holding a lock
// on it: the log's own metadata file lock would wait forever.
func openWAL(dir string, log *slog.Logger) (w *raftwal.WAL, release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("kv: create raft log dir %s: %w", dir, err)
	}
	release, err = lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	// The meta file is bolt, which panics on some kinds of damage.
	defer func() {
		if r := recover(); r != nil {
			release()
			w, release, err = nil, nil, fmt.Errorf("kv: open raft log %s: it is damaged (%v); restore the data dir from a backup or move it away to start empty", dir, r)
		}
	}()
	// WAL.Close closes its meta store (raft-wal v0.4.1 on), but a failed
	// Open leaves it open, and the next Open in this process would wait
	// forever on its file lock: release closes it too (a second Close is
	// a no-op).
	meta := &metadb.BoltMetaDB{}
	unlock := release
	release = func() {
		meta.Close()
		unlock()
	}
	w, err = raftwal.Open(dir, raftwal.WithSegmentSize(walSegmentSize), raftwal.WithLogger(newHCLogger("raft-wal", log)), raftwal.WithMetaStore(meta))
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("kv: open raft log %s: %w; if it is damaged, restore the data dir from a backup or move it away to start empty", dir, err)
	}
	if _, err := w.LastIndex(); err != nil {
		w.Close()
		release()
		return nil, nil, fmt.Errorf("kv: read raft log %s: %w; restore the data dir from a backup or move it away to start empty", dir, err)
	}
	return w, release, nil
}

// openBolt opens the bolt log of a data dir made by an earlier version.
// bolt takes an exclusive file lock.
func openBolt(path string) (b *raftboltdb.BoltStore, err error) {
	// bbolt panics on some kinds of damage instead of returning an error;
	// turn that into the start-up error the user needs.
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("kv: open raft log %s: the file is damaged (%v); restore the data dir from a backup or move it away to start empty", path, r)
		}
	}()
	b, err = raftboltdb.New(raftboltdb.Options{
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
	return b, nil
}

func (s *stores) close() error { return s.closer() }

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

// IsMonotonic passes on whether the log underneath accepts only
// consecutive indexes (the write-ahead log does): Raft then drops the
// whole log after installing a snapshot, instead of leaving a gap such a
// log refuses. Without it the disk guard's wrapper would hide that.
func (l *guardedLogs) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
