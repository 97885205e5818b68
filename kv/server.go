package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/blocking"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// Config configures a Server. The zero value of every field but NodeID,
// DataDir and BindAddr means "the default".
type Config struct {
	// NodeID is this server's Raft ID; it must be stable across restarts.
	NodeID string
	// NodeName is the agent's node name, used for sessions created here.
	NodeName string
	// DataDir holds the Raft log (raft/wal, or raft/raft.db in data dirs of
	// earlier versions) and snapshots (raft/snapshots).
	DataDir string
	// BindAddr is the Raft (server RPC) TCP address, host:port; port 0 picks one.
	BindAddr string
	// AdvertiseAddr is the address other servers reach this one on;
	// empty means the bound address.
	AdvertiseAddr string
	// Bootstrap makes this server a one-server cluster when it has no
	// Raft state yet (-dev, -bootstrap-expect 1).
	Bootstrap bool

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one (default 8192); TrailingLogs how many entries
	// are kept behind a snapshot (default 10240); SnapshotInterval how
	// often the threshold is checked (default 30s).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration

	// Fast shortens Raft's timeouts for a single machine (-dev, tests).
	Fast bool

	// LogStore picks the Raft log of a new data dir, as Consul's
	// raft_logstore.backend does: LogStoreWAL (hashicorp/raft-wal, the
	// default: one fsync per write) or LogStoreBolt (two). A data dir
	// keeps the log it was made with.
	LogStore string

	// SessionTTLMin is the shortest session TTL accepted (default
	// SessionTTLMin, Consul's 10s); tests lower it to see expiry quickly.
	SessionTTLMin time.Duration

	// Transport replaces the TCP transport (tests use raft's in-memory one).
	Transport raft.Transport

	// TombstoneTTL is how long deleted keys keep their index for
	// blocking prefix queries before the leader reaps them (default 15m).
	TombstoneTTL time.Duration

	// MaxBlockingQueries bounds the blocking queries parked on this
	// server at once (default DefaultMaxBlockingQueries); one more is
	// refused with ErrTooManyQueries instead of growing without bound.
	MaxBlockingQueries int

	// DiskReserve is the free space the data dir's file system must
	// keep (default DefaultDiskReserve): below it writes are refused as
	// "disk full" before Raft meets a full disk, so the leader keeps
	// leading and answering reads.
	DiskReserve uint64

	// wrapLogStore, when set, wraps the Raft log store (tests inject
	// disk faults at that boundary with it).
	wrapLogStore func(raft.LogStore) raft.LogStore

	Logger *slog.Logger

	// OnCommit, when set, is told how long each Raft apply this server
	// led took from submit to applied (Consul's consul.raft.commitTime),
	// from the writing request's goroutine; it must not block.
	OnCommit func(time.Duration)
}

// DefaultConfig returns the defaults for a server with the given identity.
func DefaultConfig(nodeID, dataDir, bindAddr string) Config {
	return Config{
		NodeID:            nodeID,
		NodeName:          nodeID,
		DataDir:           dataDir,
		BindAddr:          bindAddr,
		SnapshotThreshold: 8192,
		TrailingLogs:      10240,
		SnapshotInterval:  30 * time.Second,
		TombstoneTTL:      15 * time.Minute,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig("", "", "")
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.MaxBlockingQueries == 0 {
		c.MaxBlockingQueries = DefaultMaxBlockingQueries
	}
	if c.DiskReserve == 0 {
		c.DiskReserve = DefaultDiskReserve
	}
	if c.SessionTTLMin == 0 {
		c.SessionTTLMin = SessionTTLMin
	}
	if c.NodeName == "" {
		c.NodeName = c.NodeID
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("kv: NodeID is empty; every server needs a stable Raft ID")
	}
	if c.DataDir == "" {
		return fmt.Errorf("kv: DataDir is empty; a server keeps its Raft log on disk (use -data-dir, or -dev for a temporary one)")
	}
	if c.Transport == nil && c.BindAddr == "" {
		return fmt.Errorf("kv: BindAddr is empty; a server needs a Raft address (-bind and -server-port)")
	}
	return nil
}

// Server is one Raft server with its state machine. It serves reads from
// its local state and writes through Raft; methods that need the leader
// return ErrNotLeader elsewhere. Safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	trans  raft.Transport
	stores *stores

	// ready is closed once this leader's barrier has applied every entry
	// of earlier terms: before that its state can lack acknowledged
	// writes (after a restart the log is replayed only up to the commit
	// index the new term establishes). A fresh, open channel replaces it
	// whenever leadership ends.
	ready atomic.Pointer[chan struct{}]
	// readyTerm is the term whose barrier closed ready. Leadership can
	// be lost and won back between two looks of Run (another leader
	// committing writes in the term between); ready then still stands
	// closed from the old term, and only the term tells.
	readyTerm atomic.Uint64
	// handedOver is when leadership was last handed over because of
	// this server's disk.
	handedOver struct {
		sync.Mutex
		at time.Time
	}

	// wasReady: this process has led with every earlier entry applied,
	// so its state holds everything committed up to then.
	wasReady atomic.Bool

	sessions *sessionTimers
	blocking blocking.Tracker // the blocking queries in flight
	parked   atomic.Int64     // the same, for MaxBlockingQueries

	// confirm proves leadership for reads (see confirmer); it is set
	// with ready and belongs to the term readyTerm, nil when not leading.
	confirm atomic.Pointer[confirmer]

	// lease is how long a default read trusts the confirmer's last
	// quorum (see leaseHolds). noLease is a term in which this server
	// started a leadership transfer: a transfer's target is elected at
	// once, without waiting out the heartbeat timeout the lease relies
	// on, so default reads of that term confirm every time.
	lease   time.Duration
	noLease atomic.Uint64
	disk    *diskGuard

	// leaderSeen is the Raft leader as Run last observed it, and a
	// channel closed (and replaced) when it changes.
	leaderSeen struct {
		sync.Mutex
		addr    string
		changed chan struct{}
	}

	// leadership is the signal LeaderWatch serves: whether Run last saw
	// this server lead, and a channel closed (and replaced) when that
	// changes.
	leadership struct {
		sync.Mutex
		leading bool
		changed chan struct{}
	}

	shutdownOnce sync.Once
	shutdownErr  error
	shutdownCh   chan struct{}
	doneCh       chan struct{}
}

// Open opens (or creates) the data dir, replays snapshots and log into
// the state machine and starts Raft. A data dir that cannot be read is an
// error that names the file and says what to do.
func Open(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("kv: create data dir %s: %w", raftDir, err)
	}
	st, err := openStores(raftDir, cfg.LogStore, cfg.Logger)
	if err != nil {
		return nil, err
	}
	disk := newDiskGuard(raftDir, cfg.DiskReserve, cfg.Logger)
	if cfg.wrapLogStore != nil {
		st.logs = cfg.wrapLogStore(st.logs)
	}
	st.logs = disk.logStore(st.logs)
	st.stable = disk.stableStore(st.stable)

	trans := cfg.Transport
	if trans == nil {
		trans, err = newTCPTransport(cfg.BindAddr, cfg.AdvertiseAddr, cfg.Logger)
		if err != nil {
			st.close()
			return nil, err
		}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.Logger = newHCLogger("raft", cfg.Logger)
	rc.NoSnapshotRestoreOnStart = false
	if cfg.Fast {
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
	}
	if err := raft.ValidateConfig(rc); err != nil {
		st.close()
		return nil, fmt.Errorf("kv: raft config: %w", err)
	}

	f := newFSM(cfg.Logger)
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("kv: read raft state in %s: %w", raftDir, err)
		}
		if !has {
			err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, trans, raft.Configuration{
				Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}},
			})
			if err != nil {
				st.close()
				return nil, fmt.Errorf("kv: bootstrap raft in %s: %w", raftDir, err)
			}
		}
	}
	if nt, ok := trans.(*raft.NetworkTransport); ok {
		trans = serialReplication{nt}
	}
	r, err := raft.NewRaft(rc, f, st.logs, st.stable, st.snaps, trans)
	if err != nil {
		st.close()
		if c, ok := trans.(interface{ Close() error }); ok {
			c.Close()
		}
		return nil, fmt.Errorf("kv: start raft from %s: %w; if the data dir is damaged, restore it from a backup or move it away to start empty", raftDir, err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		fsm:        f,
		raft:       r,
		trans:      trans,
		stores:     st,
		disk:       disk,
		lease:      rc.LeaderLeaseTimeout,
		shutdownCh: make(chan struct{}),
		doneCh:     make(chan struct{}),
	}
	s.sessions = newSessionTimers(s)
	s.resetReady()
	s.leadership.changed = make(chan struct{})
	s.leaderSeen.changed = make(chan struct{})
	disk.patient(s.shutdownCh)
	return s, nil
}

// Run performs the leader's duties (session TTLs, tombstone reaping)
// whenever this server leads, until ctx is done; then it shuts the server
// down. It returns nil on a clean stop.
func (s *Server) Run(ctx context.Context) error {
	defer s.Shutdown()
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(observer)
	defer s.raft.DeregisterObserver(observer)

	var (
		leading   bool
		leadTerm  uint64
		stopLead  context.CancelFunc
		leadDone  chan struct{}
		checkLead = func() {
			isLeader := s.raft.State() == raft.Leader
			term := s.raft.CurrentTerm()
			if isLeader && leading && term != leadTerm {
				// Lost and won back between two looks: the
				// new term needs its own barrier.
				stopLead()
				<-leadDone
				leading = false
			}
			if isLeader == leading {
				return
			}
			leading = isLeader
			leadTerm = term
			s.setLeading(isLeader)
			if isLeader {
				lctx, cancel := context.WithCancel(ctx)
				stopLead = cancel
				leadDone = make(chan struct{})
				go func() {
					defer close(leadDone)
					s.lead(lctx)
				}()
				return
			}
			stopLead()
			<-leadDone
		}
	)
	defer func() {
		if leading {
			stopLead()
			<-leadDone
			s.setLeading(false)
		}
	}()
	checkLead()
	// LeaderObservation fires on every leader change; re-reading the
	// state when it does is enough, and a periodic check covers an
	// observation dropped by a full channel.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.shutdownCh:
			return nil
		case <-obs:
		case <-tick.C:
		}
		checkLead()
		s.noteLeader()
	}
}

// lead runs while this server is the leader.
func (s *Server) lead(ctx context.Context) {
	s.log.Info("kv: became raft leader", "node", s.cfg.NodeID)
	defer s.log.Info("kv: lost raft leadership", "node", s.cfg.NodeID)
	defer s.resetReady()
	// A barrier makes every entry of earlier terms applied before the new
	// leader answers consistent reads or arms session timers. The term
	// is read before each try: a barrier that succeeds ran in that term
	// or a later one, and a later one only makes reads refuse (the
	// terms differ) until Run starts this again.
	var term uint64
	for {
		term = s.raft.CurrentTerm()
		err := s.raft.Barrier(10 * time.Second).Error()
		if err == nil {
			break
		}
		s.log.Warn("kv: leader barrier failed", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	c := newConfirmer(s.trans, raft.ServerID(s.cfg.NodeID), term)
	defer func() {
		s.confirm.Store(nil)
		c.stop()
	}()
	s.confirm.Store(c)
	s.readyTerm.Store(term)
	close(*s.ready.Load())
	s.wasReady.Store(true)
	s.sessions.start(ctx)
	defer s.sessions.stopAll()
	s.reapTombstones(ctx)
}

// Shutdown stops Raft and closes the stores. It is idempotent.
func (s *Server) Shutdown() error {
	s.shutdownOnce.Do(func() {
		close(s.shutdownCh)
		s.sessions.stopAll()
		err := s.raft.Shutdown().Error()
		if c, ok := s.trans.(interface{ Close() error }); ok {
			c.Close()
		}
		s.shutdownErr = errors.Join(err, s.stores.close())
		close(s.doneCh)
	})
	return s.shutdownErr
}

// Stopping is closed as soon as Shutdown starts.
func (s *Server) Stopping() <-chan struct{} { return s.shutdownCh }

// Done is closed once Shutdown has finished.
func (s *Server) Done() <-chan struct{} { return s.doneCh }

// Leave prepares this server to go: a leader hands leadership to the
// most up-to-date follower first (one round trip instead of an election
// timeout), so the cluster keeps taking writes; the new leader then
// removes this server once membership reports it left. A leader that
// cannot hand over removes itself, which also makes it step down.
func (s *Server) Leave() error {
	if s.raft.State() != raft.Leader {
		return nil
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	voters := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters <= 1 {
		return nil
	}
	s.noLease.Store(s.raft.CurrentTerm())
	if err := s.raft.LeadershipTransfer().Error(); err == nil {
		return nil
	} else {
		s.log.Warn("kv: leadership transfer before leaving failed; removing this server instead", "err", err)
	}
	return s.raft.RemoveServer(raft.ServerID(s.cfg.NodeID), 0, 0).Error()
}

// TransferLeadership hands leadership to the voter with the given ID and
// address, or to the most up-to-date one when id is empty (the operator's
// transfer-leader). Use it rather than Raft().LeadershipTransfer: default
// reads stop trusting the leader lease first (see leaseHolds).
func (s *Server) TransferLeadership(id, addr string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	s.noLease.Store(s.raft.CurrentTerm())
	if id == "" {
		return s.raft.LeadershipTransfer().Error()
	}
	return s.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error()
}

// Raft exposes the Raft node to the agent for cluster management.
func (s *Server) Raft() *raft.Raft { return s.raft }

// NodeID is the server's Raft ID.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// Addr is the Raft address other servers reach this one on.
func (s *Server) Addr() string { return string(s.trans.LocalAddr()) }

// LeaderWatch is leadership as a watchable signal: it reports whether
// this server leads, as Run last saw it, and adds to ws a channel that
// closes at the next change (leadership gained or lost, or Run ending
// while leading). Callers that act on leadership (agent/servers) wait on
// it with the rest of their watch set instead of polling IsLeader. Run
// notices a change from Raft's leader observations, at once.
func (s *Server) LeaderWatch(ws memdb.WatchSet) bool {
	s.leadership.Lock()
	defer s.leadership.Unlock()
	ws.Add(s.leadership.changed)
	return s.leadership.leading
}

// setLeading records a change of leadership and wakes the watchers.
func (s *Server) setLeading(leading bool) {
	s.leadership.Lock()
	defer s.leadership.Unlock()
	if s.leadership.leading == leading {
		return
	}
	s.leadership.leading = leading
	close(s.leadership.changed)
	s.leadership.changed = make(chan struct{})
}

// noteLeader records the leader Raft names now and wakes LeaderChanged's
// waiters when it differs from the last one seen.
func (s *Server) noteLeader() {
	addr := s.Leader()
	s.leaderSeen.Lock()
	defer s.leaderSeen.Unlock()
	if addr == s.leaderSeen.addr {
		return
	}
	s.leaderSeen.addr = addr
	close(s.leaderSeen.changed)
	s.leaderSeen.changed = make(chan struct{})
}

// LeaderChanged returns a channel that closes when the leader this
// server knows changes (a new one elected, or the old one lost), as Run
// observes it. Requests held while there is no leader wait on it, and a
// request forwarded to a leader that has been replaced stops waiting.
func (s *Server) LeaderChanged() <-chan struct{} {
	s.leaderSeen.Lock()
	defer s.leaderSeen.Unlock()
	return s.leaderSeen.changed
}

// LeaderContact is when this server last heard from the leader (zero
// when never, or when it leads).
func (s *Server) LeaderContact() time.Time { return s.raft.LastContact() }

// AnswersLocally reports whether this server takes KV requests itself
// rather than forwarding them to a leader: it leads, or it is the only
// voter and its disk failed (it cannot lead, yet its memory holds every
// committed entry: reads answer from it, writes are refused naming the
// disk condition).
func (s *Server) AnswersLocally() bool { return s.IsLeader() || s.soleVoterOnBadDisk() }

// IsLeader reports whether this server currently leads.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's Raft address, or "" when there is none.
func (s *Server) Leader() string {
	addr, _ := s.raft.LeaderWithID()
	return string(addr)
}

// Peers returns the Raft addresses of the voting servers.
func (s *Server) Peers() ([]string, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var peers []string
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			peers = append(peers, string(srv.Address))
		}
	}
	return peers, nil
}

// FirstLogIndex is the oldest entry still in the Raft log; it moves up
// when a snapshot lets the log be compacted.
func (s *Server) FirstLogIndex() (uint64, error) { return s.stores.logs.FirstIndex() }

// Stats returns Raft's counters (for /v1/agent/self).
func (s *Server) Stats() map[string]string { return s.raft.Stats() }

// State returns the current state store. A restore from snapshot replaces
// it; readers that hold the old one are woken through its abandon channel.
func (s *Server) State() *State { return s.fsm.state() }

// meta fills the leader facts of a query answer.
func (s *Server) meta(m *QueryMeta) {
	if s.raft.State() == raft.Leader {
		m.LastContact = 0
		m.KnownLeader = true
		return
	}
	m.KnownLeader = s.Leader() != ""
	if last := s.raft.LastContact(); !last.IsZero() {
		m.LastContact = time.Since(last)
	}
}

func (s *Server) resetReady() {
	ch := make(chan struct{})
	s.ready.Store(&ch)
}

// readyTimeout bounds how long a read waits for a new leader to catch up.
const readyTimeout = 5 * time.Second

// checkRead decides whether this server may answer a read. Reads on the
// leader (all but stale ones) wait until its barrier has applied earlier
// entries, so a leader never answers from a state behind what it acked.
func (s *Server) checkRead(ctx context.Context, q QueryOptions) error {
	select {
	case <-s.shutdownCh:
		return ErrShutdown
	default:
	}
	if q.Stale {
		return nil
	}
	if s.raft.State() != raft.Leader {
		if s.soleVoterOnBadDisk() {
			// A lone server whose disk fails cannot lead (a new
			// term's first entry must be stored), yet nothing can
			// have been committed anywhere but here: its memory is
			// the whole committed state, so reads keep answering.
			return nil
		}
		if s.Leader() == "" {
			return ErrNoLeader
		}
		return ErrNotLeader
	}
	ready := *s.ready.Load()
	select {
	case <-ready:
	default:
		if q.AtOnce {
			return ErrWouldWait
		}
		if err := s.waitReady(ctx, ready); err != nil {
			return err
		}
	}
	// The barrier that closed ready must be this term's: leadership
	// lost and won back leaves ready closed from the old term while
	// entries another leader committed in between may not be applied
	// here yet. Run starts the new term's barrier; the read is retried.
	c := s.confirm.Load()
	term := s.raft.CurrentTerm()
	if c == nil || s.readyTerm.Load() != term || c.term != term {
		return fmt.Errorf("%w: leadership changed while answering; retry", ErrNotLeader)
	}
	// ?consistent always confirms leadership with a quorum; a default
	// read does when no quorum has confirmed it within the leader lease,
	// so a leader that was paused or cut off (and may have been
	// replaced meanwhile) does not answer from its old state.
	if q.Consistent || !s.leaseHolds(c) {
		if q.AtOnce {
			return ErrWouldWait
		}
		f := s.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return fmt.Errorf("%w: read the configuration: %v", ErrNotLeader, err)
		}
		if err := c.confirm(ctx, f.Configuration()); err != nil {
			return err
		}
	}
	return nil
}

// leaseHolds reports whether a quorum confirmed this leader within the
// leader lease, in c's term, so that a default read may answer without
// asking again. Followers wait a heartbeat timeout (longer than the
// lease) after they last heard from this leader before they elect
// another, so no other leader can have committed anything yet; a
// leadership transfer skips that wait, so a term with one has no lease.
func (s *Server) leaseHolds(c *confirmer) bool {
	if s.noLease.Load() == c.term {
		return false
	}
	return c.sinceQuorum() <= s.lease
}

// waitReady waits for a new leader's barrier, bounded by readyTimeout.
func (s *Server) waitReady(ctx context.Context, ready <-chan struct{}) error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdownCh:
		return ErrShutdown
	case <-t.C:
		return fmt.Errorf("%w: the new leader has not applied earlier entries within %v; retry", ErrNoLeader, readyTimeout)
	}
	return nil
}

// blockingQuery runs fn until the index it reports exceeds q.MinIndex or
// the wait runs out, waking on the store's watch channels: Consul's
// blocking-query contract (agent/consul/rpc.go blockingQuery), with the
// rules package blocking owns for every store.
func (s *Server) blockingQuery(ctx context.Context, q QueryOptions, m *QueryMeta, fn func(ws memdb.WatchSet, st *State) (uint64, error)) error {
	if err := s.checkRead(ctx, q); err != nil {
		return err
	}
	if q.MinIndex > 0 {
		limit := int64(s.cfg.MaxBlockingQueries)
		if n := s.parked.Add(1); n > limit {
			s.parked.Add(-1)
			return fmt.Errorf("%w: this server already holds %d blocking queries (the limit); retry later, spread watchers over more agents, or raise limits.max_blocking_queries", ErrTooManyQueries, limit)
		}
		defer s.parked.Add(-1)
	}
	woken := false
	began := s.State()
	abandoned := func() bool { return s.State() != began }
	idx, err := s.blocking.Run(ctx, blocking.Query{MinIndex: q.MinIndex, Wait: q.MaxWait, Abandoned: abandoned}, func(ws memdb.WatchSet) (uint64, error) {
		if woken {
			select {
			case <-s.shutdownCh:
				return 0, ErrShutdown
			default:
			}
		}
		woken = true
		st := s.State()
		ws.Add(st.AbandonCh())
		ws.Add(s.shutdownCh)
		return fn(ws, st)
	})
	if err != nil {
		return err
	}
	m.Index = idx
	s.meta(m)
	return nil
}

// BlockingQueries is the number of blocking queries this server is
// answering now (for metrics); it adds to ws a channel that closes when
// the number changes.
func (s *Server) BlockingQueries(ws memdb.WatchSet) int { return s.blocking.InFlight(ws) }

// Get reads one key. A missing key is (meta, nil, nil) with the KV table's
// index, as Consul answers a 404.
func (s *Server) Get(ctx context.Context, q QueryOptions, key string) (QueryMeta, *Entry, error) {
	var (
		m QueryMeta
		e *Entry
	)
	err := s.blockingQuery(ctx, q, &m, func(ws memdb.WatchSet, st *State) (uint64, error) {
		idx, ent, err := st.Get(ws, key)
		e = ent
		return idx, err
	})
	return m, e, err
}

// List reads every entry under prefix, sorted by key. The slice may be
// shared with other readers (see State.List): callers must not change it.
func (s *Server) List(ctx context.Context, q QueryOptions, prefix string) (QueryMeta, []*Entry, error) {
	var (
		m  QueryMeta
		es []*Entry
	)
	err := s.blockingQuery(ctx, q, &m, func(ws memdb.WatchSet, st *State) (uint64, error) {
		idx, ents, err := st.List(ws, prefix)
		es = ents
		return idx, err
	})
	return m, es, err
}

// Keys lists the keys under prefix; with a separator, keys are cut after
// the first separator past the prefix and deduplicated (Consul's ?keys&separator=).
func (s *Server) Keys(ctx context.Context, q QueryOptions, prefix, separator string) (QueryMeta, []string, error) {
	var (
		m    QueryMeta
		keys []string
	)
	err := s.blockingQuery(ctx, q, &m, func(ws memdb.WatchSet, st *State) (uint64, error) {
		idx, ks, err := st.Keys(ws, prefix, separator)
		keys = ks
		return idx, err
	})
	return m, keys, err
}

// Apply performs one KV write (set, cas, lock, unlock, delete, delete-cas,
// delete-tree) through Raft and reports whether it took effect: false for a
// failed CAS, a lock held by another session or inside its lock-delay, or
// an unlock by a session that does not hold the lock.
func (s *Server) Apply(ctx context.Context, op Op) (bool, error) {
	if err := validateWrite(op); err != nil {
		return false, err
	}
	if err := ValidateKey(op.Key); err != nil {
		return false, err
	}
	if op.Verb == VerbLock {
		if s.fsm.lockDelay.blocked(op.Key, time.Now()) {
			return false, nil
		}
	}
	res, err := s.raftApply(ctx, command{Type: cmdKV, Op: &op})
	if err != nil {
		return false, err
	}
	switch r := res.(type) {
	case bool:
		return r, nil
	case error:
		return false, r
	}
	return false, fmt.Errorf("kv: unexpected apply result %T", res)
}

// Txn runs ops all or nothing. When any op fails, nothing is written and
// the failures come back as TxnErrors (results nil). A transaction of
// reads only is answered from local state without a Raft round.
func (s *Server) Txn(ctx context.Context, q QueryOptions, ops []Op) (QueryMeta, []TxnResult, []TxnError, error) {
	var m QueryMeta
	if len(ops) == 0 {
		return m, nil, nil, fmt.Errorf("%w: the transaction has no operations", ErrInvalidRequest)
	}
	readOnly := true
	for i, op := range ops {
		if !op.Verb.Valid() {
			return m, nil, nil, fmt.Errorf("%w: operation %d: unknown KV verb %q", ErrInvalidRequest, i, op.Verb)
		}
		if op.Key == "" && op.Verb != VerbDeleteTree && op.Verb != VerbGetTree {
			return m, nil, nil, fmt.Errorf("%w: operation %d (%s): key is empty", ErrInvalidRequest, i, op.Verb)
		}
		if err := ValidateKey(op.Key); err != nil {
			return m, nil, nil, fmt.Errorf("operation %d (%s): %w", i, op.Verb, err)
		}
		if !op.Verb.IsRead() {
			readOnly = false
		}
	}
	if readOnly {
		if err := s.checkRead(ctx, q); err != nil {
			return m, nil, nil, err
		}
		st := s.State()
		idx, results, errs := st.readTxn(ops)
		m.Index = max(idx, 1)
		s.meta(&m)
		return m, results, errs, nil
	}
	// A lock inside its key's lock-delay is refused before Raft, as a
	// single lock is (Apply): the delay is the leader's own clock, so it
	// cannot be decided in the state machine.
	now := time.Now()
	var delayed []TxnError
	for i, op := range ops {
		if op.Verb == VerbLock && s.fsm.lockDelay.blocked(op.Key, now) {
			delayed = append(delayed, TxnError{OpIndex: i, What: fmt.Sprintf("failed to lock key %q due to lock delay", op.Key)})
		}
	}
	if len(delayed) > 0 {
		s.meta(&m)
		return m, nil, delayed, nil
	}
	if TxnReadsValues(ops) {
		ctx = context.WithValue(ctx, writeIDKey{}, "") // applied once, not recorded
	}
	res, err := s.raftApply(ctx, command{Type: cmdTxn, Ops: ops})
	if err != nil {
		return m, nil, nil, err
	}
	r, ok := res.(txnResponse)
	if !ok {
		return m, nil, nil, fmt.Errorf("kv: unexpected txn result %T", res)
	}
	m.Index = r.Index
	s.meta(&m)
	return m, r.Results, r.Errors, nil
}

// raftApply submits a command on the leader and returns the FSM's result.
// Its errors tell whether the command may have been applied: ErrNotLeader
// and ErrNoLeader (and a DiskError) promise it was not, ErrOutcomeUnknown
// says it may have been. The command carries ctx's write ID, so sending
// it again is safe either way.
func (s *Server) raftApply(ctx context.Context, c command) (any, error) {
	select {
	case <-s.shutdownCh:
		return nil, ErrShutdown
	default:
	}
	if s.raft.State() != raft.Leader {
		if s.disk.Condition() != nil {
			// Not leading because of its own disk (it steps down
			// when it cannot store an entry): say that.
			if err := s.disk.refusal(); err != nil {
				return nil, err
			}
		}
		if s.Leader() == "" {
			return nil, ErrNoLeader
		}
		return nil, ErrNotLeader
	}
	if err := s.disk.check(); err != nil {
		if s.handOver() {
			return nil, fmt.Errorf("%w: %v; leadership is being handed to a server whose disk takes writes (send the write again)", ErrNotLeader, err)
		}
		return nil, err
	}
	c.WriteID = WriteID(ctx)
	data, err := c.encode()
	if err != nil {
		return nil, err
	}
	// The timeout bounds only the hand-over to Raft's loop; once
	// taken, the entry is decided by commit or loss of leadership.
	enqueue := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		enqueue = min(enqueue, max(time.Until(dl), time.Millisecond))
	}
	c0 := s.confirm.Load()
	submitted := time.Now()
	f := s.raft.Apply(data, enqueue)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the entry was handed to Raft but not committed when the request's deadline ran out (%v)", ErrOutcomeUnknown, ctx.Err())
	}
	if err != nil {
		var de *DiskError
		switch {
		case errors.As(err, &de):
			// The leader could not store the entry, so it never
			// replicated it: not applied.
			return nil, err
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, fmt.Errorf("%w: %v (the write was not applied)", ErrNotLeader, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: raft did not take the write within %v (it was not applied)", ErrNotLeader, enqueue)
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("%w: leadership was lost after the entry was appended", ErrOutcomeUnknown)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("%w: the server shut down with the entry in flight", ErrOutcomeUnknown)
		}
		return nil, err
	}
	if c0 != nil {
		// Committed: a quorum took an entry of this leader's after
		// it was submitted (in c0's term, or c0 is no longer used).
		c0.confirmed(submitted)
	}
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit(time.Since(submitted))
	}
	return f.Response(), nil
}

// serialReplication is a NetworkTransport without pipelined replication.
// hashicorp/raft's pipeline (v1.7.3) can deadlock: once the leader's
// reader of pipelined answers stops (an error, a newer term, shutdown),
// the transport's goroutine blocks handing it the next answer, the
// in-flight window fills, and the goroutine replicating to that follower
// blocks for ever sending more. Replication to that follower then stops
// while its heartbeats go on (hashicorp/raft#612), and Shutdown waits for
// that goroutine for ever (TestFullDiskLeaderHandsOver hung in its
// cleanup this way). Without a pipeline raft sends one AppendEntries at a
// time to each follower, each carrying up to MaxAppendEntries entries.
type serialReplication struct{ *raft.NetworkTransport }

func (serialReplication) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// newTCPTransport binds the Raft transport, resolving the advertised
// address so a 0.0.0.0 bind is advertised as a reachable one.
func newTCPTransport(bind, advertise string, log *slog.Logger) (raft.Transport, error) {
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("kv: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	t, err := raft.NewTCPTransportWithLogger(bind, adv, 3, 10*time.Second, newHCLogger("raft-net", log))
	if err != nil {
		return nil, fmt.Errorf("kv: bind server RPC address %s: %w (is another agent using -server-port?)", bind, err)
	}
	return t, nil
}

// DiskCondition is the disk fault this server is in (disk full,
// read-only, I/O error), nil when its disk is fine. /v1/agent/self and
// the agent's health show it.
func (s *Server) DiskCondition() *DiskCondition { return s.disk.Condition() }

// soleVoterOnBadDisk reports whether this server is the only voter, has
// led since it started (its state holds every committed entry), and is
// in a disk condition.
func (s *Server) soleVoterOnBadDisk() bool {
	if !s.wasReady.Load() || s.disk.Condition() == nil {
		return false
	}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
			self = self || srv.ID == raft.ServerID(s.cfg.NodeID)
		}
	}
	return voters == 1 && self
}

// handOverEvery spaces leadership hand-overs for a bad disk.
const handOverEvery = 10 * time.Second

// handOver starts a leadership transfer when this leader's disk refuses
// writes and other voters may take them: the cluster keeps taking writes
// on a majority of good disks. It tries at most every handOverEvery
// (every server's disk may be full) and reports whether a transfer
// started.
func (s *Server) handOver() bool {
	c := s.disk.Condition()
	if c == nil {
		return false
	}
	s.handedOver.Lock()
	defer s.handedOver.Unlock()
	if time.Since(s.handedOver.at) < handOverEvery {
		return false
	}
	s.handedOver.at = time.Now()
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return false
	}
	s.log.Warn("kv: this leader's disk refuses writes; handing leadership over", "kind", c.Kind)
	s.noLease.Store(s.raft.CurrentTerm())
	go func() {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("kv: leadership transfer after a disk condition failed", "err", err)
		}
	}()
	return true
}
