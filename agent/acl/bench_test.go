package acl_test

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkResolve compares resolving a token from the store (what a
// cache miss costs: the token, its policies, parsing) with a cached
// resolution, and one Allowed decision on the result.
func BenchmarkResolve(b *testing.B) {
	s, err := acl.NewStore(acl.StoreConfig{KV: kvtest.NewServer(b)})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := s.PolicyCreate(ctx, &acl.Policy{Name: "p", Rules: `key_prefix "app/" { policy = "write" }
key_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }`})
	tok, _ := s.TokenCreate(ctx, &acl.Token{Policies: []*acl.PolicyLink{{ID: p.ID}}})
	r, _ := acl.NewResolver(acl.ResolverConfig{Store: s, TTL: time.Minute})
	b.Run("store", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Resolve(ctx, tok.SecretID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Authorizer(ctx, tok.SecretID); err != nil {
				b.Fatal(err)
			}
		}
	})
	a, _ := r.Authorizer(ctx, tok.SecretID)
	b.Run("allowed", func(b *testing.B) {
		for b.Loop() {
			if !a.Allowed(acl.Key, "app/config/db", acl.Write) {
				b.Fatal("denied")
			}
		}
	})
}
