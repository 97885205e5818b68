package acl

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/kv"
)

// Identity is what a secret resolved to: the token and what it may do.
type Identity struct {
	Token      *Token
	Authorizer Authorizer
}

// Resolve turns a secret into its token's Authorizer, reading the store
// (uncached): the token's policies, its roles' policies and the rules of
// its service and node identities, merged; a token linking
// global-management may do everything.
func (s *Store) Resolve(ctx context.Context, secret string) (*Identity, error) {
	t, err := s.bySecret(ctx, secret)
	if err != nil {
		return nil, err
	}
	if t == nil {
		if done, _, err := s.Bootstrapped(ctx); err == nil && !done {
			return nil, BootstrapRequiredError{}
		}
		return nil, ErrNotFound
	}
	policyIDs := make([]string, 0, len(t.Policies))
	for _, l := range t.Policies {
		policyIDs = append(policyIDs, l.ID)
	}
	svcs, nodes := slices.Clone(t.ServiceIdentities), slices.Clone(t.NodeIdentities)
	for _, l := range t.Roles {
		r, _, err := s.roleEntry(ctx, l.ID)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		for _, p := range r.Policies {
			policyIDs = append(policyIDs, p.ID)
		}
		svcs = append(svcs, r.ServiceIdentities...)
		nodes = append(nodes, r.NodeIdentities...)
	}
	if slices.Contains(policyIDs, GlobalManagementID) {
		return &Identity{Token: t, Authorizer: management{accessor: t.AccessorID}}, nil
	}
	var rules []Rule
	for _, id := range policyIDs {
		_, p, err := s.PolicyRead(ctx, kv.QueryOptions{}, id)
		if err != nil {
			return nil, err
		}
		if p == nil || !inDC(p.Datacenters, s.cfg.Datacenter) {
			continue
		}
		rs, err := ParseRules(p.Rules)
		if err != nil {
			continue // stored before validation changed; grants nothing
		}
		rules = append(rules, rs...)
	}
	for _, si := range svcs {
		if inDC(si.Datacenters, s.cfg.Datacenter) {
			rs, _ := ParseRules(si.Rules())
			rules = append(rules, rs...)
		}
	}
	for _, ni := range nodes {
		if ni.Datacenter == s.cfg.Datacenter {
			rs, _ := ParseRules(ni.Rules())
			rules = append(rules, rs...)
		}
	}
	return &Identity{Token: t, Authorizer: Compile(rules, s.cfg.Default, t.AccessorID)}, nil
}

func inDC(dcs []string, dc string) bool { return len(dcs) == 0 || slices.Contains(dcs, dc) }

// DownPolicy is Consul's acl.down_policy: what a client agent does when
// it cannot reach the servers to resolve a token.
type DownPolicy string

const (
	DownExtendCache DownPolicy = "extend-cache"
	DownAsyncCache  DownPolicy = "async-cache"
	DownAllow       DownPolicy = "allow"
	DownDeny        DownPolicy = "deny"
)

// ParseDownPolicy checks a down_policy value.
func ParseDownPolicy(s string) (DownPolicy, error) {
	switch d := DownPolicy(s); d {
	case DownExtendCache, DownAsyncCache, DownAllow, DownDeny:
		return d, nil
	case "":
		return DownExtendCache, nil
	}
	return "", errors.New(`acl.down_policy must be "extend-cache" (the default), "async-cache", "allow" or "deny"`)
}

// AgentTokens are the tokens the agent holds itself (Consul's acl.tokens
// and /v1/agent/token/*). Safe for concurrent use.
type AgentTokens struct {
	mu      sync.RWMutex
	tokens  map[string]string // kind -> secret
	changed signal            // fired by Set
}

// Token kinds, as /v1/agent/token/<kind> names them.
const (
	KindDefault       = "default"
	KindAgent         = "agent"
	KindAgentRecovery = "agent_recovery"
	KindReplication   = "replication"
	KindConfigFile    = "config_file_service_registration"
	KindDNS           = "dns"
)

// TokenKind maps a /v1/agent/token/<kind> name, older aliases included,
// to its kind; ok false for an unknown one.
func TokenKind(name string) (string, bool) {
	switch name {
	case "default", "acl_token":
		return KindDefault, true
	case "agent", "acl_agent_token":
		return KindAgent, true
	case "agent_recovery", "agent_master", "acl_agent_master_token":
		return KindAgentRecovery, true
	case "replication", "acl_replication_token":
		return KindReplication, true
	case KindConfigFile, KindDNS:
		return name, true
	}
	return "", false
}

// Get returns the secret of kind ("" when unset).
func (a *AgentTokens) Get(kind string) string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tokens[kind]
}

// Set sets kind's secret.
func (a *AgentTokens) Set(kind, secret string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[string]string{}
	}
	a.tokens[kind] = secret
	a.changed.fire()
}

// Changed returns a channel that closes at the next Set: what answers
// were built with a token (DNS's) are built again.
func (a *AgentTokens) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed.next()
}

// signal is a channel that closes at the next fire; its owner's lock
// guards it.
type signal struct{ ch chan struct{} }

func (s *signal) next() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// All returns a copy of every set token.
func (a *AgentTokens) All() map[string]string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := map[string]string{}
	for k, v := range a.tokens {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// ResolverConfig configures a CachingResolver.
type ResolverConfig struct {
	Store *Store // required
	// TTL is how long a resolved token is kept (Consul's token_ttl,
	// default 30s); 0 keeps none (servers, whose store is local).
	TTL  time.Duration
	Down DownPolicy
	// Tokens are the agent's tokens: the default token stands in for
	// requests without one; the agent_recovery token may act on this
	// agent (NodeName) when the servers cannot be asked.
	Tokens   *AgentTokens
	NodeName string
	Now      func() time.Time
}

// CachingResolver is the agent's Resolver (see Resolver): the store,
// behind a cache of token_ttl that every local ACL write and Invalidate
// empties. Safe for concurrent use.
type CachingResolver struct {
	cfg         ResolverConfig
	mu          sync.Mutex
	cache       map[string]cacheEntry
	gen         uint64
	invalidated signal // fired by Invalidate
}

type cacheEntry struct {
	id      *Identity
	expires time.Time
}

// NewResolver validates cfg.
func NewResolver(cfg ResolverConfig) (*CachingResolver, error) {
	if cfg.Store == nil {
		return nil, errors.New("acl: ResolverConfig.Store is required")
	}
	if cfg.Tokens == nil {
		cfg.Tokens = &AgentTokens{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Down == "" {
		cfg.Down = DownExtendCache
	}
	return &CachingResolver{cfg: cfg, cache: map[string]cacheEntry{}}, nil
}

// Invalidate drops every cached token (an ACL write happened).
func (r *CachingResolver) Invalidate() {
	r.mu.Lock()
	r.cache = map[string]cacheEntry{}
	r.gen++
	r.invalidated.fire()
	r.mu.Unlock()
}

// Invalidated returns a channel that closes at the next Invalidate: an
// ACL write this agent saw may change what any token may do.
func (r *CachingResolver) Invalidated() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.invalidated.next()
}

// TTL is how long a resolved token is kept (0: not kept).
func (r *CachingResolver) TTL() time.Duration { return r.cfg.TTL }

// Authorizer implements Resolver.
func (r *CachingResolver) Authorizer(ctx context.Context, secret string) (Authorizer, error) {
	id, err := r.Identity(ctx, secret)
	if err != nil {
		return nil, err
	}
	return id.Authorizer, nil
}

// Identity resolves secret ("" : the agent's default token, else the
// anonymous token) to its token and Authorizer.
func (r *CachingResolver) Identity(ctx context.Context, secret string) (*Identity, error) {
	if secret == "" {
		secret = r.cfg.Tokens.Get(KindDefault)
	}
	if rec := r.cfg.Tokens.Get(KindAgentRecovery); rec != "" && secret == rec {
		// The recovery token is for when the servers cannot say what a
		// token may do; a token they know keeps its own rights.
		if id, err := r.resolve(ctx, secret); err == nil {
			return id, nil
		}
		rules := []Rule{{Resource: Agent, Name: r.cfg.NodeName, Access: Write}, {Resource: Node, Prefix: true, Access: Read}}
		return &Identity{Token: &Token{AccessorID: "agent-recovery-token", Description: "Agent Recovery Token"},
			Authorizer: Compile(rules, DefaultDeny, "agent-recovery-token")}, nil
	}
	return r.resolve(ctx, secret)
}

func (r *CachingResolver) resolve(ctx context.Context, secret string) (*Identity, error) {
	now := r.cfg.Now()
	r.mu.Lock()
	ce, cached := r.cache[secret]
	gen := r.gen
	r.mu.Unlock()
	if cached && now.Before(ce.expires) {
		return ce.id, nil
	}
	id, err := r.cfg.Store.Resolve(ctx, secret)
	if err != nil {
		if errors.Is(err, ErrNotFound) || ctx.Err() != nil {
			return nil, err
		}
		switch r.cfg.Down {
		case DownAllow:
			return &Identity{Token: &Token{}, Authorizer: AllowAll()}, nil
		case DownDeny:
			return &Identity{Token: &Token{}, Authorizer: DenyAll()}, nil
		default:
			if cached {
				return ce.id, nil
			}
		}
		return nil, err
	}
	if r.cfg.TTL > 0 {
		r.mu.Lock()
		if r.gen == gen {
			exp := now.Add(r.cfg.TTL)
			if t := id.Token.ExpirationTime; t != nil && t.Before(exp) {
				exp = *t
			}
			r.cache[secret] = cacheEntry{id: id, expires: exp}
		}
		r.mu.Unlock()
	}
	return id, nil
}
