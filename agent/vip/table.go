package vip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// The allocations live in the replicated KV store, under a prefix that
// Consul itself does not reserve; cairn reserves it. Users must not
// write under "_cairn/": a leading underscore keeps it out of the way
// of ordinary key names, and cairn owns everything below it.
//
//	_cairn/vip/service/<lower-case service name>  {"Service":"Web","Address":"10.200.0.7","Ports":"80/tcp","PortMeta":"80"}
//	_cairn/vip/address/<address>                  <lower-case service name>
//	_cairn/vip/error/<lower-case service name>    why the service has no VIP (the range is full)
//
// The address key makes the store itself refuse a second owner of an
// address: an allocation is one transaction that checks that neither
// key exists and sets both; a release deletes both, each only at the
// index it was read at. The ports in the service key are decided once
// by the leader (pin) and read by every node, so all nodes program the
// same ports. Records written before ports were kept there have none:
// readers then derive the ports from the instances they see, and the
// leader fills them in. The error key lets every node show why a
// service has no VIP; the leader writes and deletes it.
const (
	// Prefix is the KV prefix every agent watches.
	Prefix        = "_cairn/vip/"
	servicePrefix = Prefix + "service/"
	addressPrefix = Prefix + "address/"
	errorPrefix   = Prefix + "error/"
)

// ServiceKey is the KV key of a service's allocation.
func ServiceKey(name string) string { return servicePrefix + strings.ToLower(name) }

func addressKey(a netip.Addr) string { return addressPrefix + a.String() }

func errorKey(name string) string { return errorPrefix + strings.ToLower(name) }

// record is the JSON value of a service key.
type record struct {
	Service string // the service name as first seen (for people reading the KV)
	Address string
	// Ports are the VIP's target ports as vip_port spells them
	// ("53/udp,80/tcp"); "" while undecided (no instance had a port) and
	// in records from before cairn kept them here.
	Ports string `json:",omitempty"`
	// PortMeta and ProtoMeta are the vip_port and vip_proto Meta the
	// ports were decided from ("" when none): the ports change only when
	// the instances' Meta changes to another value.
	PortMeta  string `json:",omitempty"`
	ProtoMeta string `json:",omitempty"`
}

// Allocation is one service's VIP as the store holds it.
type Allocation struct {
	Service string // lower-case service name
	Name    string // the service name as first seen
	Addr    netip.Addr
	// Pinned are the target ports the leader decided; no Ports when
	// undecided or in a record from before ports were kept (then the
	// ports come from the instances this node sees).
	Pinned Pinned
	// ModifyIndex is the service key's index: a release deletes it only
	// at this index.
	ModifyIndex uint64
	// AddrIndex is the address key's ModifyIndex (0 when it is missing).
	AddrIndex uint64
}

// Store is the part of the KV store the VIP table and allocator use:
// kv.Server on a server, forward.Router on any agent (it forwards to the
// leader where needed). Both are safe for concurrent use.
type Store interface {
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)
}

// TableConfig configures a Table.
type TableConfig struct {
	// Store is where the allocations are read from (required).
	Store Store
	// CachePath, when set, is a file (in the agent's data dir) that
	// keeps the last allocations read: NewTable loads it, so that a
	// restarted agent answers VIPs in DNS before its first read of the
	// store (which takes a moment, or long when no server answers), and
	// Run rewrites it after each read.
	CachePath string
	// Logger; nil discards.
	Logger *slog.Logger
}

// Table is every agent's in-memory copy of the allocations, name -> VIP,
// kept current by Run with blocking queries on Prefix. Readers get an
// index and a watch channel, as every other cairn read does. Safe for
// concurrent use.
type Table struct {
	store Store
	log   *slog.Logger
	cache string // CachePath

	mu   sync.Mutex
	snap *tableSnap
}

// tableSnap is one immutable state of the table: replaced, never changed.
type tableSnap struct {
	index  uint64 // the KV index it was read at; 0 until the first read
	byName map[string]Allocation
	errs   map[string]string     // lower-case service name -> why it has no VIP
	owners map[netip.Addr]string // every address a key under Prefix claims
	ch     chan struct{}         // closed when the next snapshot replaces this one
}

// NewTable returns an empty table; Run fills it.
func NewTable(cfg TableConfig) (*Table, error) {
	if cfg.Store == nil {
		return nil, errors.New("vip: TableConfig.Store is nil; the VIP table reads the allocations from the KV store")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{store: cfg.Store, log: log, cache: cfg.CachePath, snap: &tableSnap{byName: map[string]Allocation{}, errs: map[string]string{}, owners: map[netip.Addr]string{}, ch: make(chan struct{})}}
	if t.cache != "" {
		t.loadCache()
	}
	return t, nil
}

// Errors returns, by lower-case service name, why a service that wants
// a VIP has none (the range is full), as the leader recorded it; every
// agent reads it. It adds to ws a channel that closes on the next change.
// The map is shared: never modify it.
func (t *Table) Errors(ws memdb.WatchSet) map[string]string {
	t.mu.Lock()
	s := t.snap
	t.mu.Unlock()
	if ws != nil {
		ws.Add(s.ch)
	}
	return s.errs
}

// Lookup returns a service's VIP, if it has one.
func (t *Table) Lookup(name string) (netip.Addr, bool) {
	t.mu.Lock()
	s := t.snap
	t.mu.Unlock()
	a, ok := s.byName[strings.ToLower(name)]
	return a.Addr, ok
}

// Snapshot returns the allocations by lower-case service name and the
// KV index they were read at (0: not read yet, the table knows nothing),
// and adds to ws a channel that closes on the next change. The map is
// shared: never modify it.
func (t *Table) Snapshot(ws memdb.WatchSet) (uint64, map[string]Allocation) {
	t.mu.Lock()
	s := t.snap
	t.mu.Unlock()
	if ws != nil {
		ws.Add(s.ch)
	}
	return s.index, s.byName
}

// owners returns the addresses claimed by any key under Prefix.
func (t *Table) owners() map[netip.Addr]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap.owners
}

// Run keeps the table current until ctx is done, with one blocking list
// of Prefix at a time (stale reads: any server answers from its own
// state). When the store cannot answer, it keeps the last table and
// retries with a backoff of 1s doubling to 30s. It returns nil on a
// clean stop.
func (t *Table) Run(ctx context.Context) error {
	var (
		index   uint64
		backoff time.Duration
		failing bool
	)
	for {
		m, entries, err := t.store.List(ctx, kv.QueryOptions{MinIndex: index, Stale: true}, Prefix)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			if !failing {
				t.log.Warn("vip: cannot read the VIP allocations; keeping the last ones and retrying", "prefix", Prefix, "err", err)
				failing = true
			}
			timer := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			continue
		}
		if failing {
			t.log.Info("vip: reading the VIP allocations again", "index", m.Index)
			failing = false
		}
		backoff = 0
		switch {
		case m.Index == index:
			// The wait ran out with nothing new.
			continue
		case m.Index < index:
			// The store went back (a restore, another server's older
			// state): take its answer and wait from there.
		}
		index = m.Index
		t.apply(m.Index, entries)
		if t.cache != "" {
			if err := t.saveCache(m.Index, entries); err != nil {
				t.log.Warn("vip: cannot keep the VIP allocations in the data dir; a restart answers VIPs in DNS only after its first read", "path", t.cache, "err", err)
			}
		}
	}
}

// apply replaces the table with what the entries under Prefix say.
func (t *Table) apply(index uint64, entries []*kv.Entry) {
	s := t.parse(entries)
	if index == 0 {
		index = 1 // 0 means "not read yet"
	}
	s.index = index
	t.logErrors(s.errs)
	t.set(s)
}

// parse reads the entries under Prefix into a snapshot (index 0).
func (t *Table) parse(entries []*kv.Entry) *tableSnap {
	byName := map[string]Allocation{}
	errs := map[string]string{}
	owners := map[netip.Addr]string{}
	addrIndex := map[netip.Addr]uint64{}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Key, servicePrefix):
			name := strings.TrimPrefix(e.Key, servicePrefix)
			var r record
			if err := json.Unmarshal(e.Value, &r); err != nil {
				t.log.Warn("vip: ignoring an allocation that is not JSON; delete the key to let cairn allocate again", "key", e.Key, "err", err)
				continue
			}
			a, err := netip.ParseAddr(r.Address)
			if err != nil {
				t.log.Warn("vip: ignoring an allocation with a bad address; delete the key to let cairn allocate again", "key", e.Key, "address", r.Address)
				continue
			}
			if other, taken := owners[a]; taken && other != name {
				// Only a hand-written key can do this: the allocator's
				// transaction checks the address key. The address key
				// (listed first) names the owner; else the first wins.
				t.log.Warn("vip: two services claim one VIP; ignoring the second, delete its key", "address", a, "kept", other, "key", e.Key)
				continue
			}
			owners[a] = name
			al := Allocation{Service: name, Name: r.Service, Addr: a, ModifyIndex: e.ModifyIndex,
				Pinned: Pinned{PortMeta: r.PortMeta, ProtoMeta: r.ProtoMeta}}
			if al.Name == "" {
				al.Name = name
			}
			if r.Ports != "" {
				ps, err := parsePorts(r.Ports, TCP)
				if err != nil {
					t.log.Warn("vip: ignoring the ports of an allocation; the leader decides them again", "key", e.Key, "err", err)
					al.Pinned = Pinned{}
				} else {
					al.Pinned.Ports = ps
				}
			}
			byName[name] = al
		case strings.HasPrefix(e.Key, errorPrefix):
			errs[strings.TrimPrefix(e.Key, errorPrefix)] = string(e.Value)
		case strings.HasPrefix(e.Key, addressPrefix):
			a, err := netip.ParseAddr(strings.TrimPrefix(e.Key, addressPrefix))
			if err != nil {
				continue
			}
			addrIndex[a] = e.ModifyIndex
			if _, taken := owners[a]; !taken {
				owners[a] = string(e.Value)
			}
		}
	}
	for name, a := range byName {
		a.AddrIndex = addrIndex[a.Addr]
		byName[name] = a
	}
	return &tableSnap{byName: byName, errs: errs, owners: owners}
}

// logErrors logs each service's VIP error once per node and change.
func (t *Table) logErrors(errs map[string]string) {
	t.mu.Lock()
	old := t.snap.errs
	t.mu.Unlock()
	for name, msg := range errs {
		if old[name] != msg {
			// Once per node and change: every node says why.
			t.log.Error(msg, "service", name)
		}
	}
	for name := range old {
		if _, ok := errs[name]; !ok {
			t.log.Info("vip: the service's VIP error is resolved", "service", name)
		}
	}
}

// cacheFile is the JSON of CachePath: the entries under Prefix as the
// store listed them, and the index they were read at.
type cacheFile struct {
	Index   uint64
	Entries []cacheEntry
}

type cacheEntry struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

// loadCache fills the table from CachePath. The snapshot keeps index 0
// (not read from the store): DNS answers from it, while the allocator
// and the reconciler wait for a real read. A missing or unreadable file
// is an empty table.
func (t *Table) loadCache() {
	b, err := os.ReadFile(t.cache)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var f cacheFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		t.log.Warn("vip: ignoring the kept VIP allocations; DNS holds VIP answers until the first read of the store", "path", t.cache, "err", err)
		return
	}
	entries := make([]*kv.Entry, len(f.Entries))
	for i, e := range f.Entries {
		entries[i] = &kv.Entry{Key: e.Key, Value: e.Value, ModifyIndex: e.ModifyIndex}
	}
	s := t.parse(entries)
	t.logErrors(s.errs)
	t.set(s)
	t.log.Info("vip: loaded the VIP allocations kept in the data dir, until the first read of the store", "allocations", len(s.byName), "index", f.Index)
}

// saveCache writes the entries to CachePath, replacing it whole.
func (t *Table) saveCache(index uint64, entries []*kv.Entry) error {
	f := cacheFile{Index: index, Entries: make([]cacheEntry, len(entries))}
	for i, e := range entries {
		f.Entries[i] = cacheEntry{Key: e.Key, Value: e.Value, ModifyIndex: e.ModifyIndex}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp := t.cache + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, t.cache)
}

func (t *Table) set(s *tableSnap) {
	s.ch = make(chan struct{})
	t.mu.Lock()
	old := t.snap
	t.snap = s
	t.mu.Unlock()
	close(old.ch)
}

// String describes an allocation for logs.
func (a Allocation) String() string { return fmt.Sprintf("%s=%s", a.Service, a.Addr) }
