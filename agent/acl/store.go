package acl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/kv"
	"github.com/google/uuid"
)

// KV is what the ACL store needs from the replicated store: a
// *kv.Server on servers, the forwarder to them on client agents.
type KV interface {
	Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error)
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)
}

// The reserved KV keys the ACL system lives under, replicated by Raft
// and carried by snapshots. Users never reach them: /v1/kv and /v1/txn
// refuse the prefix.
const (
	Prefix         = "_cairn/acl/"
	tokenPrefix    = Prefix + "token/"       // by accessor: the token
	secretPrefix   = Prefix + "secret/"      // by sha256(secret): a copy of the token
	policyPrefix   = Prefix + "policy/"      // by ID
	policyNamePfx  = Prefix + "policy-name/" // by name: the ID
	rolePrefix     = Prefix + "role/"
	roleNamePfx    = Prefix + "role-name/"
	bootstrapKey   = Prefix + "bootstrap" // present once bootstrapped; its ModifyIndex is the reset index
	bootstrapReset = "acl-bootstrap-reset"
)

// secretKey is where the token with secret lives: hashed, so that key
// listings never show secrets, and found without scanning.
func secretKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return secretPrefix + hex.EncodeToString(h[:])
}

// InvalidError is a request the ACL store refuses as malformed (400).
type InvalidError struct{ msg string }

func (e *InvalidError) Error() string { return e.msg }

func invalid(format string, args ...any) error { return &InvalidError{fmt.Sprintf(format, args...)} }

// BootstrapNotAllowedError is the second bootstrap (403).
type BootstrapNotAllowedError struct{ ResetIndex uint64 }

func (e *BootstrapNotAllowedError) Error() string {
	return fmt.Sprintf("ACL bootstrap no longer allowed (reset index: %d)", e.ResetIndex)
}

// StoreConfig configures a Store.
type StoreConfig struct {
	KV         KV     // required
	Datacenter string // for node and service identities; default "dc1"
	// DataDir holds acl-bootstrap-reset; "" disables bootstrap resets.
	DataDir string
	// Default is the default policy compiled into every authorizer.
	Default Default
	// OnChange is called after every write (the resolver's cache drops
	// what it holds); optional.
	OnChange func()
	// InitialManagement is the configured initial_management secret: a
	// request carrying it before the leader stored it stores it then.
	InitialManagement string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Store reads and writes tokens, policies and roles in the replicated KV
// store. Safe for concurrent use.
type Store struct{ cfg StoreConfig }

// NewStore validates cfg.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.KV == nil {
		return nil, errors.New("acl: StoreConfig.KV is required")
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = "dc1"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg}, nil
}

func (s *Store) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

// txn applies ops and returns the indexes of the entry written by op i.
func (s *Store) txn(ctx context.Context, ops []kv.Op, conflict func(op kv.Op) error) ([]kv.TxnResult, error) {
	_, res, txnErrs, err := s.cfg.KV.Txn(ctx, kv.QueryOptions{}, ops)
	if len(txnErrs) > 0 {
		te := txnErrs[0]
		if te.OpIndex < len(ops) && conflict != nil {
			if cerr := conflict(ops[te.OpIndex]); cerr != nil {
				return nil, cerr
			}
		}
		return nil, fmt.Errorf("ACL change conflicted with another (%s); retry", te.What)
	}
	if err != nil {
		return nil, err
	}
	s.changed()
	return res, nil
}

// indexOf returns the indexes of the last result about key: the write,
// after any check of the same key.
func indexOf(res []kv.TxnResult, key string) (create, modify uint64) {
	for i := len(res) - 1; i >= 0; i-- {
		if r := res[i]; r.KV != nil && r.KV.Key == key {
			return r.KV.CreateIndex, r.KV.ModifyIndex
		}
	}
	return 0, 0
}

func (s *Store) getJSON(ctx context.Context, q kv.QueryOptions, key string, v any) (kv.QueryMeta, *kv.Entry, error) {
	meta, e, err := s.cfg.KV.Get(ctx, q, key)
	if err != nil || e == nil {
		return meta, nil, err
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return meta, nil, fmt.Errorf("ACL record at %s is unreadable: %w", key, err)
	}
	return meta, e, nil
}

// ---- Bootstrap ----

// Bootstrapped reports whether a management token was ever made (by
// bootstrap or the initial_management token), and the reset index.
func (s *Store) Bootstrapped(ctx context.Context) (bool, uint64, error) {
	_, e, err := s.cfg.KV.Get(ctx, kv.QueryOptions{}, bootstrapKey)
	if err != nil || e == nil {
		return false, 0, err
	}
	return true, e.ModifyIndex, nil
}

// Bootstrap makes the first management token, once; a reset file in the
// data dir holding the reset index allows one more.
func (s *Store) Bootstrap(ctx context.Context) (*Token, error) {
	done, reset, err := s.Bootstrapped(ctx)
	if err != nil {
		return nil, err
	}
	check := kv.Op{Verb: kv.VerbCheckNotExists, Key: bootstrapKey}
	resetFile := ""
	if done {
		if s.cfg.DataDir == "" {
			return nil, &BootstrapNotAllowedError{reset}
		}
		resetFile = filepath.Join(s.cfg.DataDir, bootstrapReset)
		b, err := os.ReadFile(resetFile)
		if err != nil {
			return nil, &BootstrapNotAllowedError{reset}
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n != reset {
			return nil, &BootstrapNotAllowedError{reset}
		}
		check = kv.Op{Verb: kv.VerbCheckIndex, Key: bootstrapKey, Index: reset}
	}
	t := &Token{AccessorID: uuid.NewString(), SecretID: uuid.NewString(),
		Description: "Bootstrap Token (Global Management)",
		Policies:    []*PolicyLink{{ID: GlobalManagementID, Name: GlobalManagementName}},
		CreateTime:  s.cfg.Now()}
	t.SetHash()
	ops := append([]kv.Op{check, {Verb: kv.VerbSet, Key: bootstrapKey, Value: []byte("{}")}}, tokenOps(t, nil)...)
	res, err := s.txn(ctx, ops, func(kv.Op) error { return &BootstrapNotAllowedError{reset} })
	if err != nil {
		return nil, err
	}
	t.CreateIndex, t.ModifyIndex = indexOf(res, tokenPrefix+t.AccessorID)
	if resetFile != "" {
		_ = os.Remove(resetFile)
	}
	return t, nil
}

// EnsureInitialManagement makes the initial_management token secret, if
// no token has it yet, and marks the ACL system bootstrapped (Consul's
// leader does the same at start).
func (s *Store) EnsureInitialManagement(ctx context.Context, secret string) error {
	if _, e, err := s.cfg.KV.Get(ctx, kv.QueryOptions{}, secretKey(secret)); err != nil || e != nil {
		return err
	}
	t := &Token{AccessorID: uuid.NewString(), SecretID: secret, Description: "Initial Management Token",
		Policies: []*PolicyLink{{ID: GlobalManagementID, Name: GlobalManagementName}}, CreateTime: s.cfg.Now()}
	t.SetHash()
	ops := tokenOps(t, nil)
	if done, _, err := s.Bootstrapped(ctx); err != nil {
		return err
	} else if !done {
		ops = append(ops, kv.Op{Verb: kv.VerbSet, Key: bootstrapKey, Value: []byte("{}")})
	}
	_, err := s.txn(ctx, ops, nil)
	return err
}

// ---- Tokens ----

// tokenOps writes t (new when old is nil): the token by accessor and its
// copy by secret, checked against concurrent changes.
func tokenOps(t *Token, old *kv.Entry) []kv.Op {
	stored := *t
	stored.CreateIndex, stored.ModifyIndex = 0, 0
	stored.Policies, stored.Roles = nil, nil
	for _, p := range t.Policies {
		stored.Policies = append(stored.Policies, &PolicyLink{ID: p.ID})
	}
	for _, r := range t.Roles {
		stored.Roles = append(stored.Roles, &RoleLink{ID: r.ID})
	}
	v, _ := json.Marshal(&stored)
	var ops []kv.Op
	if old == nil {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckNotExists, Key: tokenPrefix + t.AccessorID},
			kv.Op{Verb: kv.VerbCheckNotExists, Key: secretKey(t.SecretID)})
	} else {
		ops = append(ops, kv.Op{Verb: kv.VerbCheckIndex, Key: tokenPrefix + t.AccessorID, Index: old.ModifyIndex})
	}
	return append(ops, kv.Op{Verb: kv.VerbSet, Key: tokenPrefix + t.AccessorID, Value: v},
		kv.Op{Verb: kv.VerbSet, Key: secretKey(t.SecretID), Value: v})
}

// TokenFilter narrows TokenList (Consul's ?policy= ?role= ?servicename=
// ?authmethod=); at most one may be set.
type TokenFilter struct{ Policy, Role, ServiceName, AuthMethod string }

// TokenCreate makes a token from t (AccessorID and SecretID may be
// given as UUIDs, else they are generated).
func (s *Store) TokenCreate(ctx context.Context, t *Token) (*Token, error) {
	t = cloneToken(t)
	for _, id := range []*string{&t.AccessorID, &t.SecretID} {
		if *id == "" {
			*id = uuid.NewString()
		} else if _, err := uuid.Parse(*id); err != nil {
			return nil, invalid("Invalid Token: %q is not a valid UUID; leave AccessorID and SecretID empty to have them generated", *id)
		}
	}
	if t.AccessorID == AnonymousAccessorID || t.AccessorID == GlobalManagementID {
		return nil, invalid("Invalid Token: AccessorID %s is reserved", t.AccessorID)
	}
	if t.AuthMethod != "" {
		return nil, invalid("Invalid Token: cairn has no auth methods; leave AuthMethod empty")
	}
	now := s.cfg.Now()
	t.CreateTime = now
	if t.ExpirationTTL != 0 {
		if t.ExpirationTime != nil {
			return nil, invalid("Token Expiration TTL and Time cannot both be set")
		}
		ttl := time.Duration(t.ExpirationTTL)
		if ttl < time.Minute || ttl > 24*time.Hour {
			return nil, invalid("Token Expiration TTL '%s' should be between %s and %s", ttl, time.Minute, 24*time.Hour)
		}
		exp := now.Add(ttl)
		t.ExpirationTime = &exp
		t.ExpirationTTL = 0
	} else if t.ExpirationTime != nil && !t.ExpirationTime.After(now) {
		return nil, invalid("ExpirationTime cannot be in the past")
	}
	if err := s.checkLinks(ctx, t); err != nil {
		return nil, err
	}
	t.SetHash()
	res, err := s.txn(ctx, tokenOps(t, nil), func(kv.Op) error {
		return invalid("Invalid Token: AccessorID or SecretID is already in use")
	})
	if err != nil {
		return nil, err
	}
	t.CreateIndex, t.ModifyIndex = indexOf(res, tokenPrefix+t.AccessorID)
	return t, nil
}

// TokenUpdate replaces the token t.AccessorID (which must exist) with t.
func (s *Store) TokenUpdate(ctx context.Context, t *Token) (*Token, error) {
	t = cloneToken(t)
	old, e, err := s.tokenEntry(ctx, t.AccessorID)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, invalid("Cannot find token %q", t.AccessorID)
	}
	if t.SecretID == "" {
		t.SecretID = old.SecretID
	} else if t.SecretID != old.SecretID {
		return nil, invalid("Changing a token's SecretID is not permitted")
	}
	if t.Local != old.Local {
		return nil, invalid("Cannot toggle local mode of %s", t.AccessorID)
	}
	if t.ExpirationTTL != 0 || (t.ExpirationTime != nil && (old.ExpirationTime == nil || !t.ExpirationTime.Equal(*old.ExpirationTime))) {
		return nil, invalid("Cannot change expiration time of %s", t.AccessorID)
	}
	t.ExpirationTime, t.CreateTime = old.ExpirationTime, old.CreateTime
	if err := s.checkLinks(ctx, t); err != nil {
		return nil, err
	}
	t.SetHash()
	var prev *kv.Entry
	if e != nil {
		prev = e
	}
	ops := tokenOps(t, prev)
	if prev == nil { // the anonymous token, never stored before
		ops = ops[1:]
		ops = append([]kv.Op{{Verb: kv.VerbCheckNotExists, Key: tokenPrefix + t.AccessorID}}, ops...)
	}
	res, err := s.txn(ctx, ops, func(kv.Op) error {
		return invalid("the token changed while it was being updated; read it again and retry")
	})
	if err != nil {
		return nil, err
	}
	t.CreateIndex, t.ModifyIndex = indexOf(res, tokenPrefix+t.AccessorID)
	if e != nil {
		t.CreateIndex = e.CreateIndex
	}
	return t, nil
}

// TokenClone copies the token accessor under new IDs; an empty
// description keeps the original's.
func (s *Store) TokenClone(ctx context.Context, accessor, description string) (*Token, error) {
	old, _, err := s.tokenEntry(ctx, accessor)
	if err != nil {
		return nil, err
	}
	if old == nil {
		return nil, ErrNotFound
	}
	if old.AccessorID == AnonymousAccessorID {
		return nil, invalid("Cannot clone the anonymous token")
	}
	c := cloneToken(old)
	n, err := s.names(ctx)
	if err != nil {
		return nil, err
	}
	n.fill(c) // drops links to policies and roles deleted since
	c.AccessorID, c.SecretID, c.CreateIndex, c.ModifyIndex, c.ExpirationTTL = "", "", 0, 0, 0
	if description != "" {
		c.Description = description
	}
	if c.Expired(s.cfg.Now()) {
		return nil, ErrNotFound
	}
	return s.TokenCreate(ctx, c)
}

// TokenDelete removes the token accessor; a missing one is no error.
func (s *Store) TokenDelete(ctx context.Context, accessor string) error {
	if accessor == AnonymousAccessorID {
		return invalid("Delete operation not permitted on the anonymous token")
	}
	old, e, err := s.tokenEntry(ctx, accessor)
	if err != nil || old == nil || e == nil {
		return err
	}
	_, err = s.txn(ctx, []kv.Op{{Verb: kv.VerbDelete, Key: tokenPrefix + accessor}, {Verb: kv.VerbDelete, Key: secretKey(old.SecretID)}}, nil)
	return err
}

// TokenRead returns the token accessor (nil when there is none), policy
// and role names filled in, as a blocking read.
func (s *Store) TokenRead(ctx context.Context, q kv.QueryOptions, accessor string) (kv.QueryMeta, *Token, error) {
	var t Token
	meta, e, err := s.getJSON(ctx, q, tokenPrefix+accessor, &t)
	if err != nil {
		return meta, nil, err
	}
	if e == nil {
		if accessor != AnonymousAccessorID {
			return meta, nil, nil
		}
		t = *anonymousToken()
	} else {
		t.CreateIndex, t.ModifyIndex = e.CreateIndex, e.ModifyIndex
	}
	if t.Expired(s.cfg.Now()) {
		return meta, nil, nil
	}
	names, err := s.names(ctx)
	if err != nil {
		return meta, nil, err
	}
	names.fill(&t)
	return meta, &t, nil
}

// TokenBySecret returns the token with secret ("" and "anonymous": the
// anonymous token), nil when there is none or it expired.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (*Token, error) {
	t, err := s.bySecret(ctx, secret)
	if err != nil || t == nil {
		return nil, err
	}
	names, err := s.names(ctx)
	if err != nil {
		return nil, err
	}
	names.fill(t)
	return t, nil
}

func (s *Store) bySecret(ctx context.Context, secret string) (*Token, error) {
	if secret == "" || secret == AnonymousSecretID {
		_, t, err := s.TokenRead(ctx, kv.QueryOptions{}, AnonymousAccessorID)
		return t, err
	}
	var t Token
	_, e, err := s.getJSON(ctx, kv.QueryOptions{}, secretKey(secret), &t)
	if err == nil && e == nil && secret == s.cfg.InitialManagement {
		_ = s.EnsureInitialManagement(ctx, secret) // a concurrent maker may win; read again either way
		_, e, err = s.getJSON(ctx, kv.QueryOptions{}, secretKey(secret), &t)
	}
	if err != nil || e == nil {
		return nil, err
	}
	if t.SecretID != secret || t.Expired(s.cfg.Now()) {
		return nil, nil
	}
	t.CreateIndex, t.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return &t, nil
}

func (s *Store) tokenEntry(ctx context.Context, accessor string) (*Token, *kv.Entry, error) {
	if accessor == "" {
		return nil, nil, invalid("the token's AccessorID is missing")
	}
	var t Token
	_, e, err := s.getJSON(ctx, kv.QueryOptions{}, tokenPrefix+accessor, &t)
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		if accessor == AnonymousAccessorID {
			return anonymousToken(), nil, nil
		}
		return nil, nil, nil
	}
	t.CreateIndex, t.ModifyIndex = e.CreateIndex, e.ModifyIndex
	return &t, e, nil
}

// TokenList returns every token (the anonymous one included) that f
// selects, ordered by accessor.
func (s *Store) TokenList(ctx context.Context, q kv.QueryOptions, f TokenFilter) (kv.QueryMeta, []*Token, error) {
	set := 0
	for _, v := range []string{f.Policy, f.Role, f.ServiceName, f.AuthMethod} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return kv.QueryMeta{}, nil, invalid("can only filter by one of policy, role, serviceName, or authMethod at a time")
	}
	meta, ents, err := s.cfg.KV.List(ctx, q, tokenPrefix)
	if err != nil {
		return meta, nil, err
	}
	names, err := s.names(ctx)
	if err != nil {
		return meta, nil, err
	}
	now := s.cfg.Now()
	var out []*Token
	anon := false
	for _, e := range ents {
		var t Token
		if err := json.Unmarshal(e.Value, &t); err != nil {
			return meta, nil, fmt.Errorf("ACL record at %s is unreadable: %w", e.Key, err)
		}
		t.CreateIndex, t.ModifyIndex = e.CreateIndex, e.ModifyIndex
		anon = anon || t.AccessorID == AnonymousAccessorID
		if !t.Expired(now) {
			out = append(out, &t)
		}
	}
	if !anon {
		out = append(out, anonymousToken())
	}
	kept := out[:0]
	for _, t := range out {
		switch {
		case f.Policy != "" && !slices.ContainsFunc(t.Policies, func(l *PolicyLink) bool { return l.ID == f.Policy }):
		case f.Role != "" && !slices.ContainsFunc(t.Roles, func(l *RoleLink) bool { return l.ID == f.Role }):
		case f.ServiceName != "" && !slices.ContainsFunc(t.ServiceIdentities, func(s *ServiceIdentity) bool { return s.ServiceName == f.ServiceName }):
		case f.AuthMethod != "" && t.AuthMethod != f.AuthMethod:
		default:
			names.fill(t)
			kept = append(kept, t)
		}
	}
	slices.SortFunc(kept, func(a, b *Token) int { return strings.Compare(a.AccessorID, b.AccessorID) })
	return meta, kept, nil
}

var serviceNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`)

// checkLinks resolves t's policy and role links to IDs (a link may name
// either), drops duplicates, and checks identities.
func (s *Store) checkLinks(ctx context.Context, t *Token) error {
	names, err := s.names(ctx)
	if err != nil {
		return err
	}
	for _, l := range t.Policies {
		if err := names.resolvePolicy(l); err != nil {
			return err
		}
	}
	t.Policies = dedupePolicies(t.Policies)
	for _, l := range t.Roles {
		switch {
		case l.ID != "":
			if _, ok := names.roles[l.ID]; !ok {
				return invalid("No such ACL role with ID %q", l.ID)
			}
			l.Name = names.roles[l.ID]
		case l.Name != "":
			id, ok := names.roleIDs[l.Name]
			if !ok {
				return invalid("No such ACL role with name %q", l.Name)
			}
			l.ID = id
		default:
			return invalid("a role link needs an ID or a Name")
		}
	}
	t.Roles = dedupeRoles(t.Roles)
	return checkIdentities(t.ServiceIdentities, t.NodeIdentities)
}

func checkIdentities(svcs []*ServiceIdentity, nodes []*NodeIdentity) error {
	for _, si := range svcs {
		if si.ServiceName == "" {
			return invalid("Service identity is missing the service name field on this token")
		}
		if !serviceNameRE.MatchString(si.ServiceName) {
			return invalid("Service identity %q has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed", si.ServiceName)
		}
	}
	for _, ni := range nodes {
		if ni.NodeName == "" {
			return invalid("Node identity is missing the node name field on this token")
		}
		if ni.Datacenter == "" {
			return invalid("Node identity is missing the datacenter field on this token")
		}
	}
	return nil
}

func cloneToken(t *Token) *Token {
	c := *t
	c.Policies = nil
	for _, l := range t.Policies {
		c.Policies = append(c.Policies, &PolicyLink{ID: l.ID, Name: l.Name})
	}
	c.Roles = nil
	for _, l := range t.Roles {
		c.Roles = append(c.Roles, &RoleLink{ID: l.ID, Name: l.Name})
	}
	return &c
}
