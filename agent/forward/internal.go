package forward

import (
	"context"

	"github.com/cairn-dev/cairn/kv"
)

// InternalStore is the Router as the agent's own parts use it (VIP
// allocation, prepared queries): every request
// is marked Internal, so a server never checks it locally and, when it is
// forwarded, it carries the agent token. Never hand it to the HTTP API.
type InternalStore struct{ r *Router }

// Internal returns the Router's view for the agent's own requests.
func (r *Router) Internal() *InternalStore { return &InternalStore{r: r} }

// Get is Router.Get, marked Internal.
func (s *InternalStore) Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	return s.r.Get(Internal(ctx), q, key)
}

// List is Router.List, marked Internal.
func (s *InternalStore) List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error) {
	return s.r.List(Internal(ctx), q, prefix)
}

// Keys is Router.Keys, marked Internal.
func (s *InternalStore) Keys(ctx context.Context, q kv.QueryOptions, prefix, separator string) (kv.QueryMeta, []string, error) {
	return s.r.Keys(Internal(ctx), q, prefix, separator)
}

// Apply is Router.Apply, marked Internal.
func (s *InternalStore) Apply(ctx context.Context, op kv.Op) (bool, error) {
	return s.r.Apply(Internal(ctx), op)
}

// Txn is Router.Txn, marked Internal.
func (s *InternalStore) Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	return s.r.Txn(Internal(ctx), q, ops)
}

// CreateSession is Router.CreateSession, marked Internal.
func (s *InternalStore) CreateSession(ctx context.Context, sess kv.Session) (string, error) {
	return s.r.CreateSession(Internal(ctx), sess)
}

// DestroySession is Router.DestroySession, marked Internal.
func (s *InternalStore) DestroySession(ctx context.Context, id string) error {
	return s.r.DestroySession(Internal(ctx), id)
}

// RenewSession is Router.RenewSession, marked Internal.
func (s *InternalStore) RenewSession(ctx context.Context, id string) (*kv.Session, error) {
	return s.r.RenewSession(Internal(ctx), id)
}

// SessionInfo is Router.SessionInfo, marked Internal.
func (s *InternalStore) SessionInfo(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error) {
	return s.r.SessionInfo(Internal(ctx), q, id)
}

// Sessions is Router.Sessions, marked Internal.
func (s *InternalStore) Sessions(ctx context.Context, q kv.QueryOptions) (kv.QueryMeta, []*kv.Session, error) {
	return s.r.Sessions(Internal(ctx), q)
}

// NodeSessions is Router.NodeSessions, marked Internal.
func (s *InternalStore) NodeSessions(ctx context.Context, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error) {
	return s.r.NodeSessions(Internal(ctx), q, node)
}
