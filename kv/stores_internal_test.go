package kv

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestLogStoreMonotonicThroughGuard: Raft sees the write-ahead log as
// monotonic through the disk guard and the cache (so it drops the log
// after installing a snapshot, as the log needs), and the bolt log as not.
func TestLogStoreMonotonicThroughGuard(t *testing.T) {
	for _, tt := range []struct {
		name    string
		bolt    bool
		backend string
		want    bool
	}{{"write-ahead log", false, LogStoreWAL, true}, {"bolt log", true, "", false}, {"default", false, "", true}, {"bolt asked", false, LogStoreBolt, false}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.bolt {
				b, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			st, err := openStores(dir, tt.backend, log)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			logs := newDiskGuard(dir, 0, log).logStore(st.logs)
			m, ok := logs.(raft.MonotonicLogStore)
			if got := ok && m.IsMonotonic(); got != tt.want {
				t.Errorf("monotonic as Raft sees it = %v, want %v", got, tt.want)
			}
		})
	}
}
