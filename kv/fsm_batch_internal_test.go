package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// batchTestLogs is a log that exercises every way a KV write can end
// inside a batch: taking effect, refused (a stale CAS, a lock held by
// another session, an unlock by a non-holder, a stale delete-cas),
// failing with an error (a lock with a session that does not exist, an
// unknown verb), repeated by write ID within and across batches, and
// mixed with commands that have their own transactions (a txn, sessions).
func batchTestLogs(t *testing.T) []*raft.Log {
	t.Helper()
	sess := func(id string) *Session {
		return &Session{ID: id, Node: "n1", Behavior: BehaviorRelease, LockDelay: time.Second}
	}
	kvc := func(id string, op Op) command { return command{Type: cmdKV, Op: &op, WriteID: id} }
	cmds := []command{
		// Plain sets, some of one key: each finds the entry it replaces
		// among the batch's own writes or in the table before it.
		kvc("", Op{Verb: VerbSet, Key: "p", Value: []byte("1")}),
		kvc("", Op{Verb: VerbSet, Key: "p", Value: []byte("2"), Flags: 1}),
		kvc("", Op{Verb: VerbSet, Key: "q", Value: []byte("1")}),
		kvc("", Op{Verb: VerbSet, Key: "p", Value: []byte("3")}),
		kvc("w1", Op{Verb: VerbSet, Key: "a", Value: []byte("1")}),
		kvc("", Op{Verb: VerbSet, Key: "b", Value: []byte("1"), Flags: 7}),
		kvc("w2", Op{Verb: VerbCAS, Key: "a", Index: 99, Value: []byte("stale")}),
		kvc("w3", Op{Verb: VerbCAS, Key: "a", Index: 1, Value: []byte("2")}),
		kvc("w1", Op{Verb: VerbSet, Key: "a", Value: []byte("repeat")}), // applied before: no change
		kvc("w4", Op{Verb: VerbLock, Key: "l", Session: "missing"}),     // error
		kvc("", Op{Verb: VerbSet, Key: "c", Value: []byte("after an error")}),
		{Type: cmdSessionCreate, Session: sess("s1")},
		{Type: cmdSessionCreate, Session: sess("s2")},
		kvc("w5", Op{Verb: VerbLock, Key: "l", Session: "s1", Value: []byte("held")}),
		kvc("", Op{Verb: VerbSet, Key: "l", Value: []byte("set while held")}), // keeps the holder
		kvc("", Op{Verb: VerbSet, Key: "p", Value: []byte("4")}),
		kvc("w6", Op{Verb: VerbLock, Key: "l", Session: "s2"}),   // held by s1: false
		kvc("w7", Op{Verb: VerbUnlock, Key: "l", Session: "s2"}), // not the holder: false
		kvc("w8", Op{Verb: Verb("bogus"), Key: "x"}),             // error
		kvc("w9", Op{Verb: VerbDeleteCAS, Key: "b", Index: 1}),   // stale: false
		kvc("", Op{Verb: VerbDelete, Key: "c"}),
		{Type: cmdTxn, Ops: []Op{{Verb: VerbSet, Key: "t/1", Value: []byte("x")}, {Verb: VerbCheckIndex, Key: "a", Index: 1}}}, // fails: nothing written
		{Type: cmdTxn, Ops: []Op{{Verb: VerbSet, Key: "t/2", Value: []byte("y")}, {Verb: VerbGet, Key: "b"}}, WriteID: "w10"},
		kvc("w3", Op{Verb: VerbCAS, Key: "a", Index: 4, Value: []byte("repeat")}), // applied before
		kvc("", Op{Verb: VerbSet, Key: "t/3", Value: []byte("z")}),
		kvc("w11", Op{Verb: VerbDeleteTree, Key: "t/"}),
		kvc("w12", Op{Verb: VerbUnlock, Key: "l", Session: "s1", Value: []byte("released")}),
		{Type: cmdSessionDestroy, ID: "s2"},
		kvc("w13", Op{Verb: VerbLock, Key: "l", Session: "s2"}), // s2 is gone: error
		kvc("", Op{Verb: VerbSet, Key: "d", Value: nil}),
	}
	logs := make([]*raft.Log, 0, len(cmds)+1)
	for i, c := range cmds {
		data, err := c.encode()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i) + 1, Term: 1, Type: raft.LogCommand, Data: data})
		if i == 7 {
			// raft hands configuration entries to a batching FSM too.
			logs = append(logs, &raft.Log{Index: uint64(i) + 1, Term: 1, Type: raft.LogConfiguration})
		}
	}
	// The configuration entry took an index: renumber.
	for i, l := range logs {
		l.Index = uint64(i) + 1
	}
	return logs
}

// TestApplyBatchAsOneByOne: whatever batches raft hands the FSM, the
// results, the state, the remembered write IDs and so the snapshot are
// those of applying the entries one at a time, so servers that batch
// differently stay identical.
func TestApplyBatchAsOneByOne(t *testing.T) {
	logs := batchTestLogs(t)
	one := newFSM(nil)
	var want []string
	for _, l := range logs {
		want = append(want, resultText(t, one.Apply(l)))
	}
	wantSnap := fsmSnapshotJSON(t, one)

	for _, tc := range []struct {
		name  string
		sizes []int // batch sizes, the last repeated
	}{
		{"all in one", []int{len(logs)}},
		{"pairs", []int{2}},
		{"threes", []int{3}},
		{"uneven", []int{5, 1, 7, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSM(nil)
			var got []string
			rest := logs
			for i := 0; len(rest) > 0; i++ {
				n := min(tc.sizes[min(i, len(tc.sizes)-1)], len(rest))
				res := f.ApplyBatch(rest[:n])
				if len(res) != n {
					t.Fatalf("ApplyBatch of %d entries answered %d results", n, len(res))
				}
				for _, r := range res {
					got = append(got, resultText(t, r))
				}
				rest = rest[n:]
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("entry %d: batched result %s, one by one %s", i+1, got[i], want[i])
				}
			}
			if snap := fsmSnapshotJSON(t, f); !bytes.Equal(snap, wantSnap) {
				t.Errorf("batched snapshot differs from one by one:\n got %s\nwant %s", snap, wantSnap)
			}
		})
	}
}

// resultText is an FSM result with what pointers point to.
func resultText(t *testing.T, r any) string {
	t.Helper()
	if err, ok := r.(error); ok {
		return fmt.Sprintf("error %q", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%T %s", r, b)
}

// fsmSnapshotJSON is f's snapshot as Persist writes it.
func fsmSnapshotJSON(t *testing.T, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	fs := s.(*fsmSnapshot)
	if err := enc.Encode(fs.snap); err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(fs.applied); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestApplyBatchVisibleAtOnce: readers see a batch's KV writes only
// when it is applied, all together, and a watcher of a key the batch
// writes wakes.
func TestApplyBatchVisibleAtOnce(t *testing.T) {
	f := newFSM(nil)
	ws := memdb.NewWatchSet()
	if _, e, err := f.state().Get(ws, "k1"); err != nil || e != nil {
		t.Fatalf("Get(k1) before = %v, %v", e, err)
	}
	var logs []*raft.Log
	for i := range 3 {
		data, err := command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: fmt.Sprintf("k%d", i+1), Value: []byte("v")}}.encode()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i) + 1, Type: raft.LogCommand, Data: data})
	}
	f.ApplyBatch(logs)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := ws.WatchCtx(ctx); err != nil {
		t.Fatalf("the watcher of k1 did not wake when the batch was applied: %v", err)
	}
	idx, es, err := f.state().List(nil, "k")
	if err != nil || len(es) != 3 || idx != 3 {
		t.Fatalf("List(k) after the batch = index %d, %d entries, %v; want 3, 3", idx, len(es), err)
	}
}
