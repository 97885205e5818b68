package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"strings"
	"sync"
	"time"

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
	Method    string
	Hops      int
	Q         kv.QueryOptions
	Key       string
	Separator string
	Op        kv.Op
	Ops       []kv.Op
	Session   kv.Session
	ID        string
	Node      string
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
}

// readOnly reports whether a request only reads, so that sending it
// again after a broken connection cannot apply anything twice.
func (req *Request) readOnly() bool {
	switch req.Method {
	case mGet, mList, mKeys, mSessionInfo, mSessions, mStatus, mRaftConfig:
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

// Endpoint is the net/rpc receiver registered on servers.
type Endpoint struct{ r *Router }

// Call runs a forwarded request. net/rpc gives no request context; the
// blocking-query wait bounds how long a call can take.
func (e *Endpoint) Call(req *Request, resp *Response) error {
	out, err := e.r.serve(context.Background(), req)
	if out != nil {
		*resp = *out
	}
	return err
}

// ServeConn returns the function the Mux hands RPC connections to.
func ServeConn(r *Router) (func(net.Conn), error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Cairn", &Endpoint{r: r}); err != nil {
		return nil, fmt.Errorf("register forwarding endpoint: %w", err)
	}
	return func(c net.Conn) { srv.ServeConn(c) }, nil
}

// sentinels survive the trip as text; the client maps them back so the
// HTTP layer answers the same status on every agent.
var sentinels = []error{kv.ErrNotLeader, kv.ErrNoLeader, kv.ErrSessionNotFound, kv.ErrInvalidRequest, kv.ErrTxnFailed, kv.ErrShutdown}

func remoteError(err error) error {
	var se rpc.ServerError
	if !errors.As(err, &se) {
		return err
	}
	msg := string(se)
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

	mu      sync.Mutex
	clients map[string]*rpc.Client
}

// NewPool returns an empty pool; dialTimeout bounds connection set-up.
func NewPool(dialTimeout time.Duration) *Pool {
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	return &Pool{timeout: dialTimeout, clients: map[string]*rpc.Client{}}
}

func (p *Pool) client(addr string) (*rpc.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[addr]; ok {
		return c, nil
	}
	conn, err := dial(addr, connRPC, p.timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: server %s: %v", kv.ErrNoLeader, ErrUnreachable, addr, err)
	}
	c := rpc.NewClient(conn)
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
func (p *Pool) Call(ctx context.Context, addr string, req *Request) (*Response, error) {
	c, err := p.client(addr)
	if err != nil {
		return nil, err
	}
	var resp Response
	call := c.Go("Cairn.Call", req, &resp, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
	case <-ctx.Done():
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
			return nil, fmt.Errorf("%w: %w: server %s: %v; a write may or may not have been applied", kv.ErrNoLeader, ErrConnectionLost, addr, call.Error)
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
