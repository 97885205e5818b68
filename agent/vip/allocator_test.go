package vip

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// newKV starts a real single kv server on raft's in-memory transport,
// which (unlike TCP) runs inside a synctest bubble.
func newKV(t *testing.T) *kv.Server {
	t.Helper()
	return kvtest.NewServer(t, func(c *kv.Config) {
		_, tr := raft.NewInmemTransport("")
		c.Transport = tr
	})
}

// leader is a Leader the test flips.
type leader struct {
	mu  sync.Mutex
	yes bool
	ch  chan struct{}
}

func (l *leader) LeaderWatch(ws memdb.WatchSet) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws.Add(l.ch)
	return l.yes
}

func (l *leader) set(yes bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.yes = yes
	close(l.ch)
	l.ch = make(chan struct{})
}

func newLeader(yes bool) *leader { return &leader{yes: yes, ch: make(chan struct{})} }

func leading() *leader { return newLeader(true) }

// allocAgent is one agent's table and allocator, run until cleanup.
type allocAgent struct {
	tbl   *Table
	alloc *Allocator
}

func startAllocator(t *testing.T, store Store, cat Catalog, ldr Leader, cidr string, grace time.Duration) *allocAgent {
	t.Helper()
	tbl, err := NewTable(TableConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAllocator(AllocatorConfig{
		CIDR: netip.MustParsePrefix(cidr), Grace: grace,
		Store: store, Leader: ldr, Catalog: cat, Table: tbl,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- tbl.Run(ctx) }()
	go func() { errs <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		}
	})
	return &allocAgent{tbl: tbl, alloc: a}
}

// vips is the table as name -> address.
func vips(tbl *Table) map[string]string {
	_, m := tbl.Snapshot(nil)
	out := map[string]string{}
	for name, a := range m {
		out[name] = a.Addr.String()
	}
	return out
}

// storeKeys is everything under Prefix as key -> value.
func storeKeys(t *testing.T, s *kv.Server) map[string]string {
	t.Helper()
	_, es, err := s.List(context.Background(), kv.QueryOptions{}, Prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range es {
		out[e.Key] = string(e.Value)
	}
	return out
}

func TestAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		cat.set("Web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, crit))
		cat.set("db", inst("10.0.0.3", 5432, crit)) // unhealthy still gets a VIP
		cat.set("dns", inst("10.0.0.4", 53, pass, "endpoint_mode=dnsrr"))
		ag := startAllocator(t, s, cat, s, "10.200.0.0/16", 0)
		synctest.Wait()

		want := map[string]string{
			"_cairn/vip/service/db":         `{"Service":"db","Address":"10.200.0.1","Ports":"5432/tcp"}`,
			"_cairn/vip/service/web":        `{"Service":"Web","Address":"10.200.0.2","Ports":"80/tcp"}`,
			"_cairn/vip/address/10.200.0.1": "db",
			"_cairn/vip/address/10.200.0.2": "web",
		}
		if diff := cmp.Diff(want, storeKeys(t, s)); diff != "" {
			t.Errorf("store under %s (-want +got):\n%s", Prefix, diff)
		}
		if diff := cmp.Diff(map[string]string{"db": "10.200.0.1", "web": "10.200.0.2"}, vips(ag.tbl)); diff != "" {
			t.Errorf("table (-want +got):\n%s", diff)
		}
		if a, ok := ag.tbl.Lookup("WEB"); !ok || a.String() != "10.200.0.2" {
			t.Errorf("Lookup(WEB) = %v, %v, want 10.200.0.2, true", a, ok)
		}

		// A new service takes the next address; dnsrr opting in later
		// gets one; opting out releases at once (no grace).
		cat.set("api", inst("10.0.0.5", 8080, pass))
		cat.set("dns", inst("10.0.0.4", 53, pass))
		synctest.Wait()
		cat.set("web", inst("10.0.0.1", 80, pass, "endpoint_mode=dnsrr"))
		synctest.Wait()
		want2 := map[string]string{"db": "10.200.0.1", "api": "10.200.0.3", "dns": "10.200.0.4"}
		if diff := cmp.Diff(want2, vips(ag.tbl)); diff != "" {
			t.Errorf("after api, dns in and web out (-want +got):\n%s", diff)
		}
		st := ag.alloc.Status()
		if st.Allocated != 4 || st.Released != 1 || !st.Leading {
			t.Errorf("Status() = %+v, want Leading, Allocated 4, Released 1", st)
		}
	})
}

// TestAllocateRace: two agents that both believe they lead allocate for
// the same services at once through one store: every name ends with
// exactly one address and no address with two names.
func TestAllocateRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		const n = 40
		for i := range n {
			cat.set(fmt.Sprintf("svc%02d", i), inst("10.0.0.1", 1000+i, pass))
		}
		a := startAllocator(t, s, cat, leading(), "10.200.0.0/24", 0)
		b := startAllocator(t, s, cat, leading(), "10.200.0.0/24", 0)
		synctest.Wait()

		keys := storeKeys(t, s)
		owner := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("svc%02d", i)
			v, ok := keys[ServiceKey(name)]
			if !ok {
				t.Errorf("%s has no allocation", name)
				continue
			}
			var r record
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			addr := r.Address
			if other, dup := owner[addr]; dup {
				t.Errorf("%s is allocated to both %s and %s", addr, other, name)
			}
			owner[addr] = name
			if got := keys[addressPrefix+addr]; got != name {
				t.Errorf("address key of %s = %q, want %q", addr, got, name)
			}
		}
		if len(keys) != 2*n {
			t.Errorf("%d keys under %s, want %d (one service and one address key per service)", len(keys), Prefix, 2*n)
		}
		if diff := cmp.Diff(vips(a.tbl), vips(b.tbl)); diff != "" {
			t.Errorf("the two agents' tables differ (-a +b):\n%s", diff)
		}
		if total := a.alloc.Status().Allocated + b.alloc.Status().Allocated; total != n {
			t.Errorf("allocations that succeeded: %d, want %d", total, n)
		}
	})
}

func TestExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		cat.set("a", inst("10.0.0.1", 80, pass))
		cat.set("b", inst("10.0.0.2", 80, pass))
		cat.set("c", inst("10.0.0.3", 80, pass))
		ag := startAllocator(t, s, cat, s, "10.200.0.0/30", time.Minute)
		synctest.Wait()

		if diff := cmp.Diff(map[string]string{"a": "10.200.0.1", "b": "10.200.0.2"}, vips(ag.tbl)); diff != "" {
			t.Errorf("a /30 gives out two addresses, not its network or broadcast (-want +got):\n%s", diff)
		}
		st := ag.alloc.Status()
		wantErr := `vip: service "c" gets no VIP: the VIP range is exhausted (-vip-cidr=10.200.0.0/30 gives out 2 addresses, all in use); widen -vip-cidr or remove unused services (a VIP is kept 1m0s after the last instance)`
		if diff := cmp.Diff(map[string]string{"c": wantErr}, st.Exhausted); diff != "" {
			t.Errorf("Status().Exhausted (-want +got):\n%s", diff)
		}
		if st.ExhaustedTotal != 1 {
			t.Errorf("Status().ExhaustedTotal = %d, want 1", st.ExhaustedTotal)
		}

		// More changes while full: still one error, counted once.
		cat.set("c", inst("10.0.0.3", 81, pass))
		synctest.Wait()
		if got := ag.alloc.Status().ExhaustedTotal; got != 1 {
			t.Errorf("ExhaustedTotal after another change = %d, want 1 (once per change of the error)", got)
		}

		// a goes; after the grace its address goes to c.
		cat.set("a")
		time.Sleep(time.Minute)
		synctest.Wait()
		if diff := cmp.Diff(map[string]string{"b": "10.200.0.2", "c": "10.200.0.1"}, vips(ag.tbl)); diff != "" {
			t.Errorf("after a's grace (-want +got):\n%s", diff)
		}
		if st := ag.alloc.Status(); len(st.Exhausted) != 0 {
			t.Errorf("Status().Exhausted = %v, want none", st.Exhausted)
		}
	})
}

func TestGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		cat.set("web", inst("10.0.0.1", 80, pass))
		cat.set("db", inst("10.0.0.2", 5432, pass))
		ag := startAllocator(t, s, cat, s, "10.200.0.0/24", 0) // DefaultGrace
		synctest.Wait()
		before := vips(ag.tbl)

		// A redeploy: every instance goes, and comes back within the grace.
		cat.set("web")
		time.Sleep(DefaultGrace - time.Minute)
		synctest.Wait()
		cat.set("web", inst("10.0.0.9", 80, pass))
		synctest.Wait()
		if diff := cmp.Diff(before, vips(ag.tbl)); diff != "" {
			t.Errorf("a redeploy within the grace changed the VIPs (-want +got):\n%s", diff)
		}

		// Gone for good: kept through the grace, released after it.
		cat.set("web")
		time.Sleep(DefaultGrace - time.Second)
		synctest.Wait()
		if _, ok := ag.tbl.Lookup("web"); !ok {
			t.Errorf("web's VIP was released before the grace (%v) ran out", DefaultGrace)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff(map[string]string{"db": before["db"]}, vips(ag.tbl)); diff != "" {
			t.Errorf("after the grace (-want +got):\n%s", diff)
		}
		if _, ok := storeKeys(t, s)[addressPrefix+before["web"]]; ok {
			t.Errorf("the address key of web's released VIP %s is still in the store", before["web"])
		}
	})
}

// TestFollowerDoesNotAllocate: only the leader allocates; a server that
// becomes leader starts at once (woken by the leadership watch).
func TestFollowerDoesNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		cat.set("web", inst("10.0.0.1", 80, pass))
		ldr := newLeader(false)
		ag := startAllocator(t, s, cat, ldr, "10.200.0.0/24", 0)
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := vips(ag.tbl); len(got) != 0 {
			t.Errorf("a follower allocated: %v", got)
		}
		ldr.set(true)
		synctest.Wait()
		if diff := cmp.Diff(map[string]string{"web": "10.200.0.1"}, vips(ag.tbl)); diff != "" {
			t.Errorf("after becoming leader (-want +got):\n%s", diff)
		}
	})
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in, want, first, last, err string
	}{
		{in: "10.200.0.0/16", want: "10.200.0.0/16", first: "10.200.0.1", last: "10.200.255.254"},
		{in: "10.200.3.4/30", want: "10.200.3.4/30", first: "10.200.3.5", last: "10.200.3.6"},
		{in: "10.200.0.0/31", want: "10.200.0.0/31", first: "10.200.0.0", last: "10.200.0.1"},
		{in: "10.200.0.9/32", want: "10.200.0.9/32", first: "10.200.0.9", last: "10.200.0.9"},
		{in: "fd00:cafe::/112", want: "fd00:cafe::/112", first: "fd00:cafe::1", last: "fd00:cafe::ffff"},
		{in: "10.200.0.0", err: `-vip-cidr="10.200.0.0" is not a CIDR range; write e.g. 10.200.0.0/16`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseCIDR(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseCIDR(%q) = %v, want error %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("ParseCIDR(%q) = %v, %v, want %s", tt.in, p, err, tt.want)
			}
			first, last, _ := usableRange(p)
			if first.String() != tt.first || last.String() != tt.last {
				t.Errorf("usableRange(%s) = %s..%s, want %s..%s", p, first, last, tt.first, tt.last)
			}
		})
	}
}

// record reads a service's allocation record from the store.
func storedRecord(t *testing.T, s *kv.Server, name string) record {
	t.Helper()
	v, ok := storeKeys(t, s)[ServiceKey(name)]
	if !ok {
		t.Fatalf("%s has no allocation record", name)
	}
	var r record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		t.Fatalf("%s's record %q: %v", name, v, err)
	}
	return r
}

// TestPinnedPorts: the leader decides a VIP's ports once, in the
// record every node reads; instances coming and going on other ports
// leave them; another vip_port moves them; a record from before ports
// were kept gets them.
func TestPinnedPorts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		// A record an older cairn wrote: no ports.
		old := `{"Service":"Old","Address":"10.200.0.200"}`
		if _, _, errs, err := s.Txn(t.Context(), kv.QueryOptions{}, []kv.Op{
			{Verb: kv.VerbSet, Key: ServiceKey("old"), Value: []byte(old)},
			{Verb: kv.VerbSet, Key: addressKey(mustAddr("10.200.0.200")), Value: []byte("old")},
		}); err != nil || len(errs) > 0 {
			t.Fatalf("write an old record: %v %v", err, errs)
		}
		cat.set("old", inst("10.0.0.9", 7000, pass))
		cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 8080, pass), inst("10.0.0.3", 9090, pass))
		ag := startAllocator(t, s, cat, leading(), "10.200.0.0/24", 0)
		// A follower's table: what every other node reads.
		other, err := NewTable(TableConfig{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go other.Run(ctx)
		synctest.Wait()

		ports := func(name string) string {
			_, m := other.Snapshot(nil)
			return FormatPorts(m[name].Pinned.Ports)
		}
		steps := []struct {
			what string
			do   func()
			want string // web's record
		}{
			{"first allocation: the most common port", func() {}, `{"Service":"web","Address":"10.200.0.1","Ports":"8080/tcp"}`},
			{"instances move to 9090 one by one: the VIP port stays", func() {
				cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.3", 9090, pass), inst("10.0.0.4", 9090, pass))
				synctest.Wait()
				cat.set("web", inst("10.0.0.3", 9090, pass), inst("10.0.0.4", 9090, pass))
			}, `{"Service":"web","Address":"10.200.0.1","Ports":"8080/tcp"}`},
			{"every instance goes and a redeploy comes on 7070", func() {
				cat.set("web")
				synctest.Wait()
				cat.set("web", inst("10.0.0.5", 7070, pass))
			}, `{"Service":"web","Address":"10.200.0.1","Ports":"8080/tcp"}`},
			{"an explicit vip_port moves it", func() {
				cat.set("web", inst("10.0.0.5", 7070, pass, "vip_port=80"))
			}, `{"Service":"web","Address":"10.200.0.1","Ports":"80/tcp","PortMeta":"80"}`},
			{"instances without the Meta keep it", func() {
				cat.set("web", inst("10.0.0.6", 7071, pass))
			}, `{"Service":"web","Address":"10.200.0.1","Ports":"80/tcp","PortMeta":"80"}`},
			{"vip_proto udp changes the protocol", func() {
				cat.set("web", inst("10.0.0.6", 7071, pass, "vip_proto=udp"))
			}, `{"Service":"web","Address":"10.200.0.1","Ports":"80/udp","PortMeta":"80","ProtoMeta":"udp"}`},
		}
		for _, st := range steps {
			st.do()
			synctest.Wait()
			if got := storeKeys(t, s)[ServiceKey("web")]; got != st.want {
				t.Errorf("%s: web's record = %s, want %s", st.what, got, st.want)
			}
		}
		if got := ports("web"); got != "80/udp" {
			t.Errorf("another node's table: web's ports = %q, want 80/udp", got)
		}
		r := storedRecord(t, s, "old")
		if r.Address != "10.200.0.200" || r.Ports != "7000/tcp" {
			t.Errorf("the old record after the leader's pass = %+v, want its address kept and Ports 7000/tcp filled in", r)
		}
		if got := ports("old"); got != "7000/tcp" {
			t.Errorf("another node's table: old's ports = %q, want 7000/tcp", got)
		}
		_ = ag
	})
}

// TestExhaustedEverywhere: a full range is an error every node's table
// shows (the leader records it), and it goes when the service gets a
// VIP.
func TestExhaustedEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newKV(t)
		cat := newFakeCatalog()
		cat.set("a", inst("10.0.0.1", 80, pass))
		cat.set("b", inst("10.0.0.2", 80, pass))
		startAllocator(t, s, cat, leading(), "10.200.0.0/31", time.Minute)
		follower := startAllocator(t, s, cat, newLeader(false), "10.200.0.0/31", time.Minute)
		synctest.Wait()
		cat.set("c", inst("10.0.0.3", 80, pass))
		synctest.Wait()

		want := map[string]string{"c": `vip: service "c" gets no VIP: the VIP range is exhausted (-vip-cidr=10.200.0.0/31 gives out 2 addresses, all in use); widen -vip-cidr or remove unused services (a VIP is kept 1m0s after the last instance)`}
		if diff := cmp.Diff(want, follower.tbl.Errors(nil)); diff != "" {
			t.Errorf("a follower's table errors (-want +got):\n%s", diff)
		}
		if st := follower.alloc.Status(); len(st.Exhausted) != 0 {
			t.Errorf("the follower's allocator reports %v itself; it allocates nothing", st.Exhausted)
		}

		cat.set("a")
		time.Sleep(time.Minute)
		synctest.Wait()
		if errs := follower.tbl.Errors(nil); len(errs) != 0 {
			t.Errorf("after c got a's address, the follower's table still has errors %v", errs)
		}
		if _, ok := storeKeys(t, s)[errorKey("c")]; ok {
			t.Errorf("the error key of c is still in the store")
		}
		if got := vips(follower.tbl)["c"]; got == "" {
			t.Errorf("c has no VIP after a's grace")
		}
	})
}
