package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/memberlist"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrShutdown: the Membership was shut down; make a new one.
	ErrShutdown = errors.New("membership is shut down")
	// ErrLeft: this agent left the cluster (Leave); to rejoin, Shutdown
	// and make a new Membership.
	ErrLeft = errors.New("this agent has left the cluster; shut down and start again to rejoin")
	// ErrEncryptionMismatch: the other agent's -encrypt key differs from
	// this one's, or one of the two has none. Retrying will not help.
	ErrEncryptionMismatch = errors.New("gossip encryption keys differ")
	// ErrNameConflict: a live member of the cluster already uses this
	// agent's node name at another address. Retrying will not help until
	// that member fails or leaves.
	ErrNameConflict = errors.New("node name already in use")
	// ErrUnknownMember: no member of that name is known.
	ErrUnknownMember = errors.New("no such member")
	// ErrNotFailed: ForceLeave was asked to remove a member that is alive.
	ErrNotFailed = errors.New("member is not failed")
)

// Membership is this agent's place in the cluster. Its methods are safe
// for concurrent use.
type Membership struct {
	cfg Config
	log *slog.Logger

	ml         *memberlist.Memberlist
	table      *table
	broadcasts *memberlist.TransmitLimitedQueue
	meta       atomic.Pointer[[]byte] // encoded Meta that NodeMeta returns
	joining    atomic.Int32           // Joins in progress (NotifyMerge words its error for the joiner)

	handlersMu    sync.Mutex                       // serializes Register
	handlers      atomic.Pointer[map[byte]Handler] // components' gossip (channel.go)
	udpBufferSize int                              // memberlist's packet size, for MaxBroadcastSize
	coords        *coordinates                     // network coordinates (coordinate.go)
	keyringState  keyringState                     // keyring operations in flight (keyring.go)
	kr            *memberlist.Keyring              // nil without encryption

	retryMin, retryMax time.Duration
	// leavePropagate is how long Leave keeps gossiping after the leave
	// went out (see Leave).
	leavePropagate time.Duration

	lifecycle sync.Mutex // serializes Leave and Shutdown
	left      atomic.Bool
	shutdown  atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup // the reaper
}

// New validates cfg, binds the gossip port (UDP and TCP) and starts
// answering other agents. It joins nobody: call Join or RetryJoin. Call
// Shutdown (after Leave, to leave gracefully) to stop.
func New(cfg Config) (*Membership, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	meta, err := encodeMeta(cfg.Meta, false)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	m := &Membership{
		cfg:      cfg,
		log:      cfg.Logger,
		table:    newTable(cfg.NodeName, cfg.ReapFailedAfter),
		retryMin: retryJoinMin,
		retryMax: retryJoinMax,
		stop:     make(chan struct{}),
	}
	if cfg.Fast {
		m.retryMin, m.retryMax = fastRetryJoinMin, fastRetryJoinMax
	}
	m.meta.Store(&meta)
	if m.coords, err = newCoordinates(); err != nil {
		return nil, err
	}
	mc := cfg.memberlistConfig()
	if mc.Keyring, err = cfg.loadKeyring(m.log); err != nil {
		return nil, err
	}
	m.kr = mc.Keyring
	m.udpBufferSize = mc.UDPBufferSize
	m.leavePropagate = leavePropagateRounds * mc.GossipInterval
	m.broadcasts = &memberlist.TransmitLimitedQueue{NumNodes: m.table.numAlive, RetransmitMult: mc.RetransmitMult}
	d := delegate{m}
	mc.Delegate, mc.Events, mc.Merge, mc.Conflict = d, d, d, d
	mc.Ping = pingDelegate{m}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, createError(cfg, err)
	}
	m.ml = ml
	m.wg.Add(1)
	go m.reapLoop()
	self := m.LocalMember()
	m.log.Info("gossip listening", "node", cfg.NodeName, "bind", cfg.BindAddr, "port", self.Port, "advertise", self.AddrPort().String(), "encrypted", mc.Keyring != nil)
	return m, nil
}

func createError(cfg Config, err error) error {
	msg := err.Error()
	bind := cfg.bindAddrPort()
	switch {
	case strings.Contains(msg, "address already in use"):
		return fmt.Errorf("membership: bind gossip port %s (TCP and UDP): it is in use (another agent running?); stop it or pick another port with -serf-lan-port (memberlist: %v)", bind, err)
	case strings.Contains(msg, "cannot assign requested address"):
		return fmt.Errorf("membership: bind gossip port %s (TCP and UDP): %s is not an address of this host; fix -bind (memberlist: %v)", bind, cfg.BindAddr, err)
	case strings.Contains(msg, "advertise address"):
		return fmt.Errorf("membership: cannot choose the address to advertise for -bind=%s; set -advertise to this host's address on the cluster network (memberlist: %v)", cfg.BindAddr, err)
	case strings.Contains(msg, "listener"):
		return fmt.Errorf("membership: bind gossip port %s (TCP and UDP): check -bind and -serf-lan-port (memberlist: %v)", bind, err)
	}
	return fmt.Errorf("membership: start gossip on %s: %w", bind, err)
}

// Join contacts each of addrs ("host" or "host:port"; the port defaults
// to 8301; a host name joins every address it resolves to) and exchanges
// member lists with it. It returns how many agents it reached; the error is
// nil when it reached at least one (the others are logged), and otherwise
// names every address with why it failed. Errors wrap ErrEncryptionMismatch
// or ErrNameConflict when that is the cause.
func (m *Membership) Join(addrs []string) (int, error) {
	if m.shutdown.Load() {
		return 0, fmt.Errorf("join: %w", ErrShutdown)
	}
	if m.left.Load() {
		return 0, fmt.Errorf("join: %w", ErrLeft)
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("join: no address given")
	}
	m.joining.Add(1)
	defer m.joining.Add(-1)

	contacted := 0
	var errs []error
	for _, a := range addrs {
		n, err := m.joinOne(a)
		contacted += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if contacted == 0 {
		return 0, errors.Join(errs...)
	}
	for _, err := range errs {
		m.log.Warn("could not join one of the addresses; joined through the others", "error", err)
	}
	return contacted, nil
}

// joinOne joins every address host resolves to.
func (m *Membership) joinOne(addr string) (int, error) {
	host, port, err := splitJoinAddr(addr)
	if err != nil {
		return 0, fmt.Errorf("join %q: %w", addr, err)
	}
	ips, err := m.resolve(host)
	if err != nil {
		return 0, fmt.Errorf("join %s: cannot resolve %q: %w", addr, host, err)
	}
	contacted := 0
	var errs []error
	for _, ip := range ips {
		target := netip.AddrPortFrom(ip, port).String()
		if _, err := m.ml.Join([]string{target}); err != nil {
			errs = append(errs, joinError(target, err))
			continue
		}
		contacted++
	}
	if contacted == 0 {
		return 0, errors.Join(errs...)
	}
	return contacted, nil
}

// splitJoinAddr splits "host", "host:port", "[v6]:port" or a bare IPv6
// address, defaulting the port to DefaultPort.
func splitJoinAddr(s string) (string, uint16, error) {
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ip.String(), DefaultPort, nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return s, DefaultPort, nil
		}
		return "", 0, fmt.Errorf("not a host or host:port (%v)", err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port %q is not a port (1-65535)", p)
	}
	if host == "" {
		return "", 0, fmt.Errorf("no host before the port")
	}
	return host, uint16(port), nil
}

func (m *Membership) resolve(host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	return ips, nil
}

// joinError turns memberlist's error for one address into one a user can
// act on. memberlist flattens its errors to text, so this reads the text.
func joinError(target string, err error) error {
	cause := err.Error()
	if _, rest, ok := strings.Cut(cause, "failed to join "+target+": "); ok {
		cause = rest
	}
	cause = strings.TrimSpace(cause)
	switch {
	case strings.Contains(cause, "no installed keys could decrypt"):
		return &wrapped{kind: ErrEncryptionMismatch, msg: fmt.Sprintf(
			"join %s: no reply we could decrypt: is -encrypt the same on every agent? (memberlist: %s)", target, cause)}
	case strings.Contains(cause, "encryption is configured but remote state is not encrypted"):
		return &wrapped{kind: ErrEncryptionMismatch, msg: fmt.Sprintf(
			"join %s: the agent there does not encrypt gossip but this one has -encrypt; give every agent the same -encrypt (memberlist: %s)", target, cause)}
	case strings.Contains(cause, "remote state is encrypted and encryption is not configured"):
		return &wrapped{kind: ErrEncryptionMismatch, msg: fmt.Sprintf(
			"join %s: the agent there encrypts gossip but this one has no -encrypt; give every agent the same -encrypt (memberlist: %s)", target, cause)}
	case strings.Contains(cause, "node name ") && strings.Contains(cause, "-node"):
		// NotifyMerge's own words.
		return &wrapped{kind: ErrNameConflict, msg: fmt.Sprintf("join %s: %s", target, cause)}
	case strings.Contains(cause, "connection refused"):
		return fmt.Errorf("join %s: nothing is listening there; is the agent up, and is that its -serf-lan-port? (%s)", target, cause)
	}
	return fmt.Errorf("join %s: %s", target, cause)
}

// wrapped is an error with its own text that errors.Is matches to kind.
type wrapped struct {
	kind error
	msg  string
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.kind }

// RetryJoin calls Join until it reaches an agent, waiting between attempts
// from 1 s, doubling up to 30 s (100 ms to 1 s when Fast), like
// -retry-join. It logs each failed attempt once, with every address and
// why it failed. It returns nil once joined, or ctx's error (with the last
// join error) when ctx ends first.
func (m *Membership) RetryJoin(ctx context.Context, addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("retry-join: no address given")
	}
	wait := m.retryMin
	timer := time.NewTimer(wait)
	timer.Stop()
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("retry-join %s: stopped before attempt %d: %w", strings.Join(addrs, ", "), attempt, err)
		}
		n, err := m.Join(addrs)
		if err == nil {
			m.log.Info("joined the cluster", "attempt", attempt, "contacted", n)
			return nil
		}
		if errors.Is(err, ErrShutdown) || errors.Is(err, ErrLeft) {
			return fmt.Errorf("retry-join: %w", err)
		}
		m.log.Warn("join failed; will retry", "attempt", attempt, "error", oneLine(err), "retry_in", wait)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		// Either may win when ctx ends as the wait does: the answer is
		// the same, with the last reason.
		if ctx.Err() != nil {
			return fmt.Errorf("retry-join %s: gave up after %d attempts: %w; last error: %s", strings.Join(addrs, ", "), attempt, ctx.Err(), oneLine(err))
		}
		wait = min(2*wait, m.retryMax)
	}
}

// oneLine flattens errors.Join's lines for a log attribute.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// Leave leaves the cluster gracefully: the other members see this agent
// "leaving", then "left" (not "failed"), and Servers stops listing it.
// It waits up to timeout (0: no limit) for the news to go out. The agent
// still answers gossip until Shutdown, which should follow; it cannot
// rejoin.
//
// How "left" is told from "failed": memberlist marks a member that left
// as StateLeft, but its event delegate only says "gone". So Leave first
// re-advertises this agent's meta with a leaving flag (memberlist orders
// that update before the leave by incarnation), and the others read the
// flag when the member goes. Where the leave overtakes the flag (a lost
// or late datagram), msgLeft, gossiped with the flag and again with the
// leave and passed on by every member it tells something new, says the
// same: those that have it leaving mark it left when it goes, and those
// that saw it fail mark it left. Leave then keeps gossiping for a few
// rounds, as Serf's LeavePropagateDelay does, so that the news spreads
// from this agent too.
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	if m.shutdown.Load() {
		return fmt.Errorf("leave: %w", ErrShutdown)
	}
	if m.left.Swap(true) {
		return nil
	}
	start := time.Now()
	meta, err := encodeMeta(m.cfg.Meta, true)
	if err != nil {
		return fmt.Errorf("leave: %w", err) // not reached: New checked that it fits
	}
	m.meta.Store(&meta)
	m.queueLeft(msgLeft, m.cfg.NodeName)
	updateErr := m.ml.UpdateNode(timeout)
	rest := time.Duration(0)
	if timeout > 0 {
		rest = max(timeout-time.Since(start), time.Millisecond)
	}
	// Leave even when the update timed out: the leave message still goes
	// out, with or without the flag, until Shutdown. msgLeft goes with it
	// for those that get the leave before the flag.
	m.queueLeft(msgLeft, m.cfg.NodeName)
	leaveErr := m.ml.Leave(rest)
	if m.table.numAlive() > 1 { // itself, leaving, and someone to tell
		wait := m.leavePropagate
		if timeout > 0 {
			wait = min(wait, max(timeout-time.Since(start), 0))
		}
		t := time.NewTimer(wait)
		<-t.C
	}
	if err := errors.Join(updateErr, leaveErr); err != nil {
		return fmt.Errorf("leave: the news did not reach the other members within %v; they may see this agent as failed rather than left: %w", timeout, err)
	}
	m.log.Info("left the cluster", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Shutdown stops gossip and closes the port without leaving: the other
// members will see this agent fail. Call Leave first to leave gracefully.
// Calling it again does nothing.
func (m *Membership) Shutdown() error {
	m.lifecycle.Lock()
	defer m.lifecycle.Unlock()
	if m.shutdown.Swap(true) {
		return nil
	}
	err := m.ml.Shutdown()
	close(m.stop)
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("membership shutdown: %w", err)
	}
	return nil
}

// ForceLeave marks a failed member as left, on this agent and (through
// gossip) on every other, like `consul force-leave`: it is then reaped
// like any left member, and Raft may drop it. A member that is alive is
// refused (ErrNotFailed): it would refute the claim. One that already left
// is fine. If the member comes back, it is alive again.
func (m *Membership) ForceLeave(node string) error {
	mem, ok := m.table.get(node)
	if !ok {
		return fmt.Errorf("force-leave %q: %w; see the names in \"cairn members\"", node, ErrUnknownMember)
	}
	switch mem.Status {
	case StatusLeft:
		return nil
	case StatusAlive, StatusLeaving:
		return fmt.Errorf("force-leave %q: %w: it is %s at %s; only a failed member can be forced out (stop its agent, or run leave on it)", node, ErrNotFailed, mem.Status, mem.AddrPort())
	}
	if m.table.setStatus(node, StatusLeft, time.Now(), StatusFailed) {
		m.log.Info("member left (forced)", "node", node)
	}
	m.queueLeft(msgForceLeave, node)
	return nil
}

// Prune forces a failed member out (ForceLeave) and forgets it at once,
// rather than after ReapFailedAfter, as Consul's force-leave -prune
// does. A left member is forgotten too; a live one is left alone.
func (m *Membership) Prune(node string) error {
	if err := m.ForceLeave(node); err != nil {
		return err
	}
	if m.table.expire(node, time.Now()) {
		m.log.Info("member pruned", "node", node)
	}
	return nil
}

// leavePropagateRounds is how many gossip rounds Leave waits after the
// leave went out: the members it reached pass it on meanwhile.
const leavePropagateRounds = 4

func (m *Membership) queueLeft(kind byte, node string) {
	msg := append([]byte{kind}, node...)
	m.broadcasts.QueueBroadcast(leftBroadcast{node: node, msg: msg})
}

// LocalMember returns this agent as the others see it: its advertised
// gossip address and port (the bound port when BindPort was 0), its status
// and Meta.
func (m *Membership) LocalMember() Member {
	if mem, ok := m.table.get(m.cfg.NodeName); ok {
		return mem
	}
	// Not reached: memberlist reports us before Create returns.
	n := m.ml.LocalNode()
	addr, _ := netip.AddrFromSlice(n.Addr)
	return Member{Name: n.Name, Addr: addr.Unmap(), Port: int(n.Port), Status: StatusAlive, Meta: m.cfg.Meta}
}

// Members returns every member this agent knows, itself included, sorted
// by name; failed and left ones stay until ReapFailedAfter. The index
// grows on every change, and ws (if not nil) gets a channel that closes on
// the next one.
func (m *Membership) Members(ws memdb.WatchSet) (uint64, []Member) {
	return m.table.list(ws)
}

// Servers returns the alive members whose role is server, sorted by name.
func (m *Membership) Servers() []Member {
	_, all := m.table.list(nil)
	out := all[:0]
	for _, mem := range all {
		if mem.Status == StatusAlive && mem.Meta.Role == RoleServer {
			out = append(out, mem)
		}
	}
	return out
}

// reapLoop drops failed and left members ReapFailedAfter after they went
// down. It sleeps until the earliest one is due, and is woken when a
// member goes down.
func (m *Membership) reapLoop() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		reaped, next := m.table.reap(time.Now())
		for _, mem := range reaped {
			m.log.Info("member reaped", "node", mem.Name, "status", string(mem.Status), "after", m.cfg.ReapFailedAfter)
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-m.stop:
			return
		case <-m.table.kick:
		case <-timer.C:
		}
	}
}

// Member returns the member named name as this agent last saw it.
func (m *Membership) Member(name string) (Member, bool) { return m.table.get(name) }

// HasServers reports whether any server is a member, in whatever state
// but left: the cluster has a Raft store, even if it cannot be reached
// at the moment.
func (m *Membership) HasServers() bool {
	_, all := m.table.list(nil)
	for _, mem := range all {
		if mem.Meta.Role == RoleServer && mem.Status != StatusLeft {
			return true
		}
	}
	return false
}
