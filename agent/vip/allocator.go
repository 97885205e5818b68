package vip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// DefaultGrace is how long a service keeps its VIP after its last
// instance is gone, so that a redeploy (stop everything, start again)
// gets the same address and clients' DNS caches stay right.
const DefaultGrace = time.Hour

// idlePass bounds how long the allocator waits with nothing to wake it:
// a pass that finds nothing to do costs little, and it catches what a
// lost wake-up would miss.
const idlePass = 10 * time.Minute

// Leader is leadership as a watchable signal (*kv.Server satisfies it).
type Leader interface {
	// LeaderWatch reports whether this server leads and adds to ws a
	// channel that closes when that changes.
	LeaderWatch(ws memdb.WatchSet) bool
}

// AllocatorConfig configures an Allocator.
type AllocatorConfig struct {
	// CIDR is the range VIPs come from (-vip-cidr). Its network and
	// broadcast addresses are never given out (for IPv6, the
	// subnet-router anycast address, the first). Every server must use
	// the same range.
	CIDR netip.Prefix
	// Grace is how long a VIP outlives its service's last instance
	// (default DefaultGrace).
	Grace   time.Duration
	Store   Store   // the KV store (required)
	Leader  Leader  // this server's kv server (required)
	Catalog Catalog // the local catalog (required)
	Table   *Table  // the allocations as this agent sees them (required)
	Logger  *slog.Logger
}

// Allocator gives every service in VIP mode an address from the range,
// on the Raft leader only (it has the whole catalog, and its store is
// the one that decides). One goroutine (Run) does all the work.
type Allocator struct {
	cfg   AllocatorConfig
	log   *slog.Logger
	first netip.Addr // lowest address given out
	last  netip.Addr // highest
	size  *big.Int   // how many addresses that is

	// Run's own state.
	catIndex   uint64
	present    map[string]*shape    // services with instances, by lower-case name
	emptySince map[string]time.Time // allocated services without instances
	conflicts  map[string]uint64    // name -> table index when its txn lost a race
	pending    map[string]pending   // allocations made that the table does not show yet
	cursor     netip.Addr           // where the search for a free address starts
	errWritten map[string]string    // error keys written this term: name -> value ("" deleted)
	warned     map[string]string    // service -> the port problem last logged
	pinnedAt   uint64               // the table index every allocation's ports were checked at

	// What Status reports.
	mu        sync.Mutex
	leading   bool
	exhausted map[string]string // service -> error text
	allocated atomic.Uint64
	released  atomic.Uint64
	exhaustN  atomic.Uint64
}

// NewAllocator validates cfg and returns an allocator that has started
// nothing.
func NewAllocator(cfg AllocatorConfig) (*Allocator, error) {
	if cfg.Store == nil || cfg.Leader == nil || cfg.Catalog == nil || cfg.Table == nil {
		return nil, errors.New("vip: AllocatorConfig needs Store, Leader, Catalog and Table")
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("vip: grace period %v is negative; use 0 for the default (%v)", cfg.Grace, DefaultGrace)
	}
	first, last, err := usableRange(cfg.CIDR)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	size := new(big.Int).Sub(new(big.Int).SetBytes(last.AsSlice()), new(big.Int).SetBytes(first.AsSlice()))
	size.Add(size, big.NewInt(1))
	return &Allocator{
		cfg: cfg, log: log, first: first, last: last, size: size, cursor: first,
		present: map[string]*shape{}, emptySince: map[string]time.Time{},
		conflicts: map[string]uint64{}, pending: map[string]pending{}, exhausted: map[string]string{},
		errWritten: map[string]string{}, warned: map[string]string{},
	}, nil
}

// ParseCIDR parses a -vip-cidr value and checks that it leaves at least
// one address to give out.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("-vip-cidr=%q is not a CIDR range; write e.g. 10.200.0.0/16", s)
	}
	if _, _, err := usableRange(p); err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// usableRange is the first and last address the allocator gives out.
func usableRange(p netip.Prefix) (first, last netip.Addr, err error) {
	if !p.IsValid() {
		return first, last, errors.New("vip: no VIP range; set -vip-cidr, e.g. 10.200.0.0/16")
	}
	p = p.Masked()
	first = p.Addr()
	last = lastAddr(p)
	hostBits := first.BitLen() - p.Bits()
	// A /31 or /32 (RFC 3021) has no network or broadcast address.
	switch {
	case first.Is4() && hostBits >= 2:
		first, last = first.Next(), last.Prev() // network and broadcast
	case first.Is6() && hostBits >= 1:
		first = first.Next() // subnet-router anycast
	}
	return first, last, nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Status is what the allocator reports for /v1/agent/self and logs.
type Status struct {
	// Leading is true when this agent allocates (it is the Raft leader).
	Leading bool
	// Range is the -vip-cidr range and how many addresses it gives out.
	Range string
	Size  string
	// Exhausted lists the services that want a VIP and have none
	// because the range is full, with the error.
	Exhausted map[string]string `json:",omitempty"`
	// Counters since start: VIPs allocated, released, and how many
	// times a service found the range full.
	Allocated, Released, ExhaustedTotal uint64
}

// Status reports the allocator's state. Safe for concurrent use.
func (a *Allocator) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{
		Leading:        a.leading,
		Range:          a.cfg.CIDR.Masked().String(),
		Size:           a.size.String(),
		Exhausted:      maps.Clone(a.exhausted),
		Allocated:      a.allocated.Load(),
		Released:       a.released.Load(),
		ExhaustedTotal: a.exhaustN.Load(),
	}
}

// ErrExhausted: the VIP range has no free address.
var ErrExhausted = errors.New("the VIP range is exhausted")

// Run allocates and releases VIPs while this agent leads, until ctx is
// done. It returns nil on a clean stop; store errors are logged and
// retried, never fatal.
func (a *Allocator) Run(ctx context.Context) error {
	var retry time.Duration
	for {
		ws := memdb.NewWatchSet()
		next, err := a.pass(ctx, ws)
		if ctx.Err() != nil {
			return nil
		}
		wait := next
		if err != nil {
			retry = min(max(2*retry, time.Second), 30*time.Second)
			a.log.Warn("vip: allocation pass failed; retrying", "err", err, "in", retry)
			wait = retry
		} else {
			retry = 0
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		ws.WatchCtx(wctx)
		cancel()
	}
}

// pass reads what changed and allocates and releases to match. It
// returns how long the caller may wait on ws before the next pass.
func (a *Allocator) pass(ctx context.Context, ws memdb.WatchSet) (time.Duration, error) {
	leading := a.cfg.Leader.LeaderWatch(ws)
	a.mu.Lock()
	was := a.leading
	a.leading = leading
	if !leading {
		clear(a.exhausted)
	}
	a.mu.Unlock()
	if !leading {
		if was {
			a.log.Info("vip: not the raft leader any more; another server allocates VIPs")
		}
		// Forget everything: a new term starts from a full read.
		a.catIndex = 0
		clear(a.emptySince)
		clear(a.errWritten)
		a.pinnedAt = 0
		return idlePass, nil
	}
	if !was {
		a.log.Info("vip: raft leader: allocating VIPs", "range", a.cfg.CIDR.Masked(), "grace", a.cfg.Grace)
	}

	// What the catalog says.
	idx, names, reset := a.cfg.Catalog.Changes(ws, a.catIndex)
	if reset {
		_, all := a.cfg.Catalog.Services(nil, catalog.Filter{})
		clear(a.present)
		names = slices.Collect(maps.Keys(all))
	}
	a.catIndex = idx
	for _, n := range names {
		n = strings.ToLower(n)
		_, insts := a.cfg.Catalog.ServiceHealth(nil, n, catalog.Filter{})
		if s := shapeOf(insts); s != nil {
			a.present[n] = s
		} else {
			delete(a.present, n)
		}
	}

	tableIndex, table := a.cfg.Table.Snapshot(ws)
	if tableIndex == 0 {
		// Nothing read yet: it would look as if nothing was allocated.
		return idlePass, nil
	}
	now := time.Now()
	next := idlePass
	var errs []error

	// Release: services gone for longer than the grace, or opted out.
	for name, al := range table {
		s, ok := a.present[name]
		switch {
		case ok && !s.dnsrr:
			delete(a.emptySince, name)
			continue
		case ok && s.dnsrr:
			// Opted out: release at once, so DNS answers instances.
		default:
			since, seen := a.emptySince[name]
			if !seen {
				a.emptySince[name] = now
				since = now
			}
			if left := since.Add(a.cfg.Grace).Sub(now); left > 0 {
				next = min(next, left)
				continue
			}
		}
		if err := a.release(ctx, al); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.emptySince, name)
	}
	for name := range a.emptySince {
		if _, ok := table[name]; !ok {
			delete(a.emptySince, name)
		}
	}

	// Pin: the target ports of allocated services, decided once and
	// changed only by their Meta (pin); records without ports (written
	// before cairn kept them) are filled in here. Every service when
	// the table moved (or on a full read), else those that changed.
	check := names
	if reset || tableIndex != a.pinnedAt {
		check = slices.Collect(maps.Keys(table))
		a.pinnedAt = tableIndex
	}
	for _, name := range check {
		name = strings.ToLower(name)
		al, allocated := table[name]
		s, ok := a.present[name]
		if !allocated || !ok || s.dnsrr {
			continue
		}
		p, problem := pin(al.Pinned, s)
		a.warn(name, s.name, problem)
		if equalPinned(p, al.Pinned) {
			continue
		}
		if err := a.repin(ctx, al, s.name, p); err != nil {
			errs = append(errs, err)
			a.pinnedAt = 0 // check every one again next pass
		}
	}

	// Allocate: services with instances, in VIP mode, without a VIP.
	// What this allocator wrote and the table does not show yet counts
	// as allocated.
	owners := a.cfg.Table.owners()
	taken := map[netip.Addr]bool{}
	for name, p := range a.pending {
		if tableIndex >= p.index {
			delete(a.pending, name)
			continue
		}
		taken[p.addr] = true
	}
	var want []string // without a VIP, in name order (a stable allocation order)
	for name, s := range a.present {
		_, mine := a.pending[name]
		if _, ok := table[name]; ok || mine || s.dnsrr {
			continue
		}
		want = append(want, name)
	}
	slices.Sort(want)
	full := false
	for _, name := range want {
		s := a.present[name]
		if at, ok := a.conflicts[name]; ok && at == tableIndex {
			continue // lost a race; wait for the table to show the winner
		}
		delete(a.conflicts, name)
		var addr netip.Addr
		if !full {
			addr, full = a.free(owners, taken)
		}
		if full {
			a.setExhausted(name, fmt.Sprintf("vip: service %q gets no VIP: %v (-vip-cidr=%s gives out %s addresses, all in use); widen -vip-cidr or remove unused services (a VIP is kept %v after the last instance)",
				s.name, ErrExhausted, a.cfg.CIDR.Masked(), a.size, a.cfg.Grace))
			continue
		}
		taken[addr] = true
		p, problem := pin(Pinned{}, s)
		a.warn(name, s.name, problem)
		index, ok, err := a.allocate(ctx, name, s.name, addr, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			a.conflicts[name] = tableIndex
			continue
		}
		a.pending[name] = pending{addr: addr, index: index}
		a.cursor = addr.Next()
		a.setExhausted(name, "")
	}
	for name := range a.conflicts {
		if _, ok := a.present[name]; !ok {
			delete(a.conflicts, name)
		}
	}
	// Exhaustion ends for services that got a VIP, went, or opted out.
	a.mu.Lock()
	for name := range a.exhausted {
		_, allocated := table[name]
		_, mine := a.pending[name]
		if s, ok := a.present[name]; !ok || s.dnsrr || allocated || mine {
			delete(a.exhausted, name)
		}
	}
	mine := maps.Clone(a.exhausted)
	a.mu.Unlock()
	for name := range a.warned {
		if _, ok := a.present[name]; !ok {
			delete(a.warned, name)
		}
	}
	if err := a.writeErrors(ctx, mine); err != nil {
		errs = append(errs, err)
	}
	return next, errors.Join(errs...)
}

// writeErrors makes the error keys say what exhausted says, so every
// agent can show why a service has no VIP. Each change is written once
// per term; a key the table still shows after that is written again.
func (a *Allocator) writeErrors(ctx context.Context, exhausted map[string]string) error {
	shown := a.cfg.Table.Errors(nil)
	var ops []kv.Op
	set := map[string]string{}
	for name, msg := range exhausted {
		if shown[name] == msg {
			delete(a.errWritten, name)
			continue
		}
		if w, ok := a.errWritten[name]; ok && w == msg {
			continue
		}
		ops = append(ops, kv.Op{Verb: kv.VerbSet, Key: errorKey(name), Value: []byte(msg)})
		set[name] = msg
	}
	for name := range shown {
		if _, ok := exhausted[name]; ok {
			continue
		}
		if w, ok := a.errWritten[name]; ok && w == "" {
			continue
		}
		ops = append(ops, kv.Op{Verb: kv.VerbDelete, Key: errorKey(name)})
		set[name] = ""
	}
	for name, w := range a.errWritten {
		if _, ok := shown[name]; !ok && w == "" {
			delete(a.errWritten, name) // the deletion shows
		}
	}
	if len(ops) == 0 {
		return nil
	}
	for start := 0; start < len(ops); start += maxTxnOps {
		if _, _, txnErrs, err := a.cfg.Store.Txn(ctx, kv.QueryOptions{}, ops[start:min(start+maxTxnOps, len(ops))]); err != nil {
			return fmt.Errorf("record the VIP errors of %d services: %w", len(ops), err)
		} else if len(txnErrs) > 0 {
			return fmt.Errorf("record the VIP errors of %d services: %s", len(ops), txnErrs[0].What)
		}
	}
	maps.Copy(a.errWritten, set)
	return nil
}

// maxTxnOps is how many operations one transaction carries (Consul's
// limit is 128; cairn's kv may differ, this is below both).
const maxTxnOps = 64

// warn logs a service's port problem once per change.
func (a *Allocator) warn(name, display, problem string) {
	if a.warned[name] == problem {
		return
	}
	a.warned[name] = problem
	if problem != "" {
		a.log.Warn("vip: "+problem, "service", display)
	}
}

// repin rewrites an allocation's ports, only at the index it was read at.
func (a *Allocator) repin(ctx context.Context, al Allocation, display string, p Pinned) error {
	val, err := json.Marshal(newRecord(al.Name, al.Addr, p))
	if err != nil {
		return err
	}
	_, _, txnErrs, err := a.cfg.Store.Txn(ctx, kv.QueryOptions{}, []kv.Op{
		{Verb: kv.VerbCAS, Key: ServiceKey(al.Service), Value: val, Index: al.ModifyIndex},
	})
	if err != nil {
		return fmt.Errorf("set the ports of service %q's VIP %s: %w", display, al.Addr, err)
	}
	if len(txnErrs) > 0 {
		a.log.Debug("vip: ports not set: the allocation changed; deciding again", "service", al.Service, "why", txnErrs[0].What)
		return nil
	}
	a.log.Info("vip: target ports", "service", display, "address", al.Addr, "ports", FormatPorts(p.Ports), "was", FormatPorts(al.Pinned.Ports))
	return nil
}

// newRecord is the record of an allocation.
func newRecord(display string, addr netip.Addr, p Pinned) record {
	return record{Service: display, Address: addr.String(), Ports: FormatPorts(p.Ports), PortMeta: p.PortMeta, ProtoMeta: p.ProtoMeta}
}

// setExhausted records (msg != "") or clears a service's exhaustion,
// logging and counting each change once.
func (a *Allocator) setExhausted(name, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, had := a.exhausted[name]
	switch {
	case msg == "" && had:
		delete(a.exhausted, name)
	case msg != "" && (!had || old != msg):
		a.exhausted[name] = msg
		a.exhaustN.Add(1)
		// Every agent's table logs it, this one's included, from the
		// error key writeErrors sets.
		a.log.Debug(msg, "service", name)
	}
}

// free finds an address no key claims and this pass has not handed out,
// starting after the last one given out (so a released address is the
// last to be reused); full is true when there is none.
func (a *Allocator) free(owners map[netip.Addr]string, taken map[netip.Addr]bool) (addr netip.Addr, full bool) {
	if int64(len(owners)+len(taken)) >= a.sizeCap() {
		// Every address is claimed (or more: keys outside the range).
		if a.inRangeUsed(owners, taken) >= a.sizeCap() {
			return addr, true
		}
	}
	c := a.cursor
	for i := int64(0); i < a.sizeCap(); i++ {
		if c.Compare(a.last) > 0 || c.Compare(a.first) < 0 {
			c = a.first
		}
		if _, used := owners[c]; !used && !taken[c] {
			return c, false
		}
		c = c.Next()
	}
	return addr, true
}

// sizeCap is the range size, capped where counting further is moot.
func (a *Allocator) sizeCap() int64 {
	if a.size.IsInt64() && a.size.Int64() < 1<<40 {
		return a.size.Int64()
	}
	return 1 << 40
}

func (a *Allocator) inRangeUsed(owners map[netip.Addr]string, taken map[netip.Addr]bool) int64 {
	var n int64
	in := func(x netip.Addr) bool { return x.Compare(a.first) >= 0 && x.Compare(a.last) <= 0 }
	for x := range owners {
		if in(x) {
			n++
		}
	}
	for x := range taken {
		if _, dup := owners[x]; !dup && in(x) {
			n++
		}
	}
	return n
}

// pending is an allocation written at index.
type pending struct {
	addr  netip.Addr
	index uint64
}

// allocate gives name the address in one transaction that checks that
// neither the service's key nor the address's exists, and returns the
// index it was written at. ok is false when the check failed: another
// allocator (or an earlier term) won.
func (a *Allocator) allocate(ctx context.Context, name, display string, addr netip.Addr, p Pinned) (index uint64, ok bool, err error) {
	val, err := json.Marshal(newRecord(display, addr, p))
	if err != nil {
		return 0, false, err
	}
	key := ServiceKey(name)
	m, _, txnErrs, err := a.cfg.Store.Txn(ctx, kv.QueryOptions{}, []kv.Op{
		{Verb: kv.VerbCheckNotExists, Key: key},
		{Verb: kv.VerbCheckNotExists, Key: addressKey(addr)},
		{Verb: kv.VerbSet, Key: key, Value: val},
		{Verb: kv.VerbSet, Key: addressKey(addr), Value: []byte(name)},
	})
	if err != nil {
		return 0, false, fmt.Errorf("allocate VIP %s to service %q: %w", addr, display, err)
	}
	if len(txnErrs) > 0 {
		a.log.Debug("vip: allocation lost a race; waiting for the winner", "service", name, "address", addr, "why", txnErrs[0].What)
		return 0, false, nil
	}
	a.allocated.Add(1)
	a.log.Info("vip: allocated", "service", display, "address", addr, "ports", FormatPorts(p.Ports))
	return m.Index, true, nil
}

// release deletes a service's allocation, each key only at the index it
// was read at (a key changed since is left alone; the next pass decides
// again).
func (a *Allocator) release(ctx context.Context, al Allocation) error {
	ops := []kv.Op{{Verb: kv.VerbDeleteCAS, Key: ServiceKey(al.Service), Index: al.ModifyIndex}}
	if al.AddrIndex != 0 {
		ops = append(ops, kv.Op{Verb: kv.VerbDeleteCAS, Key: addressKey(al.Addr), Index: al.AddrIndex})
	}
	_, _, txnErrs, err := a.cfg.Store.Txn(ctx, kv.QueryOptions{}, ops)
	if err != nil {
		return fmt.Errorf("release VIP %s of service %q: %w", al.Addr, al.Service, err)
	}
	if len(txnErrs) > 0 {
		a.log.Debug("vip: release skipped: the allocation changed", "service", al.Service, "why", txnErrs[0].What)
		return nil
	}
	a.released.Add(1)
	a.log.Info("vip: released", "service", al.Service, "address", al.Addr)
	return nil
}
