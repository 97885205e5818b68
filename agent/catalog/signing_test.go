package catalog

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeKeys is a table of bindings.
type fakeKeys struct {
	mu   sync.Mutex
	keys map[string]ed25519.PublicKey
}

func (f *fakeKeys) GossipKey(node string) (ed25519.PublicKey, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[lower(node)]
	return k, ok
}

func testKey(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }

func signed(key ed25519.PrivateKey, origin string, version uint64, nodes []nodeState) []byte {
	rec := encodeRecord(origin, version, nodes)
	return append(rec, ed25519.Sign(key, rec)...)
}

func pushPull(format byte, recs ...[]byte) []byte {
	out := []byte{format}
	for _, r := range recs {
		out = appendRecord(out, r)
	}
	return out
}

// TestSignedRecords: with Keys, a record is applied only when signed by
// the key bound to its origin, wherever it came from (direct, relayed,
// push/pull); a record whose origin has no key yet is held and applied
// once the key is known; a version from the far future is refused even
// when signed.
func TestSignedRecords(t *testing.T) {
	aKey, rogueKey := testKey(1), testKey(2)
	now := uint64(time.Now().UnixMilli()) << 20
	good := signed(aKey, "a", now, remoteState("a", "web"))
	newer := signed(aKey, "a", now+1, remoteState("a", "web/web2"))
	forged := signed(rogueKey, "a", now+2, remoteState("a", "web/forged"))
	tampered := bytes.Clone(newer)
	tampered[len(tampered)-ed25519.SignatureSize-3] ^= 1
	future := signed(aKey, "a", uint64(time.Now().Add(2*MaxVersionAhead).UnixMilli())<<20, remoteState("a", "web/future"))
	unsigned := encodeRecord("a", now+3, remoteState("a", "web/unsigned"))

	tests := []struct {
		name    string
		msgs    []inMsg
		bindA   bool // a's key is known from the start
		bindNow bool // a's key becomes known after the messages
		want    []string
	}{
		{"signed by its origin is applied", []inMsg{{buf: good, signed: true}}, true, false, []string{"a/web/passing"}},
		{"newer signed replaces", []inMsg{{buf: good, signed: true}, {buf: newer, signed: true}}, true, false, []string{"a/web2/passing"}},
		{"signed by another key is ignored", []inMsg{{buf: good, signed: true}, {buf: forged, signed: true}}, true, false, []string{"a/web/passing"}},
		{"tampered is ignored", []inMsg{{buf: good, signed: true}, {buf: tampered, signed: true}}, true, false, []string{"a/web/passing"}},
		{"unsigned is ignored", []inMsg{{buf: good, signed: true}, {buf: unsigned}}, true, false, []string{"a/web/passing"}},
		{"future version is refused even signed", []inMsg{{buf: good, signed: true}, {buf: future, signed: true}, {buf: newer, signed: true}}, true, false, []string{"a/web2/passing"}},
		{"forged in push/pull is ignored", []inMsg{{buf: pushPull(pushPullSigned, forged), pushPull: true, signed: true}}, true, false, nil},
		{"push/pull applies the signed", []inMsg{{buf: pushPull(pushPullSigned, forged, good), pushPull: true, signed: true}}, true, false, []string{"a/web/passing"}},
		{"unsigned push/pull is ignored", []inMsg{{buf: pushPull(pushPullFormat, unsigned), pushPull: true}}, true, false, nil},
		{"held until the key is known", []inMsg{{buf: good, signed: true}}, false, false, nil},
		{"held record applied once the key is known", []inMsg{{buf: forged, signed: true}, {buf: good, signed: true}}, false, true, []string{"a/web/passing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := &fakeKeys{keys: map[string]ed25519.PublicKey{}}
			if tt.bindA {
				keys.keys["a"] = aKey.Public().(ed25519.PublicKey)
			}
			c := newTestCatalog(t, func(c *Config) { c.SigningKey, c.Keys = testKey(9), keys })
			members := newFakeMembers("self", MemberAlive, "a", MemberAlive).snapshot()
			for _, m := range tt.msgs {
				c.receive(m, members, nil)
			}
			if tt.bindNow {
				keys.mu.Lock()
				keys.keys["a"] = aKey.Public().(ed25519.PublicKey)
				keys.mu.Unlock()
				c.retryHeld(members, nil)
			}
			if diff := cmp.Diff(tt.want, instances(c, "web")); diff != "" {
				t.Errorf("instances of web (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOwnRecordIsSigned: a catalog with a SigningKey publishes signed
// records, in gossip and push/pull, that verify with its public key.
func TestOwnRecordIsSigned(t *testing.T) {
	key := testKey(3)
	c := newTestCatalog(t, func(c *Config) { c.SigningKey = key })
	_, rec := c.record()
	body, sig, ok := splitSigned(rec)
	if !ok || !ed25519.Verify(key.Public().(ed25519.PublicKey), body, sig) {
		t.Fatalf("own record does not verify with the agent's key")
	}
	pp := c.pushPullState()
	if pp[0] != pushPullSigned {
		t.Fatalf("push/pull format = %d; want the signed one", pp[0])
	}
	recs, err := splitPushPull(pp)
	if err != nil || len(recs) != 1 || !bytes.Equal(recs[0], rec) {
		t.Fatalf("push/pull records = %d, %v; want the signed own record", len(recs), err)
	}
}

// BenchmarkReceiveSigned measures what checking signatures adds to
// applying another agent's new state (decode, verify, apply), side by
// side with unsigned records:
//
//	go test -run '^$' -bench ReceiveSigned ./agent/catalog
func BenchmarkReceiveSigned(b *testing.B) {
	key := testKey(1)
	for _, services := range []int{1, 100} {
		var names []string
		for i := range services {
			names = append(names, fmt.Sprintf("svc-%d", i))
		}
		for _, sign := range []bool{false, true} {
			b.Run(fmt.Sprintf("services=%d/signed=%v", services, sign), func(b *testing.B) {
				c, err := New(Config{NodeName: "self", Address: "10.0.0.1", SigningKey: testKey(9)})
				if err != nil {
					b.Fatal(err)
				}
				if sign {
					c.cfg.Keys = &fakeKeys{keys: map[string]ed25519.PublicKey{"a": key.Public().(ed25519.PublicKey)}}
				}
				members := map[string]MemberStatus{"a": MemberAlive}
				base := uint64(time.Now().UnixMilli()) << 20
				// Two states that alternate, each at a new version.
				states := [][]nodeState{remoteState("a", names...), remoteState("a", names[1:]...)}
				v := base
				for b.Loop() {
					v++
					st := states[v%2]
					var rec []byte
					if sign {
						rec = signed(key, "a", v, st)
					} else {
						rec = encodeRecord("a", v, st)
					}
					c.receive(inMsg{buf: rec, signed: sign}, members, nil)
				}
			})
		}
	}
}
