package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

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
func NewRouter(local *kv.Server, servers func() []string, pool *Pool) *Router {
	if servers == nil {
		servers = func() []string { return nil }
	}
	return &Router{local: local, servers: servers, pool: pool, bad: map[string]time.Time{}}
}

// target picks where a request goes: "" means answer locally.
func (r *Router) target(stale bool, hops int) (string, error) {
	if r.local != nil {
		select {
		case <-r.local.Stopping():
			return "", kv.ErrShutdown
		default:
		}
		if stale || r.local.IsLeader() {
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
func (r *Router) forward(ctx context.Context, stale bool, req *Request) (*Response, bool, error) {
	addr, err := r.target(stale, req.Hops)
	if err == nil && addr == "" {
		return nil, false, nil
	}
	req.Hops++
	if err == nil {
		resp, err := r.pool.Call(ctx, addr, req)
		return resp, true, err
	}
	if !errors.Is(err, errClientSide) {
		return nil, false, err
	}
	if req.Hops > maxHops {
		return nil, false, fmt.Errorf("%w: forwarded %d times", kv.ErrNoLeader, req.Hops-1)
	}
	servers := r.order(r.servers())
	if len(servers) == 0 {
		return nil, false, fmt.Errorf("%w: this agent knows no server yet; join it to the cluster with -join or -retry-join", kv.ErrNoLeader)
	}
	var tried []string
	for _, addr := range servers {
		resp, err := r.pool.Call(ctx, addr, req)
		// A stopping server refuses before doing anything: safe to resend.
		retry := errors.Is(err, ErrUnreachable) || errors.Is(err, kv.ErrShutdown) ||
			(errors.Is(err, ErrConnectionLost) && req.readOnly())
		if !retry {
			return resp, true, err
		}
		r.markBad(addr)
		tried = append(tried, addr)
	}
	return nil, true, fmt.Errorf("%w: no server answered (tried %s); check that the servers run and that this agent can reach their -server-port", kv.ErrNoLeader, strings.Join(tried, ", "))
}

// order shuffles the servers and puts those that failed lately last.
func (r *Router) order(servers []string) []string {
	out := slices.Clone(servers)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for a, at := range r.bad {
		if now.Sub(at) > badFor {
			delete(r.bad, a)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		_, badA := r.bad[a]
		_, badB := r.bad[b]
		switch {
		case badA == badB:
			return 0
		case badA:
			return 1
		}
		return -1
	})
	return out
}

func (r *Router) markBad(addr string) {
	r.mu.Lock()
	r.bad[addr] = time.Now()
	r.mu.Unlock()
}

// Get implements the KV read of one key.
func (r *Router) Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	return r.get(ctx, 0, q, key)
}

func (r *Router) get(ctx context.Context, hops int, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, &Request{Method: mGet, Hops: hops, Q: q, Key: key})
	if !fwd || err != nil {
		if err != nil {
			return kv.QueryMeta{}, nil, err
		}
		return r.local.Get(ctx, q, key)
	}
	return resp.Meta, resp.Entry, nil
}

// List implements the recursive KV read.
func (r *Router) List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error) {
	return r.list(ctx, 0, q, prefix)
}

func (r *Router) list(ctx context.Context, hops int, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, &Request{Method: mList, Hops: hops, Q: q, Key: prefix})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.List(ctx, q, prefix)
	}
	return resp.Meta, resp.Entries, nil
}

// Keys implements the key listing.
func (r *Router) Keys(ctx context.Context, q kv.QueryOptions, prefix, separator string) (kv.QueryMeta, []string, error) {
	return r.keys(ctx, 0, q, prefix, separator)
}

func (r *Router) keys(ctx context.Context, hops int, q kv.QueryOptions, prefix, separator string) (kv.QueryMeta, []string, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, &Request{Method: mKeys, Hops: hops, Q: q, Key: prefix, Separator: separator})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.Keys(ctx, q, prefix, separator)
	}
	return resp.Meta, resp.Keys, nil
}

// Apply implements a KV write.
func (r *Router) Apply(ctx context.Context, op kv.Op) (bool, error) {
	return r.apply(ctx, 0, op)
}

func (r *Router) apply(ctx context.Context, hops int, op kv.Op) (bool, error) {
	resp, fwd, err := r.forward(ctx, false, &Request{Method: mApply, Hops: hops, Op: op})
	if err != nil {
		return false, err
	}
	if !fwd {
		return r.local.Apply(ctx, op)
	}
	return resp.OK, nil
}

// Txn implements /v1/txn.
func (r *Router) Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	return r.txn(ctx, 0, q, ops)
}

func (r *Router) txn(ctx context.Context, hops int, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	stale := q.Stale
	for _, op := range ops {
		if !op.Verb.IsRead() {
			stale = false
		}
	}
	resp, fwd, err := r.forward(ctx, stale, &Request{Method: mTxn, Hops: hops, Q: q, Ops: ops})
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
func (r *Router) CreateSession(ctx context.Context, s kv.Session) (string, error) {
	return r.createSession(ctx, 0, s)
}

func (r *Router) createSession(ctx context.Context, hops int, s kv.Session) (string, error) {
	resp, fwd, err := r.forward(ctx, false, &Request{Method: mCreateSession, Hops: hops, Session: s})
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
	return r.destroySession(ctx, 0, id)
}

func (r *Router) destroySession(ctx context.Context, hops int, id string) error {
	_, fwd, err := r.forward(ctx, false, &Request{Method: mDestroySession, Hops: hops, ID: id})
	if err != nil || fwd {
		return err
	}
	return r.local.DestroySession(ctx, id)
}

// RenewSession implements /v1/session/renew (the leader keeps the timers).
func (r *Router) RenewSession(ctx context.Context, id string) (*kv.Session, error) {
	return r.renewSession(ctx, 0, id)
}

func (r *Router) renewSession(ctx context.Context, hops int, id string) (*kv.Session, error) {
	resp, fwd, err := r.forward(ctx, false, &Request{Method: mRenewSession, Hops: hops, ID: id})
	if err != nil {
		return nil, err
	}
	if !fwd {
		return r.local.RenewSession(ctx, id)
	}
	return resp.SessionOut, nil
}

// SessionInfo implements /v1/session/info.
func (r *Router) SessionInfo(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error) {
	return r.sessionInfo(ctx, 0, q, id)
}

func (r *Router) sessionInfo(ctx context.Context, hops int, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, &Request{Method: mSessionInfo, Hops: hops, Q: q, ID: id})
	if err != nil {
		return kv.QueryMeta{}, nil, err
	}
	if !fwd {
		return r.local.SessionInfo(ctx, q, id)
	}
	return resp.Meta, resp.SessionOut, nil
}

// Sessions implements /v1/session/list.
func (r *Router) Sessions(ctx context.Context, q kv.QueryOptions) (kv.QueryMeta, []*kv.Session, error) {
	return r.sessions(ctx, 0, q, "")
}

// NodeSessions implements /v1/session/node.
func (r *Router) NodeSessions(ctx context.Context, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error) {
	if node == "" {
		return kv.QueryMeta{}, nil, fmt.Errorf("%w: node name is empty", kv.ErrInvalidRequest)
	}
	return r.sessions(ctx, 0, q, node)
}

func (r *Router) sessions(ctx context.Context, hops int, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error) {
	resp, fwd, err := r.forward(ctx, q.Stale, &Request{Method: mSessions, Hops: hops, Q: q, Node: node})
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
// asks a server.
func (r *Router) Leader() string {
	if r.local != nil {
		return r.local.Leader()
	}
	resp, _, err := r.forward(context.Background(), true, &Request{Method: mStatus})
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
	resp, _, err := r.forward(context.Background(), true, &Request{Method: mStatus})
	if err != nil {
		return nil, err
	}
	return resp.Peers, nil
}

// RaftConfiguration lists the Raft group's servers, from this server's
// own view or, on a client, a server's.
func (r *Router) RaftConfiguration(ctx context.Context) ([]kv.Peer, error) {
	if r.local != nil {
		return r.local.Configuration()
	}
	resp, _, err := r.forward(ctx, true, &Request{Method: mRaftConfig})
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
	var (
		resp Response
		err  error
	)
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
		err = fmt.Errorf("unknown forwarded method %q; is this server older than the agent?", req.Method)
	}
	return &resp, err
}
