package kv

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// TestCommandCodecIsEncodingJSON: every command is written byte for byte
// as encoding/json writes it, and read back as encoding/json reads it,
// whether the KV fast path takes it or not.
func TestCommandCodecIsEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    command
		fast bool // the fast path must take it
	}{
		{"set", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "web/config", Value: []byte("v")}, WriteID: "n1-w7"}, true},
		{"set without write ID", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "k", Value: bytes.Repeat([]byte{0, 0xff, '"'}, 50)}}, true},
		{"null value", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "k"}}, true},
		{"empty value", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "k", Value: []byte{}}}, true},
		{"cas", command{Type: cmdKV, Op: &Op{Verb: VerbCAS, Key: "k", Value: []byte("x"), Flags: math.MaxUint64, Index: 42}}, true},
		{"lock", command{Type: cmdKV, Op: &Op{Verb: VerbLock, Key: "service/leader", Session: "0b6c4e6e-7f0a-4c8e-9d2f-1a2b3c4d5e6f"}, WriteID: "a-w1"}, true},
		{"delete tree", command{Type: cmdKV, Op: &Op{Verb: VerbDeleteTree, Key: ""}}, true},
		{"unicode key", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "dienste/größe/日本"}}, true},
		{"key encoding/json escapes for HTML", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "a<b>&c"}}, false},
		{"key with a quote", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: `say "hi"`}}, false},
		{"key with a backslash", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: `a\b`}}, false},
		{"key with U+2028", command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "a\u2028b"}}, false},
		{"txn", command{Type: cmdTxn, Ops: []Op{{Verb: VerbSet, Key: "a"}, {Verb: VerbDelete, Key: "b"}}}, false},
		{"session", command{Type: cmdSessionCreate, Session: &Session{ID: "s", Node: "n1"}}, false},
		{"reap", command{Type: cmdTombstoneReap, Index: 9}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.c.encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode =\n%s\nwant encoding/json's\n%s", got, want)
			}
			if _, ok := tc.c.appendKV(nil); ok != tc.fast {
				t.Errorf("fast path took it: %v; want %v", ok, tc.fast)
			}
			if _, ok := decodeKV(got); ok != tc.fast {
				t.Errorf("fast path read it: %v; want %v", ok, tc.fast)
			}
			checkDecode(t, got)
		})
	}
}

// TestCommandDecodeReadsOtherLayouts: JSON the fast path does not lay
// out itself (another field order, unknown fields, escapes, spaces) is
// still read, by encoding/json.
func TestCommandDecodeReadsOtherLayouts(t *testing.T) {
	for _, data := range []string{
		`{"Op":{"Key":"k","Verb":"set","Value":"dg==","Flags":0,"Index":0,"Session":""},"Type":1}`,
		`{"Type":1,"Op":{"Verb":"set","Key":"k","Value":"dg==","Flags":0,"Index":0,"Session":"","Future":true},"WriteID":"w"}`,
		`{"Type":1,"Op":{"Verb":"set","Key":"a\u003cb","Value":null,"Flags":0,"Index":0,"Session":""}}`,
		`{ "Type": 1, "Op": {"Verb":"set","Key":"k","Value":null,"Flags":0,"Index":0,"Session":""} }`,
		`{"Type":1,"Op":{"Verb":"set","Key":"k","Value":null,"Flags":007,"Index":0,"Session":""}}`, // invalid JSON either way
		`{"Type":1,"Op":{"Verb":"set","Key":"k","Value":"!!","Flags":0,"Index":0,"Session":""}}`,   // bad base64 either way
	} {
		checkDecode(t, []byte(data))
	}
}

// checkDecode: decodeCommand reads data as encoding/json does, and
// fails where it fails.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var want command
	wantErr := json.Unmarshal(data, &want)
	got, err := decodeCommand(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decode %s: error %v; encoding/json's %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decode %s =\n%+v %+v\nwant encoding/json's\n%+v %+v", data, got, got.Op, want, want.Op)
	}
}

func FuzzCommandCodec(f *testing.F) {
	f.Add("set", "k", []byte("v"), false, uint64(0), uint64(0), "", "w")
	f.Add("lock", "a/b", []byte(nil), true, uint64(1), uint64(2), "sess", "")
	f.Fuzz(func(t *testing.T, verb, key string, value []byte, nilValue bool, flags, index uint64, session, writeID string) {
		if nilValue {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		c := command{Type: cmdKV, Op: &Op{Verb: Verb(verb), Key: key, Value: value, Flags: flags, Index: index, Session: session}, WriteID: writeID}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encode =\n%s\nwant encoding/json's\n%s", got, want)
		}
		checkDecode(t, got)
	})
}

func FuzzCommandDecode(f *testing.F) {
	c := command{Type: cmdKV, Op: &Op{Verb: VerbCAS, Key: "k", Value: []byte("v"), Index: 3}, WriteID: "w"}
	b, _ := c.encode()
	f.Add(b)
	f.Add([]byte(`{"Type":1,"Op":{"Verb":"set","Key":"k","Value":null,"Flags":0,"Index":0,"Session":""}}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}

// BenchmarkCommandCodec: a 128-byte KV write encoded on the leader and
// decoded by the state machine, through the fast path and through
// encoding/json, which read and write the same bytes.
func BenchmarkCommandCodec(b *testing.B) {
	c := command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: "bench/7/42", Value: bytes.Repeat([]byte("v"), 128)}, WriteID: "6f1c2a9e-w123456"}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, _ := c.encode()
			if _, err := decodeCommand(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, _ := json.Marshal(c)
			var d command
			if err := json.Unmarshal(data, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
