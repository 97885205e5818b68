// Package ipvs is the IPVS data plane for service VIPs (vip.Dataplane),
// programmed as Docker Swarm and kube-proxy's ipvs mode do: each VIP is
// a host address on a dummy interface (Config.Interface, "cairn0"), and
// each VIP:port:proto with backends is one IPVS virtual service whose
// destinations are the backends, reached by masquerading (NAT).
//
// A VIP:port without backends has no IPVS service: the VIP is then a
// local address with nothing listening on that port, so the kernel
// refuses at once (TCP reset, UDP port unreachable). An IPVS service
// without destinations would answer ICMP port unreachable instead, which
// the kernel rate-limits per client (6 at once, then about 1 a second),
// so clients in containers would wait a second or more. The price: a
// process on the node listening on the wildcard address at that port
// would get those connections.
//
// Removed backends drain: weight 0 at once, deleted when their last
// active connection ends or Config.DrainTimeout passes, by a goroutine
// the Dataplane owns (see Dataplane).
//
// IPVS NAT rewrites only the destination, so connections to VIPs are
// also masqueraded (the node's address as their source) by two nftables
// tables of its own, as Swarm and kube-proxy do with iptables; without
// that, backends on other nodes could not answer (masq.go,
// Config.NoMasquerade).
//
// It owns exactly that: the interface, the addresses on it, the IPVS
// services whose virtual address is on it or is one of the VIPs it is
// told to program, and the nftables tables ip and ip6
// cairn-ipvs-<interface>. Every other IPVS service, interface, address,
// table and rule on the host is left alone. It sets four net.ipv4.vs
// sysctls as Swarm does (see New).
//
// It imports agent/vip for the contract only and must not import agent,
// kv, dns, template or registrator.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config configures a Dataplane. The zero value of each field means its
// default (DefaultConfig).
type Config struct {
	// Interface is the dummy interface that holds the VIPs, created when
	// missing and removed by Flush. Default "cairn0". Everything on it
	// belongs to this data plane: do not share it.
	Interface string
	// Scheduler is the IPVS scheduler of every virtual service
	// (-vip-scheduler): rr, wrr, lc, wlc, sh, ... Default "rr".
	Scheduler string
	// DrainTimeout bounds how long a removed backend keeps its
	// established connections: it is set to weight 0 at once (no new
	// connections) and deleted when it has no active connection left or
	// when DrainTimeout has passed, whichever is first. Default 5m.
	// IPVS counts UDP flows as inactive, so a removed UDP backend goes
	// at the next DrainPoll (as kube-proxy does: UDP has no graceful
	// termination). A TCP connection that is closing (FIN_WAIT,
	// TIME_WAIT) is not active either.
	DrainTimeout time.Duration
	// DrainPoll is how often draining backends' active connection counts
	// are read from the kernel (which sends no event when they reach 0).
	// Default 1s.
	DrainPoll time.Duration
	// NoMasquerade leaves out the nftables tables (cairn-ipvs-<Interface>,
	// ip and ip6) that masquerade connections to VIPs. Without them a
	// backend sees the client's own address — for a client on the node,
	// the VIP itself — so only backends that route their replies back
	// through this node (namespaces or containers on it) can answer.
	// See masq.go.
	NoMasquerade bool
	// Logger gets one line per change of state; nil means discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults New uses for zero fields.
func DefaultConfig() Config {
	return Config{Interface: "cairn0", Scheduler: "rr", DrainTimeout: 5 * time.Minute, DrainPoll: time.Second}
}

// ErrNoIPVS says the kernel has no IPVS: the module is not loaded (and
// cannot be), or the kernel was built without it. -vip-dataplane auto
// then picks nftables.
var ErrNoIPVS = errors.New("the kernel has no IPVS")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("ipvs data plane is closed")

// Probe reports whether this kernel has IPVS (nil) or not (an error
// wrapping ErrNoIPVS). It asks for the IPVS generic netlink family:
// moby/ipvs itself does not fail without IPVS, its requests are then
// silently acknowledged and do nothing.
func Probe() error {
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		return fmt.Errorf("probe ipvs: %w (generic netlink family \"IPVS\": %v); load the ip_vs module (modprobe ip_vs) or use -vip-dataplane nftables", ErrNoIPVS, err)
	}
	return nil
}

// swarmSysctls are the net.ipv4.vs settings Docker Swarm sets on its
// load-balancer namespaces (libnetwork) and kube-proxy on the host:
//   - conntrack=1 keeps netfilter conntrack entries for IPVS connections,
//     so that NAT and filter rules elsewhere still see them;
//   - conn_reuse_mode=0 lets a reused client port follow its old
//     connection entry instead of being rescheduled (avoids the 1 s
//     stall some kernels have with mode 1);
//   - expire_nodest_conn=1 resets, on their next packet, connections
//     whose destination was deleted, rather than dropping their packets
//     silently until they time out;
//   - expire_quiescent_template=1 does the same for persistence
//     templates of weight-0 destinations.
var swarmSysctls = []struct{ name, value string }{
	{"conntrack", "1"},
	{"conn_reuse_mode", "0"},
	{"expire_nodest_conn", "1"},
	{"expire_quiescent_template", "1"},
}

// svcKey names one virtual service.
type svcKey struct {
	vip   netip.Addr
	proto vip.Proto
	port  uint16
}

func (k svcKey) String() string {
	return fmt.Sprintf("%s %s", k.proto, netip.AddrPortFrom(k.vip, k.port))
}

// dest is one programmed destination.
type dest struct {
	weight int
	// drainUntil is zero for a live backend; for a draining one
	// (weight 0) the time after which it is deleted regardless.
	drainUntil time.Time
}

// vipState is what the kernel holds for one VIP, as far as this data
// plane knows: the address on the interface and the services.
type vipState struct {
	addr     bool
	services map[svcKey]map[netip.AddrPort]*dest
}

// Dataplane programs IPVS. Its methods must not be called concurrently
// (vip.Dataplane); it is safe with its own drain goroutine.
//
// Draining runs in one goroutine the Dataplane owns: started when a
// backend starts draining, it polls the draining backends every
// DrainPoll, deletes those that are done, and exits when none is left.
// Close stops it and waits for it.
type Dataplane struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex // guards all below, and the two handles
	closed bool
	ipvs   *ipvs.Handle
	nl     *netlink.Handle
	masq   *masq        // nil with Config.NoMasquerade
	link   netlink.Link // nil until ensureLink
	vips   map[netip.Addr]*vipState
	// draining is the services that have at least one draining backend.
	draining map[svcKey]bool
	drainer  *drainer // nil when no drain goroutine runs
}

type drainer struct {
	stop chan struct{}
	done chan struct{}
}

// New probes the kernel (an error wrapping ErrNoIPVS when it has no
// IPVS), validates cfg, opens the netlink handles and sets the Swarm
// sysctls (a sysctl that cannot be written is logged, not fatal: IPVS
// still balances, only the behaviour on deleted backends differs). It
// changes no service or address: call Sync first.
func New(cfg Config) (*Dataplane, error) {
	def := DefaultConfig()
	if cfg.Interface == "" {
		cfg.Interface = def.Interface
	}
	if cfg.Scheduler == "" {
		cfg.Scheduler = def.Scheduler
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = def.DrainTimeout
	}
	if cfg.DrainPoll == 0 {
		cfg.DrainPoll = def.DrainPoll
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case len(cfg.Interface) > unix.IFNAMSIZ-1 || strings.ContainsAny(cfg.Interface, "/ \t\n:"):
		return nil, fmt.Errorf("new ipvs data plane: interface name %q is not a valid Linux interface name (at most %d characters, no '/', ':' or spaces)", cfg.Interface, unix.IFNAMSIZ-1)
	case cfg.DrainTimeout < 0 || cfg.DrainPoll < 0:
		return nil, fmt.Errorf("new ipvs data plane: drain timeout %v and drain poll %v must not be negative", cfg.DrainTimeout, cfg.DrainPoll)
	case strings.ContainsAny(cfg.Scheduler, "/ \t\n") || len(cfg.Scheduler) > 15:
		return nil, fmt.Errorf("new ipvs data plane: scheduler %q is not an IPVS scheduler name (rr, wrr, lc, wlc, sh, ...)", cfg.Scheduler)
	}
	if err := Probe(); err != nil {
		return nil, fmt.Errorf("new ipvs data plane: %w", err)
	}
	nlh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("new ipvs data plane: open rtnetlink: %w", err)
	}
	ih, err := ipvs.New("")
	if err != nil {
		nlh.Close()
		return nil, fmt.Errorf("new ipvs data plane: open ipvs netlink: %w", err)
	}
	var m *masq
	if !cfg.NoMasquerade {
		if m, err = newMasq(cfg.Interface); err != nil {
			ih.Close()
			nlh.Close()
			return nil, fmt.Errorf("new ipvs data plane: %w", err)
		}
	}
	for _, s := range swarmSysctls {
		p := filepath.Join("/proc/sys/net/ipv4/vs", s.name)
		if err := os.WriteFile(p, []byte(s.value), 0o644); err != nil {
			log.Warn("ipvs: cannot set sysctl", "sysctl", "net.ipv4.vs."+s.name, "value", s.value, "err", err)
		}
	}
	return &Dataplane{
		cfg:      cfg,
		log:      log,
		ipvs:     ih,
		nl:       nlh,
		masq:     m,
		vips:     make(map[netip.Addr]*vipState),
		draining: make(map[svcKey]bool),
	}, nil
}

// Name is "ipvs", as -vip-dataplane spells it.
func (d *Dataplane) Name() string { return "ipvs" }

// Close stops the drain goroutine and closes the netlink handles. The
// kernel state stays, draining backends included (weight 0): the next
// run's Sync adopts them and finishes their drain.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	dr := d.drainer
	d.drainer = nil
	d.mu.Unlock()
	if dr != nil {
		close(dr.stop)
		<-dr.done
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ipvs.Close()
	d.nl.Close()
	if d.masq != nil {
		d.masq.close()
	}
	return nil
}

// Update programs each of set (replacing its VIP's whole state) and
// removes each VIP of del. It reads nothing back from the kernel and
// touches only the VIPs named, so its cost is in proportion to the
// change; Sync repairs what changed behind its back. Call Sync once
// first: Update knows only what this Dataplane programmed or adopted.
func (d *Dataplane) Update(ctx context.Context, set []vip.Service, del []netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	for _, s := range set {
		if err := validate(s); err != nil {
			return fmt.Errorf("ipvs update: %w", err)
		}
	}
	if err := d.ensureLink(); err != nil {
		return fmt.Errorf("ipvs update: %w", err)
	}
	if err := d.updateMasq(set, del); err != nil {
		return fmt.Errorf("ipvs update: %w", err)
	}
	var errs []error
	for _, a := range del {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipvs update: %w", err)
		}
		if err := d.removeVIP(a); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range set {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipvs update: %w", err)
		}
		if err := d.setVIP(s); err != nil {
			errs = append(errs, err)
		}
	}
	d.startDrainer()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipvs update: %w", err)
	}
	return nil
}

// Sync reads the kernel's state for the VIPs it owns (addresses on
// Config.Interface, and the VIPs of desired), adopts it, and makes it
// exactly desired: services and backends a previous run left are kept
// as they are when desired (established connections go on), changed
// ones are repaired, and this data plane's VIPs that are not desired are
// removed. Backends of a previous run that are no longer desired drain.
func (d *Dataplane) Sync(ctx context.Context, desired []vip.Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	want := make(map[netip.Addr]vip.Service, len(desired))
	for _, s := range desired {
		if err := validate(s); err != nil {
			return fmt.Errorf("ipvs sync: %w", err)
		}
		if _, dup := want[s.VIP]; dup {
			return fmt.Errorf("ipvs sync: VIP %s is given twice (services %q and %q); each VIP belongs to one service", s.VIP, want[s.VIP].Name, s.Name)
		}
		want[s.VIP] = s
	}
	d.link = nil // look it up again: it may have been deleted
	if err := d.ensureLink(); err != nil {
		return fmt.Errorf("ipvs sync: %w", err)
	}
	if err := d.readKernel(want); err != nil {
		return fmt.Errorf("ipvs sync: %w", err)
	}
	if d.masq != nil {
		// Before the services, so no new connection goes unmasqueraded.
		// Masquerading is a NAT binding made on a connection's first
		// packet: established connections are not affected.
		vips := make([]netip.Addr, 0, len(desired))
		for _, s := range desired {
			vips = append(vips, s.VIP)
		}
		if err := d.masq.sync(vips); err != nil {
			return fmt.Errorf("ipvs sync: %w", err)
		}
	}
	var errs []error
	for a := range d.vips {
		if _, ok := want[a]; !ok {
			if err := d.removeVIP(a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, s := range desired {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipvs sync: %w", err)
		}
		if err := d.setVIP(s); err != nil {
			errs = append(errs, err)
		}
	}
	d.startDrainer()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipvs sync: %w", err)
	}
	return nil
}

// Flush removes every service whose VIP is on Config.Interface or that
// this data plane programmed, and the interface itself.
func (d *Dataplane) Flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.link = nil
	link, err := d.nl.LinkByName(d.cfg.Interface)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return fmt.Errorf("ipvs flush: find interface %s: %w", d.cfg.Interface, err)
	}
	d.link = link
	// Read what is ours (the addresses) so a previous run's services go too.
	if err := d.readKernel(nil); err != nil {
		return fmt.Errorf("ipvs flush: %w", err)
	}
	var errs []error
	for a, v := range d.vips {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ipvs flush: %w", err)
		}
		for k := range v.services {
			if err := d.delService(k); err != nil {
				errs = append(errs, err)
			}
		}
		delete(d.vips, a)
	}
	clear(d.draining)
	if d.masq != nil {
		if err := d.masq.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if link != nil {
		if err := d.nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete interface %s: %w", d.cfg.Interface, err))
		}
	}
	d.link = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipvs flush: %w", err)
	}
	d.log.Info("ipvs: flushed", "interface", d.cfg.Interface)
	return nil
}

// updateMasq adds the VIPs of set that are new to the masquerade set
// and removes those of del, in one transaction, before their services
// change. When the set is not as expected (changed behind its back), it
// rebuilds the tables from what this data plane holds.
func (d *Dataplane) updateMasq(set []vip.Service, del []netip.Addr) error {
	if d.masq == nil {
		return nil
	}
	var add, rm []netip.Addr
	setting := make(map[netip.Addr]bool, len(set))
	for _, s := range set {
		setting[s.VIP] = true
		if v := d.vips[s.VIP]; v == nil || !v.addr {
			add = append(add, s.VIP)
		}
	}
	for _, a := range del {
		if v := d.vips[a]; v != nil && v.addr && !setting[a] {
			rm = append(rm, a)
		}
	}
	err := d.masq.update(add, rm)
	if err == nil {
		return nil
	}
	d.log.Warn("ipvs: masquerade set out of step; syncing it", "err", err)
	var all []netip.Addr
	for a, v := range d.vips {
		if v.addr && !slices.Contains(rm, a) {
			all = append(all, a)
		}
	}
	return d.masq.sync(append(all, add...))
}

// validate checks what the contract promises and IPVS needs.
func validate(s vip.Service) error {
	if !s.VIP.IsValid() || s.VIP.IsUnspecified() || s.VIP.Zone() != "" || s.VIP.Is4In6() {
		return fmt.Errorf("service %q: VIP %q is not a usable address (IPv4 or IPv6, no zone, IPv4 not in its ::ffff: form)", s.Name, s.VIP)
	}
	seen := make(map[svcKey]bool, len(s.Ports))
	for _, p := range s.Ports {
		if p.Proto != vip.TCP && p.Proto != vip.UDP {
			return fmt.Errorf("service %q: port %d has protocol %q; IPVS VIPs carry %q or %q", s.Name, p.Port, p.Proto, vip.TCP, vip.UDP)
		}
		if p.Port == 0 {
			return fmt.Errorf("service %q: VIP %s has port 0; give the port the VIP accepts", s.Name, s.VIP)
		}
		k := svcKey{s.VIP, p.Proto, p.Port}
		if seen[k] {
			return fmt.Errorf("service %q: port %s is given twice", s.Name, k)
		}
		seen[k] = true
		for _, b := range p.Backends {
			if !b.IsValid() || b.Addr().Is4() != s.VIP.Is4() || b.Port() == 0 {
				return fmt.Errorf("service %q: backend %s of %s is not an address:port of the VIP's family (IPVS NAT cannot cross IPv4/IPv6)", s.Name, b, k)
			}
		}
	}
	return nil
}

// ensureLink finds or creates the dummy interface and brings it up.
func (d *Dataplane) ensureLink() error {
	if d.link != nil {
		return nil
	}
	link, err := d.nl.LinkByName(d.cfg.Interface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		err = d.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: d.cfg.Interface}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create dummy interface %s: %w (does the kernel have the dummy module?)", d.cfg.Interface, err)
		}
		link, err = d.nl.LinkByName(d.cfg.Interface)
		if err == nil {
			d.log.Info("ipvs: created interface", "interface", d.cfg.Interface)
		}
	}
	if err != nil {
		return fmt.Errorf("find interface %s: %w", d.cfg.Interface, err)
	}
	if link.Type() != "dummy" {
		return fmt.Errorf("interface %s is a %s, not the dummy interface cairn creates; choose another name for the VIP interface", d.cfg.Interface, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up %s: %w", d.cfg.Interface, err)
		}
	}
	d.link = link
	return nil
}

// readKernel replaces the in-memory view with what the kernel holds for
// this data plane's VIPs: the addresses on the interface, the VIPs of
// want and those it programmed before, with their services and
// destinations. Drain deadlines of
// backends still draining are kept; a weight-0 backend not known to be
// draining (a previous run's) gets a fresh deadline.
func (d *Dataplane) readKernel(want map[netip.Addr]vip.Service) error {
	old := d.vips
	d.vips = make(map[netip.Addr]*vipState)
	state := func(a netip.Addr) *vipState {
		v := d.vips[a]
		if v == nil {
			v = &vipState{services: make(map[svcKey]map[netip.AddrPort]*dest)}
			d.vips[a] = v
		}
		return v
	}
	if d.link != nil {
		addrs, err := d.addrList()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			state(a).addr = true
		}
	}
	svcs, err := d.ipvs.GetServices()
	if err != nil {
		return fmt.Errorf("list ipvs services: %w", err)
	}
	now := time.Now()
	draining := make(map[svcKey]bool)
	for _, s := range svcs {
		k, ok := keyOf(s)
		if !ok {
			continue // fwmark, or a protocol cairn never programs
		}
		_, wanted := want[k.vip]
		if v := d.vips[k.vip]; !wanted && old[k.vip] == nil && (v == nil || !v.addr) {
			continue // not ours
		}
		if s.SchedName != d.cfg.Scheduler || s.Flags&^ipvsSvcHashed != 0 || s.Timeout != 0 {
			// Repair in place: same service, its connections stay.
			s2 := d.service(k)
			if err := d.ipvs.UpdateService(s2); err != nil {
				return fmt.Errorf("repair service %s (scheduler %q): %w", k, s.SchedName, err)
			}
			d.log.Info("ipvs: repaired service", "service", k.String(), "scheduler", s.SchedName)
		}
		dests, err := d.ipvs.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("list destinations of %s: %w", k, err)
		}
		m := make(map[netip.AddrPort]*dest, len(dests))
		for _, ds := range dests {
			a, ok := netip.AddrFromSlice(ds.Address)
			if !ok {
				continue
			}
			ap := netip.AddrPortFrom(a.Unmap(), ds.Port)
			if !k.vip.Is4() {
				ap = netip.AddrPortFrom(a, ds.Port)
			}
			st := &dest{weight: ds.Weight}
			if ds.ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagMasq {
				st.weight = -1 // not NAT: setVIP repairs it
			}
			if st.weight == 0 {
				st.drainUntil = now.Add(d.cfg.DrainTimeout)
				if ov := old[k.vip]; ov != nil {
					if od := ov.services[k][ap]; od != nil && !od.drainUntil.IsZero() {
						st.drainUntil = od.drainUntil
					}
				}
				draining[k] = true
			}
			m[ap] = st
		}
		state(k.vip).services[k] = m
	}
	d.draining = draining
	return nil
}

// ipvsSvcHashed is IP_VS_SVC_F_HASHED, a flag the kernel reports on
// every service it has hashed; not one cairn sets.
const ipvsSvcHashed = 0x0002

func (d *Dataplane) addrList() ([]netip.Addr, error) {
	var list []netlink.Addr
	var err error
	for range 5 {
		list, err = d.nl.AddrList(d.link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", d.cfg.Interface, err)
	}
	out := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.IsLinkLocalUnicast() {
			continue // the kernel's own fe80:: address
		}
		if ip.Is4In6() {
			ip = ip.Unmap()
		}
		out = append(out, ip)
	}
	return out, nil
}

func keyOf(s *ipvs.Service) (svcKey, bool) {
	if s.FWMark != 0 {
		return svcKey{}, false
	}
	var p vip.Proto
	switch s.Protocol {
	case syscall.IPPROTO_TCP:
		p = vip.TCP
	case syscall.IPPROTO_UDP:
		p = vip.UDP
	default:
		return svcKey{}, false
	}
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return svcKey{}, false
	}
	if s.AddressFamily == unix.AF_INET {
		a = a.Unmap()
	}
	return svcKey{a, p, s.Port}, true
}

func (d *Dataplane) service(k svcKey) *ipvs.Service {
	s := &ipvs.Service{
		Address:   net.IP(k.vip.AsSlice()),
		Port:      k.port,
		SchedName: d.cfg.Scheduler,
	}
	if k.proto == vip.UDP {
		s.Protocol = syscall.IPPROTO_UDP
	} else {
		s.Protocol = syscall.IPPROTO_TCP
	}
	if k.vip.Is4() {
		s.AddressFamily, s.Netmask = unix.AF_INET, 0xffffffff
	} else {
		s.AddressFamily, s.Netmask = unix.AF_INET6, 128
	}
	return s
}

func destination(k svcKey, b netip.AddrPort, weight int) *ipvs.Destination {
	d := &ipvs.Destination{
		Address:         net.IP(b.Addr().AsSlice()),
		Port:            b.Port(),
		Weight:          weight,
		ConnectionFlags: ipvs.ConnectionFlagMasq,
		AddressFamily:   unix.AF_INET,
	}
	if !k.vip.Is4() {
		d.AddressFamily = unix.AF_INET6
	}
	return d
}

// setVIP makes the kernel hold s, compared with the in-memory view.
func (d *Dataplane) setVIP(s vip.Service) error {
	v := d.vips[s.VIP]
	if v == nil {
		v = &vipState{services: make(map[svcKey]map[netip.AddrPort]*dest)}
		d.vips[s.VIP] = v
	}
	if !v.addr {
		if err := d.addAddr(s.VIP); err != nil {
			return fmt.Errorf("service %q: %w", s.Name, err)
		}
		v.addr = true
	}
	wantPorts := make(map[svcKey]bool, len(s.Ports))
	now := time.Now()
	for _, p := range s.Ports {
		k := svcKey{s.VIP, p.Proto, p.Port}
		wantPorts[k] = true
		dests, ok := v.services[k]
		if !ok && len(p.Backends) == 0 {
			// No service: the VIP is a local address with nothing
			// listening on the port, so the kernel's TCP stack answers
			// a reset (UDP: port unreachable) at once. An IPVS service
			// without destinations would answer ICMP port unreachable
			// instead, which the kernel rate-limits per client (burst
			// of 6, then 1/s): clients in containers then wait ~1 s.
			continue
		}
		if !ok {
			if err := d.ipvs.NewService(d.service(k)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("service %q: add %s: %w", s.Name, k, err)
			}
			dests = make(map[netip.AddrPort]*dest, len(p.Backends))
			v.services[k] = dests
			d.log.Debug("ipvs: added service", "service", s.Name, "vip", k.String())
		}
		for _, b := range p.Backends {
			ds := dests[b]
			switch {
			case ds == nil:
				err := d.ipvs.NewDestination(d.service(k), destination(k, b, 1))
				if errors.Is(err, unix.EEXIST) {
					err = d.ipvs.UpdateDestination(d.service(k), destination(k, b, 1))
				}
				if err != nil {
					return fmt.Errorf("service %q: add backend %s to %s: %w", s.Name, b, k, err)
				}
				dests[b] = &dest{weight: 1}
			case ds.weight != 1:
				if err := d.ipvs.UpdateDestination(d.service(k), destination(k, b, 1)); err != nil {
					return fmt.Errorf("service %q: set backend %s of %s to weight 1: %w", s.Name, b, k, err)
				}
				ds.weight, ds.drainUntil = 1, time.Time{}
			}
		}
		if len(dests) <= len(p.Backends) && !anyNotLive(dests) {
			continue // every programmed backend is wanted: nothing drains
		}
		for b, ds := range dests {
			if (ds.weight == 0 && !ds.drainUntil.IsZero()) || containsSorted(p.Backends, b) {
				continue
			}
			if err := d.ipvs.UpdateDestination(d.service(k), destination(k, b, 0)); err != nil {
				return fmt.Errorf("service %q: drain backend %s of %s (weight 0): %w", s.Name, b, k, err)
			}
			ds.weight, ds.drainUntil = 0, now.Add(d.cfg.DrainTimeout)
			d.draining[k] = true
			d.log.Info("ipvs: draining backend", "service", s.Name, "vip", k.String(), "backend", b.String(), "timeout", d.cfg.DrainTimeout)
		}
		if len(dests) == 0 {
			// Left empty (adopted so): no service refuses faster.
			if err := d.delService(k); err != nil {
				return fmt.Errorf("service %q: %w", s.Name, err)
			}
			delete(v.services, k)
		}
	}
	for k := range v.services {
		if !wantPorts[k] {
			if err := d.delService(k); err != nil {
				return fmt.Errorf("service %q: %w", s.Name, err)
			}
			delete(v.services, k)
		}
	}
	return nil
}

func anyNotLive(dests map[netip.AddrPort]*dest) bool {
	for _, ds := range dests {
		if ds.weight != 1 {
			return true
		}
	}
	return false
}

// containsSorted reports whether b is in bs, which vip.Port keeps
// sorted (and falls back to a scan if a caller did not).
func containsSorted(bs []netip.AddrPort, b netip.AddrPort) bool {
	if _, ok := slices.BinarySearchFunc(bs, b, netip.AddrPort.Compare); ok {
		return true
	}
	if slices.IsSortedFunc(bs, netip.AddrPort.Compare) {
		return false
	}
	return slices.Contains(bs, b)
}

// removeVIP deletes the VIP's services (connections through them get a
// reset on their next packet, expire_nodest_conn) and its address.
func (d *Dataplane) removeVIP(a netip.Addr) error {
	v := d.vips[a]
	if v == nil {
		return nil
	}
	for k := range v.services {
		if err := d.delService(k); err != nil {
			return err
		}
		delete(v.services, k)
	}
	if v.addr {
		err := d.nl.AddrDel(d.link, hostAddr(a))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove VIP %s from %s: %w", a, d.cfg.Interface, err)
		}
	}
	delete(d.vips, a)
	d.log.Debug("ipvs: removed VIP", "vip", a.String())
	return nil
}

func (d *Dataplane) delService(k svcKey) error {
	err := d.ipvs.DelService(d.service(k))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete %s: %w", k, err)
	}
	delete(d.draining, k)
	return nil
}

func hostAddr(a netip.Addr) *netlink.Addr {
	bits := 32
	flags := 0
	if !a.Is4() {
		bits, flags = 128, unix.IFA_F_NODAD
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, bits)}, Flags: flags}
}

func (d *Dataplane) addAddr(a netip.Addr) error {
	err := d.nl.AddrAdd(d.link, hostAddr(a))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add VIP %s to %s: %w", a, d.cfg.Interface, err)
	}
	return nil
}
