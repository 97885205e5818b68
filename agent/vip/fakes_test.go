package vip

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/hashicorp/go-memdb"
)

// fakeCatalog is a catalog with the change feed the real one is getting
// (Catalog.Changes): every write bumps the index, logs the name, and
// closes the channel readers wait on.
type fakeCatalog struct {
	mu    sync.Mutex
	index uint64
	first uint64 // Changes cannot answer for since < first
	svcs  map[string][]catalog.Instance
	log   []fakeChange // in index order
	ch    chan struct{}
}

type fakeChange struct {
	index uint64
	name  string
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{index: 1, first: 1, svcs: map[string][]catalog.Instance{}, ch: make(chan struct{})}
}

func (f *fakeCatalog) Changes(ws memdb.WatchSet, since uint64) (uint64, []string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws.Add(f.ch)
	if since == 0 || since < f.first {
		return f.index, nil, true
	}
	i := sort.Search(len(f.log), func(i int) bool { return f.log[i].index > since })
	var names []string
	for _, c := range f.log[i:] {
		names = append(names, c.name)
	}
	slices.Sort(names)
	return f.index, slices.Compact(names), false
}

func (f *fakeCatalog) Services(ws memdb.WatchSet, _ catalog.Filter) (uint64, map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ws != nil {
		ws.Add(f.ch)
	}
	out := map[string][]string{}
	for name, insts := range f.svcs {
		out[insts[0].Service.Name] = []string{}
		_ = name
	}
	return f.index, out
}

func (f *fakeCatalog) ServiceHealth(ws memdb.WatchSet, name string, _ catalog.Filter) (uint64, []catalog.Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ws != nil {
		ws.Add(f.ch)
	}
	return f.index, f.svcs[strings.ToLower(name)]
}

// set replaces a service's instances; none deletes it.
func (f *fakeCatalog) set(name string, insts ...catalog.Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := strings.ToLower(name)
	for i := range insts {
		insts[i].Service.Name = name
	}
	if len(insts) == 0 {
		delete(f.svcs, key)
	} else {
		f.svcs[key] = insts
	}
	f.index++
	f.log = append(f.log, fakeChange{f.index, key})
	close(f.ch)
	f.ch = make(chan struct{})
}

// forget drops the change log, as a catalog that keeps a bounded one
// does: readers behind it get reset.
func (f *fakeCatalog) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = nil
	f.first = f.index + 1
}

// inst is an instance at addr:port on a node of the same address, its
// check in status, with meta as "k=v" pairs.
func inst(addr string, port int, status string, meta ...string) catalog.Instance {
	m := map[string]string{}
	for _, kv := range meta {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return catalog.Instance{
		Node:    &catalog.Node{Node: "node-" + addr, Address: addr},
		Service: &catalog.Service{ID: fmt.Sprintf("%s:%d", addr, port), Address: addr, Port: port, Meta: m},
		Checks:  []*catalog.Check{{CheckID: "serfHealth", Status: catalog.StatusPassing}, {CheckID: "svc", Status: status}},
	}
}

// recorder is a Dataplane that writes what it is asked as text and
// keeps the "kernel" state those calls would leave, so tests can change
// it behind the reconciler's back (drift) or start from an earlier
// run's (adoption).
type recorder struct {
	mu     sync.Mutex
	lines  []string
	kernel map[netip.Addr]Service
	fail   error // returned (once) by the next call
	calls  int
}

func newRecorder() *recorder { return &recorder{kernel: map[netip.Addr]Service{}} }

func (d *recorder) Name() string { return "fake" }

func (d *recorder) Sync(_ context.Context, desired []Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if err := d.failing("sync"); err != nil {
		return err
	}
	d.lines = append(d.lines, fmt.Sprintf("sync %d", len(desired)))
	want := map[netip.Addr]Service{}
	for _, s := range desired {
		want[s.VIP] = s
	}
	for _, a := range slices.SortedFunc(maps.Keys(d.kernel), netip.Addr.Compare) {
		if _, ok := want[a]; !ok {
			d.lines = append(d.lines, "  remove "+describe(d.kernel[a]))
		}
	}
	for _, s := range desired {
		old, ok := d.kernel[s.VIP]
		switch {
		case !ok:
			d.lines = append(d.lines, "  add "+describe(s))
		case describe(old) != describe(s):
			d.lines = append(d.lines, "  repair "+describe(old), "      to "+describe(s))
		default:
			d.lines = append(d.lines, "  keep "+describe(s))
		}
	}
	d.kernel = want
	return nil
}

func (d *recorder) Update(_ context.Context, set []Service, del []netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if err := d.failing("update"); err != nil {
		return err
	}
	for _, a := range del {
		d.lines = append(d.lines, "update del "+a.String())
		delete(d.kernel, a)
	}
	for _, s := range set {
		d.lines = append(d.lines, "update set "+describe(s))
		d.kernel[s.VIP] = s
	}
	return nil
}

func (d *recorder) Flush(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	d.lines = append(d.lines, "flush")
	clear(d.kernel)
	return nil
}

func (d *recorder) Close() error { return nil }

func (d *recorder) failing(what string) error {
	if d.fail == nil {
		return nil
	}
	err := d.fail
	d.fail = nil
	d.lines = append(d.lines, what+" failed: "+err.Error())
	return err
}

// note adds a comment line to the transcript.
func (d *recorder) note(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines = append(d.lines, "# "+fmt.Sprintf(format, args...))
}

// tamper changes the kernel state behind the reconciler's back.
func (d *recorder) tamper(f func(k map[netip.Addr]Service)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.kernel)
}

func (d *recorder) failNext(msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = errors.New(msg)
}

func (d *recorder) transcript() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n") + "\n"
}

// describe is one service as a transcript line:
// web 10.200.0.1 tcp/80 -> 10.0.0.1:8080,10.0.0.2:8080
func describe(s Service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Name, s.VIP)
	if len(s.Ports) == 0 {
		b.WriteString(" (no ports)")
	}
	for _, p := range s.Ports {
		fmt.Fprintf(&b, " %s/%d ->", p.Proto, p.Port)
		if len(p.Backends) == 0 {
			b.WriteString(" (none: refuse)")
			continue
		}
		bs := make([]string, len(p.Backends))
		for i, be := range p.Backends {
			bs[i] = be.String()
		}
		b.WriteString(" " + strings.Join(bs, ","))
	}
	return b.String()
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
