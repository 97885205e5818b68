package membership

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Status is a member's state, in the words of `consul members`.
type Status string

// The statuses.
const (
	// StatusAlive: the member answers probes.
	StatusAlive Status = "alive"
	// StatusLeaving: the member announced that it is leaving (Leave).
	StatusLeaving Status = "leaving"
	// StatusLeft: the member left gracefully, or was forced out
	// (ForceLeave) after failing.
	StatusLeft Status = "left"
	// StatusFailed: the member stopped answering without leaving.
	StatusFailed Status = "failed"
)

// Member is one agent of the cluster as this agent sees it.
type Member struct {
	Name   string
	Addr   netip.Addr // gossip address
	Port   int        // gossip port
	Status Status
	Meta   Meta // empty when the member's meta could not be read (logged)
}

// AddrPort is the member's gossip address, the form Join takes.
func (m Member) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(m.Addr, uint16(m.Port))
}

// table is this agent's view of the cluster: every member it has heard of,
// failed and left ones included until they are reaped. memberlist forgets
// dead members after GossipToTheDeadTime (30 s); this table does not.
//
// It is written by memberlist's delegates (which hold memberlist's node
// lock, so the table never calls memberlist) and by ForceLeave and the
// reaper. Every change bumps index and closes watch.
type table struct {
	mu      sync.Mutex
	index   uint64
	watch   chan struct{}
	members map[string]*entry
	self    string
	reapTTL time.Duration
	kick    chan struct{} // wakes the reaper when a member goes down
}

type entry struct {
	Member
	reapAt time.Time // zero while alive or leaving
}

func newTable(self string, reapTTL time.Duration) *table {
	return &table{
		watch:   make(chan struct{}),
		members: make(map[string]*entry),
		self:    self,
		reapTTL: reapTTL,
		kick:    make(chan struct{}, 1),
	}
}

// changedLocked records a change: the next index, and wakes watchers.
func (t *table) changedLocked() {
	t.index++
	close(t.watch)
	t.watch = make(chan struct{})
}

// set records mem as the latest word on its name. It returns the previous
// status ("" if new) and whether anything changed.
func (t *table) set(mem Member, now time.Time) (old Status, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[mem.Name]
	if ok {
		old = e.Status
		if e.Member == mem {
			return old, false
		}
	} else {
		e = &entry{}
		t.members[mem.Name] = e
	}
	e.Member = mem
	t.updateReapLocked(e, old, now)
	t.changedLocked()
	return old, true
}

// setStatus changes only the status of a known member, when it is one of
// from. It reports whether it did.
func (t *table) setStatus(name string, to Status, now time.Time, from ...Status) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[name]
	if !ok || e.Status == to {
		return false
	}
	for _, f := range from {
		if e.Status == f {
			old := e.Status
			e.Status = to
			t.updateReapLocked(e, old, now)
			t.changedLocked()
			return true
		}
	}
	return false
}

func (t *table) updateReapLocked(e *entry, old Status, now time.Time) {
	down := e.Status == StatusFailed || e.Status == StatusLeft
	switch {
	case !down:
		e.reapAt = time.Time{}
	case e.Name == t.self:
		// Never reap ourselves: LocalMember must keep working.
	case e.reapAt.IsZero() || old != e.Status:
		e.reapAt = now.Add(t.reapTTL)
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// expire makes a failed or left member due for reaping now (Consul's
// force-leave -prune), reporting whether it was one.
func (t *table) expire(name string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[name]
	if !ok || name == t.self || e.Status != StatusFailed && e.Status != StatusLeft {
		return false
	}
	e.reapAt = now
	select {
	case t.kick <- struct{}{}:
	default:
	}
	return true
}

// reap drops the members whose time is up, returning them and the next
// time one will be due (zero if none).
func (t *table) reap(now time.Time) (reaped []Member, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, e := range t.members {
		if e.reapAt.IsZero() {
			continue
		}
		if !now.Before(e.reapAt) {
			delete(t.members, name)
			reaped = append(reaped, e.Member)
			continue
		}
		if next.IsZero() || e.reapAt.Before(next) {
			next = e.reapAt
		}
	}
	if len(reaped) > 0 {
		t.changedLocked()
	}
	return reaped, next
}

func (t *table) get(name string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[name]
	if !ok {
		return Member{}, false
	}
	return e.Member, true
}

// list returns the members sorted by name, and adds the current watch
// channel to ws.
func (t *table) list(ws memdb.WatchSet) (uint64, []Member) {
	t.mu.Lock()
	out := make([]Member, 0, len(t.members))
	for _, e := range t.members {
		out = append(out, e.Member)
	}
	index := t.index
	if ws != nil {
		ws.Add(t.watch)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return index, out
}

func (t *table) numAlive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.members {
		if e.Status == StatusAlive || e.Status == StatusLeaving {
			n++
		}
	}
	return n
}
