package kv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// TestLogStoreByDataDir: a new data dir gets the log LogStore names
// (the write-ahead log raft/wal by default; bolt, raft/raft.db, when
// asked); a data dir keeps the log it was made with whatever is asked;
// what is written survives a restart.
func TestLogStoreByDataDir(t *testing.T) {
	for _, tt := range []struct {
		name     string
		bolt     bool
		backend  string
		want     string
		wantNone string
	}{
		{"new data dir", false, "", "wal", "raft.db"},
		{"new data dir, write-ahead log asked", false, kv.LogStoreWAL, "wal", "raft.db"},
		{"new data dir, bolt asked", false, kv.LogStoreBolt, "raft.db", "wal"},
		{"bolt log of an earlier version", true, "", "raft.db", "wal"},
		{"bolt log of an earlier version, write-ahead log asked", true, kv.LogStoreWAL, "raft.db", "wal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.bolt {
				if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
					t.Fatal(err)
				}
				b, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			cfg := kv.DefaultConfig("logs", dir, "127.0.0.1:0")
			cfg.Bootstrap, cfg.Fast = true, true
			cfg.LogStore = tt.backend
			s := kvtest.Start(t, cfg)
			for i := range 20 {
				put(t, s, fmt.Sprintf("k/%02d", i), fmt.Sprint(i))
			}
			s.Shutdown()
			if _, err := os.Stat(filepath.Join(dir, "raft", tt.want)); err != nil {
				t.Errorf("raft/%s: %v; want the log there", tt.want, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "raft", tt.wantNone)); !os.IsNotExist(err) {
				t.Errorf("raft/%s exists (%v); want only raft/%s", tt.wantNone, err, tt.want)
			}
			cfg.LogStore = "" // the data dir decides now
			s2 := kvtest.Start(t, cfg)
			if e := get(t, s2, "k/19"); string(e.Value) != "19" {
				t.Errorf("after restart k/19 = %q, want 19", e.Value)
			}
		})
	}
}
