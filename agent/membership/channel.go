package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Other components share memberlist's gossip through channels: the agent
// registers a Handler for a message kind (the first byte of every user
// message) before it joins anybody, and sends through the Channel that
// Register returns. This is how the catalog spreads each agent's services
// without a second gossip layer; membership only frames and routes, it
// never reads a component's bytes.
//
// Kinds below FirstComponentKind are membership's own (msgForceLeave).
// A message of a kind nobody registered is dropped (logged at debug), so an
// older agent ignores what a newer one adds.

// FirstComponentKind is the lowest message kind Register accepts; the
// kinds below it are membership's own.
const FirstComponentKind byte = 32

// Handler is a component's end of its gossip channel. memberlist calls
// these methods from its own goroutines (the packet and stream handlers,
// the push/pull timer), so they must return quickly and must not call back
// into the Membership or the Channel: keep what arrived and return
// (delegates only enqueue), and apply it on the component's own goroutine.
type Handler interface {
	// NotifyMsg receives a message another agent sent on this channel
	// (Broadcast or SendReliable), without the kind byte. msg belongs
	// to the caller: copy it to keep it.
	NotifyMsg(msg []byte)
	// LocalState is this component's part of a push/pull exchange, the
	// periodic full-state sync (anti-entropy) that memberlist runs
	// with a random member, and runs with the agent joined on a join.
	// nil sends nothing.
	LocalState(join bool) []byte
	// MergeRemoteState receives the other side's LocalState. buf
	// belongs to the caller: copy it to keep it.
	MergeRemoteState(buf []byte, join bool)
}

// Errors of Register and the Channel methods.
var (
	// ErrKindTaken: another Handler has that kind already, or it is one
	// of membership's own.
	ErrKindTaken = errors.New("gossip message kind is taken")
	// ErrTooLarge: a broadcast does not fit in one gossip packet; send
	// it with SendReliable, or rely on push/pull.
	ErrTooLarge = errors.New("message too large for a gossip broadcast")
)

// Register makes h receive the messages and push/pull state of kind, and
// returns the Channel to send on: Broadcast (epidemic, piggybacked on
// gossip), SendBestEffort (one UDP packet to one member) and SendReliable
// (TCP to one member, any size). Register before Join: what arrives for
// a kind before it is registered is dropped (push/pull brings it again).
func (m *Membership) Register(kind byte, h Handler) (*Channel, error) {
	if kind < FirstComponentKind {
		return nil, fmt.Errorf("register gossip kind %d: %w: kinds below %d are membership's own; use %d or more", kind, ErrKindTaken, FirstComponentKind, FirstComponentKind)
	}
	if h == nil {
		return nil, fmt.Errorf("register gossip kind %d: the handler is nil", kind)
	}
	m.handlersMu.Lock()
	defer m.handlersMu.Unlock()
	old := m.handlerMap()
	if _, ok := old[kind]; ok {
		return nil, fmt.Errorf("register gossip kind %d: %w by another component", kind, ErrKindTaken)
	}
	next := make(map[byte]Handler, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[kind] = h
	m.handlers.Store(&next)
	return &Channel{m: m, kind: kind}, nil
}

// handlerMap is the registered handlers; never nil, never modified (a
// Register replaces it), so delegates read it without a lock.
func (m *Membership) handlerMap() map[byte]Handler {
	if p := m.handlers.Load(); p != nil {
		return *p
	}
	return nil
}

// Channel sends one component's messages. Safe for concurrent use.
type Channel struct {
	m    *Membership
	kind byte
}

// MaxBroadcastSize is the largest message Broadcast takes: what fits in
// one gossip packet (memberlist's UDPBufferSize, 1400 bytes) next to the
// packet's framing, encryption and memberlist's own messages.
func (c *Channel) MaxBroadcastSize() int {
	// memberlist reserves 2+2 bytes of compound framing, up to 45 for
	// encryption, and 1 for its user-message type; the rest leaves room
	// for a few of its own alive/suspect messages in the same packet.
	return c.m.udpBufferSize - 200
}

// Broadcast queues msg for every member through gossip: memberlist sends
// it to a few random members per gossip interval, RetransmitMult times
// log(N) in all, piggybacked on its own traffic. It reaches everyone only
// if receivers pass it on, so a component that needs that broadcasts
// again what it learns. A queued broadcast with the same key is replaced
// (only the newest state of a key is worth sending). It fails with
// ErrTooLarge beyond MaxBroadcastSize.
func (c *Channel) Broadcast(key string, msg []byte) error {
	if max := c.MaxBroadcastSize(); len(msg) > max {
		return fmt.Errorf("broadcast %d bytes: %w (%d bytes at most)", len(msg), ErrTooLarge, max)
	}
	if c.m.shutdown.Load() {
		return fmt.Errorf("broadcast: %w", ErrShutdown)
	}
	framed := make([]byte, 0, len(msg)+1)
	framed = append(append(framed, c.kind), msg...)
	c.m.broadcasts.QueueBroadcast(&componentBroadcast{kind: c.kind, key: key, msg: framed})
	return nil
}

// SendReliable sends msg to the member named node over TCP (memberlist's
// stream transport, encrypted like the rest), whatever its size, and
// returns once it was written. Use it for messages too large to
// broadcast. The member must be alive.
func (c *Channel) SendReliable(node string, msg []byte) error {
	to, err := c.member(node)
	if err != nil {
		return err
	}
	framed := make([]byte, 0, len(msg)+1)
	framed = append(append(framed, c.kind), msg...)
	if err := c.m.ml.SendReliable(to, framed); err != nil {
		return fmt.Errorf("send %d bytes to %s at %s: %w", len(msg), node, to.Address(), err)
	}
	return nil
}

// SendBestEffort sends msg to the member named node in one UDP packet,
// now rather than piggybacked on gossip: fast, but it may be lost, and it
// must fit in a packet (MaxBroadcastSize). The member must be alive.
func (c *Channel) SendBestEffort(node string, msg []byte) error {
	if max := c.MaxBroadcastSize(); len(msg) > max {
		return fmt.Errorf("send %d bytes to %s: %w (%d bytes at most); use SendReliable", len(msg), node, ErrTooLarge, max)
	}
	to, err := c.member(node)
	if err != nil {
		return err
	}
	framed := make([]byte, 0, len(msg)+1)
	framed = append(append(framed, c.kind), msg...)
	if err := c.m.ml.SendBestEffort(to, framed); err != nil {
		return fmt.Errorf("send %d bytes to %s at %s: %w", len(msg), node, to.Address(), err)
	}
	return nil
}

// member finds a live member by name. It builds a fresh Node from this
// package's own table: memberlist's Members returns pointers into its
// state, which its own goroutines keep rewriting (a data race to hold).
func (c *Channel) member(node string) (*memberlist.Node, error) {
	if c.m.shutdown.Load() {
		return nil, fmt.Errorf("send to %s: %w", node, ErrShutdown)
	}
	mem, ok := c.m.table.get(node)
	if !ok || (mem.Status != StatusAlive && mem.Status != StatusLeaving) {
		return nil, fmt.Errorf("send to %s: %w among the live members", node, ErrUnknownMember)
	}
	return &memberlist.Node{Name: mem.Name, Addr: net.IP(mem.Addr.AsSlice()), Port: uint16(mem.Port)}, nil
}

// componentBroadcast is a queued Broadcast; a newer one of the same kind
// and key replaces it.
type componentBroadcast struct {
	kind byte
	key  string
	msg  []byte
}

func (b *componentBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*componentBroadcast)
	return ok && o.kind == b.kind && o.key == b.key
}

func (b *componentBroadcast) Message() []byte { return b.msg }
func (b *componentBroadcast) Finished()       {}

// Push/pull state with components: a format byte, then for each kind
// with something to send: the kind, a uvarint length and that many bytes.
// Membership itself sends nothing, as before channels existed.
const pushPullFormat byte = 1

// localState frames every handler's LocalState; nil when there is none.
func (m *Membership) localState(join bool) []byte {
	hs := m.handlerMap()
	if len(hs) == 0 {
		return nil
	}
	kinds := make([]byte, 0, len(hs))
	for k := range hs {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	out := []byte{pushPullFormat}
	for _, k := range kinds {
		part := hs[k].LocalState(join)
		if len(part) == 0 {
			continue
		}
		out = append(out, k)
		out = binary.AppendUvarint(out, uint64(len(part)))
		out = append(out, part...)
	}
	if len(out) == 1 {
		return nil
	}
	return out
}

// mergeRemoteState hands each part of another agent's push/pull state to
// its handler. The bytes come from the network: anything malformed is
// logged and the rest dropped, never a panic.
func (m *Membership) mergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	if buf[0] != pushPullFormat {
		m.log.Debug("ignoring push/pull state of an unknown format (from a newer agent?)", "format", buf[0], "size", len(buf))
		return
	}
	hs := m.handlerMap()
	rest := buf[1:]
	for len(rest) > 0 {
		kind := rest[0]
		n, w := binary.Uvarint(rest[1:])
		if w <= 0 || n > uint64(len(rest)-1-w) {
			m.log.Warn("push/pull state from another agent is malformed; ignored the rest of it", "kind", kind, "size", len(buf))
			return
		}
		part := rest[1+w : 1+w+int(n)]
		rest = rest[1+w+int(n):]
		if h, ok := hs[kind]; ok {
			h.MergeRemoteState(part, join)
		} else {
			m.log.Debug("ignoring push/pull state of an unregistered kind", "kind", kind, "size", len(part))
		}
	}
}
