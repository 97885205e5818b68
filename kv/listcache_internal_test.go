package kv

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

// TestListCacheFollowsEveryChange: after each kind of write, inside and
// outside the listed prefix, a listing answered through the cache is the
// listing read from the tree, and a listing nothing changed under is
// answered from the cache.
func TestListCacheFollowsEveryChange(t *testing.T) {
	st := newState()
	idx := uint64(0)
	set := func(key, value string) {
		idx++
		if _, err := st.applyKV(idx, &Op{Verb: VerbSet, Key: key, Value: []byte(value)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		set(fmt.Sprintf("app/%d", i), "v")
		set(fmt.Sprintf("other/%d", i), "v")
	}
	const prefix = "app/"
	fresh := func() (uint64, []*Entry) {
		tx := st.db.Txn(false)
		defer tx.Abort()
		i, es, err := listTxn(tx, nil, prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		return i, es
	}
	check := func(step string, wantCached bool) *cachedList {
		t.Helper()
		ws := memdb.NewWatchSet()
		gotIdx, got, err := st.List(ws, prefix)
		if err != nil {
			t.Fatal(err)
		}
		wantIdx, want := fresh()
		if gotIdx != wantIdx || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: listing = index %d, %d entries; the tree has index %d, %d entries", step, gotIdx, len(got), wantIdx, len(want))
		}
		if len(ws) != 2 {
			t.Fatalf("%s: the listing watches %d channels, want 2 (entries and tombstones)", step, len(ws))
		}
		tx := st.db.Txn(false)
		kvIt, _ := tx.Get(tableKVs, "id_prefix", prefix)
		tombIt, _ := tx.Get(tableTombstones, "id_prefix", prefix)
		tx.Abort()
		l := st.lists.get(prefix, kvIt.WatchCh(), tombIt.WatchCh())
		if cached := l != nil; cached != wantCached {
			t.Fatalf("%s: cached for the current trees = %v, want %v", step, cached, wantCached)
		}
		return l
	}
	prev := check("first listing", true)
	if again := check("again", true); again != prev {
		t.Fatal("listed again with no write: read from the tree, want the cached listing")
	}
	for _, step := range []struct {
		name    string
		changes bool // the listing changes
		write   func()
	}{
		{"a key outside the prefix changed", false, func() { set("other/1", "changed") }},
		{"a key under the prefix changed", true, func() { set("app/2", "changed") }},
		{"a key under the prefix added", true, func() { set("app/9", "new") }},
		{"a key under the prefix deleted", true, func() {
			idx++
			if _, err := st.applyKV(idx, &Op{Verb: VerbDelete, Key: "app/0"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"tombstones reaped", true, func() {
			if err := st.reapTombstones(idx); err != nil {
				t.Fatal(err)
			}
		}},
		{"the tree under the prefix deleted", true, func() {
			idx++
			if _, err := st.applyKV(idx, &Op{Verb: VerbDeleteTree, Key: prefix}); err != nil {
				t.Fatal(err)
			}
		}},
		{"a session locks a key under the prefix", true, func() {
			idx++
			if err := st.createSession(idx, &Session{ID: "s1", Node: "n", Behavior: BehaviorRelease}); err != nil {
				t.Fatal(err)
			}
			idx++
			if ok, err := st.applyKV(idx, &Op{Verb: VerbLock, Key: "app/lock", Session: "s1"}); err != nil || !ok {
				t.Fatal(ok, err)
			}
		}},
		{"the session ends", true, func() {
			idx++
			if err := st.destroySession(idx, "s1", newLockDelays(), time.Now()); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		step.write()
		l := check(step.name, true)
		if (l != prev) != step.changes {
			t.Fatalf("%s: listing read from the tree again = %v, want %v", step.name, l != prev, step.changes)
		}
		if again := check(step.name+", read again", true); again != l {
			t.Fatalf("%s, read again: read from the tree, want the cached listing", step.name)
		}
		prev = l
	}
}

// applyKV runs one KV write in its own transaction, as a batch of one.
func (s *State) applyKV(idx uint64, op *Op) (bool, error) {
	b := s.kvBatch()
	defer b.commit()
	return b.apply(idx, op)
}
