package vip

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/hashicorp/go-memdb"
	"golang.org/x/sync/errgroup"
)

// TaggedAddressKey is the service tagged address the catalog and health
// answers carry a service's VIP under: Consul's key for its own virtual
// IPs, {"Address": VIP, "Port": target port}.
const TaggedAddressKey = "consul-virtual"

// Config configures VIPs: the one part the agent runs for them.
type Config struct {
	// CIDR is -vip-cidr: where VIPs come from. Required: without it the
	// agent has no VIPs and does not create this part.
	CIDR netip.Prefix
	// Grace is how long a VIP outlives its service's last instance
	// (default DefaultGrace).
	Grace time.Duration
	// Resync is the period of the data plane's full Sync (default
	// DefaultResync).
	Resync time.Duration
	// CachePath keeps the last allocations read (TableConfig.CachePath);
	// "" keeps none.
	CachePath string

	// Store is the KV store as the HTTP API sees it (forward.Router):
	// the allocations are read, and written on the leader, through it.
	Store Store
	// Leader is this agent's kv server; nil on client agents, which
	// never allocate.
	Leader Leader
	// Catalog is the local catalog.
	Catalog Catalog
	// Dataplane programs the kernel; nil for -vip-dataplane none (DNS
	// and the HTTP tagged address only).
	Dataplane Dataplane
	// Touch, when set, is called with the services whose allocation
	// (VIP or ports) came, went or changed, so that the catalog moves
	// their index: a blocking query on a service then wakes when only
	// its VIP (the consul-virtual tagged address) changes.
	Touch  func(names ...string)
	Logger *slog.Logger
}

// VIPs runs the allocation table (every agent), the allocator (servers)
// and the reconciler (agents with a data plane). Its lookups are safe
// for concurrent use.
type VIPs struct {
	cfg   Config
	table *Table
	alloc *Allocator  // nil on clients
	rec   *Reconciler // nil without a data plane
}

// New validates cfg and builds the parts; it starts nothing.
func New(cfg Config) (*VIPs, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("vip: Config.Catalog is nil")
	}
	if _, _, err := usableRange(cfg.CIDR); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tbl, err := NewTable(TableConfig{Store: cfg.Store, CachePath: cfg.CachePath, Logger: log})
	if err != nil {
		return nil, err
	}
	v := &VIPs{cfg: cfg, table: tbl}
	if cfg.Leader != nil {
		v.alloc, err = NewAllocator(AllocatorConfig{
			CIDR: cfg.CIDR, Grace: cfg.Grace,
			Store: cfg.Store, Leader: cfg.Leader, Catalog: cfg.Catalog, Table: tbl, Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.Dataplane != nil {
		v.rec, err = NewReconciler(ReconcilerConfig{
			Catalog: cfg.Catalog, Table: tbl, Dataplane: cfg.Dataplane, Resync: cfg.Resync, Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Run runs the parts until ctx is done and returns nil then. The
// kernel state stays for the next run to adopt; closing the data plane
// is left to whoever opened it.
func (v *VIPs) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return v.table.Run(ctx) })
	if v.alloc != nil {
		g.Go(func() error { return v.alloc.Run(ctx) })
	}
	if v.rec != nil {
		g.Go(func() error { return v.rec.Run(ctx) })
	}
	if v.cfg.Touch != nil {
		g.Go(func() error { return v.touchChanges(ctx) })
	}
	return g.Wait()
}

// touchChanges calls Touch with the services whose allocation changed,
// each time the table moves, until ctx is done.
func (v *VIPs) touchChanges(ctx context.Context) error {
	var last map[string]Allocation
	for {
		ws := memdb.NewWatchSet()
		idx, cur := v.table.Snapshot(ws)
		if idx != 0 {
			if names := changedAllocations(last, cur); len(names) > 0 {
				v.cfg.Touch(names...)
			}
			last = cur
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return nil
		}
	}
}

// changedAllocations lists the services whose allocation differs
// between two tables: added, removed, another VIP or other ports.
func changedAllocations(old, cur map[string]Allocation) []string {
	var names []string
	for name, a := range cur {
		if o, ok := old[name]; !ok || o.Addr != a.Addr || !equalPinned(o.Pinned, a.Pinned) {
			names = append(names, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Leave removes this agent's VIP rules from the kernel (a graceful
// leave); Run keeps answering lookups but programs nothing more.
func (v *VIPs) Leave(ctx context.Context) error {
	if v.rec == nil {
		return nil
	}
	return v.rec.Leave(ctx)
}

// Lookup returns a service's VIP: allocated, and the service is in VIP
// mode (not endpoint_mode=dnsrr). It does not read the catalog; callers
// that have the instances check the mode with InVIPMode.
func (v *VIPs) Lookup(name string) (netip.Addr, bool) { return v.table.Lookup(name) }

// Allocations returns the allocations by lower-case service name with
// their index, and adds to ws a channel that closes when they change
// (Table.Snapshot). The map is shared: never modify it. A service in
// dnsrr mode may still have one for a moment: check InVIPMode.
func (v *VIPs) Allocations(ws memdb.WatchSet) (uint64, map[string]Allocation) {
	return v.table.Snapshot(ws)
}

// InVIPMode reports whether a service with these instances wants a VIP:
// none of them says endpoint_mode=dnsrr.
func InVIPMode(insts []catalog.Instance) bool {
	for _, in := range insts {
		if in.Service != nil && in.Service.Meta[MetaEndpointMode] == EndpointDNSRR {
			return false
		}
	}
	return true
}

// Virtual returns the address a service's VIP tagged address carries:
// the VIP and its first target port (the allocation's, as the data
// plane uses them), adding to ws the channels of the allocations and of
// the service. ok is false when the service has no VIP or is in dnsrr
// mode.
func (v *VIPs) Virtual(ws memdb.WatchSet, name string) (netip.AddrPort, bool) {
	_, table := v.table.Snapshot(ws)
	a, ok := table[strings.ToLower(name)]
	if !ok {
		return netip.AddrPort{}, false
	}
	_, insts := v.cfg.Catalog.ServiceHealth(ws, name, catalog.Filter{})
	s := shapeOf(insts)
	if s == nil || s.dnsrr {
		return netip.AddrPort{}, false
	}
	ports := a.Pinned.Ports
	if len(ports) == 0 {
		p, _ := pin(Pinned{}, s) // a record from before ports were kept
		ports = p.Ports
	}
	var port uint16
	if len(ports) > 0 {
		port = ports[0].Port
	}
	return netip.AddrPortFrom(a.Addr, port), true
}

// Errors returns, by lower-case service name, why a service in VIP
// mode has no VIP (the range is full), as every agent reads it from the
// leader's record; it adds to ws a channel that closes on a change. The
// map is shared: never modify it.
func (v *VIPs) Errors(ws memdb.WatchSet) map[string]string { return v.table.Errors(ws) }

// Status reports the allocator's state (see Status); on a client, only
// Range is set.
func (v *VIPs) Status() Status {
	if v.alloc == nil {
		return Status{Range: v.cfg.CIDR.Masked().String()}
	}
	return v.alloc.Status()
}

// DataplaneName is the data plane in use, "none" without one.
func (v *VIPs) DataplaneName() string {
	if v.cfg.Dataplane == nil {
		return "none"
	}
	return v.cfg.Dataplane.Name()
}

// Stats is the part's state as /v1/agent/self's Stats["vip"] shows it:
// strings, as Consul's other stats sections are.
func (v *VIPs) Stats() map[string]string {
	st := v.Status()
	_, table := v.table.Snapshot(nil)
	out := map[string]string{
		"range":           st.Range,
		"dataplane":       v.DataplaneName(),
		"allocations":     strconv.Itoa(len(table)),
		"allocating":      strconv.FormatBool(st.Leading),
		"allocated":       strconv.FormatUint(st.Allocated, 10),
		"released":        strconv.FormatUint(st.Released, 10),
		"exhausted_total": strconv.FormatUint(st.ExhaustedTotal, 10),
	}
	// Every agent shows why a service has no VIP: the leader records it
	// in the table.
	if errs := v.table.Errors(nil); len(errs) > 0 {
		names := slices.Sorted(maps.Keys(errs))
		out["exhausted"] = strings.Join(names, ",")
		out["error"] = errs[names[0]]
	}
	return out
}
