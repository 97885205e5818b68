package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
)

// ACLConfig is Consul's acl block (and its older top-level names).
type ACLConfig struct {
	// Enabled (acl.enabled) turns ACLs on.
	Enabled bool
	// DefaultPolicy (acl.default_policy, acl_default_policy): "allow"
	// (Consul's default) or "deny".
	DefaultPolicy string
	// DownPolicy (acl.down_policy): extend-cache (default), async-cache,
	// allow or deny.
	DownPolicy string
	// EnableTokenPersistence keeps tokens set through /v1/agent/token/*
	// in <data_dir>/acl-tokens.json across restarts.
	EnableTokenPersistence bool
	// EnableKeyListPolicy (acl.enable_key_list_policy,
	// acl_enable_key_list_policy): a recursive KV read or key listing
	// needs "list" on the prefix; without it, as in Consul, the answer
	// only leaves out the keys the token may not read.
	EnableKeyListPolicy bool
	// TokenTTL (acl.token_ttl, acl_ttl) is how long a client agent keeps
	// a resolved token (default 30s).
	TokenTTL time.Duration
	// Tokens (acl.tokens): initial_management (acl_master_token), agent
	// (acl_agent_token), default (acl_token), agent_recovery
	// (acl_agent_master_token), replication, dns (what DNS answers
	// with; default when unset).
	InitialManagement string
	Agent             string
	Default           string
	AgentRecovery     string
	Replication       string
	DNS               string
}

// fileACL is Consul's acl block in a config file.
type fileACL struct {
	Enabled                *bool          `hcl:"enabled"`
	DefaultPolicy          *string        `hcl:"default_policy"`
	DownPolicy             *string        `hcl:"down_policy"`
	EnableTokenPersistence *bool          `hcl:"enable_token_persistence"`
	TokenTTL               *string        `hcl:"token_ttl"`
	PolicyTTL              *string        `hcl:"policy_ttl"`
	RoleTTL                *string        `hcl:"role_ttl"`
	EnableKeyListPolicy    *bool          `hcl:"enable_key_list_policy"`
	EnableTokenReplication *bool          `hcl:"enable_token_replication"`
	DisabledTTL            *string        `hcl:"disabled_ttl"`
	Tokens                 *fileACLTokens `hcl:"tokens"`
}

type fileACLTokens struct {
	InitialManagement *string `hcl:"initial_management"`
	Master            *string `hcl:"master"`
	Agent             *string `hcl:"agent"`
	Default           *string `hcl:"default"`
	AgentRecovery     *string `hcl:"agent_recovery"`
	AgentMaster       *string `hcl:"agent_master"`
	Replication       *string `hcl:"replication"`
	ConfigFile        *string `hcl:"config_file_service_registration"`
	DNS               *string `hcl:"dns"`
}

// fileACLLegacy are the pre-1.4 top-level names.
type fileACLLegacy struct {
	DefaultPolicy    *string `hcl:"acl_default_policy"`
	DownPolicy       *string `hcl:"acl_down_policy"`
	TTL              *string `hcl:"acl_ttl"`
	MasterToken      *string `hcl:"acl_master_token"`
	Token            *string `hcl:"acl_token"`
	AgentToken       *string `hcl:"acl_agent_token"`
	AgentMasterToken *string `hcl:"acl_agent_master_token"`
	ReplicationToken *string `hcl:"acl_replication_token"`
	KeyListPolicy    *bool   `hcl:"acl_enable_key_list_policy"`
}

func (l *fileACLLegacy) apply(c *ACLConfig) error {
	set(&c.DefaultPolicy, l.DefaultPolicy)
	set(&c.DownPolicy, l.DownPolicy)
	set(&c.InitialManagement, l.MasterToken)
	set(&c.Default, l.Token)
	set(&c.Agent, l.AgentToken)
	set(&c.AgentRecovery, l.AgentMasterToken)
	set(&c.Replication, l.ReplicationToken)
	set(&c.EnableKeyListPolicy, l.KeyListPolicy)
	if l.TTL != nil {
		return parseACLDuration("acl_ttl", *l.TTL, &c.TokenTTL)
	}
	return nil
}

func (f *fileACL) apply(c *ACLConfig) error {
	set(&c.Enabled, f.Enabled)
	set(&c.DefaultPolicy, f.DefaultPolicy)
	set(&c.DownPolicy, f.DownPolicy)
	set(&c.EnableTokenPersistence, f.EnableTokenPersistence)
	set(&c.EnableKeyListPolicy, f.EnableKeyListPolicy)
	if f.TokenTTL != nil {
		if err := parseACLDuration("acl.token_ttl", *f.TokenTTL, &c.TokenTTL); err != nil {
			return err
		}
	}
	if t := f.Tokens; t != nil {
		set(&c.InitialManagement, t.Master)
		set(&c.InitialManagement, t.InitialManagement)
		set(&c.AgentRecovery, t.AgentMaster)
		set(&c.AgentRecovery, t.AgentRecovery)
		set(&c.Agent, t.Agent)
		set(&c.Default, t.Default)
		set(&c.Replication, t.Replication)
		set(&c.DNS, t.DNS)
	}
	return nil
}

func parseACLDuration(key, v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%s = %q is not a duration; give one with a unit, such as \"30s\"", key, v)
	}
	*dst = d
	return nil
}

// Validate checks the acl block.
func (c ACLConfig) Validate() error {
	switch c.DefaultPolicy {
	case "", "allow", "deny":
	default:
		return fmt.Errorf("acl.default_policy = %q: use \"allow\" or \"deny\"", c.DefaultPolicy)
	}
	if _, err := acl.ParseDownPolicy(c.DownPolicy); err != nil {
		return fmt.Errorf("acl.down_policy = %q: %w", c.DownPolicy, err)
	}
	return nil
}

// aclState is the ACL system of one agent, made once by aclSystem.
type aclState struct {
	store    *acl.Store
	resolver *acl.CachingResolver
	tokens   *acl.AgentTokens
	file     string // acl-tokens.json; "" without persistence
}

// aclSystem builds the ACL store and resolver (nil when ACLs are off).
func (w *wiring) aclSystem() (*aclState, error) {
	if !w.cfg.ACL.Enabled {
		return nil, nil
	}
	if w.acls != nil {
		return w.acls, nil
	}
	c := w.cfg.ACL
	if err := c.Validate(); err != nil {
		return nil, err
	}
	down, _ := acl.ParseDownPolicy(c.DownPolicy)
	ttl := c.TokenTTL
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	st := &aclState{tokens: &acl.AgentTokens{}}
	for kind, v := range map[string]string{acl.KindDefault: c.Default, acl.KindAgent: c.Agent,
		acl.KindAgentRecovery: c.AgentRecovery, acl.KindReplication: c.Replication, acl.KindDNS: c.DNS} {
		if v != "" {
			st.tokens.Set(kind, v)
		}
	}
	if c.EnableTokenPersistence && w.dataDir != "" {
		st.file = filepath.Join(w.dataDir, "acl-tokens.json")
		if err := loadPersistedTokens(st.file, st.tokens); err != nil {
			return nil, err
		}
	}
	var err error
	st.store, err = acl.NewStore(acl.StoreConfig{KV: w.routerFor(), Datacenter: w.cfg.Datacenter, DataDir: w.dataDir,
		InitialManagement: c.InitialManagement,
		Default:           acl.Default(c.DefaultPolicy != "deny"), OnChange: func() {
			if st.resolver != nil {
				st.resolver.Invalidate()
			}
		}})
	if err != nil {
		return nil, err
	}
	st.resolver, err = acl.NewResolver(acl.ResolverConfig{Store: st.store, TTL: ttl, Down: down, Tokens: st.tokens, NodeName: w.cfg.NodeName})
	if err != nil {
		return nil, err
	}
	w.acls = st
	return st, nil
}

// aclResolver is the Resolver the enforcing endpoints ask; nil when ACLs
// are off.
func (w *wiring) aclResolver() (acl.Resolver, error) {
	st, err := w.aclSystem()
	if st == nil || err != nil {
		return nil, err
	}
	return st.resolver, nil
}

// httpACLs is the /v1/acl endpoints' view of the ACL system.
func (w *wiring) httpACLs() (*httpapi.ACLSystem, error) {
	st, err := w.aclSystem()
	if st == nil || err != nil {
		return nil, err
	}
	return &httpapi.ACLSystem{Store: st.store, Resolver: st.resolver, SetAgentToken: st.setAgentToken}, nil
}

// persistedTokens is Consul's acl-tokens.json.
type persistedTokens struct {
	Default       string `json:"default,omitempty"`
	Agent         string `json:"agent,omitempty"`
	AgentRecovery string `json:"agent_recovery,omitempty"`
	Replication   string `json:"replication,omitempty"`
	ConfigFile    string `json:"config_file_service_registration,omitempty"`
	DNS           string `json:"dns,omitempty"`
}

func (p *persistedTokens) fields() map[string]*string {
	return map[string]*string{acl.KindDefault: &p.Default, acl.KindAgent: &p.Agent, acl.KindAgentRecovery: &p.AgentRecovery,
		acl.KindReplication: &p.Replication, acl.KindConfigFile: &p.ConfigFile, acl.KindDNS: &p.DNS}
}

func loadPersistedTokens(path string, into *acl.AgentTokens) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read persisted ACL tokens: %w", err)
	}
	var p persistedTokens
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("persisted ACL tokens %s are unreadable (%v); fix or remove the file", path, err)
	}
	for kind, v := range p.fields() {
		if *v != "" {
			into.Set(kind, *v)
		}
	}
	return nil
}

// setAgentToken sets one of the agent's tokens and, with
// enable_token_persistence, writes them all to acl-tokens.json.
func (st *aclState) setAgentToken(kind, secret string) error {
	st.tokens.Set(kind, secret)
	st.resolver.Invalidate()
	if st.file == "" {
		return nil
	}
	var p persistedTokens
	all := st.tokens.All()
	for k, v := range p.fields() {
		*v = all[k]
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	tmp := st.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("persist ACL tokens: %w", err)
	}
	if err := os.Rename(tmp, st.file); err != nil {
		return fmt.Errorf("persist ACL tokens: %w", err)
	}
	return nil
}

// aclPart runs on servers: the leader makes the initial_management token
// (retrying until the store takes it; a request carrying it before then
// makes it too, see StoreConfig.InitialManagement), and every server
// empties its token cache whenever anything under the ACL prefix
// changes.
func (w *wiring) aclPart() (part, bool, error) {
	st, err := w.aclSystem()
	if st == nil || err != nil || w.store == nil {
		return part{}, false, err
	}
	store, log, initial := w.store, w.log, w.cfg.ACL.InitialManagement
	return part{"acl", func(ctx context.Context) error {
		if initial != "" {
			go func() {
				for {
					changed := store.LeaderChanged()
					if store.IsLeader() {
						err := st.store.EnsureInitialManagement(ctx, initial)
						if err == nil {
							return
						}
						if ctx.Err() != nil {
							return
						}
						log.Warn("could not create the ACL initial management token; retrying", "err", err)
						select {
						case <-ctx.Done():
							return
						case <-time.After(time.Second):
						}
						continue
					}
					select {
					case <-ctx.Done():
						return
					case <-changed:
					}
				}
			}()
		}
		var index uint64
		for ctx.Err() == nil {
			meta, _, err := store.List(ctx, kv.QueryOptions{Stale: true, MinIndex: index, MaxWait: 5 * time.Minute}, acl.Prefix)
			if err != nil {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				continue
			}
			if meta.Index != index {
				st.resolver.Invalidate()
				index = meta.Index
			}
		}
		return nil
	}}, true, nil
}
