package vip

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/hashicorp/go-memdb"
)

// countingDP is a Dataplane that only counts, so benchmarks measure the
// reconciler and not a transcript.
type countingDP struct{ syncs, updates, set int }

func (d *countingDP) Name() string { return "count" }
func (d *countingDP) Sync(_ context.Context, s []Service) error {
	d.syncs++
	d.set += len(s)
	return nil
}
func (d *countingDP) Flush(context.Context) error { return nil }
func (d *countingDP) Close() error                { return nil }
func (d *countingDP) Update(_ context.Context, s []Service, _ []netip.Addr) error {
	d.updates++
	d.set += len(s)
	return nil
}

// benchEnv is a catalog of services×instances, every service with a VIP.
func benchEnv(b *testing.B, services, instances int) (*Reconciler, *fakeCatalog, *Table, *countingDP) {
	b.Helper()
	cat := newFakeCatalog()
	tbl, err := NewTable(TableConfig{Store: noStore{}})
	if err != nil {
		b.Fatal(err)
	}
	e := &env{cat: cat, tbl: tbl, allocs: map[string]string{}, ports: map[string]string{}}
	vip := netip.MustParseAddr("10.200.0.0")
	for i := range services {
		name := fmt.Sprintf("svc%05d", i)
		insts := make([]catalog.Instance, instances)
		for j := range insts {
			insts[j] = inst(fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1), 8080, pass)
		}
		cat.set(name, insts...)
		vip = vip.Next()
		e.allocs[name] = vip.String()
		e.ports[name] = "8080/tcp" // pinned by the leader
	}
	e.publish()
	dp := &countingDP{}
	r, err := NewReconciler(ReconcilerConfig{Catalog: cat, Table: tbl, Dataplane: dp})
	if err != nil {
		b.Fatal(err)
	}
	return r, cat, tbl, dp
}

// BenchmarkReconcileOneChange is the reconciler's CPU for one health
// flip at 10,000 services × 10 instances: from the change feed's wake-up
// (reading Changes) to the Update call on the data plane.
func BenchmarkReconcileOneChange(b *testing.B) {
	r, cat, tbl, dp := benchEnv(b, 10_000, 10)
	ctx := context.Background()
	ti, table := tbl.Snapshot(nil)
	if err := r.sync(ctx, memdb.NewWatchSet(), ti, table); err != nil {
		b.Fatal(err)
	}
	_, base := cat.ServiceHealth(nil, "svc04242", catalog.Filter{})
	flipped := make([]catalog.Instance, len(base))
	copy(flipped, base)
	flipped[3] = inst("10.16.242.4", 8080, crit)
	states := [2][]catalog.Instance{flipped, base}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		cat.set("svc04242", states[i%2]...)
		i++
		b.StartTimer()
		if err := r.step(ctx, memdb.NewWatchSet(), ti, table); err != nil {
			b.Fatal(err)
		}
	}
	if dp.updates != i {
		b.Fatalf("%d updates for %d changes", dp.updates, i)
	}
}

// BenchmarkReconcileSync is one full Sync's reconciler CPU at 10,000
// services × 10 instances (start, periodic resync): reading every
// service and building the desired state.
func BenchmarkReconcileSync(b *testing.B) {
	r, _, tbl, _ := benchEnv(b, 10_000, 10)
	ctx := context.Background()
	ti, table := tbl.Snapshot(nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.sync(ctx, memdb.NewWatchSet(), ti, table); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocatorPass is the leader's allocator work for one health
// flip at 10,000 services × 10 instances, every service allocated.
func BenchmarkAllocatorPass(b *testing.B) {
	_, cat, tbl, _ := benchEnv(b, 10_000, 10)
	a, err := NewAllocator(AllocatorConfig{
		CIDR: netip.MustParsePrefix("10.200.0.0/16"), Store: noStore{}, Leader: leading(), Catalog: cat, Table: tbl,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.pass(ctx, memdb.NewWatchSet()); err != nil {
		b.Fatal(err)
	}
	_, base := cat.ServiceHealth(nil, "svc04242", catalog.Filter{})
	flipped := make([]catalog.Instance, len(base))
	copy(flipped, base)
	flipped[3] = inst("10.16.242.4", 8080, crit)
	states := [2][]catalog.Instance{flipped, base}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		cat.set("svc04242", states[i%2]...)
		i++
		b.StartTimer()
		if _, err := a.pass(ctx, memdb.NewWatchSet()); err != nil {
			b.Fatal(err)
		}
	}
}
