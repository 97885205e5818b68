package forward

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalogtxn"
	"github.com/cairn-dev/cairn/kv"
)

// ACL enforcement on the server port. The HTTP API checks every request
// before it reaches the Router; a server checks again what arrives over
// the server port, with the token the request carries, so that a process
// that talks to a server directly cannot skip the checks of an agent's
// HTTP API. Requests a server's own agent makes never cross the port and
// are not checked here.
//
// Agent-internal requests (VIP allocation, prepared queries) are marked
// with Internal:
// the mark lives on the context under a key only this package can set,
// so no HTTP request can carry it, and it never travels: when an internal
// request is forwarded, it carries the agent's token instead (AgentToken,
// Consul's acl.tokens.agent), which the server checks like any other.

// ReservedACLPrefix is where the ACL system keeps tokens, policies and
// roles (acl.Prefix). Over the server port the ACL system's own rules
// decide who reaches them: acl.ReservedReadAllowed (a token's own record,
// policies and roles for the resolver of any caller; the rest with ACL
// read) and acl.ReservedOpsAllowed (ACL write, or the first bootstrap).
const ReservedACLPrefix = acl.Prefix

// internalKey marks an agent-internal context.
type internalKey struct{}

// Internal returns ctx marked as the agent's own request: not the
// caller's, so the HTTP API never marks one (it passes the caller's
// token), and a forwarded one carries the agent token.
func Internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

// IsInternal reports whether ctx is marked by Internal.
func IsInternal(ctx context.Context) bool {
	v, _ := ctx.Value(internalKey{}).(bool)
	return v
}

// ACL makes a server check the token of every request it serves for
// another agent against the resolver res returns, read on each request
// (the ACL system is made after the Router it reads through); nil, or a
// nil resolver: ACLs off, nothing is checked.
func ACL(res func() acl.Resolver) Option {
	return func(r *Router) { r.acl = res }
}

// InitialManagement is acl.tokens.initial_management, whose holder may
// make that token on the servers (acl.ReservedOpsAllowed).
func InitialManagement(secret string) Option {
	return func(r *Router) { r.initialMgmt = secret }
}

// KeyListPolicy is acl.enable_key_list_policy: a recursive read or key
// listing a server serves for another agent needs "list" on the prefix
// (Consul's KVS.List and ListKeys check it on the server).
func KeyListPolicy(on bool) Option {
	return func(r *Router) { r.keyListPolicy = on }
}

// AgentToken gives the token internal requests carry when they are
// forwarded (read on each request, so a reload or `cairn acl set-agent-token`
// takes effect at once). Without it they carry none: the anonymous token.
func AgentToken(token func() string) Option {
	return func(r *Router) { r.agentToken = token }
}

// outgoing is the context a forwarded request is sent with: for an
// internal request, the agent token in place of any other.
func (r *Router) outgoing(ctx context.Context) context.Context {
	t := ""
	if r.agentToken != nil {
		t = r.agentToken()
	}
	if !IsInternal(ctx) {
		return context.WithValue(ctx, agentTokenKey{}, t)
	}
	return kv.WithToken(ctx, t)
}

// agentTokenKey carries the agent token to the Pool, for Request.AgentToken.
type agentTokenKey struct{}

func agentToken(ctx context.Context) string {
	t, _ := ctx.Value(agentTokenKey{}).(string)
	return t
}

// Keys an agent keeps for its own node, named for it, which the agent
// reaches with its own token (the agent token: Consul asks node:write on
// the node of every agent under default deny) besides any token with key
// rights on them:
//   - AgentKeysPrefix+node+"/<id>": the intents that make /v1/txn with
//     catalog operations crash-atomic (agent/catalogtxn);
//   - GossipKeyPrefix+node: the node's gossip signing key (public), which
//     every agent reads to check catalog records, so anyone may read it.
const (
	AgentKeysPrefix = catalogtxn.Prefix
	GossipKeyPrefix = "_cairn/gossip/key/"
)

// agentKeyNode is the node whose agent owns key, ok false for any other key.
func agentKeyNode(key string) (node string, ok bool) {
	if rest, ok := strings.CutPrefix(key, AgentKeysPrefix); ok {
		node, _, _ = strings.Cut(rest, "/")
		return node, node != ""
	}
	if node, ok := strings.CutPrefix(key, GossipKeyPrefix); ok {
		return node, node != "" && !strings.Contains(node, "/")
	}
	return "", false
}

func touchesAgentKeys(ops []kv.Op) bool {
	for _, op := range ops {
		if _, ok := agentKeyNode(op.Key); ok {
			return true
		}
	}
	return false
}

// agentOwns reports whether the request's tokens may reach key as the
// owning agent's: node:write on its node by the caller's token or the
// agent token the request carries.
func (g *guard) agentOwns(key string) bool {
	node, ok := agentKeyNode(key)
	if !ok {
		return false
	}
	return (g.authz != nil && g.authz.Allowed(acl.Node, node, acl.Write)) ||
		(g.agentAuthz != nil && g.agentAuthz.Allowed(acl.Node, node, acl.Write))
}

// guard is the check of one request arriving over the server port: an
// error refuses it before anything runs, and filter (when not nil) trims
// the answer to what the token may read.
type guard struct {
	authz         acl.Authorizer // nil when the token did not resolve (reserved reads only)
	agentAuthz    acl.Authorizer // the request's AgentToken's; nil without one
	token         string
	initialMgmt   string
	keyListPolicy bool
}

// check vets req. For a transaction it returns Consul's per-operation
// errors instead: the whole transaction is refused with them.
func (r *Router) check(ctx context.Context, req *Request) (*guard, []kv.TxnError, error) {
	if r.acl == nil {
		return nil, nil, nil
	}
	res := r.acl()
	if res == nil {
		return nil, nil, nil
	}
	authz, err := res.Authorizer(ctx, req.Token)
	if err != nil {
		// The ACL system's own reads go on without a resolved token
		// (resolving a token reads its record, which may not exist):
		// acl.ReservedReadAllowed decides them. Anything else stops here.
		if !errors.Is(err, acl.ErrNotFound) || !req.reservedRead() {
			return nil, nil, err
		}
		authz = nil
	}
	g := &guard{authz: authz, token: req.Token, initialMgmt: r.initialMgmt, keyListPolicy: r.keyListPolicy}
	if req.AgentToken != "" {
		// Only for the agent's own keys (guard.agentOwns); an unknown
		// agent token grants nothing.
		g.agentAuthz, _ = res.Authorizer(ctx, req.AgentToken)
	}
	switch req.Method {
	case mGet:
		return g, nil, g.key(req.Key, acl.Read)
	case mList, mKeys:
		return g, nil, g.prefix(req.Key)
	case mApply:
		return g, nil, g.ops([]kv.Op{req.Op}, func(_ int, err error) error { return err })
	case mTxn:
		var errs []kv.TxnError
		g.ops(req.Ops, func(i int, err error) error {
			errs = append(errs, kv.TxnError{OpIndex: i, What: err.Error()})
			return nil
		})
		return g, errs, nil
	case mCreateSession:
		return g, nil, g.allow(acl.Session, req.Session.Node, acl.Write)
	case mDestroySession, mRenewSession:
		_, s, err := r.local.SessionInfo(ctx, kv.QueryOptions{Stale: true}, req.ID)
		if err != nil || s == nil {
			return g, nil, err
		}
		return g, nil, g.allow(acl.Session, s.Node, acl.Write)
	}
	// Session reads are filtered; status and Raft reads need nothing,
	// as Consul's Status endpoints.
	return g, nil, nil
}

func (g *guard) denied(r acl.Resource, name string, want acl.Access) error {
	if g.authz != nil {
		// The agent's own check's text, with the token's AccessorID.
		return acl.Denied(g.authz, r, name, want)
	}
	lvl := map[acl.Access]string{acl.Read: "read", acl.List: "list", acl.Write: "write"}[want]
	who := "token"
	if g.token == "" {
		who = "anonymous token"
	}
	return fmt.Errorf("%w: %s lacks permission '%s:%s' on %q", acl.ErrPermissionDenied, who, r, lvl, name)
}

func (g *guard) allow(r acl.Resource, name string, want acl.Access) error {
	if g.authz != nil && g.authz.Allowed(r, name, want) {
		return nil
	}
	return g.denied(r, name, want)
}

// reservedRead reports whether req only reads the ACL system's keys.
func (req *Request) reservedRead() bool {
	switch req.Method {
	case mGet, mList, mKeys:
		return acl.IsReserved(req.Key)
	case mTxn:
		for _, op := range req.Ops {
			if !op.Verb.IsRead() || !acl.IsReserved(op.Key) {
				return false
			}
		}
		return len(req.Ops) > 0
	}
	return false
}

// errReserved refuses an operation on the ACL system's keys.
func (g *guard) errReserved(key string) error {
	return fmt.Errorf("%w: %q is the ACL system's; use /v1/acl/*", acl.ErrPermissionDenied, key)
}

// key checks want on one key; the ACL system's keys are the ACL
// system's to decide (acl.ReservedReadAllowed).
func (g *guard) key(key string, want acl.Access) error {
	if acl.IsReserved(key) {
		if acl.ReservedReadAllowed(key, g.token, g.authz) {
			return nil
		}
		return g.errReserved(key)
	}
	return g.allow(acl.Key, key, want)
}

// prefix checks a recursive read: inside the ACL system's keys, as
// acl.ReservedReadAllowed says; elsewhere "list" on the prefix with
// enable_key_list_policy, else nothing up front (the answer is filtered,
// as Consul's KVS.List does).
func (g *guard) prefix(prefix string) error {
	if acl.IsReserved(prefix) {
		if !acl.ReservedReadAllowed(prefix, g.token, g.authz) {
			return g.errReserved(prefix)
		}
		return nil
	}
	if g.keyListPolicy {
		return g.allow(acl.Key, prefix, acl.List)
	}
	return nil
}

// ops is Consul's kvsPreApply for each KV operation of ops, refuse called
// with each refusal (its error ends the check). Operations on the ACL
// system's keys are allowed together by acl.ReservedOpsAllowed, or all
// refused.
func (g *guard) ops(ops []kv.Op, refuse func(i int, err error) error) error {
	reservedOK := acl.ReservedOpsAllowed(ops, g.token, g.authz, g.initialMgmt)
	for i, op := range ops {
		var err error
		switch {
		case g.agentOwns(op.Key):
			// the agent's own record (AgentKeysPrefix)
		case acl.IsReserved(op.Key) || (op.Verb == kv.VerbDeleteTree && strings.HasPrefix(acl.Prefix, op.Key)):
			if op.Verb.IsRead() && op.Verb != kv.VerbCheckNotExists {
				err = g.key(op.Key, acl.Read)
			} else if !reservedOK || (op.Verb == kv.VerbDeleteTree && !g.mgmt()) {
				err = g.errReserved(op.Key)
			}
			if err == nil && op.Verb == kv.VerbDeleteTree {
				err = g.under(op.Key)
			}
		case op.Verb == kv.VerbGet || op.Verb == kv.VerbGetTree:
			// filtered on the way out
		case op.Verb == kv.VerbCheckIndex || op.Verb == kv.VerbCheckSession:
			err = g.allow(acl.Key, op.Key, acl.Read)
		case op.Verb == kv.VerbDeleteTree:
			err = g.under(op.Key)
		default:
			err = g.allow(acl.Key, op.Key, acl.Write)
		}
		if err != nil {
			if err := refuse(i, err); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *guard) mgmt() bool { return g.authz != nil && g.authz.Allowed(acl.ACL, "", acl.Write) }

// under is KeyWritePrefix: write on prefix and everything under it.
func (g *guard) under(prefix string) error {
	if g.authz != nil && g.authz.AllowedUnder(acl.Key, prefix, acl.Write) {
		return nil
	}
	return g.denied(acl.Key, prefix, acl.Write)
}

// readable reports whether the token may read key.
func (g *guard) readable(key string) bool {
	if g.agentOwns(key) || strings.HasPrefix(key, GossipKeyPrefix) {
		return true
	}
	if acl.IsReserved(key) {
		return acl.ReservedReadAllowed(key, g.token, g.authz)
	}
	return g.authz != nil && g.authz.Allowed(acl.Key, key, acl.Read)
}

// filter trims resp to what the token may read and says so in its meta
// (Consul's ResultsFilteredByACLs). The lists in resp may be the store's
// own (its listing cache hands out the cached slice), so filtering makes
// a new list and never changes them in place.
func (g *guard) filter(req *Request, resp *Response) {
	if g == nil || resp == nil {
		return
	}
	cut := false
	switch req.Method {
	case mList:
		resp.Entries, cut = keepOnly(resp.Entries, func(e *kv.Entry) bool { return g.readable(e.Key) })
	case mKeys:
		resp.Keys, cut = keepOnly(resp.Keys, g.readable)
	case mTxn:
		resp.Results, cut = keepOnly(resp.Results, func(r kv.TxnResult) bool { return r.KV == nil || g.readable(r.KV.Key) })
	case mSessionInfo:
		if s := resp.SessionOut; s != nil && !g.authz.Allowed(acl.Session, s.Node, acl.Read) {
			resp.SessionOut = nil
			cut = true
		}
	case mSessions:
		resp.Sessions, cut = keepOnly(resp.Sessions, func(s *kv.Session) bool { return g.authz.Allowed(acl.Session, s.Node, acl.Read) })
	}
	if cut {
		resp.Meta.ResultsFilteredByACLs = true
	}
}

// keepOnly returns the elements of in that keep accepts, and whether it
// dropped any. in is never written to: when something is dropped the
// answer is a new slice, otherwise in itself.
func keepOnly[T any](in []T, keep func(T) bool) ([]T, bool) {
	for i, v := range in {
		if keep(v) {
			continue
		}
		out := make([]T, i, len(in)-1)
		copy(out, in[:i])
		for _, v := range in[i+1:] {
			if keep(v) {
				out = append(out, v)
			}
		}
		return out, true
	}
	return in, false
}
