package main

import (
	"maps"
	"testing"
)

// TestSplit: a sample goes to the first category of the table that its
// stack matches, wherever in the stack the marker is; a leaf without a
// package path is the kernel's.
func TestSplit(t *testing.T) {
	out := []byte(`	ffffffff81a2b3c4 ext4_sync_file
	ffffffff81a2b000 do_fsync
	          4a1b2c syscall.Fsync
	          4a0000 github.com/hashicorp/raft.(*Raft).dispatchLogs

	          41c2d3 runtime.scanobject
	          41c000 runtime.gcDrain
	          41b000 runtime.gcBgMarkWorker

	          5b2c3d github.com/hashicorp/go-immutable-radix.(*Txn).insert
	          5b2000 github.com/cairn-dev/cairn/kv.(*fsm).ApplyBatch
	          5b1000 github.com/hashicorp/raft.(*Raft).runFSM

	          6c1d2e encoding/json.(*encodeState).marshal
	          6c1000 net/http.serverHandler.ServeHTTP
	          6c0000 net/http.(*conn).serve

	          7d0000 main.somethingElse
`)
	counts, kernel, total := split(out)
	if total != 5 {
		t.Fatalf("total = %d; want 5 samples", total)
	}
	want := map[string]int{"fsync": 1, "gc": 1, "state machine": 1, "HTTP handler": 1, "other": 1}
	if !maps.Equal(counts, want) {
		t.Errorf("counts = %v; want %v (the state machine before Raft, which calls it)", counts, want)
	}
	if !maps.Equal(kernel, map[string]int{"fsync": 1}) {
		t.Errorf("kernel = %v; want only the fsync sample, whose leaf is ext4's", kernel)
	}
}
