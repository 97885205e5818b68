package membership

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate receives memberlist's callbacks. memberlist calls them from its
// own goroutines, the event callbacks (NotifyJoin, NotifyLeave,
// NotifyUpdate) with its node lock held, so every method here only records
// into the table or queues a broadcast: it never blocks and never calls
// back into memberlist. It is a separate type so that Membership's method
// set stays the public API.
type delegate struct{ m *Membership }

var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.MergeDelegate    = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
)

// Gossip message kinds (the first byte of a user message). Kinds from
// FirstComponentKind up go to the component registered for them
// (channel.go); others are ignored, so that newer agents can add some.
const (
	// msgForceLeave, followed by a node name: "that failed member is now
	// left". Sent by ForceLeave, forwarded by every agent it changes.
	msgForceLeave byte = 1
	// msgKeyringRequest and msgKeyringResponse, followed by JSON: a
	// keyring operation and a member's answer (keyring.go).
	msgKeyringRequest  byte = 2
	msgKeyringResponse byte = 3
	// msgLeft, followed by a node name: "that member is leaving; if you
	// saw it fail, it left". Sent by the member itself as it leaves (with
	// the leaving flag, and again with memberlist's leave), passed on by
	// every agent it tells something new. It covers what the flag cannot:
	// memberlist's leave overtaking the meta update (a lost or late
	// datagram), which made the member look failed.
	msgLeft byte = 4
)

// member converts a memberlist node, logging (and dropping) meta that
// cannot be read: a member with unreadable meta is still a member.
func (d delegate) member(n *memberlist.Node, down bool) Member {
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		d.m.log.Warn("member's meta is unreadable; showing it without", "node", n.Name, "addr", n.Address(), "error", err)
	}
	addr, _ := netip.AddrFromSlice(n.Addr)
	mem := Member{Name: n.Name, Addr: addr.Unmap(), Port: int(n.Port), Meta: meta, Status: StatusAlive}
	switch {
	case down && leaving:
		// A member that announced it was leaving (Leave sets this in its
		// meta first) and then went: it left. memberlist's own StateLeft
		// is not visible to delegates (the Node they get has no state).
		mem.Status = StatusLeft
	case down:
		mem.Status = StatusFailed
	case leaving:
		mem.Status = StatusLeaving
	}
	return mem
}

func (d delegate) record(n *memberlist.Node, down bool) {
	mem := d.member(n, down)
	if mem.Status == StatusFailed {
		// Its msgLeft came, its leaving flag did not: it left.
		if known, ok := d.m.table.get(mem.Name); ok && known.Status == StatusLeaving {
			mem.Status = StatusLeft
		}
	}
	old, changed := d.m.table.set(mem, time.Now())
	if !changed || old == mem.Status {
		return
	}
	attrs := []any{"node", mem.Name, "addr", mem.AddrPort().String(), "role", string(mem.Meta.Role)}
	if old != "" {
		attrs = append(attrs, "was", string(old))
	}
	d.m.log.Info("member "+string(mem.Status), attrs...)
}

// NotifyJoin implements memberlist.EventDelegate.
func (d delegate) NotifyJoin(n *memberlist.Node) { d.record(n, false) }

// NotifyUpdate implements memberlist.EventDelegate (meta changed).
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.record(n, false) }

// NotifyLeave implements memberlist.EventDelegate: the member left or
// failed; which one depends on whether it announced leaving.
func (d delegate) NotifyLeave(n *memberlist.Node) { d.record(n, true) }

// NotifyMerge implements memberlist.MergeDelegate. memberlist calls it on
// both sides of a join, before merging the other side's member list:
// returning an error cancels the merge, and on the joining side fails its
// Join with that error.
//
// It refuses a list that puts a name this agent knows as a live member at
// another address. That keeps names unique: the joiner learns that its
// name is taken (Join fails with the message below), and the cluster never
// hears of the impostor.
func (d delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if p.State != memberlist.StateAlive && p.State != memberlist.StateSuspect {
			continue // a dead or left name may be reused
		}
		known, ok := d.m.table.get(p.Name)
		if !ok || (known.Status != StatusAlive && known.Status != StatusLeaving) {
			continue
		}
		theirs := net.JoinHostPort(p.Addr.String(), portString(p.Port))
		ours := known.AddrPort().String()
		if theirs == ours {
			continue
		}
		if d.m.joining.Load() > 0 {
			if p.Name == d.m.cfg.NodeName {
				return fmt.Errorf("node name %q is already used by %s in this cluster; give this agent another -node", p.Name, theirs)
			}
			return fmt.Errorf("node name %q is used by %s in that cluster and by %s in this agent's; give one of them another -node", p.Name, theirs, ours)
		}
		return fmt.Errorf("refused a join: node name %q is claimed by %s but already used by %s; the joining agent needs another -node", p.Name, theirs, ours)
	}
	return nil
}

// NotifyConflict implements memberlist.ConflictDelegate: gossip (rather
// than a join, see NotifyMerge) said that a live member's name is at
// another address. memberlist keeps the existing one and ignores the other.
func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.log.Warn("two agents use the same node name; keeping the one already known and ignoring the other, which needs another -node",
		"node", existing.Name, "kept", existing.Address(), "ignored", other.Address())
}

// NodeMeta implements memberlist.Delegate.
func (d delegate) NodeMeta(limit int) []byte {
	b := *d.m.meta.Load()
	if len(b) > limit {
		// New checked the size against memberlist.MetaMaxSize, which is
		// the only limit memberlist asks for.
		d.m.log.Error("node meta exceeds memberlist's limit; sending none", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate: a gossip message from another
// agent. msg may be reused after the call, so nothing keeps it.
func (d delegate) NotifyMsg(msg []byte) {
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case msgForceLeave, msgLeft:
		name := string(msg[1:])
		if name == d.m.cfg.NodeName {
			return
		}
		switch {
		case d.m.table.setStatus(name, StatusLeft, time.Now(), StatusFailed):
			how := "member left (forced)"
			if msg[0] == msgLeft {
				how = "member left (it said so as it went)"
			}
			d.m.log.Info(how, "node", name, "was", string(StatusFailed))
		case msg[0] == msgLeft && d.m.table.setStatus(name, StatusLeaving, time.Now(), StatusAlive):
			d.m.log.Info("member leaving", "node", name, "was", string(StatusAlive))
		default:
			return
		}
		d.m.queueLeft(msg[0], name) // pass it on
	case msgKeyringRequest:
		d.m.handleKeyringRequest(msg[1:])
	case msgKeyringResponse:
		d.m.handleKeyringResponse(msg[1:])
	default:
		if h, ok := d.m.handlerMap()[msg[0]]; ok {
			h.NotifyMsg(msg[1:])
			return
		}
		d.m.log.Debug("ignoring a gossip message of unknown kind (from a newer agent?)", "kind", msg[0], "size", len(msg))
	}
}

// GetBroadcasts implements memberlist.Delegate.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: the registered components'
// state (channel.go); membership has none beyond memberlist's own.
func (d delegate) LocalState(join bool) []byte { return d.m.localState(join) }

// MergeRemoteState implements memberlist.Delegate.
func (d delegate) MergeRemoteState(buf []byte, join bool) { d.m.mergeRemoteState(buf, join) }

func portString(p uint16) string { return strconv.Itoa(int(p)) }

// leftBroadcast is a queued msgForceLeave or msgLeft. A newer one for the
// same node replaces an older one (both say the same).
type leftBroadcast struct {
	node string
	msg  []byte
}

func (b leftBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(leftBroadcast)
	return ok && o.node == b.node
}
func (b leftBroadcast) Message() []byte { return b.msg }
func (b leftBroadcast) Finished()       {}
