package kv

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestWALReopensAfterTailTruncation: a follower whose uncommitted tail a
// new leader overwrites truncates its log's suffix (DeleteRange of the
// last entries). The write-ahead log must still open and read every
// entry afterwards. raft-wal v0.4.0 marked the truncated tail segment
// sealed without writing its index block, and the next open failed with
// "sealed segment has no index block" (hashicorp/raft-wal#31, fixed in
// v0.4.1): what the kill -9 rounds of the fault suite met.
func TestWALReopensAfterTailTruncation(t *testing.T) {
	for _, tt := range []struct {
		name             string
		stored, from, to uint64 // entries 1..stored, then DeleteRange(from, to)
		then             uint64 // entries appended after the truncation
	}{
		{"last entry", 424, 424, 424, 0},
		{"last ten, then more appended", 100, 91, 100, 5},
		{"everything after the first", 50, 2, 50, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log := slog.New(slog.DiscardHandler)
			w, release, err := openWAL(dir, log)
			if err != nil {
				t.Fatal(err)
			}
			logs := make([]*raft.Log, 0, tt.stored)
			for i := uint64(1); i <= tt.stored; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)})
			}
			if err := w.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := w.DeleteRange(tt.from, tt.to); err != nil {
				t.Fatal(err)
			}
			last := tt.from - 1
			for range tt.then {
				last++
				if err := w.StoreLog(&raft.Log{Index: last, Term: 2, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d term 2", last)}); err != nil {
					t.Fatalf("append %d after truncation: %v", last, err)
				}
			}
			w.Close()
			release()

			w, release, err = openWAL(dir, log)
			if err != nil {
				t.Fatalf("reopen after truncating %d-%d: %v", tt.from, tt.to, err)
			}
			defer release()
			defer w.Close()
			if got, err := w.LastIndex(); err != nil || got != last {
				t.Fatalf("LastIndex after reopen = %d, %v; want %d", got, err, last)
			}
			for i := uint64(1); i <= last; i++ {
				var l raft.Log
				if err := w.GetLog(i, &l); err != nil {
					t.Fatalf("entry %d after reopen: %v", i, err)
				}
				want := fmt.Sprintf("entry %d", i)
				if i >= tt.from {
					want += " term 2"
				}
				if string(l.Data) != want {
					t.Fatalf("entry %d = %q, want %q", i, l.Data, want)
				}
			}
		})
	}
}
