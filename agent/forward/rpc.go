package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/rpc"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/kv"
)

// Method names of forwarded requests.
const (
	mGet            = "get"
	mList           = "list"
	mKeys           = "keys"
	mApply          = "apply"
	mTxn            = "txn"
	mCreateSession  = "session-create"
	mDestroySession = "session-destroy"
	mRenewSession   = "session-renew"
	mSessionInfo    = "session-info"
	mSessions       = "sessions"
	mStatus         = "status"
	mRaftConfig     = "raft-configuration"
)

// Request is one forwarded call; only the fields its Method uses are set.
type Request struct {
	Method string
	Hops   int
	// Timeout is how long the caller still waits for the answer, measured
	// when it sent the request (its context's deadline); 0 for no
	// deadline. The server runs the request under a context that ends
	// then. It is relative so that the two clocks need not agree.
	Timeout time.Duration
	// CallID names this call for Endpoint.Cancel: when the caller's
	// context ends first, it sends Cancel with the same ID, and the
	// server cancels the request's context (a blocking query stops
	// waiting at once instead of running out its wait).
	CallID string
	// Token is the caller's ACL token (kv.Token of its context); the
	// server puts it back on the request's context. Carried for ACLs.
	Token string
	// WriteID names the write (kv.WriteID of the caller's context), so
	// that a write sent again is applied at most once.
	WriteID string
	// RequestID names the HTTP request this call serves
	// (logging.RequestID of the caller's context), so that the server's
	// log lines about it carry the same request_id as the caller's.
	RequestID string
	// AgentToken is the sending agent's token (Consul's acl.tokens.agent),
	// carried only by a transaction that writes the agent's own keys
	// (AgentKeysPrefix): the caller's token covers the caller's
	// operations, the agent token the agent's record of them.
	AgentToken string

	Q         kv.QueryOptions
	Key       string
	Separator string
	Op        kv.Op
	Ops       []kv.Op
	Session   kv.Session
	ID        string
	Node      string
	// SnapshotMeta and Data are a snapshot to restore (Data: its state).
	SnapshotMeta kv.SnapshotMeta
	Data         []byte
}

// Response carries whatever the method returns.
type Response struct {
	Meta       kv.QueryMeta
	Entry      *kv.Entry
	Entries    []*kv.Entry
	Keys       []string
	OK         bool
	Results    []kv.TxnResult
	TxnErrors  []kv.TxnError
	ID         string
	SessionOut *kv.Session
	Sessions   []*kv.Session
	Leader     string
	Peers      []string
	RaftPeers  []kv.Peer
	RaftStats  map[string]string
	// SnapshotMeta and Data are a snapshot taken (Data: its state).
	SnapshotMeta kv.SnapshotMeta
	Data         []byte
	// LeaderHint is the Raft leader as the answering server knew it
	// ("" when it knew none), on every successful answer. A client
	// agent sends its next request that needs the leader there, rather
	// than through a follower, which would forward it: one hop fewer.
	// Older servers leave it empty, and gob lets older clients skip it.
	LeaderHint string
}

// readOnly reports whether a request only reads, so that sending it
// again after a broken connection cannot apply anything twice.
func (req *Request) readOnly() bool {
	switch req.Method {
	case mGet, mList, mKeys, mSessionInfo, mSessions, mStatus, mRaftConfig, mRaftStats:
		return true
	case mTxn:
		for _, op := range req.Ops {
			if !op.Verb.IsRead() {
				return false
			}
		}
		return true
	}
	return false
}

// Errors of the way to a server, as opposed to the server's answer.
var (
	// ErrUnreachable: no connection could be made; nothing was sent.
	ErrUnreachable = errors.New("server unreachable")
	// ErrConnectionLost: the connection broke while the request was out;
	// a write may or may not have been applied.
	ErrConnectionLost = errors.New("connection to server lost")
)

// Endpoint is the net/rpc receiver registered on servers. net/rpc gives
// a method no context, so the caller's is carried across: its deadline as
// Request.Timeout, its cancellation as a Cancel call naming the request's
// CallID.
type Endpoint struct {
	r *Router

	mu    sync.Mutex
	calls map[string]context.CancelFunc // running calls by CallID
	early map[string]time.Time          // Cancels that came before their call, by when
}

// cancelledMemory is how long a Cancel that arrived before its call (the
// two travel as separate requests) is remembered.
const cancelledMemory = time.Minute

// Call runs a forwarded request under a context that carries the
// caller's deadline, cancellation and token.
func (e *Endpoint) Call(req *Request, resp *Response) error {
	ctx, done := e.begin(req)
	defer done()
	start := time.Now()
	out, err := e.r.serve(ctx, req)
	if out != nil {
		*resp = *out
	}
	if e.r.local != nil {
		resp.LeaderHint = e.r.local.Leader()
	}
	if log := e.r.log; log != nil && log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("forward: served a forwarded request", "method", req.Method, "hops", req.Hops,
			logging.RequestIDKey, req.RequestID, "latency", time.Since(start), "err", err)
	}
	return err
}

// Logger sets the log the server side of forwarding writes to: a debug
// line per forwarded call it serves, with the caller's request ID.
func Logger(l *slog.Logger) Option { return func(r *Router) { r.log = l } }

// Cancel cancels the running call with CallID id, or the call with that
// ID when it arrives. Unknown IDs are not an error: the call may have
// ended already.
func (e *Endpoint) Cancel(id string, _ *struct{}) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cancel, ok := e.calls[id]; ok {
		cancel()
		return nil
	}
	now := time.Now()
	for old, at := range e.early {
		if now.Sub(at) > cancelledMemory {
			delete(e.early, old)
		}
	}
	e.early[id] = now
	return nil
}

// begin returns the context req runs under and the function that ends it.
func (e *Endpoint) begin(req *Request) (context.Context, func()) {
	ctx := logging.WithRequestID(context.Background(), req.RequestID)
	ctx, cancel := context.WithCancel(kv.WithWriteID(kv.WithToken(ctx, req.Token), req.WriteID))
	if req.Timeout > 0 {
		ctx, cancel = withTimeout(ctx, cancel, req.Timeout)
	}
	if req.CallID == "" {
		return ctx, cancel
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.early[req.CallID]; ok {
		delete(e.early, req.CallID)
		cancel()
		return ctx, cancel
	}
	e.calls[req.CallID] = cancel
	return ctx, func() {
		cancel()
		e.mu.Lock()
		delete(e.calls, req.CallID)
		e.mu.Unlock()
	}
}

// withTimeout bounds ctx by d; its cancel also runs parent's.
func withTimeout(ctx context.Context, parent context.CancelFunc, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); parent() }
}

// ServeConn returns the function the Mux hands RPC connections to.
func ServeConn(r *Router) (func(net.Conn), error) {
	srv := rpc.NewServer()
	e := &Endpoint{r: r, calls: map[string]context.CancelFunc{}, early: map[string]time.Time{}}
	if err := srv.RegisterName("Cairn", e); err != nil {
		return nil, fmt.Errorf("register forwarding endpoint: %w", err)
	}
	return func(c net.Conn) { srv.ServeConn(c) }, nil
}

// sentinels survive the trip as text; the client maps them back so the
// HTTP layer answers the same status on every agent.
// The context's errors come back when the caller's deadline, carried to
// the server, ran out there first.
var sentinels = []error{acl.ErrPermissionDenied, acl.ErrNotFound, kv.ErrNotLeader, kv.ErrNoLeader, kv.ErrSessionNotFound, kv.ErrInvalidRequest, kv.ErrTxnFailed, kv.ErrShutdown,
	kv.ErrOutcomeUnknown, kv.ErrTooManyQueries, context.DeadlineExceeded, context.Canceled}

func remoteError(err error) error {
	var se rpc.ServerError
	if !errors.As(err, &se) {
		return err
	}
	msg := string(se)
	for _, kind := range []string{kv.DiskFull, kv.DiskReadOnly, kv.DiskIOError} {
		if strings.HasPrefix(msg, kind+" in the data dir ") {
			return &kv.DiskError{Kind: kind, Text: msg}
		}
	}
	for _, s := range sentinels {
		if strings.HasPrefix(msg, s.Error()) {
			return fmt.Errorf("%w%s", s, strings.TrimPrefix(msg, s.Error()))
		}
	}
	return errors.New(msg)
}

// Pool keeps one net/rpc client per server; net/rpc multiplexes
// concurrent calls (blocking queries included) over that connection.
type Pool struct {
	timeout time.Duration
	dialer  dialer
	prefix  string        // random, so that CallIDs of two agents never meet
	seq     atomic.Uint64 // numbers this pool's calls

	mu      sync.Mutex
	clients map[string]*rpc.Client
}

// NewPool returns an empty pool; dialTimeout bounds connection set-up.
func NewPool(dialTimeout time.Duration) *Pool {
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	return &Pool{timeout: dialTimeout, prefix: fmt.Sprintf("%016x", rand.Uint64()), clients: map[string]*rpc.Client{}}
}

// UseTLS makes the pool dial servers with TLS when t's OutgoingRPC says
// so (verify_outgoing); call before the first Call.
func (p *Pool) UseTLS(t TLS) { p.dialer = dialer{tls: t} }

// callID names a new call, unique across agents.
func (p *Pool) callID() string { return p.prefix + "-" + strconv.FormatUint(p.seq.Add(1), 10) }

func (p *Pool) client(ctx context.Context, addr string) (*rpc.Client, error) {
	p.mu.Lock()
	if c, ok := p.clients[addr]; ok {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	// Dial without the lock: a server that does not answer (cut off,
	// paused) must not hold up calls to the others.
	timeout := p.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl), time.Millisecond))
	}
	conn, err := p.dialer.dial(addr, connRPC, timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: server %s: %v", kv.ErrNoLeader, ErrUnreachable, addr, err)
	}
	c := rpc.NewClient(conn)
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.clients[addr]; ok {
		// Another call dialled meanwhile: keep one connection.
		c.Close()
		return old, nil
	}
	p.clients[addr] = c
	return c, nil
}

func (p *Pool) drop(addr string, c *rpc.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clients[addr] == c {
		delete(p.clients, addr)
		c.Close()
	}
}

// Call sends req to the server at addr and waits for its answer or ctx.
// ctx travels with it: its deadline as req.Timeout, its token as
// req.Token, and, when ctx ends first, a Cancel of req's call on the
// server, so that nothing outlives its caller there.
func (p *Pool) Call(ctx context.Context, addr string, req *Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := p.client(ctx, addr)
	if err != nil {
		return nil, err
	}
	req.Timeout = 0
	if d, ok := ctx.Deadline(); ok {
		req.Timeout = max(time.Until(d), time.Millisecond)
	}
	req.Token = kv.Token(ctx)
	req.WriteID = kv.WriteID(ctx)
	if req.Method == mTxn && touchesAgentKeys(req.Ops) {
		req.AgentToken = agentToken(ctx)
	}
	req.RequestID = logging.RequestID(ctx)
	req.CallID = p.callID()
	var resp Response
	call := c.Go("Cairn.Call", req, &resp, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		if call.Error != nil && ctx.Err() != nil {
			// Both ended: the caller's context is the reason.
			return nil, ctx.Err()
		}
	case <-ctx.Done():
		// Fire and forget: the answer of Cancel is not awaited (its
		// channel is buffered), and a lost Cancel costs only the wait
		// the request still had.
		c.Go("Cairn.Cancel", req.CallID, new(struct{}), make(chan *rpc.Call, 1))
		return nil, ctx.Err()
	}
	if call.Error != nil {
		if errors.Is(call.Error, rpc.ErrShutdown) {
			// The client had already seen the connection close: the
			// request was never sent.
			p.drop(addr, c)
			return nil, fmt.Errorf("%w: %w: server %s: connection closed", kv.ErrNoLeader, ErrUnreachable, addr)
		}
		if !isServerError(call.Error) {
			p.drop(addr, c)
			if req.readOnly() {
				return nil, fmt.Errorf("%w: server %s: %v", ErrConnectionLost, addr, call.Error)
			}
			return nil, fmt.Errorf("%w: %w: server %s: %v", kv.ErrOutcomeUnknown, ErrConnectionLost, addr, call.Error)
		}
		return nil, remoteError(call.Error)
	}
	return &resp, nil
}

func isServerError(err error) bool {
	var se rpc.ServerError
	return errors.As(err, &se)
}

// ServerStatus asks the server at addr for its Raft leader and voters;
// a server with no Raft state yet answers no voters.
func (p *Pool) ServerStatus(ctx context.Context, addr string) (leader string, voters []string, err error) {
	resp, err := p.Call(ctx, addr, &Request{Method: mStatus})
	if err != nil {
		return "", nil, err
	}
	return resp.Leader, resp.Peers, nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.clients {
		c.Close()
		delete(p.clients, addr)
	}
}
