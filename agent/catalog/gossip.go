package catalog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-memdb"
	"golang.org/x/sync/errgroup"
)

// Replication over membership's gossip channel. Incoming states are
// queued by GossipHandler (memberlist's goroutines only enqueue) and
// applied by receiveLoop, the only writer of the other agents' entries;
// publishLoop sends this agent's state out.

// inboxSize bounds the queue of incoming messages; when it is full (a
// burst the catalog cannot keep up with) messages are dropped, and
// push/pull brings their content again.
const inboxSize = 1024

// sendParallel is how many members a large state is sent to at once.
const sendParallel = 8

// directMax is how many members a new state is sent to directly. Up to
// that many, every member gets it in one hop; beyond, a random directMax
// do, and receivers pass it on through gossip (epidemic).
const directMax = 128

type inMsg struct {
	buf      []byte
	pushPull bool
	signed   bool // records end with their origin's signature
}

// remote is another agent's latest state, as received. Only the encoded
// record is kept (some 30 bytes per service): the read side holds the
// decoded entries, and a rare re-apply (a change of health) decodes again.
type remote struct {
	version uint64
	record  []byte // as received: what push/pull passes on
	signed  bool   // record ends with its origin's signature

	shown        bool // applied to the read side
	shownVersion uint64
	shownHealth  string
	absentSince  time.Time // when membership stopped (or had not begun) listing it
}

// GossipHandler is the catalog's end of its gossip channel: register it
// with membership (it implements membership.Handler). Its methods are
// called from memberlist's goroutines and only copy and enqueue, or read
// a snapshot.
type GossipHandler struct{ c *Catalog }

// GossipHandler returns the handler to register with membership.
func (c *Catalog) GossipHandler() *GossipHandler { return &GossipHandler{c} }

// NotifyMsg queues another agent's state.
func (h *GossipHandler) NotifyMsg(msg []byte) {
	if len(msg) == 0 || (msg[0] != msgRecord && msg[0] != msgSignedRecord) {
		h.c.log.Debug("ignoring a catalog message of unknown type (from a newer agent?)", "size", len(msg))
		return
	}
	h.c.enqueue(inMsg{buf: bytes.Clone(msg[1:]), signed: msg[0] == msgSignedRecord})
}

// LocalState is every state this agent holds, its own included: the
// anti-entropy that repairs lost broadcasts.
func (h *GossipHandler) LocalState(join bool) []byte { return h.c.pushPullState() }

// MergeRemoteState queues the other side's states.
func (h *GossipHandler) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	h.c.enqueue(inMsg{buf: bytes.Clone(buf), pushPull: true, signed: buf[0] == pushPullSigned})
}

func (c *Catalog) enqueue(m inMsg) {
	select {
	case c.inbox <- m:
	default:
		c.log.Debug("catalog inbox full; dropped a gossip message (push/pull repairs it)", "size", len(m.buf))
	}
}

func (c *Catalog) pushPullState() []byte {
	_, own := c.record()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	size := len(own) + 11
	for _, r := range c.remotes {
		size += len(r.record) + 10
	}
	out := make([]byte, 0, size)
	signed := c.cfg.SigningKey != nil
	if signed {
		out = append(out, pushPullSigned)
	} else {
		out = append(out, pushPullFormat)
	}
	out = appendRecord(out, own)
	for _, r := range c.remotes {
		// One format per state: a signing agent passes on only signed
		// records (the only ones it applies when it checks them).
		if r.signed == signed {
			out = appendRecord(out, r.record)
		}
	}
	return out
}

func appendRecord(out, rec []byte) []byte {
	out = appendUvarint(out, uint64(len(rec)))
	return append(out, rec...)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// receiveLoop applies incoming states and follows membership.
func (c *Catalog) receiveLoop(ctx context.Context, g Gossip) error {
	members := map[string]MemberStatus{}
	var (
		wake        <-chan error
		cancelWatch = func() {}
	)
	defer func() { cancelWatch() }()
	refresh := func() {
		if c.cfg.Members == nil {
			return
		}
		ws := memdb.NewWatchSet()
		_, ms := c.cfg.Members.Members(ws)
		members = make(map[string]MemberStatus, len(ms))
		for _, m := range ms {
			members[m.Name] = m.Status
		}
		cancelWatch()
		wctx, cancel := context.WithCancel(ctx)
		cancelWatch = cancel
		wake = ws.WatchCh(wctx)
		c.rmu.Lock()
		origins := make([]string, 0, len(c.remotes))
		for o := range c.remotes {
			origins = append(origins, o)
		}
		c.rmu.Unlock()
		for _, o := range origins {
			c.reconcile(o, members, nil)
		}
		if c.cfg.Keys != nil {
			c.retryHeld(members, g) // a member may have brought its key
		}
	}
	refresh()
	sweepEvery := min(c.cfg.ForgetAfter/2, time.Minute)
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			refresh()
		case m := <-c.inbox:
			c.receive(m, members, g)
		case <-c.keysCh:
			if c.cfg.Keys != nil {
				c.retryHeld(members, g)
			}
		case <-sweep.C:
			c.forget(members, time.Now())
		}
	}
}

// receive takes the records of one message: each replaces the state of its
// origin when its version is higher than the one held.
func (c *Catalog) receive(m inMsg, members map[string]MemberStatus, g Gossip) {
	if c.cfg.Keys != nil && !m.signed {
		c.log.Debug("ignoring an unsigned catalog record: this agent applies only records signed by their origin (from an older cairn, or forged)", "size", len(m.buf))
		return
	}
	recs := [][]byte{m.buf}
	if m.pushPull {
		var err error
		recs, err = splitPushPull(m.buf)
		if err != nil {
			c.log.Warn("push/pull state from another agent is malformed; used what came before the fault", "err", err, "size", len(m.buf))
		}
	}
	now := time.Now()
	for _, rec := range recs {
		signedPart, sig := rec, []byte(nil)
		if m.signed {
			var ok bool
			if signedPart, sig, ok = splitSigned(rec); !ok {
				c.log.Warn("signed catalog state from another agent is too short; ignored", "size", len(rec))
				continue
			}
		}
		origin, version, body, err := recordHeader(signedPart)
		if err != nil {
			c.log.Warn("catalog state from another agent is malformed; ignored", "err", err, "size", len(rec))
			continue
		}
		if lower(origin) == lower(c.cfg.NodeName) {
			continue // this agent's own state is what it says, not what others remember
		}
		c.rmu.Lock()
		r := c.remotes[origin]
		stale := r != nil && version <= r.version
		c.rmu.Unlock()
		if stale {
			continue
		}
		if versionTooFar(version, now) {
			c.log.Warn("catalog state from another agent has a version from the future; ignored (is its clock more than an hour ahead?)",
				"origin", origin, "version", version, "ahead", time.UnixMilli(int64(version>>20)).Sub(now).Round(time.Second).String())
			continue
		}
		if c.cfg.Keys != nil {
			key, ok := c.cfg.Keys.GossipKey(origin)
			if !ok {
				if m.pushPull {
					rec = bytes.Clone(rec)
				}
				c.hold(origin, version, rec)
				continue
			}
			if !ed25519.Verify(key, signedPart, sig) {
				c.log.Warn("catalog state in another agent's name is not signed by that agent's key; ignored (forged, or the agent has a new key: see docs/gossip-security.md)",
					"origin", origin, "version", version)
				continue
			}
		}
		nodes, err := decodeBody(body)
		if err != nil {
			c.log.Warn("catalog state from another agent cannot be read; ignored", "origin", origin, "version", version, "err", err)
			continue
		}
		if m.pushPull {
			rec = bytes.Clone(rec) // do not pin the whole push/pull buffer
		}
		c.rmu.Lock()
		if r == nil {
			r = &remote{}
			c.remotes[origin] = r
		}
		r.version, r.record, r.signed = version, rec, m.signed
		c.rmu.Unlock()
		c.reconcile(origin, members, nodes)
		// Epidemic: in a cluster larger than directMax, pass on a state
		// that is new here, so it reaches the members its origin did not
		// send it to.
		if !m.pushPull && g != nil && len(members) > directMax && len(rec)+1 <= g.MaxBroadcastSize() {
			typ := msgRecord
			if m.signed {
				typ = msgSignedRecord
			}
			msg := append([]byte{typ}, rec...)
			if err := g.Broadcast(origin, msg); err != nil {
				c.log.Debug("could not pass on a catalog state", "origin", origin, "err", err)
			}
		}
	}
}

// reconcile shows, updates or hides origin's entries according to its
// state and its membership status: alive or leaving is shown with
// serfHealth passing, failed is shown with serfHealth critical, left or
// unknown is hidden. nodes is the decoded state when the caller has it.
func (c *Catalog) reconcile(origin string, members map[string]MemberStatus, nodes []nodeState) {
	c.rmu.Lock()
	r := c.remotes[origin]
	c.rmu.Unlock()
	if r == nil {
		return
	}
	st, ok := members[origin]
	if !ok {
		if r.absentSince.IsZero() {
			r.absentSince = time.Now()
		}
	} else {
		r.absentSince = time.Time{}
	}
	show := ok && st != MemberLeft
	if !show {
		if r.shown {
			c.state.apply(origin, nil)
			r.shown = false
			why := "it is not a member any more"
			if ok {
				why = "it left the cluster"
			}
			c.log.Info("removed an agent's services from the catalog", "node", origin, "reason", why)
		}
		return
	}
	health := StatusPassing
	if st == MemberFailed {
		health = StatusCritical
	}
	if r.shown && r.shownVersion == r.version && r.shownHealth == health {
		return
	}
	if nodes == nil {
		rec := r.record
		if r.signed {
			rec = rec[:len(rec)-sigSize]
		}
		_, _, body, err := recordHeader(rec)
		if err == nil {
			nodes, err = decodeBody(body)
		}
		if err != nil {
			// Not reached: the record was decoded when it arrived.
			c.log.Warn("catalog state of another agent cannot be read again", "origin", origin, "err", err)
			return
		}
	}
	res := c.state.apply(origin, withSerfHealth(nodes, origin, health))
	for _, n := range res.conflicts {
		c.log.Warn("two agents registered the same external node; showing the first one's", "node", n, "ignored", origin)
	}
	if r.shown && r.shownHealth != health {
		if health == StatusCritical {
			c.log.Info("agent failed; its services are critical until it returns or is reaped", "node", origin)
		} else {
			c.log.Info("agent is alive again; its services are answered by their checks", "node", origin)
		}
	}
	r.shown, r.shownVersion, r.shownHealth = true, r.version, health
}

// forget drops the states of agents that have not been members for
// ForgetAfter: they are hidden already, and an agent that comes back
// sends its state again (with a higher version).
func (c *Catalog) forget(members map[string]MemberStatus, now time.Time) {
	for o := range c.held {
		if _, ok := members[o]; !ok {
			delete(c.held, o) // push/pull brings it again if it joins
		}
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for o, r := range c.remotes {
		if _, ok := members[o]; ok {
			r.absentSince = time.Time{}
			continue
		}
		if r.absentSince.IsZero() {
			r.absentSince = now
			continue
		}
		if now.Sub(r.absentSince) >= c.cfg.ForgetAfter && !r.shown {
			delete(c.remotes, o)
		}
	}
}

// publishLoop keeps every live member up to date with this agent's
// state: after each change, and whenever a member joins or comes back (it
// may have missed the latest version), it sends the current state to the
// members that have not had it, at most once per PublishGap. It also
// spreads pending check output after CheckUpdateInterval.
func (c *Catalog) publishLoop(ctx context.Context, g Gossip) error {
	var (
		broadcast   uint64                // the version last broadcast
		sent        = map[string]uint64{} // the version last sent to each member
		outputTimer *time.Timer
		outputC     <-chan time.Time
		memberWake  <-chan error
		cancelWatch = func() {}
	)
	defer func() {
		cancelWatch()
		if outputTimer != nil {
			outputTimer.Stop()
		}
	}()
	gap := time.NewTimer(0)
	<-gap.C
	defer gap.Stop()
	for {
		c.mu.Lock()
		ch, v, pending := c.changed, c.version, c.outputPending
		c.mu.Unlock()
		switch {
		case pending && outputC == nil:
			outputTimer = time.NewTimer(c.cfg.CheckUpdateInterval)
			outputC = outputTimer.C
		case !pending && outputC != nil:
			outputTimer.Stop()
			outputC = nil
		}
		var targets []string
		if c.cfg.Members != nil {
			ws := memdb.NewWatchSet()
			_, ms := c.cfg.Members.Members(ws)
			cancelWatch()
			wctx, cancel := context.WithCancel(ctx)
			cancelWatch, memberWake = cancel, ws.WatchCh(wctx)
			live := map[string]bool{}
			for _, m := range ms {
				if m.Name == c.cfg.NodeName || (m.Status != MemberAlive && m.Status != MemberLeaving) {
					continue
				}
				live[m.Name] = true
				if sent[m.Name] != v {
					targets = append(targets, m.Name)
				}
			}
			for name := range sent {
				if !live[name] {
					delete(sent, name) // gone or failed: send it all again when it is back
				}
			}
		}
		if g != nil && (v != broadcast || len(targets) > 0) {
			// The state is encoded here, at most once per gap, rather
			// than on every change; it may be newer than v.
			v, rec := c.record()
			c.send(ctx, g, rec, v != broadcast, targets)
			broadcast = v
			for _, t := range targets {
				sent[t] = v
			}
			gap.Reset(c.publishGap())
			select {
			case <-ctx.Done():
				return nil
			case <-gap.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-memberWake:
		case <-outputC:
			outputC = nil
			if err := c.flushOutput(); err != nil {
				c.log.Warn("could not spread new check output", "err", err)
			}
		}
	}
}

// publishGap is the least time between two publications: PublishGap,
// or more for a large state, so that encoding it takes at most a fifth
// of the time while changes pour in (registering 10,000 services, say).
func (c *Catalog) publishGap() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.cfg.PublishGap, 4*c.encodeCost)
}

// send spreads this agent's state: straight to each of targets (at most
// directMax of them; in one UDP packet when it fits, else over TCP), and,
// when it is new and small, as a gossip broadcast too, which repairs a
// lost packet and, in a cluster larger than directMax, reaches the rest
// through the receivers (epidemic). Push/pull repairs anything else.
func (c *Catalog) send(ctx context.Context, g Gossip, rec []byte, isNew bool, targets []string) {
	typ := msgRecord
	if c.cfg.SigningKey != nil {
		typ = msgSignedRecord
	}
	msg := make([]byte, 0, len(rec)+1)
	msg = append(append(msg, typ), rec...)
	small := len(msg) <= g.MaxBroadcastSize()
	if small && isNew {
		if err := g.Broadcast(c.cfg.NodeName, msg); err != nil {
			c.log.Warn("could not broadcast this agent's catalog state; push/pull will carry it", "err", err)
		}
	}
	if len(targets) > directMax {
		rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
		targets = targets[:directMax]
	}
	if small {
		for _, t := range targets {
			if err := g.SendBestEffort(t, msg); err != nil {
				c.log.Debug("could not send this agent's catalog state; gossip will carry it", "to", t, "err", err)
			}
		}
		return
	}
	var eg errgroup.Group
	eg.SetLimit(sendParallel)
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		eg.Go(func() error {
			if err := g.SendReliable(t, msg); err != nil {
				c.log.Debug("could not send this agent's catalog state; push/pull will carry it", "to", t, "err", err)
			}
			return nil
		})
	}
	eg.Wait()
}
