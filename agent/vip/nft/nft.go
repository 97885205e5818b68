package nft

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Config configures a Dataplane. The zero value of every field means its
// default (see DefaultConfig).
type Config struct {
	// Table is the name of the one ip-family table this data plane owns.
	// Two agents on one host (or netns) must use different names.
	Table string
	// NetNS is the path of a network namespace file (/run/netns/NAME,
	// /proc/PID/ns/net) whose nftables this data plane programs; empty
	// means the namespace of the process.
	NetNS string
	// Mark is the packet mark bit that asks the postrouting chain to
	// masquerade a connection made through a VIP. It must be one bit and
	// not used by anything else on the host that clears it.
	Mark uint32
	// MaxBatch bounds the changes sent in one netlink transaction. An
	// Update or Sync larger than this is split at VIP boundaries (each
	// VIP still changes atomically); anything an Update of a few VIPs
	// needs fits in one transaction.
	MaxBatch int
	// Logger receives one line per applied change set; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration that zero fields stand for.
func DefaultConfig() Config {
	return Config{
		Table:    "cairn",
		Mark:     0x4000, // kube-proxy's masquerade bit
		MaxBatch: 20000,
	}
}

// Dataplane programs VIPs into one nftables table. It implements
// vip.Dataplane. Its methods must not be called concurrently (the
// reconciler calls them from one goroutine).
type Dataplane struct {
	cfg    Config
	log    *slog.Logger
	nsFile *os.File // open while the data plane lives; nil for our own netns
	conn   *nftables.Conn
	table  *nftables.Table
	setID  uint32 // set IDs within one transaction

	// have is what the table holds, as this data plane last wrote or
	// read it; nil means unknown (not read yet, or a transaction failed),
	// and the next change reads the kernel first.
	have map[netip.Addr]*vipState
	// The balance chains as the kernel holds them, by class (classOf):
	// use count (VIP ports of the class, from have) and fingerprint.
	kRefs   map[uint32]int
	kChains map[uint32]string

	// lastChanges counts the changes the last Sync or Update sent (for
	// tests and logs): chains added, flushed or deleted, rules added, map
	// elements added or deleted.
	lastChanges int

	// oneTransaction makes a commit one netlink transaction instead of
	// three (builder.commit): only for the test that shows why it must
	// not be (TestSystemGenerationRace).
	oneTransaction bool
}

var _ vip.Dataplane = (*Dataplane)(nil)

// New opens a netlink socket to nftables (in Config.NetNS when set). It
// changes nothing in the kernel; Sync or Update does.
func New(cfg Config) (*Dataplane, error) {
	def := DefaultConfig()
	if cfg.Table == "" {
		cfg.Table = def.Table
	}
	if cfg.Mark == 0 {
		cfg.Mark = def.Mark
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = def.MaxBatch
	}
	if cfg.Mark&(cfg.Mark-1) != 0 {
		return nil, fmt.Errorf("nftables data plane: Mark 0x%x has more than one bit set; give one bit (default 0x%x)", cfg.Mark, def.Mark)
	}
	if cfg.MaxBatch < 100 {
		return nil, fmt.Errorf("nftables data plane: MaxBatch %d is below 100 changes; raise it (default %d)", cfg.MaxBatch, def.MaxBatch)
	}
	if len(cfg.Table) > 200 {
		return nil, fmt.Errorf("nftables data plane: table name %q is longer than 200 bytes", cfg.Table)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Dataplane{
		cfg:   cfg,
		log:   log.With("dataplane", "nftables", "table", cfg.Table),
		table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4},
	}
	if cfg.NetNS != "" {
		f, err := os.Open(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nftables data plane: open network namespace: %w", err)
		}
		d.nsFile = f
	}
	if err := d.reopen(); err != nil {
		d.closeNS()
		return nil, fmt.Errorf("nftables data plane: open netlink socket (needs CAP_NET_ADMIN and a kernel with nf_tables): %w", err)
	}
	return d, nil
}

// reopen replaces the netlink connection (and so drops anything queued
// on the old one).
func (d *Dataplane) reopen() error {
	if d.conn != nil {
		_ = d.conn.CloseLasting()
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if d.nsFile != nil {
		opts = append(opts, nftables.WithNetNSFd(int(d.nsFile.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return err
	}
	d.conn = conn
	return nil
}

// bigBuffers lets one transaction carry thousands of changes: the kernel
// acknowledges each message, and the default receive buffer holds only a
// few hundred acknowledgements.
func bigBuffers(c *netlink.Conn) error {
	const size = 64 << 20
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); e != nil {
			serr = e
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		// Without CAP_NET_ADMIN the kernel caps the size; try anyway.
		_ = c.SetReadBuffer(size)
		_ = c.SetWriteBuffer(size)
	}
	return nil
}

// Name is the data plane's name as -vip-dataplane spells it.
func (d *Dataplane) Name() string { return "nftables" }

// Sync makes the table hold exactly desired. It reads what the table
// holds (an earlier run's rules are adopted, not rebuilt: conntrack keeps
// established connections and the rules they were balanced by stay), and
// changes only chains, rules and map elements that differ from desired:
// missing or altered ones are rewritten, ones for VIPs not in desired and
// unknown chains in the table are deleted. A Sync with nothing to repair
// sends nothing. Large changes go in transactions of at most
// Config.MaxBatch changes, each VIP within one. Only when the table
// cannot be repaired in place (a set of another type under one of its
// names, say from another version) does Sync delete and rebuild it;
// conntrack still carries established connections through that.
func (d *Dataplane) Sync(ctx context.Context, desired []vip.Service) error {
	want, err := d.desired(desired)
	if err != nil {
		return fmt.Errorf("nftables sync: %w", err)
	}
	err = d.sync(ctx, want)
	if err == nil || ctx.Err() != nil {
		return err
	}
	// What is there cannot be repaired in place (say a set of another
	// type under one of our names, from another version): start the
	// table afresh. Established connections keep their conntrack NAT;
	// new ones to VIPs are not balanced until the table is rebuilt.
	d.log.Warn("nftables table cannot be repaired in place; deleting and rebuilding it", "err", err)
	if ferr := d.Flush(ctx); ferr != nil {
		return fmt.Errorf("%w (and deleting the table to rebuild it failed: %v)", err, ferr)
	}
	if rerr := d.sync(ctx, want); rerr != nil {
		return fmt.Errorf("%w (and rebuilding the table failed: %v)", err, rerr)
	}
	return nil
}

func (d *Dataplane) sync(ctx context.Context, want map[netip.Addr]*vipState) error {
	start := time.Now()
	d.have = nil
	k, err := d.read()
	if err != nil {
		return fmt.Errorf("nftables sync: read table %s: %w", d.cfg.Table, err)
	}
	adopted := len(k.vips)
	d.adopt(k)
	b := d.newBuilder()
	b.full = true
	b.ensureBase(k)
	addrs := make([]netip.Addr, 0, len(want)+len(k.vips))
	for a := range want {
		addrs = append(addrs, a)
	}
	for a := range k.vips {
		if _, ok := want[a]; !ok {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	have := k.vips
	if err := d.apply(ctx, b, addrs, have, want); err != nil {
		d.have = nil
		return fmt.Errorf("nftables sync of %d VIPs: %w", len(want), err)
	}
	d.have = have
	level := slog.LevelInfo
	if d.lastChanges == 0 {
		level = slog.LevelDebug // a periodic resync that found nothing to do
	}
	d.log.Log(ctx, level, "nftables synced", "vips", len(want), "adopted", adopted, "table_existed", k.exists,
		"changes", d.lastChanges, "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// adopt takes what read found as the known state of the kernel.
func (d *Dataplane) adopt(k *kernelState) {
	d.have = k.vips
	d.kChains = k.kChains
	d.kRefs = map[uint32]int{}
	for _, s := range k.vips {
		for key, n := range s.counts {
			d.kRefs[classOf(n, shardOf(key.vip()))]++
		}
	}
}

// Update replaces the state of each VIP in set and removes each VIP in
// del, touching nothing else: one netlink transaction whose size is that
// of the change. If the table was changed behind its back so that the
// transaction fails, it reads the table again and retries once.
func (d *Dataplane) Update(ctx context.Context, set []vip.Service, del []netip.Addr) error {
	want, err := d.desired(set)
	if err != nil {
		return fmt.Errorf("nftables update: %w", err)
	}
	addrs := make([]netip.Addr, 0, len(set)+len(del))
	for _, s := range set {
		addrs = append(addrs, s.VIP)
	}
	for _, a := range del {
		if _, ok := want[a]; ok {
			return fmt.Errorf("nftables update: VIP %s is both set and deleted", a)
		}
		addrs = append(addrs, a)
	}
	var firstErr error
	for attempt := 0; attempt < 2; attempt++ {
		b := d.newBuilder()
		if d.have == nil {
			k, err := d.read()
			if err != nil {
				return fmt.Errorf("nftables update: read table %s: %w", d.cfg.Table, err)
			}
			d.adopt(k)
			b.ensureBase(k)
		}
		err := d.apply(ctx, b, addrs, d.have, want)
		if err == nil {
			d.log.Debug("nftables updated", "set", len(set), "deleted", len(del), "changes", d.lastChanges)
			return nil
		}
		d.have = nil
		if ctx.Err() != nil {
			return fmt.Errorf("nftables update: %w", err)
		}
		if firstErr == nil {
			firstErr = err
			d.log.Warn("nftables update failed; rereading the table and retrying once", "err", err)
		}
	}
	return fmt.Errorf("nftables update of %d VIPs (retried after rereading the table): %w", len(addrs), firstErr)
}

// Flush deletes the table and everything in it. Connections already
// balanced keep their conntrack NAT state until they end.
func (d *Dataplane) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.have = nil
	exists, err := d.tableExists()
	if err != nil {
		return fmt.Errorf("nftables flush: %w", err)
	}
	if !exists {
		return nil
	}
	d.conn.DelTable(d.table)
	if err := d.conn.Flush(); err != nil {
		return fmt.Errorf("nftables flush: delete table ip %s: %w", d.cfg.Table, err)
	}
	d.log.Info("nftables table deleted")
	return nil
}

// Close releases the netlink socket; the kernel state stays.
func (d *Dataplane) Close() error {
	err := d.conn.CloseLasting()
	d.closeNS()
	return err
}

func (d *Dataplane) closeNS() {
	if d.nsFile != nil {
		d.nsFile.Close()
		d.nsFile = nil
	}
}

// desired validates services and returns their table state by VIP.
func (d *Dataplane) desired(services []vip.Service) (map[netip.Addr]*vipState, error) {
	want := make(map[netip.Addr]*vipState, len(services))
	for _, s := range services {
		if err := validate(s); err != nil {
			return nil, err
		}
		if _, dup := want[s.VIP]; dup {
			return nil, fmt.Errorf("VIP %s is given twice (service %q); each VIP must appear once", s.VIP, s.Name)
		}
		want[s.VIP] = desiredVIP(s)
	}
	return want, nil
}

// apply sends the changes that turn have[a] into want[a] for each of
// addrs, in transactions of at most MaxBatch changes split at VIP
// boundaries, and records the result in have as each one commits.
func (d *Dataplane) apply(ctx context.Context, b *builder, addrs []netip.Addr, have, want map[netip.Addr]*vipState) error {
	d.lastChanges = 0
	var pending []netip.Addr
	commit := func() error {
		if err := ctx.Err(); err != nil {
			b.reset()
			return err
		}
		n, err := b.commit()
		if err != nil {
			return err
		}
		d.lastChanges += n
		for _, a := range pending {
			if w, ok := want[a]; ok {
				have[a] = w
			} else {
				delete(have, a)
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, a := range addrs {
		old, ok := have[a]
		if !ok {
			old = newVIPState()
		}
		w, ok := want[a]
		if !ok {
			w = newVIPState()
		}
		stabilize(old, w)
		b.diffVIP(old, w)
		pending = append(pending, a)
		if b.changes >= d.cfg.MaxBatch {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	return commit()
}

// kernelState is what read found in the table.
type kernelState struct {
	exists  bool
	chains  map[string]*nftables.Chain // every chain of the table
	baseFps map[string]string          // fingerprints of the fixed chains
	sets    map[string]bool
	vips    map[netip.Addr]*vipState
	kChains map[uint32]string // balance chains' fingerprints by class
	strays  []string          // chains that are neither fixed nor balance-N-S
}

func (d *Dataplane) tableExists() (bool, error) {
	tables, err := d.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list ip tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == d.cfg.Table {
			return true, nil
		}
	}
	return false, nil
}

// read lists the table: chains, the rules' comments, the sets' elements.
func (d *Dataplane) read() (*kernelState, error) {
	k := &kernelState{
		chains:  map[string]*nftables.Chain{},
		baseFps: map[string]string{},
		sets:    map[string]bool{},
		vips:    map[netip.Addr]*vipState{},
		kChains: map[uint32]string{},
	}
	var err error
	if k.exists, err = d.tableExists(); err != nil || !k.exists {
		return k, err
	}
	chains, err := d.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	fps, err := d.ruleComments()
	if err != nil {
		return nil, err
	}
	base := map[string]bool{}
	for _, c := range baseChains(d.cfg.Mark) {
		base[c.name] = true
	}
	for _, c := range chains {
		if c.Table.Name != d.cfg.Table {
			continue
		}
		k.chains[c.Name] = c
		fp := fps[c.Name]
		if base[c.Name] {
			k.baseFps[c.Name] = fp
			continue
		}
		if cl, ok := balanceClass(c.Name); ok && c.Hooknum == nil {
			k.kChains[cl] = fp
			continue
		}
		k.strays = append(k.strays, c.Name)
	}
	slices.Sort(k.strays)
	sets, err := d.conn.GetSets(d.table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		k.sets[s.Name] = true
	}
	vipOf := func(a netip.Addr) *vipState {
		s, ok := k.vips[a]
		if !ok {
			s = newVIPState()
			k.vips[a] = s
		}
		return s
	}
	b := d.newBuilder()
	for _, name := range setNames() {
		if !k.sets[name] {
			continue
		}
		elems, err := d.conn.GetSetElements(b.set(name))
		if err != nil {
			return nil, fmt.Errorf("list set %s: %w", name, err)
		}
		if strings.HasPrefix(name, mapBackends+"-") {
			name = mapBackends
		}
		for _, e := range elems {
			switch name {
			case mapServices:
				if len(e.Key) == len(mapKey{}) {
					// A verdict that is not goto balance-N reads as 0
					// backends, which no desired state has: it is replaced.
					key := mapKey(e.Key)
					var n uint32
					if cl, ok := balanceClass(verdictChain(e.Val)); ok && classShard(cl) == shardOf(key.vip()) {
						n = classN(cl)
					}
					vipOf(key.vip()).counts[key] = n
				}
			case mapBackends:
				be, ok := parseBackendValue(e.Val)
				if len(e.Key) == len(beKey{}) && ok {
					key := beKey(e.Key)
					vipOf(mapKey(key[:12]).vip()).backends[key] = be
				}
			case mapNoEndpoints:
				if len(e.Key) == len(mapKey{}) {
					key := mapKey(e.Key)
					vipOf(key.vip()).noEndpoints[key] = true
				}
			}
		}
	}
	return k, nil
}

// verdictChain decodes the chain of a verdict map element's data (the
// library returns the NFTA_DATA_VERDICT attributes undecoded).
func verdictChain(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return ""
	}
	var chain string
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			chain = ad.String()
		}
	}
	return chain
}
