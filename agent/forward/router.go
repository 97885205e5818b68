package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/blocking"
	"github.com/cairn-dev/cairn/kv"
)

// maxHops bounds forwarding: client -> any server -> leader.
const maxHops = 2

// Router answers KV and session requests on any agent: locally when this
// agent is a server that may answer (the leader, or any server for a
// stale read), otherwise by forwarding to a server (clients) or to the
// leader (followers), as Consul's RPC layer does. Safe for concurrent use.
type Router struct {
	local   *kv.Server      // nil on client agents
	servers func() []string // server RPC addresses known from membership
	pool    *Pool

	hold          time.Duration          // see HoldTimeout
	nodeExists    func(node string) bool // see NodeExists; nil: any node
	acl           func() acl.Resolver    // see ACL; nil: nothing is checked
	agentToken    func() string          // see AgentToken
	initialMgmt   string                 // see InitialManagement
	keyListPolicy bool                   // see KeyListPolicy
	log           *slog.Logger           // see Logger; nil: none

	// leaderHint is the leader as the last server a client agent
	// heard from named it (Response.LeaderHint).
	leaderHint atomic.Pointer[string]

	mu  sync.Mutex
	bad map[string]time.Time // server -> when a connection to it last failed
}

// badFor is how long a server that could not be reached is tried last.
// Membership notices a dead server within seconds; until then requests
// go to the others instead of failing.
const badFor = 10 * time.Second

// NewRouter returns a router. local is this agent's kv server, nil on a
// client; servers lists the cluster's server addresses (may be nil on a
// server, which forwards only to the Raft leader).
func NewRouter(local *kv.Server, servers func() []string, pool *Pool, opts ...Option) *Router {
	if servers == nil {
		servers = func() []string { return nil }
	}
	r := &Router{local: local, servers: servers, pool: pool, hold: DefaultHoldTimeout, bad: map[string]time.Time{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// target picks where a request goes: "" means answer locally.
func (r *Router) target(stale bool, hops int) (string, error) {
	if r.local != nil {
		select {
		case <-r.local.Stopping():
			return "", kv.ErrShutdown
		default:
		}
		if stale || r.local.AnswersLocally() {
			return "", nil
		}
		if hops >= maxHops {
			return "", fmt.Errorf("%w: forwarded %d times without reaching the leader", kv.ErrNoLeader, hops)
		}
		leader := r.local.Leader()
		if leader == "" {
			return "", kv.ErrNoLeader
		}
		return leader, nil
	}
	return "", errClientSide
}

// errClientSide tells forward to pick among the servers itself.
var errClientSide = errors.New("client agent: choose a server")

// forward sends req on, or returns (nil, false, nil) when it must run here.
// A client agent tries the servers in random order, those that failed
// recently last, and moves on when a server cannot be reached (nothing
// was sent) or, for reads, when the connection broke mid-request.
//
// request comes by value: one the leader runs itself (every write and
// read there) then costs no allocation of the Request, which is large.
func (r *Router) forward(ctx context.Context, stale bool, request Request) (*Response, bool, error) {
	addr, err := r.target(stale, request.Hops)
	if err == nil && addr == "" {
		return nil, false, nil
	}
	req := new(Request)
	*req = request
	ctx = r.outgoing(ctx)
	req.Hops++
	if err == nil {
		return r.toLeader(ctx, addr, req)
	}
	if !errors.Is(err, errClientSide) {
		return nil, false, err
	}
	if req.Hops > maxHops {
		return nil, false, fmt.Errorf("%w: forwarded %d times", kv.ErrNoLeader, req.Hops-1)
	}
	// What must reach the leader goes to the one the servers last named,
	// when it is a server this agent knows and has not failed lately;
	// stale reads spread over all.
	prefer := ""
	if h := r.leaderHint.Load(); h != nil && !stale {
		prefer = *h
	}
	servers := r.order(r.servers(), prefer)
	if len(servers) == 0 {
		return nil, false, errNoServers
	}
	var tried []string
	for _, addr := range servers {
		resp, err := r.pool.Call(ctx, addr, req)
		switch {
		case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			// No answer in time: a paused or cut-off server. The
			// next try (the hold's) goes to the others first.
			r.markBad(addr)
		case err != nil && ctx.Err() != nil:
			// The caller went away (consul-template ending a blocking
			// query on reload): that says nothing of the server.
		case !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrConnectionLost):
			r.markGood(addr) // it answered
		}
		// A stopping server refuses before doing anything: safe to resend.
		retry := errors.Is(err, ErrUnreachable) || errors.Is(err, kv.ErrShutdown) ||
			(errors.Is(err, ErrConnectionLost) && req.readOnly())
		if !retry {
			if resp != nil {
				r.noteLeader(resp.LeaderHint)
			}
			return resp, true, err
		}
		r.markBad(addr)
		tried = append(tried, addr)
	}
	return nil, true, fmt.Errorf("%w: no server answered (tried %s); check that the servers run and that this agent can reach their -server-port", kv.ErrNoLeader, strings.Join(tried, ", "))
}

// toLeader forwards req from this server to the leader at addr. When a
// new leader is elected while it is out (the old one paused or cut off),
// it stops waiting at once: the caller's hold sends it again to the new
// one.
func (r *Router) toLeader(ctx context.Context, addr string, req *Request) (*Response, bool, error) {
	changed := r.local.LeaderChanged()
	if r.local.Leader() != addr {
		// Changed between target and here: let the hold try again.
		return nil, true, fmt.Errorf("%w: leader is no longer %s", kv.ErrNotLeader, addr)
	}
	if r.leaderSilent() {
		// A leader that sends no heartbeats is paused or cut off:
		// do not wait on it; the caller's hold tries again (this
		// server or another) until a new leader is elected.
		return nil, true, fmt.Errorf("%w: the leader %s has not been heard from for %v", kv.ErrNotLeader, addr, leaderSilence)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		tick := time.NewTicker(leaderSilence / 4)
		defer tick.Stop()
		for {
			select {
			case <-changed:
				cancel()
				return
			case <-tick.C:
				if r.leaderSilent() {
					cancel()
					return
				}
			case <-cctx.Done():
				return
			}
		}
	}()
	resp, err := r.pool.Call(cctx, addr, req)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		if req.readOnly() {
			return nil, true, fmt.Errorf("%w: %w (was %s)", kv.ErrNotLeader, errLeaderChanged, addr)
		}
		return nil, true, fmt.Errorf("%w: %w (was %s)", kv.ErrOutcomeUnknown, errLeaderChanged, addr)
	}
	return resp, true, err
}

// leaderSilence is how long a follower goes without hearing from the
// leader before it stops forwarding to it. Leaders send heartbeats ten
// times per heartbeat timeout (every 100 ms by default), so this much
// silence means a paused or cut-off leader, one that a new election is
// about to replace.
const leaderSilence = 750 * time.Millisecond

// leaderSilent reports whether this follower has not heard from its
// leader for leaderSilence.
func (r *Router) leaderSilent() bool {
	last := r.local.LeaderContact()
	return !last.IsZero() && time.Since(last) > leaderSilence
}

// noteLeader remembers the leader a server named (a copy: the answer it
// came in may be large).
func (r *Router) noteLeader(addr string) {
	if h := r.leaderHint.Load(); h == nil || *h != addr {
		r.leaderHint.Store(&addr)
	}
}

// order shuffles the servers, puts prefer first when it is one of them,
// and puts those that failed lately last.
func (r *Router) order(servers []string, prefer string) []string {
	out := slices.Clone(servers)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if i := slices.Index(out, prefer); i > 0 {
		out[0], out[i] = out[i], out[0]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for a, at := range r.bad {
		if now.Sub(at) > badFor {
			delete(r.bad, a)
		}
	}
	// Servers that failed go last, the one that failed most recently
	// last of all: when every server has failed lately (one paused after
	// another), the freshest failure is the likeliest to still be down.
	slices.SortStableFunc(out, func(a, b string) int {
		atA, badA := r.bad[a]
		atB, badB := r.bad[b]
		switch {
		case !badA && !badB:
			return 0
		case !badA:
			return -1
		case !badB:
			return 1
		}
		return atA.Compare(atB)
	})
	return out
}

// markGood forgets that addr failed: it answered.
func (r *Router) markGood(addr string) {
	r.mu.Lock()
	delete(r.bad, addr)
	r.mu.Unlock()
}

func (r *Router) markBad(addr string) {
	r.mu.Lock()
	r.bad[addr] = time.Now()
	r.mu.Unlock()
}

// readHere reports whether a read may first be tried on this server
// without the hold (whose per-try timer, a context and a timer, costs
// more than answering a small read), and the options for that try: a
// read that does not block, of a server that answers it (stale, or the
// leader's), made AtOnce so it fails instead of waiting for anything.
// Any failure of that try, the refusal to wait included, goes through the
// hold as before, so what a read waits for, retries and answers is the
// same.
func (r *Router) readHere(q kv.QueryOptions) (kv.QueryOptions, bool) {
	if r.local == nil || q.MinIndex != 0 || q.Consistent {
		return q, false
	}
	select {
	case <-r.local.Stopping():
		return q, false
	default:
	}
	if !q.Stale && !r.local.AnswersLocally() {
		return q, false
	}
	q.AtOnce = true
	return q, true
}

// Get implements the KV read of one key.
func (r *Router) Get(ctx context.Context, q kv.QueryOptions, key string) (m kv.QueryMeta, e *kv.Entry, err error) {
	if lq, ok := r.readHere(q); ok {
		if m, e, err = r.local.Get(ctx, lq, key); err == nil {
			return m, e, nil
		}
	}
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, e, err = r.get(ctx, 0, q, key)
		return err
	})
	return m, e, err
}

// waitOf is the blocking wait of a read, 0 when it does not block.
func waitOf(q kv.QueryOptions) time.Duration {
	if q.MinIndex == 0 {
		return 0
	}
	return blocking.Wait(q.MaxWait)
}

func (r *Router) get(ctx context.Context, hops int, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, Request{Method: mGet, Hops: hops, Q: q, Key: key})
	if !fwd || err != nil {
		if err != nil {
			return kv.QueryMeta{}, nil, err
		}
		return r.local.Get(ctx, q, key)
	}
	return resp.Meta, resp.Entry, nil
}

// List implements the recursive KV read.
func (r *Router) List(ctx context.Context, q kv.QueryOptions, prefix string) (m kv.QueryMeta, es []*kv.Entry, err error) {
	if lq, ok := r.readHere(q); ok {
		if m, es, err = r.local.List(ctx, lq, prefix); err == nil {
			return m, es, nil
		}
	}
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, es, err = r.list(ctx, 0, q, prefix)
		return err
	})
	return m, es, err
}

func (r *Router) list(ctx context.Context, hops int, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, Request{Method: mList, Hops: hops, Q: q, Key: prefix})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.List(ctx, q, prefix)
	}
	return resp.Meta, resp.Entries, nil
}

// Keys implements the key listing.
func (r *Router) Keys(ctx context.Context, q kv.QueryOptions, prefix, separator string) (m kv.QueryMeta, ks []string, err error) {
	if lq, ok := r.readHere(q); ok {
		if m, ks, err = r.local.Keys(ctx, lq, prefix, separator); err == nil {
			return m, ks, nil
		}
	}
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, ks, err = r.keys(ctx, 0, q, prefix, separator)
		return err
	})
	return m, ks, err
}

func (r *Router) keys(ctx context.Context, hops int, q kv.QueryOptions, prefix, separator string) (kv.QueryMeta, []string, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, Request{Method: mKeys, Hops: hops, Q: q, Key: prefix, Separator: separator})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.Keys(ctx, q, prefix, separator)
	}
	return resp.Meta, resp.Keys, nil
}

// Apply implements a KV write.
func (r *Router) Apply(ctx context.Context, op kv.Op) (ok bool, err error) {
	err = r.holdRequest(ctx, holdWrite, 0, func(ctx context.Context) (err error) {
		ok, err = r.apply(ctx, 0, op)
		return err
	})
	return ok, err
}

func (r *Router) apply(ctx context.Context, hops int, op kv.Op) (bool, error) {
	resp, fwd, err := r.forward(ctx, false, Request{Method: mApply, Hops: hops, Op: op})
	if err != nil {
		return false, err
	}
	if !fwd {
		return r.local.Apply(ctx, op)
	}
	return resp.OK, nil
}

// Txn implements /v1/txn.
func (r *Router) Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (m kv.QueryMeta, res []kv.TxnResult, errs []kv.TxnError, err error) {
	err = r.holdRequest(ctx, txnHold(ops), 0, func(ctx context.Context) (err error) {
		m, res, errs, err = r.txn(ctx, 0, q, ops)
		return err
	})
	return m, res, errs, err
}

// txnHold is how a transaction is held: reads only as a read; writes
// that also read values once (kv.TxnReadsValues); other writes with a
// write ID.
func txnHold(ops []kv.Op) holdKind {
	if (&Request{Method: mTxn, Ops: ops}).readOnly() {
		return holdRead
	}
	if kv.TxnReadsValues(ops) {
		return holdWriteOnce
	}
	return holdWrite
}

func (r *Router) txn(ctx context.Context, hops int, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	stale := q.Stale
	for _, op := range ops {
		if !op.Verb.IsRead() {
			stale = false
		}
	}
	resp, fwd, err := r.forward(ctx, stale, Request{Method: mTxn, Hops: hops, Q: q, Ops: ops})
	if err != nil {
		return kv.QueryMeta{}, nil, nil, err
	}
	if !fwd {
		return r.local.Txn(ctx, q, ops)
	}
	return resp.Meta, resp.Results, resp.TxnErrors, nil
}

// CreateSession implements /v1/session/create. A session made through a
// client agent belongs to that agent's node.
func (r *Router) CreateSession(ctx context.Context, s kv.Session) (id string, err error) {
	if s.Node != "" && r.nodeExists != nil && !r.nodeExists(s.Node) {
		return "", fmt.Errorf("%w: node %q is not in the catalog; a session must belong to a node that exists (its failure ends the session), so use a node from /v1/catalog/nodes or leave Node out for this agent's", kv.ErrInvalidRequest, s.Node)
	}
	err = r.holdRequest(ctx, holdWrite, 0, func(ctx context.Context) (err error) {
		id, err = r.createSession(ctx, 0, s)
		return err
	})
	return id, err
}

func (r *Router) createSession(ctx context.Context, hops int, s kv.Session) (string, error) {
	resp, fwd, err := r.forward(ctx, false, Request{Method: mCreateSession, Hops: hops, Session: s})
	if err != nil {
		return "", err
	}
	if !fwd {
		return r.local.CreateSession(ctx, s)
	}
	return resp.ID, nil
}

// DestroySession implements /v1/session/destroy.
func (r *Router) DestroySession(ctx context.Context, id string) error {
	return r.holdRequest(ctx, holdWrite, 0, func(ctx context.Context) error {
		return r.destroySession(ctx, 0, id)
	})
}

func (r *Router) destroySession(ctx context.Context, hops int, id string) error {
	_, fwd, err := r.forward(ctx, false, Request{Method: mDestroySession, Hops: hops, ID: id})
	if err != nil || fwd {
		return err
	}
	return r.local.DestroySession(ctx, id)
}

// RenewSession implements /v1/session/renew (the leader keeps the timers).
func (r *Router) RenewSession(ctx context.Context, id string) (s *kv.Session, err error) {
	// A renewal only restarts the leader's timer: safe to send again.
	err = r.holdRequest(ctx, holdRead, 0, func(ctx context.Context) (err error) {
		s, err = r.renewSession(ctx, 0, id)
		return err
	})
	return s, err
}

func (r *Router) renewSession(ctx context.Context, hops int, id string) (*kv.Session, error) {
	resp, fwd, err := r.forward(ctx, false, Request{Method: mRenewSession, Hops: hops, ID: id})
	if err != nil {
		return nil, err
	}
	if !fwd {
		return r.local.RenewSession(ctx, id)
	}
	return resp.SessionOut, nil
}

// SessionInfo implements /v1/session/info.
func (r *Router) SessionInfo(ctx context.Context, q kv.QueryOptions, id string) (m kv.QueryMeta, s *kv.Session, err error) {
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, s, err = r.sessionInfo(ctx, 0, q, id)
		return err
	})
	return m, s, err
}

func (r *Router) sessionInfo(ctx context.Context, hops int, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, Request{Method: mSessionInfo, Hops: hops, Q: q, ID: id})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.SessionInfo(ctx, q, id)
	}
	return resp.Meta, resp.SessionOut, nil
}

// Sessions implements /v1/session/list.
func (r *Router) Sessions(ctx context.Context, q kv.QueryOptions) (m kv.QueryMeta, ss []*kv.Session, err error) {
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, ss, err = r.sessions(ctx, 0, q, "")
		return err
	})
	return m, ss, err
}

// NodeSessions implements /v1/session/node.
func (r *Router) NodeSessions(ctx context.Context, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error) {
	if node == "" {
		return kv.QueryMeta{}, nil, fmt.Errorf("%w: node name is empty", kv.ErrInvalidRequest)
	}
	var (
		m   kv.QueryMeta
		ss  []*kv.Session
		err error
	)
	err = r.holdRequest(ctx, holdRead, waitOf(q), func(ctx context.Context) (err error) {
		m, ss, err = r.sessions(ctx, 0, q, node)
		return err
	})
	return m, ss, err
}

func (r *Router) sessions(ctx context.Context, hops int, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, Request{Method: mSessions, Hops: hops, Q: q, Node: node})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		if node == "" {
			return r.local.Sessions(ctx, q)
		}
		return r.local.NodeSessions(ctx, q, node)
	}
	return resp.Meta, resp.Sessions, nil
}

// Leader is the Raft leader's address as this agent knows it; a client
// asks a server ("" when none answers within the hold).
func (r *Router) Leader() string {
	if r.local != nil {
		return r.local.Leader()
	}
	resp, err := r.status()
	if err != nil {
		return ""
	}
	return resp.Leader
}

// Peers lists the voting servers' addresses.
func (r *Router) Peers() ([]string, error) {
	if r.local != nil {
		return r.local.Peers()
	}
	resp, err := r.status()
	if err != nil {
		return nil, err
	}
	return resp.Peers, nil
}

// errNoServers: a client agent that knows no server to ask.
var errNoServers = fmt.Errorf("%w: this agent knows no server yet; join it to the cluster with -join or -retry-join", kv.ErrNoLeader)

// status asks a server for the leader and peers, within the hold like
// any request: a server that takes the connection but never answers (a
// paused process) costs one try, then the others are asked. An agent
// that knows no server says so at once: there is no one to wait for
// (the /v1/status endpoints are what scripts and checks poll).
func (r *Router) status() (resp *Response, err error) {
	if len(r.servers()) == 0 {
		return nil, errNoServers
	}
	err = r.holdRequest(context.Background(), holdRead, 0, func(ctx context.Context) (err error) {
		resp, _, err = r.forward(ctx, true, Request{Method: mStatus})
		return err
	})
	return resp, err
}

// RaftConfiguration lists the Raft group's servers, from this server's
// own view or, on a client, a server's.
func (r *Router) RaftConfiguration(ctx context.Context) ([]kv.Peer, error) {
	if r.local != nil {
		return r.local.Configuration()
	}
	resp, _, err := r.forward(ctx, true, Request{Method: mRaftConfig})
	if err != nil {
		return nil, err
	}
	return resp.RaftPeers, nil
}

// serve runs one forwarded request on this server.
func (r *Router) serve(ctx context.Context, req *Request) (*Response, error) {
	if r.local == nil {
		return nil, errors.New("this agent is not a server")
	}
	g, txnErrs, err := r.check(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(txnErrs) > 0 {
		// Consul's Txn: one refused operation refuses the whole
		// transaction, each refusal reported as that operation's error.
		return &Response{TxnErrors: txnErrs}, nil
	}
	var resp Response
	defer g.filter(req, &resp)
	switch req.Method {
	case mGet:
		resp.Meta, resp.Entry, err = r.get(ctx, req.Hops, req.Q, req.Key)
	case mList:
		resp.Meta, resp.Entries, err = r.list(ctx, req.Hops, req.Q, req.Key)
	case mKeys:
		resp.Meta, resp.Keys, err = r.keys(ctx, req.Hops, req.Q, req.Key, req.Separator)
	case mApply:
		resp.OK, err = r.apply(ctx, req.Hops, req.Op)
	case mTxn:
		resp.Meta, resp.Results, resp.TxnErrors, err = r.txn(ctx, req.Hops, req.Q, req.Ops)
	case mCreateSession:
		resp.ID, err = r.createSession(ctx, req.Hops, req.Session)
	case mDestroySession:
		err = r.destroySession(ctx, req.Hops, req.ID)
	case mRenewSession:
		resp.SessionOut, err = r.renewSession(ctx, req.Hops, req.ID)
	case mSessionInfo:
		resp.Meta, resp.SessionOut, err = r.sessionInfo(ctx, req.Hops, req.Q, req.ID)
	case mSessions:
		resp.Meta, resp.Sessions, err = r.sessions(ctx, req.Hops, req.Q, req.Node)
	case mStatus:
		resp.Leader = r.local.Leader()
		resp.Peers, err = r.local.Peers()
	case mRaftConfig:
		resp.RaftPeers, err = r.local.Configuration()
	case mRaftStats:
		resp.RaftStats = r.local.Stats()
	default:
		var ok bool
		if ok, err = r.serveOperator(ctx, req, &resp); !ok {
			err = fmt.Errorf("unknown forwarded method %q; is this server older than the agent?", req.Method)
		}
	}
	return &resp, err
}
