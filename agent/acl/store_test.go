package acl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

var ctx = context.Background()

func newStore(t *testing.T, def acl.Default) (*acl.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := acl.NewStore(acl.StoreConfig{KV: kvtest.NewServer(t), DataDir: dir, Default: def})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestBootstrapOnceAndReset(t *testing.T) {
	s, dir := newStore(t, acl.DefaultDeny)
	if _, err := s.Resolve(ctx, "nope"); !errors.Is(err, acl.ErrNotFound) || err.Error() != (acl.BootstrapRequiredError{}).Error() {
		t.Fatalf("before bootstrap: %v, want the bootstrap-required ACL not found", err)
	}
	tok, err := s.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Policies) != 1 || tok.Policies[0].ID != acl.GlobalManagementID || tok.CreateIndex == 0 {
		t.Fatalf("bootstrap token = %+v", tok)
	}
	id, err := s.Resolve(ctx, tok.SecretID)
	if err != nil || !id.Authorizer.Allowed(acl.ACL, "", acl.Write) {
		t.Fatalf("bootstrap token resolves to %v, %v; want management", id, err)
	}
	_, err = s.Bootstrap(ctx)
	var na *acl.BootstrapNotAllowedError
	if !errors.As(err, &na) || na.ResetIndex == 0 {
		t.Fatalf("second bootstrap: %v, want not allowed with a reset index", err)
	}
	if _, err := s.Resolve(ctx, "nope"); err != acl.ErrNotFound {
		t.Fatalf("after bootstrap, unknown token: %v, want plain ACL not found", err)
	}
	// A wrong reset index keeps it refused; the right one allows one more.
	os.WriteFile(filepath.Join(dir, "acl-bootstrap-reset"), []byte("1"), 0o600)
	if _, err := s.Bootstrap(ctx); !errors.As(err, &na) {
		t.Fatalf("wrong reset index: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "acl-bootstrap-reset"), fmt.Appendf(nil, "%d\n", na.ResetIndex), 0o600)
	if _, err := s.Bootstrap(ctx); err != nil {
		t.Fatalf("with the reset file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acl-bootstrap-reset")); !os.IsNotExist(err) {
		t.Errorf("reset file still there after use: %v", err)
	}
}

func TestTokenLifecycle(t *testing.T) {
	s, _ := newStore(t, acl.DefaultDeny)
	if err := s.EnsureInitialManagement(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureInitialManagement(ctx, "root"); err != nil { // idempotent
		t.Fatal(err)
	}
	if done, _, _ := s.Bootstrapped(ctx); !done {
		t.Error("initial management token did not mark the ACL system bootstrapped")
	}
	p, err := s.PolicyCreate(ctx, &acl.Policy{Name: "kv-read", Rules: `key_prefix "" { policy = "read" }`})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PolicyCreate(ctx, &acl.Policy{Name: "kv-read"}); err == nil || err.Error() != `Invalid Policy: A Policy with Name "kv-read" already exists` {
		t.Errorf("duplicate name: %v", err)
	}
	role, err := s.RoleCreate(ctx, &acl.Role{Name: "web", ServiceIdentities: []*acl.ServiceIdentity{{ServiceName: "web"}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.TokenCreate(ctx, &acl.Token{Description: "app",
		Policies: []*acl.PolicyLink{{Name: "kv-read"}, {ID: p.ID}}, Roles: []*acl.RoleLink{{Name: "web"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Policies) != 1 || tok.Policies[0].ID != p.ID || tok.Roles[0].ID != role.ID {
		t.Errorf("links = %+v %+v; want one policy by ID and the role", tok.Policies, tok.Roles)
	}
	_, read, err := s.TokenRead(ctx, kv.QueryOptions{}, tok.AccessorID)
	if err != nil || read.SecretID != tok.SecretID || read.ModifyIndex != tok.ModifyIndex || read.Policies[0].Name != "kv-read" {
		t.Fatalf("read = %+v, %v", read, err)
	}
	id, err := s.Resolve(ctx, tok.SecretID)
	if err != nil {
		t.Fatal(err)
	}
	a := id.Authorizer
	for _, c := range []check{
		{acl.Key, "x", acl.Read, false, true},
		{acl.Key, "x", acl.Write, false, false},
		{acl.Service, "web", acl.Write, false, true}, // role's service identity
		{acl.Service, "web-sidecar-proxy", acl.Write, false, true},
		{acl.Service, "db", acl.Read, false, true},
		{acl.Service, "db", acl.Write, false, false},
		{acl.ACL, "", acl.Read, false, false},
	} {
		if got := a.Allowed(c.res, c.name, c.want); got != c.ok {
			t.Errorf("%s %q %s = %v, want %v", c.res, c.name, c.want, got, c.ok)
		}
	}

	// Renaming a policy shows in the token; deleting it takes its rules away.
	p.Name = "kv-reader"
	if _, err := s.PolicyUpdate(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, read, _ = s.TokenRead(ctx, kv.QueryOptions{}, tok.AccessorID); read.Policies[0].Name != "kv-reader" {
		t.Errorf("after rename the link says %q", read.Policies[0].Name)
	}
	if err := s.PolicyDelete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.Resolve(ctx, tok.SecretID); id.Authorizer.Allowed(acl.Key, "x", acl.Read) {
		t.Error("deleted policy still grants")
	}

	clone, err := s.TokenClone(ctx, tok.AccessorID, "")
	if err != nil || clone.AccessorID == tok.AccessorID || clone.SecretID == tok.SecretID || clone.Description != "app" {
		t.Fatalf("clone = %+v, %v", clone, err)
	}
	_, tok, _ = s.TokenRead(ctx, kv.QueryOptions{}, tok.AccessorID)
	tok.Description = "changed"
	up, err := s.TokenUpdate(ctx, tok)
	if err != nil || up.CreateIndex != tok.CreateIndex || up.ModifyIndex == tok.ModifyIndex {
		t.Fatalf("update = %+v, %v", up, err)
	}
	tok.SecretID = "00000000-1111-2222-3333-444444444444"
	if _, err := s.TokenUpdate(ctx, tok); err == nil {
		t.Error("changing the secret was accepted")
	}
	if err := s.TokenDelete(ctx, up.AccessorID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, up.SecretID); err != acl.ErrNotFound {
		t.Errorf("deleted token resolves: %v", err)
	}
	if err := s.TokenDelete(ctx, acl.AnonymousAccessorID); err == nil {
		t.Error("deleting the anonymous token was accepted")
	}
	_, list, err := s.TokenList(ctx, kv.QueryOptions{}, acl.TokenFilter{})
	if err != nil || len(list) != 3 { // root, clone, anonymous
		t.Errorf("list = %d tokens, %v; want 3", len(list), err)
	}
	_, list, _ = s.TokenList(ctx, kv.QueryOptions{}, acl.TokenFilter{Role: role.ID})
	if len(list) != 1 || list[0].AccessorID != clone.AccessorID {
		t.Errorf("role filter = %v", list)
	}
}

func TestBuiltinPolicies(t *testing.T) {
	s, _ := newStore(t, acl.DefaultDeny)
	_, ps, err := s.PolicyList(ctx, kv.QueryOptions{})
	if err != nil || len(ps) != 2 || ps[0].ID != acl.GlobalManagementID || ps[1].Name != acl.GlobalReadOnlyName {
		t.Fatalf("policies = %v, %v; want the two built-in ones", ps, err)
	}
	if err := s.PolicyDelete(ctx, acl.GlobalManagementID); err == nil {
		t.Error("deleting global-management was accepted")
	}
	gm := *ps[0]
	gm.Rules = `key_prefix "" { policy = "read" }`
	if _, err := s.PolicyUpdate(ctx, &gm); err == nil {
		t.Error("changing global-management's rules was accepted")
	}
	gm = *ps[0]
	gm.Description = "ours"
	if up, err := s.PolicyUpdate(ctx, &gm); err != nil || up.Description != "ours" {
		t.Errorf("description update: %v, %v", up, err)
	}
	_, ro, _ := s.PolicyReadByName(ctx, kv.QueryOptions{}, acl.GlobalReadOnlyName)
	if ro == nil || ro.ID != acl.GlobalReadOnlyID {
		t.Errorf("read-only by name = %v", ro)
	}
}

// TestAnonymousAndDefault: the anonymous token can be given a policy;
// the agent's default token stands in for requests without one.
func TestAnonymousAndDefault(t *testing.T) {
	s, _ := newStore(t, acl.DefaultDeny)
	p, _ := s.PolicyCreate(ctx, &acl.Policy{Name: "dns", Rules: `service_prefix "" { policy = "read" }`})
	_, anon, err := s.TokenRead(ctx, kv.QueryOptions{}, acl.AnonymousAccessorID)
	if err != nil || anon == nil {
		t.Fatal(anon, err)
	}
	anon.Policies = []*acl.PolicyLink{{ID: p.ID}}
	if _, err := s.TokenUpdate(ctx, anon); err != nil {
		t.Fatal(err)
	}
	tokens := &acl.AgentTokens{}
	r, _ := acl.NewResolver(acl.ResolverConfig{Store: s, TTL: time.Minute, Tokens: tokens})
	a, err := r.Authorizer(ctx, "")
	if err != nil || !a.Allowed(acl.Service, "web", acl.Read) {
		t.Fatalf("anonymous: %v", err)
	}
	kvTok, _ := s.TokenCreate(ctx, &acl.Token{ServiceIdentities: []*acl.ServiceIdentity{{ServiceName: "api"}}})
	tokens.Set(acl.KindDefault, kvTok.SecretID)
	if a, _ := r.Authorizer(ctx, ""); !a.Allowed(acl.Service, "api", acl.Write) {
		t.Error("the default token does not stand in for an empty one")
	}
}

// TestResolverCache: a resolved token is kept for the TTL; a write
// through the store (OnChange) or Invalidate drops it at once.
func TestResolverCache(t *testing.T) {
	var r *acl.CachingResolver
	now := time.Unix(1000, 0)
	s, err := acl.NewStore(acl.StoreConfig{KV: kvtest.NewServer(t), OnChange: func() { r.Invalidate() }})
	if err != nil {
		t.Fatal(err)
	}
	r, _ = acl.NewResolver(acl.ResolverConfig{Store: s, TTL: 30 * time.Second, Now: func() time.Time { return now }})
	p, _ := s.PolicyCreate(ctx, &acl.Policy{Name: "w", Rules: `key_prefix "" { policy = "write" }`})
	tok, _ := s.TokenCreate(ctx, &acl.Token{Policies: []*acl.PolicyLink{{ID: p.ID}}})
	if a, err := r.Authorizer(ctx, tok.SecretID); err != nil || !a.Allowed(acl.Key, "k", acl.Write) {
		t.Fatal(err)
	}
	if err := s.TokenDelete(ctx, tok.AccessorID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authorizer(ctx, tok.SecretID); !errors.Is(err, acl.ErrNotFound) {
		t.Errorf("after delete through the store: %v, want ACL not found", err)
	}
}

// TestAgentRecoveryToken: the agent_recovery token may act on its own
// agent when it is not a known token; a known token keeps its rights.
func TestAgentRecoveryToken(t *testing.T) {
	s, _ := newStore(t, acl.DefaultDeny)
	tokens := &acl.AgentTokens{}
	r, _ := acl.NewResolver(acl.ResolverConfig{Store: s, Tokens: tokens, NodeName: "n1"})
	tokens.Set(acl.KindAgentRecovery, "recovery")
	a, err := r.Authorizer(ctx, "recovery")
	if err != nil || !a.Allowed(acl.Agent, "n1", acl.Write) || a.Allowed(acl.Agent, "n2", acl.Write) || a.Allowed(acl.ACL, "", acl.Read) {
		t.Fatalf("recovery token: %v", err)
	}
	if err := s.EnsureInitialManagement(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	tokens.Set(acl.KindAgentRecovery, "root")
	if a, err := r.Authorizer(ctx, "root"); err != nil || !a.Allowed(acl.ACL, "", acl.Write) {
		t.Errorf("a management token set as the recovery token lost its rights: %v", err)
	}
}
