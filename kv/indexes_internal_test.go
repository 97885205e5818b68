package kv

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-memdb"
)

// TestStringIndexKeysAsMemdbDoes: the reflection-free indexes give the
// index keys and prefixes memdb.StringFieldIndex gives, byte for byte,
// so every lookup, prefix scan and uniqueness check behaves the same.
func TestStringIndexKeysAsMemdbDoes(t *testing.T) {
	ours := stringIndex[Entry]{func(e *Entry) string { return e.Key }}
	theirs := &memdb.StringFieldIndex{Field: "Key"}
	for _, key := range []string{"", "a", "web/config", "trailing/", "ünïcode/ключ", "with\x00nul", "UPPER/lower"} {
		okO, gotO, errO := ours.FromObject(&Entry{Key: key})
		okT, wantT, errT := theirs.FromObject(&Entry{Key: key})
		if okO != okT || !bytes.Equal(gotO, wantT) || (errO == nil) != (errT == nil) {
			t.Errorf("FromObject(%q) = %v %q %v; StringFieldIndex: %v %q %v", key, okO, gotO, errO, okT, wantT, errT)
		}
		gotA, errO := ours.FromArgs(key)
		wantA, errT := theirs.FromArgs(key)
		if !bytes.Equal(gotA, wantA) || (errO == nil) != (errT == nil) {
			t.Errorf("FromArgs(%q) = %q %v; StringFieldIndex: %q %v", key, gotA, errO, wantA, errT)
		}
		gotP, errO := ours.PrefixFromArgs(key)
		wantP, errT := theirs.PrefixFromArgs(key)
		if !bytes.Equal(gotP, wantP) || (errO == nil) != (errT == nil) {
			t.Errorf("PrefixFromArgs(%q) = %q %v; StringFieldIndex: %q %v", key, gotP, errO, wantP, errT)
		}
	}
	for _, args := range [][]any{{}, {"a", "b"}, {42}, {[]byte("a")}} {
		if _, err := ours.FromArgs(args...); err == nil {
			t.Errorf("FromArgs(%#v) took arguments StringFieldIndex refuses", args)
		}
	}
	if _, _, err := ours.FromObject(&Session{ID: "s"}); err == nil {
		t.Error("FromObject of a row of another table: no error")
	}
}
