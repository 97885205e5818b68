// Package servers keeps the Raft group in step with cluster membership:
// it bootstraps the group once -bootstrap-expect servers are seen, and on
// the leader adds joining servers as voters, removes servers that left,
// removes failed servers after a timeout only while quorum is kept, and
// ends the sessions of nodes that failed or left (Consul's serfHealth).
//
// It reads membership through Members and acts through Raft, both small
// interfaces declared here; it must not import dns, template or registrator.
package servers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// Member is a cluster member as this package needs it.
type Member struct {
	Name     string
	ID       string // the node's stable ID, its Raft server ID
	RaftAddr string // servers only
	Server   bool
	Status   Status
}

// Status is a member's health: membership's own type, which owns what
// the statuses are.
type Status = membership.Status

// The statuses membership reports.
const (
	StatusAlive   = membership.StatusAlive
	StatusLeaving = membership.StatusLeaving
	StatusLeft    = membership.StatusLeft
	StatusFailed  = membership.StatusFailed
)

// Members is the membership view. Safe for concurrent use.
type Members interface {
	// Members returns every known member and adds to ws a channel that
	// closes on the next change.
	Members(ws memdb.WatchSet) (uint64, []Member)
}

// Raft is what this package does to the Raft group: *kv.Server.
type Raft interface {
	NodeID() string
	IsLeader() bool
	// LeaderWatch reports whether this server leads and adds to ws a
	// channel that closes when that changes (kv.Server.LeaderWatch).
	LeaderWatch(ws memdb.WatchSet) bool
	HasState() bool
	BootstrapCluster([]kv.Peer) error
	Configuration() ([]kv.Peer, error)
	AddVoter(id, addr string) error
	RemoveServer(id string) error
	InvalidateNodeSessions(ctx context.Context, node string) error
}

// HasStateFunc asks a server whether it already belongs to a Raft group,
// so a late server never bootstraps a second cluster.
type HasStateFunc func(ctx context.Context, raftAddr string) (bool, error)

// Config configures a Manager.
type Config struct {
	// BootstrapExpect is how many servers form the first group; 0 means
	// this server never bootstraps and waits to be added.
	BootstrapExpect int
	// FailedServerTimeout is how long a failed server stays a voter
	// before the leader removes it (if quorum allows). Default 72h,
	// Consul's reconnect_timeout.
	FailedServerTimeout time.Duration
	// ReconcileInterval is how long the manager waits before it retries
	// a step that failed (a voter not added, a server that could not be
	// asked for its state); default 1s. Nothing is polled: the manager
	// wakes on membership and leadership changes, and when a failed
	// server's FailedServerTimeout runs out.
	ReconcileInterval time.Duration
	Logger            *slog.Logger
}

// Manager runs the reconciliation.
type Manager struct {
	cfg      Config
	members  Members
	raft     Raft
	hasState HasStateFunc
	log      *slog.Logger

	failedSince map[string]time.Time // server ID -> first seen failed
	ended       map[string]Status    // node -> status whose sessions were ended
	// recheck is when the current step wants to run again without a
	// change to wake it (a retry, a timeout running out); zero for never.
	recheck time.Time
}

// New returns a Manager; it does nothing until Run.
func New(cfg Config, members Members, r Raft, hasState HasStateFunc) (*Manager, error) {
	if cfg.BootstrapExpect < 0 {
		return nil, fmt.Errorf("servers: -bootstrap-expect=%d is negative; use the number of servers (3 or 5)", cfg.BootstrapExpect)
	}
	if cfg.FailedServerTimeout == 0 {
		cfg.FailedServerTimeout = 72 * time.Hour
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, members: members, raft: r, hasState: hasState, log: cfg.Logger,
		failedSince: map[string]time.Time{}, ended: map[string]Status{}}, nil
}

// Run reconciles on every membership change and every change of this
// server's leadership (a new leader reconciles at once), when a failed
// server's timeout runs out, and ReconcileInterval after a step that
// failed, until ctx ends. It returns nil on a clean stop.
func (m *Manager) Run(ctx context.Context) error {
	for {
		ws := memdb.NewWatchSet()
		_, members := m.members.Members(ws)
		m.raft.LeaderWatch(ws)
		next := m.step(ctx, members, time.Now())

		wctx, cancel := ctx, context.CancelFunc(func() {})
		if !next.IsZero() {
			wctx, cancel = context.WithDeadline(ctx, next)
		}
		ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// step reconciles once with members as of now and returns when it wants
// to run again if nothing changes before then (zero: not until something
// does).
func (m *Manager) step(ctx context.Context, members []Member, now time.Time) time.Time {
	m.recheck = time.Time{}
	switch {
	case !m.raft.HasState():
		m.maybeBootstrap(ctx, members, now)
	case !m.raft.IsLeader():
		clear(m.failedSince)
	default:
		m.reconcileRaft(members, now)
		m.endSessions(ctx, members, now)
	}
	return m.recheck
}

// recheckAt asks for the next step no later than t.
func (m *Manager) recheckAt(t time.Time) {
	if m.recheck.IsZero() || t.Before(m.recheck) {
		m.recheck = t
	}
}

// retry asks for the next step after ReconcileInterval: something failed
// that may work then.
func (m *Manager) retry(now time.Time) { m.recheckAt(now.Add(m.cfg.ReconcileInterval)) }

func (m *Manager) maybeBootstrap(ctx context.Context, members []Member, now time.Time) {
	if m.cfg.BootstrapExpect == 0 {
		return
	}
	var peers []kv.Peer
	for _, mem := range members {
		if mem.Server && mem.Status == StatusAlive && mem.RaftAddr != "" {
			peers = append(peers, kv.Peer{ID: mem.ID, Address: mem.RaftAddr})
		}
	}
	if len(peers) < m.cfg.BootstrapExpect {
		return
	}
	if len(peers) > m.cfg.BootstrapExpect {
		m.log.Warn("servers: more servers alive than -bootstrap-expect; waiting for an existing leader to add this one",
			"expect", m.cfg.BootstrapExpect, "seen", len(peers))
	}
	// Never bootstrap next to servers that already form a group.
	for _, p := range peers {
		if p.ID == m.raft.NodeID() || m.hasState == nil {
			continue
		}
		has, err := m.hasState(ctx, p.Address)
		if err != nil {
			m.log.Info("servers: cannot ask server for its raft state yet; bootstrap waits", "server", p.Address, "err", err)
			m.retry(now)
			return
		}
		if has {
			m.log.Info("servers: found an existing raft group; waiting to be added to it", "server", p.Address)
			return
		}
	}
	if len(peers) != m.cfg.BootstrapExpect {
		return
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	if err := m.raft.BootstrapCluster(peers); err != nil {
		m.log.Error("servers: bootstrap", "err", err)
		m.retry(now)
		return
	}
	m.log.Info("servers: bootstrapped raft group", "servers", len(peers))
}

func (m *Manager) reconcileRaft(members []Member, now time.Time) {
	cfg, err := m.raft.Configuration()
	if err != nil {
		m.log.Warn("servers: read raft configuration", "err", err)
		m.retry(now)
		return
	}
	inConfig := map[string]kv.Peer{}
	for _, p := range cfg {
		inConfig[p.ID] = p
	}
	byID := map[string]Member{}
	for _, mem := range members {
		if mem.Server && mem.ID != "" {
			byID[mem.ID] = mem
		}
	}
	for _, mem := range byID {
		if mem.ID == m.raft.NodeID() {
			continue
		}
		p, known := inConfig[mem.ID]
		switch mem.Status {
		case StatusAlive:
			delete(m.failedSince, mem.ID)
			if !known || p.Address != mem.RaftAddr || !p.Voter {
				if err := m.raft.AddVoter(mem.ID, mem.RaftAddr); err != nil {
					m.log.Warn("servers: add voter", "node", mem.Name, "err", err)
					m.retry(now)
				} else {
					m.log.Info("servers: added voter", "node", mem.Name, "addr", mem.RaftAddr)
				}
			}
		case StatusLeft:
			if known {
				m.remove(mem, "left", now)
			}
		case StatusFailed:
			if !known {
				continue
			}
			since, ok := m.failedSince[mem.ID]
			if !ok {
				since = now
				m.failedSince[mem.ID] = now
			}
			if now.Sub(since) < m.cfg.FailedServerTimeout {
				m.recheckAt(since.Add(m.cfg.FailedServerTimeout))
				continue
			}
			if !keepsQuorum(cfg, byID, mem.ID) {
				m.log.Warn("servers: failed server kept: removing it would lose quorum", "node", mem.Name)
				continue
			}
			m.remove(mem, "failed for "+now.Sub(since).Round(time.Second).String(), now)
		}
	}
}

// keepsQuorum reports whether the voters still alive after removing id
// are a majority of the configuration without id.
func keepsQuorum(cfg []kv.Peer, byID map[string]Member, id string) bool {
	voters, alive := 0, 0
	for _, p := range cfg {
		if !p.Voter || p.ID == id {
			continue
		}
		voters++
		if mem, ok := byID[p.ID]; !ok || mem.Status == StatusAlive {
			// Unknown to membership: count as alive (it may be us).
			alive++
		}
	}
	return voters > 0 && alive >= voters/2+1
}

func (m *Manager) remove(mem Member, why string, now time.Time) {
	if err := m.raft.RemoveServer(mem.ID); err != nil {
		m.log.Warn("servers: remove server", "node", mem.Name, "err", err)
		m.retry(now)
		return
	}
	delete(m.failedSince, mem.ID)
	m.log.Info("servers: removed server from raft", "node", mem.Name, "reason", why)
}

// endSessions invalidates the sessions of nodes that failed or left, once
// per such transition, as Consul does when serfHealth goes critical.
func (m *Manager) endSessions(ctx context.Context, members []Member, now time.Time) {
	for _, mem := range members {
		switch mem.Status {
		case StatusFailed, StatusLeft:
			if m.ended[mem.Name] == mem.Status {
				continue
			}
			if err := m.raft.InvalidateNodeSessions(ctx, mem.Name); err != nil {
				m.log.Warn("servers: end sessions of node", "node", mem.Name, "status", mem.Status, "err", err)
				m.retry(now)
				continue
			}
			m.ended[mem.Name] = mem.Status
		default:
			delete(m.ended, mem.Name)
		}
	}
}
