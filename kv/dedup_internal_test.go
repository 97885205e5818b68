package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// refApplied is the record as first written (a map and a list of IDs,
// oldest first): the model the pointer-free record must match.
type refApplied struct {
	byID  map[string]appliedWrite
	order []string
}

func (r *refApplied) insert(w appliedWrite) {
	if _, ok := r.byID[w.ID]; ok {
		return
	}
	r.byID[w.ID] = w
	r.order = append(r.order, w.ID)
	for len(r.order) > appliedWindow {
		delete(r.byID, r.order[0])
		r.order = r.order[1:]
	}
}

// TestAppliedWritesMatchTheModel: more writes than the window holds,
// with repeats, IDs of cairn's shape and longer ones, and every kind of
// result. Every ID ever written is remembered (with its first result) or
// forgotten exactly as the model says, the snapshot's list is the
// model's in order and encodes to the same bytes, and a record restored
// from that list is the same record.
func TestAppliedWritesMatchTheModel(t *testing.T) {
	a := newAppliedWrites()
	ref := &refApplied{byID: map[string]appliedWrite{}}
	results := []any{
		true,
		false,
		nil,
		fmt.Errorf("%w: key too long", ErrInvalidRequest),
		fmt.Errorf("session %q is not valid", "s-1"),
		txnResponse{Errors: []TxnError{{OpIndex: 1, What: "index mismatch"}}},
		"5c6b3a0e-session",
	}
	var ids []string
	for i := range appliedWindow + appliedWindow/2 {
		id := fmt.Sprintf("%016x-w%d", uint64(i)*0x9e3779b97f4a7c15, i)
		switch {
		case i%97 == 0:
			id = strings.Repeat("long-id/", 6) + fmt.Sprint(i) // past maxInlineID
		case i%13 == 0 && i > 0:
			id = ids[i/2] // a repeat: perhaps forgotten by now, perhaps not
		}
		ids = append(ids, id)
		res := results[i%len(results)]
		a.add(id, uint64(i+1), res)
		ref.insert(newAppliedWrite(id, uint64(i+1), res))
	}
	if len(a.ring) != appliedWindow {
		t.Fatalf("record holds %d writes; want the window, %d", len(a.ring), appliedWindow)
	}
	for _, id := range ids {
		got, ok := a.get(id)
		want, wantOK := ref.byID[id]
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("get(%q) = %+v, %v; want %+v, %v", id, got, ok, want, wantOK)
		}
	}

	list := a.list()
	var wantList []*appliedWrite
	for _, id := range ref.order {
		w := ref.byID[id]
		wantList = append(wantList, &w)
	}
	if !slices.EqualFunc(list, wantList, func(x, y *appliedWrite) bool { return reflect.DeepEqual(*x, *y) }) {
		t.Fatalf("list differs from the model (%d vs %d records)", len(list), len(wantList))
	}
	gotJSON, _ := json.Marshal(list)
	wantJSON, _ := json.Marshal(wantList)
	if string(gotJSON) != string(wantJSON) {
		t.Fatal("the snapshot's records encode differently from the model's")
	}

	restored := newAppliedWrites()
	restored.replace(list)
	if again, _ := json.Marshal(restored.list()); string(again) != string(gotJSON) {
		t.Fatal("a record restored from a snapshot lists differently")
	}
	// Restored, it goes on forgetting in the same order.
	restored.add("after-restore", 1, true)
	a.add("after-restore", 1, true)
	for _, id := range ids {
		_, x := a.get(id)
		_, y := restored.get(id)
		if x != y {
			t.Fatalf("after one more write, %q remembered: %v live, %v restored", id, x, y)
		}
	}
}

// TestAppliedResultsComeBack: each kind of result answers a repeat as
// the first apply did.
func TestAppliedResultsComeBack(t *testing.T) {
	invalid := fmt.Errorf("%w: key too long", ErrInvalidRequest)
	for _, tc := range []struct {
		name string
		t    cmdType
		res  any
	}{
		{"kv true", cmdKV, true},
		{"kv false", cmdKV, false},
		{"invalid request", cmdKV, invalid},
		{"other error", cmdKV, fmt.Errorf("lock is held")},
		{"txn", cmdTxn, txnResponse{Errors: []TxnError{{OpIndex: 2, What: "missing"}}}},
		{"session", cmdSessionCreate, "9a1c-session"},
		{"destroy", cmdSessionDestroy, nil},
	} {
		for _, id := range []string{"0123456789abcdef-w42", strings.Repeat("x", maxInlineID+1)} {
			t.Run(fmt.Sprintf("%s/%d-byte id", tc.name, len(id)), func(t *testing.T) {
				a := newAppliedWrites()
				a.add(id, 7, tc.res)
				w, ok := a.get(id)
				if !ok || w.ID != id || w.Index != 7 {
					t.Fatalf("get = %+v, %v; want the record of %q at 7", w, ok, id)
				}
				got := w.result(tc.t)
				if err, isErr := tc.res.(error); isErr {
					gotErr, _ := got.(error)
					if gotErr == nil || gotErr.Error() != err.Error() {
						t.Fatalf("result = %v; want error %q", got, err)
					}
					if (err == invalid) != errors.Is(gotErr, ErrInvalidRequest) {
						t.Fatalf("result %v: invalid request = %v; want %v", got, !(err == invalid), err == invalid)
					}
					return
				}
				if !reflect.DeepEqual(got, tc.res) {
					t.Fatalf("result = %#v; want %#v", got, tc.res)
				}
			})
		}
	}
}

// TestAppliedRecordHoldsNoPointers: what the record keeps of an
// ordinary write (an ID of cairn's shape, a bool result) has nothing
// for the garbage collector to follow; with pointers there, marking the
// window's 65,536 writes was half of a server's collection work.
func TestAppliedRecordHoldsNoPointers(t *testing.T) {
	for _, v := range []any{appliedEntry{}, inlineID{}} {
		if p := pointerIn(reflect.TypeOf(v)); p != "" {
			t.Errorf("%T holds %s", v, p)
		}
	}
	if n := len(fmt.Sprintf("%016x-w%d", ^uint64(0), ^uint64(0))); n > maxInlineID {
		t.Errorf("cairn's longest write ID is %d bytes; maxInlineID is %d", n, maxInlineID)
	}
}

func pointerIn(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if p := pointerIn(t.Field(i).Type); p != "" {
				return t.Field(i).Name + ": " + p
			}
		}
		return ""
	case reflect.Array:
		return pointerIn(t.Elem())
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return t.Kind().String()
	}
	return ""
}

// TestTxnThatReadsIsNotRecorded: a transaction that writes and also reads
// values is applied without its write ID, so nothing it read is kept in
// the record (and every snapshot) for a repeat; one that only writes is
// recorded, so a repeat gets its first answer.
func TestTxnThatReadsIsNotRecorded(t *testing.T) {
	cfg := DefaultConfig("s1", t.TempDir(), "127.0.0.1:0")
	cfg.Bootstrap, cfg.Fast = true, true
	s := startServer(t, cfg)
	ctx := context.Background()
	if ok, err := s.Apply(ctx, Op{Verb: VerbSet, Key: "cfg/a", Value: []byte(strings.Repeat("x", 4096))}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_, a, err := s.Get(ctx, QueryOptions{}, "cfg/a")
	if err != nil || a == nil {
		t.Fatal(a, err)
	}
	for _, tc := range []struct {
		name     string
		ops      []Op
		recorded bool
	}{
		{"writes only", []Op{{Verb: VerbSet, Key: "w", Value: []byte("v")}, {Verb: VerbCheckIndex, Key: "cfg/a", Index: a.ModifyIndex}}, true},
		{"get", []Op{{Verb: VerbGet, Key: "cfg/a"}, {Verb: VerbSet, Key: "w", Value: []byte("v")}}, false},
		{"get-tree", []Op{{Verb: VerbGetTree, Key: "cfg/"}, {Verb: VerbSet, Key: "w", Value: []byte("v")}}, false},
	} {
		id := "test-" + tc.name
		_, res, errs, err := s.Txn(WithWriteID(ctx, id), QueryOptions{}, tc.ops)
		if err != nil || len(errs) > 0 || len(res) == 0 {
			t.Fatalf("%s: Txn = %v, %v, %v", tc.name, res, errs, err)
		}
		if _, recorded := s.fsm.applied.get(id); recorded != tc.recorded {
			t.Errorf("%s: the record holds its write ID: %v, want %v", tc.name, recorded, tc.recorded)
		}
	}
}
