package vip

import (
	"context"
	"encoding/json"
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the transcripts seen")

// golden compares got with testdata/<name>.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("transcript differs from %s (-want +got):\n%s", path, diff)
	}
}

// env is one reconciler with its fakes.
type env struct {
	cat    *fakeCatalog
	tbl    *Table
	dp     *recorder
	r      *Reconciler
	allocs map[string]string // service -> VIP
	ports  map[string]string // service -> the record's Ports ("" or absent: an old record)
	index  uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tbl, err := NewTable(TableConfig{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cat: newFakeCatalog(), tbl: tbl, dp: newRecorder(), allocs: map[string]string{}, ports: map[string]string{}}
	e.r, err = NewReconciler(ReconcilerConfig{Catalog: e.cat, Table: tbl, Dataplane: e.dp})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// alloc gives a service a VIP in the table ("" removes it), as the
// table's watch would after the leader's transaction.
func (e *env) alloc(name, addr string) {
	if addr == "" {
		delete(e.allocs, name)
	} else {
		e.allocs[name] = addr
	}
	e.publish()
}

// pin sets the ports the leader decided for a service, in its record.
func (e *env) pin(name, ports string) {
	e.ports[name] = ports
	e.publish()
}

func (e *env) publish() {
	e.index++
	var entries []*kv.Entry
	for _, name := range slices.Sorted(maps.Keys(e.allocs)) {
		v, _ := json.Marshal(record{Service: name, Address: e.allocs[name], Ports: e.ports[name]})
		entries = append(entries,
			&kv.Entry{Key: ServiceKey(name), Value: v, ModifyIndex: e.index},
			&kv.Entry{Key: addressKey(netip.MustParseAddr(e.allocs[name])), Value: []byte(name), ModifyIndex: e.index})
	}
	e.tbl.apply(e.index, entries)
}

// noStore is a Store for tables that tests fill by hand.
type noStore struct{ Store }

func svc(name string, vip string, ports ...Port) Service {
	return Service{Name: name, VIP: netip.MustParseAddr(vip), Ports: ports}
}

func tcp(port uint16, backends ...string) Port {
	p := Port{Proto: TCP, Port: port}
	for _, b := range backends {
		p.Backends = append(p.Backends, netip.MustParseAddrPort(b))
	}
	return p
}

const pass, crit = catalog.StatusPassing, catalog.StatusCritical

func TestReconciler(t *testing.T) {
	type step struct {
		name string
		do   func(e *env)
	}
	tests := []struct {
		name  string
		setup func(e *env) // before Run starts
		steps []step
	}{
		{
			name: "add",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
			},
			steps: []step{
				{"register two instances of web on different host ports", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 8080, pass), inst("10.0.0.3", 32768, pass))
				}},
				{"db registers but has no VIP yet", func(e *env) { e.cat.set("db", inst("10.0.0.5", 5432, pass)) }},
				{"the leader allocates db's VIP", func(e *env) { e.alloc("db", "10.200.0.2") }},
			},
		},
		{
			name: "remove",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.alloc("db", "10.200.0.2")
				e.cat.set("web", inst("10.0.0.1", 80, pass))
				e.cat.set("db", inst("10.0.0.5", 5432, pass))
			},
			steps: []step{
				{"web's last instance deregisters: its VIP stays allocated and refuses", func(e *env) { e.cat.set("web") }},
				{"a resync keeps it refusing", func(e *env) { time.Sleep(DefaultResync) }},
				{"the leader releases web's VIP after the grace: removed", func(e *env) { e.alloc("web", "") }},
				{"db's VIP is released while db still runs", func(e *env) { e.alloc("db", "") }},
			},
		},
		{
			name: "change",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.cat.set("web", inst("10.0.0.1", 8080, pass))
			},
			steps: []step{
				{"a second instance", func(e *env) { e.cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 8081, pass)) }},
				{"the same instances again: no update", func(e *env) { e.cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 8081, pass)) }},
				{"vip_port meta names two ports", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 8080, pass, "vip_port=80/tcp,53/udp"), inst("10.0.0.2", 8081, pass, "vip_port=80/tcp,53/udp"))
				}},
				{"a bad vip_port falls back to the common port", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 8080, pass, "vip_port=http"), inst("10.0.0.2", 8081, pass))
				}},
				{"the VIP moves to another address", func(e *env) { e.alloc("web", "10.200.0.9") }},
				{"web opts out with endpoint_mode=dnsrr", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 8080, pass, "endpoint_mode=dnsrr"), inst("10.0.0.2", 8081, pass))
				}},
			},
		},
		{
			name: "health",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, pass))
			},
			steps: []step{
				{"10.0.0.2 fails its check", func(e *env) { e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, crit)) }},
				{"10.0.0.1 warns: not passing, not a backend", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 80, catalog.StatusWarning), inst("10.0.0.2", 80, crit))
				}},
				{"both pass again", func(e *env) { e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, pass)) }},
			},
		},
		{
			name: "adopt",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.alloc("db", "10.200.0.2")
				e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, pass))
				e.cat.set("db", inst("10.0.0.5", 5432, pass))
				// What the previous run left: web right, db one
				// backend behind, and a service gone meanwhile.
				e.dp.tamper(func(k map[netip.Addr]Service) {
					for _, s := range []Service{
						svc("web", "10.200.0.1", tcp(80, "10.0.0.1:80", "10.0.0.2:80")),
						svc("db", "10.200.0.2", tcp(5432, "10.0.0.4:5432")),
						svc("old", "10.200.0.3", tcp(80, "10.0.0.9:80")),
					} {
						k[s.VIP] = s
					}
				})
			},
			steps: []step{
				{"then incremental as usual", func(e *env) { e.cat.set("db", inst("10.0.0.5", 5432, crit)) }},
			},
		},
		{
			name: "drift",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.2", 80, pass))
			},
			steps: []step{
				{"someone deletes a backend and adds a VIP behind cairn's back", func(e *env) {
					e.dp.tamper(func(k map[netip.Addr]Service) {
						k[netip.MustParseAddr("10.200.0.1")] = svc("web", "10.200.0.1", tcp(80, "10.0.0.1:80"))
						k[netip.MustParseAddr("10.200.0.7")] = svc("intruder", "10.200.0.7", tcp(80, "10.0.0.7:80"))
					})
				}},
				{"one resync period later", func(e *env) { time.Sleep(DefaultResync) }},
				{"an update that fails is repaired by a sync after a backoff", func(e *env) {
					e.dp.failNext("netlink: device busy")
					e.cat.set("web", inst("10.0.0.1", 80, pass))
					time.Sleep(time.Second)
				}},
				{"a change feed too old to answer re-reads everything", func(e *env) {
					e.cat.forget()
					e.cat.set("web", inst("10.0.0.1", 80, pass), inst("10.0.0.3", 80, pass))
				}},
			},
		},
		{
			// Every node programs the ports of the record, whatever
			// instances it sees.
			name: "pinned",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.pin("web", "8080/tcp")
			},
			steps: []step{
				{"this node sees most instances on 9090: the VIP still accepts 8080", func(e *env) {
					e.cat.set("web", inst("10.0.0.1", 8080, pass), inst("10.0.0.2", 9090, pass), inst("10.0.0.3", 9090, pass))
				}},
				{"the leader moves the ports (an explicit vip_port)", func(e *env) { e.pin("web", "80/tcp,53/udp") }},
				{"instances come and go: only backends change", func(e *env) { e.cat.set("web", inst("10.0.0.2", 9090, pass)) }},
			},
		},
		{
			// An agent restarted while a service with no instances is
			// in its grace period: the record has the ports, so the VIP
			// refuses at once until it is released.
			name: "restart-in-grace",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.pin("web", "80/tcp")
				e.alloc("old", "10.200.0.2") // a record without ports, nothing programmed: nothing to refuse on
			},
			steps: []step{
				{"a resync keeps refusing", func(e *env) { time.Sleep(DefaultResync) }},
				{"an instance comes back", func(e *env) { e.cat.set("web", inst("10.0.0.1", 8080, pass)) }},
				{"released", func(e *env) { e.alloc("web", "") }},
			},
		},
		{
			name: "leave",
			setup: func(e *env) {
				e.alloc("web", "10.200.0.1")
				e.cat.set("web", inst("10.0.0.1", 80, pass))
			},
			steps: []step{
				{"the agent leaves", func(e *env) {
					if err := e.r.Leave(context.Background()); err != nil {
						panic(err)
					}
				}},
				{"nothing more after leaving", func(e *env) { e.cat.set("web", inst("10.0.0.2", 80, pass)) }},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t)
				if tt.setup != nil {
					tt.setup(e)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				e.dp.note("start")
				go func() { done <- e.r.Run(ctx) }()
				synctest.Wait()
				for _, s := range tt.steps {
					e.dp.note("%s", s.name)
					s.do(e)
					synctest.Wait()
				}
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
				golden(t, "reconcile-"+tt.name, e.dp.transcript())
			})
		})
	}
}

// TestReconcilerWaitsForTable: before the allocations were read once,
// the reconciler must not Sync (it would remove every VIP).
func TestReconcilerWaitsForTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.cat.set("web", inst("10.0.0.1", 80, pass))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go e.r.Run(ctx)
		synctest.Wait()
		time.Sleep(3 * DefaultResync)
		synctest.Wait()
		if got := e.dp.transcript(); got != "\n" {
			t.Errorf("before the table was read, the data plane got:\n%s\nwant nothing", got)
		}
		e.alloc("web", "10.200.0.1")
		synctest.Wait()
		want := "sync 1\n  add web 10.200.0.1 tcp/80 -> 10.0.0.1:80\n"
		if diff := cmp.Diff(want, e.dp.transcript()); diff != "" {
			t.Errorf("after the first read (-want +got):\n%s", diff)
		}
	})
}
