package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/hashicorp/go-memdb"
)

// DefaultResync is how often the reconciler re-reads everything and
// Syncs the data plane, which repairs rules changed behind its back.
const DefaultResync = time.Minute

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	Catalog   Catalog   // the local catalog (required)
	Table     *Table    // the allocations (required)
	Dataplane Dataplane // the kernel back end (required)
	// Resync is the period of the full Sync (default DefaultResync).
	Resync time.Duration
	Logger *slog.Logger
}

// Reconciler drives a Dataplane from the catalog and the allocations:
// a Sync at start (adopting what an earlier run left), an Update with
// only the services that changed whenever the catalog's change feed or
// the allocation table moves, and a full Sync every Resync. Only passing
// instances are backends. Everything runs on Run's one goroutine.
type Reconciler struct {
	cfg ReconcilerConfig
	dp  Dataplane
	log *slog.Logger

	// Run's state.
	catIndex uint64
	table    map[string]Allocation // the table the applied state used
	tIndex   uint64                // its index
	shapes   map[string]*shape     // services with instances, by lower-case name
	applied  map[string]Service    // what the data plane holds, by lower-case name
	dirty    bool                  // the data plane may differ from applied: Sync next

	// Leave hands the data plane over to its caller.
	mu      sync.Mutex
	running bool
	stopped chan struct{} // closed when the running Run returns
	leaveCh chan chan error
	left    bool
}

// NewReconciler validates cfg; it starts nothing.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Catalog == nil || cfg.Table == nil || cfg.Dataplane == nil {
		return nil, errors.New("vip: ReconcilerConfig needs Catalog, Table and Dataplane")
	}
	if cfg.Resync < 0 {
		return nil, fmt.Errorf("vip: resync period %v is negative; use 0 for the default (%v)", cfg.Resync, DefaultResync)
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		cfg: cfg, dp: cfg.Dataplane, log: log.With("dataplane", cfg.Dataplane.Name()),
		shapes: map[string]*shape{}, applied: map[string]Service{},
		leaveCh: make(chan chan error),
	}, nil
}

// Run reconciles until ctx is done and returns nil then; the kernel
// state stays (a restart adopts it). It waits for the allocation table's
// first read before its first Sync, so a store that cannot answer yet
// never makes it remove rules that are still right. Data plane errors
// are logged and repaired by a Sync after a backoff.
func (r *Reconciler) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return nil
	}
	r.running = true
	r.stopped = make(chan struct{})
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		close(r.stopped)
		r.mu.Unlock()
	}()

	var (
		nextSync time.Time // zero: Sync at the next step
		retry    time.Duration
	)
	for {
		ws := memdb.NewWatchSet()
		tIndex, table := r.cfg.Table.Snapshot(ws)
		var err error
		if tIndex != 0 {
			now := time.Now()
			if nextSync.IsZero() || r.dirty || !now.Before(nextSync) {
				err = r.sync(ctx, ws, tIndex, table)
				nextSync = now.Add(r.cfg.Resync)
			} else {
				err = r.step(ctx, ws, tIndex, table)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := time.Until(nextSync)
		if tIndex == 0 {
			wait = r.cfg.Resync
		}
		if err != nil {
			r.dirty = true
			retry = min(max(2*retry, time.Second), 30*time.Second)
			r.log.Warn("vip: data plane update failed; resyncing", "err", err, "in", retry)
			wait = retry
		} else {
			retry = 0
		}
		wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
		woke := ws.WatchCh(wctx)
		select {
		case <-woke:
			cancel()
		case done := <-r.leaveCh:
			cancel()
			done <- r.flush(ctx)
			<-ctx.Done()
			return nil
		}
	}
}

// Leave removes everything the data plane created (the agent leaves
// the cluster) and stops reconciling: Run then only waits for its ctx.
// It is safe to call from any goroutine, with Run running or not.
func (r *Reconciler) Leave(ctx context.Context) error {
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return nil
	}
	r.left = true
	running, stopped := r.running, r.stopped
	r.mu.Unlock()
	if !running {
		return r.flush(ctx)
	}
	done := make(chan error, 1)
	select {
	case r.leaveCh <- done:
		return <-done
	case <-stopped:
		return r.flush(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Reconciler) flush(ctx context.Context) error {
	if err := r.dp.Flush(ctx); err != nil {
		return fmt.Errorf("vip: remove the %s data plane's rules: %w", r.dp.Name(), err)
	}
	clear(r.applied)
	r.log.Info("vip: removed every VIP rule")
	return nil
}

// sync re-reads every service and makes the data plane hold exactly
// the desired state.
func (r *Reconciler) sync(ctx context.Context, ws memdb.WatchSet, tIndex uint64, table map[string]Allocation) error {
	idx, _, _ := r.cfg.Catalog.Changes(ws, 0)
	_, all := r.cfg.Catalog.Services(nil, catalog.Filter{})
	clear(r.shapes)
	for name := range all {
		r.read(strings.ToLower(name))
	}
	r.catIndex = idx
	r.table, r.tIndex = table, tIndex
	desired := map[string]Service{}
	for name := range r.shapes {
		if s, ok := r.desired(name); ok {
			desired[name] = s
		}
	}
	for name := range table { // services gone whose VIP still refuses
		if _, ok := desired[name]; !ok {
			if s, ok := r.desired(name); ok {
				desired[name] = s
			}
		}
	}
	for name := range r.applied {
		if _, ok := desired[name]; !ok {
			if s, ok := r.desired(name); ok {
				desired[name] = s
			}
		}
	}
	list := slices.SortedFunc(maps.Values(desired), func(a, b Service) int { return a.VIP.Compare(b.VIP) })
	if err := r.dp.Sync(ctx, list); err != nil {
		return fmt.Errorf("sync %d VIPs: %w", len(list), err)
	}
	r.applied = desired
	r.dirty = false
	return nil
}

// step applies what changed since the last step: the services the
// change feed names and those whose allocation moved.
func (r *Reconciler) step(ctx context.Context, ws memdb.WatchSet, tIndex uint64, table map[string]Allocation) error {
	idx, names, reset := r.cfg.Catalog.Changes(ws, r.catIndex)
	if reset {
		return r.sync(ctx, ws, tIndex, table)
	}
	changed := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(n)
		r.read(n)
		changed[n] = true
	}
	if tIndex != r.tIndex {
		for name, a := range table {
			if old, ok := r.table[name]; !ok || old.Addr != a.Addr || !equalPinned(old.Pinned, a.Pinned) {
				changed[name] = true
			}
		}
		for name := range r.table {
			if _, ok := table[name]; !ok {
				changed[name] = true
			}
		}
	}
	r.table, r.tIndex = table, tIndex
	if len(changed) == 0 {
		r.catIndex = idx
		return nil
	}

	var (
		set   []Service
		del   []netip.Addr
		next  = map[string]*Service{}
		inSet = map[netip.Addr]bool{}
	)
	for _, name := range slices.Sorted(maps.Keys(changed)) {
		old, had := r.applied[name]
		want, ok := r.desired(name)
		switch {
		case ok && had && equalService(old, want):
		case ok:
			if had && old.VIP != want.VIP {
				del = append(del, old.VIP)
			}
			set = append(set, want)
			inSet[want.VIP] = true
			next[name] = &want
		case had:
			del = append(del, old.VIP)
			next[name] = nil
		}
	}
	// A VIP that moved to another service is replaced by its set entry.
	del = slices.DeleteFunc(del, func(a netip.Addr) bool { return inSet[a] })
	if len(set) == 0 && len(del) == 0 {
		r.catIndex = idx
		return nil
	}
	if err := r.dp.Update(ctx, set, del); err != nil {
		return fmt.Errorf("update %d VIPs, remove %d: %w", len(set), len(del), err)
	}
	for name, s := range next {
		if s == nil {
			delete(r.applied, name)
		} else {
			r.applied[name] = *s
		}
	}
	r.catIndex = idx
	return nil
}

// read refreshes one service's shape from the catalog. Problems with
// its Meta are the leader's to log: it decides the ports.
func (r *Reconciler) read(name string) {
	_, insts := r.cfg.Catalog.ServiceHealth(nil, name, catalog.Filter{})
	s := shapeOf(insts)
	if s == nil {
		delete(r.shapes, name)
		return
	}
	r.shapes[name] = s
}

// desired is the data plane state a service should have, if any: it
// needs VIP mode and an allocation. The ports are the allocation's,
// which the leader decided for every node; a record without ports (from
// before cairn kept them, or before the leader filled them in) takes
// them from the instances this node sees, by the same rule. A service
// whose last instance is gone keeps its ports, with no backends, while
// its VIP stays allocated (the grace period), so that connections to it
// are refused at once instead of leaving clients that still know the
// VIP waiting for a SYN timeout; an agent restarted meanwhile knows the
// ports from the record.
func (r *Reconciler) desired(name string) (Service, bool) {
	a, allocated := r.table[name]
	if !allocated {
		return Service{}, false
	}
	s, ok := r.shapes[name]
	if ok && s.dnsrr {
		return Service{}, false
	}
	ports := a.Pinned.Ports
	if len(ports) == 0 && ok {
		p, _ := pin(Pinned{}, s)
		ports = p.Ports
	}
	if !ok {
		if len(ports) == 0 {
			// An old record: the ports this node programmed, if any.
			old, had := r.applied[name]
			if !had || old.VIP != a.Addr {
				return Service{}, false
			}
			ports = old.Ports
		}
		return Service{Name: a.Name, VIP: a.Addr, Ports: withBackends(ports, nil)}, true
	}
	return Service{Name: s.name, VIP: a.Addr, Ports: withBackends(ports, s.backends)}, true
}

func equalService(a, b Service) bool {
	return a.Name == b.Name && a.VIP == b.VIP && slices.EqualFunc(a.Ports, b.Ports, func(x, y Port) bool {
		return x.Proto == y.Proto && x.Port == y.Port && slices.Equal(x.Backends, y.Backends)
	})
}
