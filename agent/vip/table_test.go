package vip

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/go-cmp/cmp"
)

// TestTableApply: what the table makes of the keys under Prefix,
// hand-written junk included.
func TestTableApply(t *testing.T) {
	tbl, err := NewTable(TableConfig{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	if idx, m := tbl.Snapshot(nil); idx != 0 || len(m) != 0 {
		t.Fatalf("a new table = %d, %v, want 0 (not read yet), empty", idx, m)
	}
	tbl.apply(7, []*kv.Entry{
		{Key: "_cairn/vip/address/10.200.0.1", Value: []byte("web"), ModifyIndex: 5},
		{Key: "_cairn/vip/address/10.200.0.9", Value: []byte("orphan"), ModifyIndex: 6},
		{Key: "_cairn/vip/service/bad", Value: []byte("10.200.0.3"), ModifyIndex: 3},
		{Key: "_cairn/vip/service/dup", Value: []byte(`{"Address":"10.200.0.1"}`), ModifyIndex: 4},
		{Key: "_cairn/vip/service/noip", Value: []byte(`{"Address":"web.local"}`), ModifyIndex: 4},
		{Key: "_cairn/vip/service/web", Value: []byte(`{"Service":"Web","Address":"10.200.0.1"}`), ModifyIndex: 5},
		{Key: "_cairn/vip/service/dns", Value: []byte(`{"Service":"dns","Address":"10.200.0.2","Ports":"53/udp,53/tcp","ProtoMeta":"udp"}`), ModifyIndex: 6},
		{Key: "_cairn/vip/service/badports", Value: []byte(`{"Service":"badports","Address":"10.200.0.3","Ports":"http"}`), ModifyIndex: 6},
		{Key: "_cairn/vip/error/full", Value: []byte("vip: the range is full"), ModifyIndex: 7},
		{Key: "_cairn/vip/other", Value: []byte("x"), ModifyIndex: 7},
	})
	idx, m := tbl.Snapshot(nil)
	want := map[string]Allocation{
		// dup claims web's address by hand; the address key says
		// who owns it.
		// A record from before ports were kept: none pinned.
		"web": {Service: "web", Name: "Web", Addr: mustAddr("10.200.0.1"), ModifyIndex: 5, AddrIndex: 5},
		"dns": {Service: "dns", Name: "dns", Addr: mustAddr("10.200.0.2"), ModifyIndex: 6,
			Pinned: Pinned{Ports: []Port{{Proto: TCP, Port: 53}, {Proto: UDP, Port: 53}}, ProtoMeta: "udp"}},
		// Ports that do not parse are ignored: the leader decides again.
		"badports": {Service: "badports", Name: "badports", Addr: mustAddr("10.200.0.3"), ModifyIndex: 6},
	}
	if idx != 7 {
		t.Errorf("index = %d, want 7", idx)
	}
	if diff := cmp.Diff(want, m, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	owners := tbl.owners()
	if len(owners) != 4 || owners[mustAddr("10.200.0.9")] != "orphan" {
		t.Errorf("owners = %v, want 10.200.0.1-3 and the orphan address key 10.200.0.9", owners)
	}
	if diff := cmp.Diff(map[string]string{"full": "vip: the range is full"}, tbl.Errors(nil)); diff != "" {
		t.Errorf("Errors (-want +got):\n%s", diff)
	}
}

// TestTableCache: a table keeps what it read in CachePath; a new table
// on the same path starts from it (index 0: not read from the store, so
// the allocator and reconciler still wait), before any read.
func TestTableCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		path := filepath.Join(t.TempDir(), "vip-allocations.json")
		if _, _, errs, err := s.Txn(t.Context(), kv.QueryOptions{}, []kv.Op{
			{Verb: kv.VerbSet, Key: ServiceKey("web"), Value: []byte(`{"Service":"Web","Address":"10.200.0.1","Ports":"80/tcp"}`)},
			{Verb: kv.VerbSet, Key: addressKey(mustAddr("10.200.0.1")), Value: []byte("web")},
			{Verb: kv.VerbSet, Key: errorKey("db"), Value: []byte("vip: no room")},
		}); err != nil || len(errs) > 0 {
			t.Fatal(err, errs)
		}
		tbl, err := NewTable(TableConfig{Store: s, CachePath: path})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- tbl.Run(ctx) }()
		synctest.Wait()
		cancel()
		<-done

		restarted, err := NewTable(TableConfig{Store: noStore{}, CachePath: path})
		if err != nil {
			t.Fatal(err)
		}
		idx, m := restarted.Snapshot(nil)
		if idx != 0 {
			t.Errorf("index from the cache = %d, want 0 (not read from the store)", idx)
		}
		if a, ok := m["web"]; !ok || a.Addr != mustAddr("10.200.0.1") || FormatPorts(a.Pinned.Ports) != "80/tcp" {
			t.Errorf("web from the cache = %+v, %v; want 10.200.0.1 with 80/tcp", a, ok)
		}
		if got := restarted.Errors(nil)["db"]; got != "vip: no room" {
			t.Errorf("db's error from the cache = %q", got)
		}

		// A cache that is not JSON is an empty table, not a failure.
		if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		junk, err := NewTable(TableConfig{Store: noStore{}, CachePath: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, m := junk.Snapshot(nil); len(m) != 0 {
			t.Errorf("a junk cache gave %v", m)
		}
	})
}
