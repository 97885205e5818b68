package catalog

import "testing"

// FuzzReceive feeds gossip and push/pull bytes from the network to the
// catalog: whatever arrives, it must not panic, and a record it takes
// must read back.
func FuzzReceive(f *testing.F) {
	rec := record("a", 7, remoteState("a", "web", "db/db2"))
	f.Add(rec, false)
	f.Add(append(appendRecord([]byte{pushPullFormat}, rec), 0x05, 1, 2), true)
	f.Add([]byte{0x01, 'a', 0x80}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, buf []byte, pushPull bool) {
		c := newTestCatalog(t)
		members := map[string]MemberStatus{"a": MemberAlive}
		c.receive(inMsg{buf: buf, pushPull: pushPull}, members, nil)
		c.rmu.Lock()
		defer c.rmu.Unlock()
		for o, r := range c.remotes {
			origin, _, body, err := recordHeader(r.record)
			if err != nil || origin != o {
				t.Fatalf("kept a record it cannot read back: %q, %v", origin, err)
			}
			if _, err := decodeBody(body); err != nil {
				t.Fatalf("kept a record whose body does not decode: %v", err)
			}
		}
	})
}
