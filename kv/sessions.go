package kv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// Session limits, Consul's (agent/structs: SessionTTLMin/Max, maxLockDelay).
const (
	SessionTTLMin = 10 * time.Second
	SessionTTLMax = 24 * time.Hour
	MaxLockDelay  = 60 * time.Second
	// ttlMultiplier: a session expires between TTL and 2×TTL after its
	// last renewal, as in Consul, so clients renewing at TTL/2 are safe.
	ttlMultiplier = 2
)

// NodeHealthCheck is the check every session depends on by default: the
// node's membership health (Consul's serfHealth).
const NodeHealthCheck = "serfHealth"

// CreateSession validates sess, fills Consul's defaults (ID, Behavior
// release, LockDelay 15s, NodeChecks [serfHealth]) and creates it through
// Raft. It returns the new session's ID.
func (s *Server) CreateSession(ctx context.Context, sess Session) (string, error) {
	if sess.Node == "" {
		sess.Node = s.cfg.NodeName
	}
	if err := normalizeSession(&sess, s.cfg.SessionTTLMin); err != nil {
		return "", err
	}
	sess.ID = uuid.NewString()
	res, err := s.raftApply(ctx, command{Type: cmdSessionCreate, Session: &sess})
	if err != nil {
		return "", err
	}
	// A create sent again (same write ID) answers the session the first
	// one made, not this attempt's ID.
	if id, ok := res.(string); ok && id != "" {
		sess.ID = id
	}
	if err, ok := res.(error); ok {
		return "", err
	}
	s.sessions.reset(sess.ID, sess.TTL)
	return sess.ID, nil
}

// normalizeSession checks a session request and fills defaults.
func normalizeSession(sess *Session, ttlMin time.Duration) error {
	switch sess.Behavior {
	case "":
		sess.Behavior = BehaviorRelease
	case BehaviorRelease, BehaviorDelete:
	default:
		return fmt.Errorf("%w: invalid Behavior %q; use %q or %q", ErrInvalidRequest, sess.Behavior, BehaviorRelease, BehaviorDelete)
	}
	if sess.TTL != "" {
		ttl, err := time.ParseDuration(sess.TTL)
		if err != nil {
			return fmt.Errorf("%w: session TTL %q is not a duration (use e.g. \"30s\"): %v", ErrInvalidRequest, sess.TTL, err)
		}
		if ttl != 0 && (ttl < ttlMin || ttl > SessionTTLMax) {
			return fmt.Errorf("%w: session TTL %q is out of range; it must be between %v and %v", ErrInvalidRequest, sess.TTL, ttlMin, SessionTTLMax)
		}
		if ttl == 0 {
			sess.TTL = ""
		}
	}
	if sess.LockDelay < 0 || sess.LockDelay > MaxLockDelay {
		return fmt.Errorf("%w: LockDelay %v is out of range; it must be between 0s and %v", ErrInvalidRequest, sess.LockDelay, MaxLockDelay)
	}
	if sess.NodeChecks == nil && sess.ServiceChecks == nil {
		sess.NodeChecks = []string{NodeHealthCheck}
	}
	// The checks themselves live in the agents' catalog, not here: the
	// HTTP API checks that they exist and are not critical, and the
	// agent ends sessions whose checks go critical or away.
	return nil
}

// DestroySession ends a session through Raft, releasing or deleting the
// keys it holds according to its Behavior. Destroying a session that does
// not exist succeeds, as in Consul.
func (s *Server) DestroySession(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: session ID is empty", ErrInvalidRequest)
	}
	_, err := s.raftApply(ctx, command{Type: cmdSessionDestroy, ID: id})
	if err != nil {
		return err
	}
	s.sessions.clear(id)
	return nil
}

// RenewSession restarts a session's TTL on the leader and returns it.
func (s *Server) RenewSession(ctx context.Context, id string) (*Session, error) {
	if err := s.checkRead(ctx, QueryOptions{}); err != nil {
		return nil, err
	}
	_, sess, err := s.State().Session(nil, id)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, fmt.Errorf("%w: session %q", ErrSessionNotFound, id)
	}
	s.sessions.reset(id, sess.TTL)
	return sess, nil
}

// SessionInfo reads one session; nil when it does not exist.
func (s *Server) SessionInfo(ctx context.Context, q QueryOptions, id string) (QueryMeta, *Session, error) {
	var (
		m    QueryMeta
		sess *Session
	)
	err := s.blockingQuery(ctx, q, &m, func(ws memdb.WatchSet, st *State) (uint64, error) {
		idx, se, err := st.Session(ws, id)
		sess = se
		return idx, err
	})
	return m, sess, err
}

// Sessions lists every session.
func (s *Server) Sessions(ctx context.Context, q QueryOptions) (QueryMeta, []*Session, error) {
	return s.sessionList(ctx, q, "")
}

// NodeSessions lists the sessions of one node.
func (s *Server) NodeSessions(ctx context.Context, q QueryOptions, node string) (QueryMeta, []*Session, error) {
	if node == "" {
		return QueryMeta{}, nil, fmt.Errorf("%w: node name is empty", ErrInvalidRequest)
	}
	return s.sessionList(ctx, q, node)
}

func (s *Server) sessionList(ctx context.Context, q QueryOptions, node string) (QueryMeta, []*Session, error) {
	var (
		m  QueryMeta
		ss []*Session
	)
	err := s.blockingQuery(ctx, q, &m, func(ws memdb.WatchSet, st *State) (uint64, error) {
		idx, list, err := st.Sessions(ws, node)
		ss = list
		return idx, err
	})
	return m, ss, err
}

// InvalidateNodeSessions destroys every session of node (the node failed
// or left: Consul's serfHealth going critical). Leader only.
func (s *Server) InvalidateNodeSessions(ctx context.Context, node string) error {
	_, list, err := s.State().Sessions(nil, node)
	if err != nil {
		return err
	}
	for _, sess := range list {
		if err := s.DestroySession(ctx, sess.ID); err != nil {
			return fmt.Errorf("invalidate session %s of node %s: %w", sess.ID, node, err)
		}
	}
	return nil
}

// sessionTimers expires TTL sessions on the leader. Renewals reset the
// timer; expiry destroys the session through Raft.
type sessionTimers struct {
	s *Server

	mu     sync.Mutex
	ctx    context.Context // nil when not leading
	timers map[string]*time.Timer
	wg     sync.WaitGroup
}

func newSessionTimers(s *Server) *sessionTimers {
	return &sessionTimers{s: s, timers: map[string]*time.Timer{}}
}

// start arms a timer for every TTL session; called when leadership begins.
func (t *sessionTimers) start(ctx context.Context) {
	t.mu.Lock()
	t.ctx = ctx
	t.mu.Unlock()
	_, list, err := t.s.State().Sessions(nil, "")
	if err != nil {
		t.s.log.Error("kv: list sessions for TTL timers", "err", err)
		return
	}
	for _, sess := range list {
		t.reset(sess.ID, sess.TTL)
	}
}

// reset (re)arms id's timer; a no-op when not leading or without a TTL.
func (t *sessionTimers) reset(id, ttlText string) {
	if ttlText == "" {
		return
	}
	ttl, err := time.ParseDuration(ttlText)
	if err != nil || ttl <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return
	}
	if tm, ok := t.timers[id]; ok {
		tm.Reset(ttl * ttlMultiplier)
		return
	}
	ctx := t.ctx
	t.timers[id] = time.AfterFunc(ttl*ttlMultiplier, func() { t.expire(ctx, id) })
}

func (t *sessionTimers) expire(ctx context.Context, id string) {
	t.mu.Lock()
	if ctx.Err() != nil || t.ctx != ctx {
		t.mu.Unlock()
		return
	}
	delete(t.timers, id)
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	if t.s.raft.State() != raft.Leader {
		return
	}
	t.s.log.Info("kv: session TTL expired", "session", id)
	if _, err := t.s.raftApply(ctx, command{Type: cmdSessionDestroy, ID: id}); err != nil {
		t.s.log.Warn("kv: destroy expired session", "session", id, "err", err)
	}
}

func (t *sessionTimers) clear(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tm, ok := t.timers[id]; ok {
		tm.Stop()
		delete(t.timers, id)
	}
}

// stopAll disarms every timer; called when leadership ends.
func (t *sessionTimers) stopAll() {
	t.mu.Lock()
	for id, tm := range t.timers {
		tm.Stop()
		delete(t.timers, id)
	}
	t.ctx = nil
	t.mu.Unlock()
	t.wg.Wait()
}
