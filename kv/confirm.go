package kv

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// probeRetry is how long a peer whose heartbeat failed is left alone
// before the next one, while reads wait for it.
const probeRetry = 100 * time.Millisecond

// confirmTimeout bounds how long a read waits for a quorum to confirm
// the leader; past it the read fails as "not leader" and the caller's
// hold retries it (a new leader is likely being elected).
const confirmTimeout = 3 * time.Second

// confirmer proves, for a read, that this server still leads its term:
// a quorum of voters (itself included) must accept a heartbeat of that
// term sent after the read began. Then no other leader can have
// committed anything before the read began: that would have taken a
// quorum at a higher term, and one of its members would since have
// refused this term (terms never go back).
//
// hashicorp/raft's VerifyLeader is not enough: it counts the answer to
// any heartbeat or append that comes back after the call, also one sent
// before it (its notifyAll takes whatever reply arrives next). A leader
// that stalled (SIGSTOP, a starved process) finds the replies its
// followers gave before they elected someone else waiting in its
// sockets, and VerifyLeader confirms it. The linearizability tests saw
// a consistent read answer an overwritten value that way.
//
// Each peer has at most one probe out at a time; a read that began while
// a peer's probe was out waits for that one to return and the next to be
// sent, so a paused peer costs one goroutine, not one per read.
type confirmer struct {
	trans  raft.Transport
	header raft.RPCHeader
	term   uint64
	self   raft.ServerID

	mu      sync.Mutex
	gen     uint64        // numbers the reads; a probe counts for reads up to the gen it was sent at
	changed chan struct{} // closed (and replaced) when a probe returns
	peers   map[raft.ServerID]*probe
	higher  uint64        // a higher term a peer answered with, 0 if none
	stopped chan struct{} // closed when the term ends

	// quorumAt is when a quorum last confirmed this leader in this
	// term (a confirmation, or the submission of a committed write), in
	// nanoseconds since born: monotonic, so a wall-clock step cannot
	// stretch the lease.
	born     time.Time
	quorumAt atomic.Int64
}

// probe is one peer's state.
type probe struct {
	addr   raft.ServerAddress
	out    bool   // a heartbeat is on its way
	okGen  uint64 // the gen the last accepted heartbeat was sent at
	sentAt uint64 // the gen the one out was sent at
}

func newConfirmer(trans raft.Transport, id raft.ServerID, term uint64) *confirmer {
	local := trans.LocalAddr()
	c := &confirmer{
		trans: trans,
		header: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax,
			ID:              []byte(id),
			Addr:            trans.EncodePeer(id, local),
		},
		term:    term,
		self:    id,
		changed: make(chan struct{}),
		peers:   map[raft.ServerID]*probe{},
		stopped: make(chan struct{}),
		born:    time.Now(),
	}
	c.quorumAt.Store(math.MinInt64 / 2) // never
	return c
}

// confirmed records that a quorum followed this leader at time at.
func (c *confirmer) confirmed(at time.Time) {
	n := int64(at.Sub(c.born))
	for {
		old := c.quorumAt.Load()
		if old >= n || c.quorumAt.CompareAndSwap(old, n) {
			return
		}
	}
}

// sinceQuorum is how long ago a quorum last confirmed this leader.
func (c *confirmer) sinceQuorum() time.Duration {
	return time.Since(c.born) - time.Duration(c.quorumAt.Load())
}

// stop ends the confirmer with its term; waiting reads fail.
func (c *confirmer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stopped:
	default:
		close(c.stopped)
	}
}

// confirm returns nil once a quorum of the voters in cfg has accepted a
// heartbeat of c.term sent after confirm was called.
func (c *confirmer) confirm(ctx context.Context, cfg raft.Configuration) error {
	var voters []raft.Server
	self := false
	for _, srv := range cfg.Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		if srv.ID == c.self {
			self = true
			continue
		}
		voters = append(voters, srv)
	}
	if !self {
		return fmt.Errorf("%w: this server is not a voter in the configuration", ErrNotLeader)
	}
	quorum := (len(voters)+1)/2 + 1
	at := time.Now()
	c.mu.Lock()
	c.gen++
	gen := c.gen
	for _, srv := range voters {
		p, ok := c.peers[srv.ID]
		if !ok {
			p = &probe{}
			c.peers[srv.ID] = p
		}
		p.addr = srv.Address
		if !p.out {
			c.send(srv.ID, p)
		}
	}
	c.mu.Unlock()
	t := time.NewTimer(confirmTimeout)
	defer t.Stop()
	for {
		c.mu.Lock()
		if c.higher != 0 {
			higher := c.higher
			c.mu.Unlock()
			return fmt.Errorf("%w: a server is at term %d, past this leader's %d", ErrNotLeader, higher, c.term)
		}
		yes := 1
		for _, srv := range voters {
			if p := c.peers[srv.ID]; p.okGen >= gen {
				yes++
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if yes >= quorum {
			c.confirmed(at)
			return nil
		}
		select {
		case <-changed:
		case <-c.stopped:
			return fmt.Errorf("%w: leadership ended while confirming it", ErrNotLeader)
		case <-ctx.Done():
			return fmt.Errorf("%w: no quorum confirmed this leader in time (%v)", ErrNotLeader, ctx.Err())
		case <-t.C:
			return fmt.Errorf("%w: no quorum confirmed this leader within %v", ErrNotLeader, confirmTimeout)
		}
	}
}

// send starts a heartbeat to peer id; c.mu is held.
func (c *confirmer) send(id raft.ServerID, p *probe) {
	p.out = true
	p.sentAt = c.gen
	addr, gen := p.addr, c.gen
	go func() {
		req := raft.AppendEntriesRequest{
			RPCHeader: c.header,
			Term:      c.term,
			//lint:ignore SA1019 raft's own heartbeats still send it, for peers that predate RPCHeader.Addr
			Leader: c.header.Addr,
		}
		var resp raft.AppendEntriesResponse
		err := c.trans.AppendEntries(id, addr, &req, &resp)
		c.mu.Lock()
		defer c.mu.Unlock()
		p.out = false
		switch {
		case err != nil:
		case resp.Term > c.term:
			c.higher = max(c.higher, resp.Term)
		case resp.Success && resp.Term == c.term:
			p.okGen = max(p.okGen, gen)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		select {
		case <-c.stopped:
			return
		default:
		}
		// A read began while this one was out: it needs a newer one.
		// After an error (the peer is down, restarting or cut off) the
		// next is sent a little later, so a dead peer is not hammered.
		switch {
		case c.gen <= gen:
		case err == nil:
			c.send(id, p)
		default:
			p.out = true
			time.AfterFunc(probeRetry, func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				select {
				case <-c.stopped:
					p.out = false
				default:
					c.send(id, p)
				}
			})
		}
	}()
}
