package acl_test

import (
	"context"
	"testing"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// recordingKV keeps the last transaction the store sent.
type recordingKV struct {
	acl.KV
	last []kv.Op
}

func (r *recordingKV) Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error) {
	r.last = ops
	return r.KV.Txn(ctx, q, ops)
}

// TestReservedOps: what a server may apply for a caller without acl:write
// (the first bootstrap; its own initial management token), and what not.
func TestReservedOps(t *testing.T) {
	rec := &recordingKV{KV: kvtest.NewServer(t)}
	s, _ := acl.NewStore(acl.StoreConfig{KV: rec})
	anon := acl.Compile(nil, acl.DefaultAllow, acl.AnonymousAccessorID)

	if _, err := s.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if !acl.ReservedOpsAllowed(rec.last, "", anon, "") {
		t.Error("the first bootstrap is refused to an anonymous caller")
	}
	bootstrap := rec.last

	if _, err := s.PolicyCreate(ctx, &acl.Policy{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	if acl.ReservedOpsAllowed(rec.last, "", anon, "") {
		t.Error("a policy write is allowed without acl:write")
	}
	if !acl.ReservedOpsAllowed(rec.last, "", acl.AllowAll(), "") {
		t.Error("a policy write is refused to management")
	}

	if err := s.EnsureInitialManagement(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if !acl.ReservedOpsAllowed(rec.last, "root", nil, "root") {
		t.Error("the configured initial management token may not be made by its holder")
	}
	if acl.ReservedOpsAllowed(rec.last, "root", nil, "") || acl.ReservedOpsAllowed(rec.last, "other", nil, "root") {
		t.Error("a management token is made for a secret that is not the configured one")
	}
	// A forged bootstrap that swaps the marker check for a set.
	forged := append([]kv.Op(nil), bootstrap[1:]...)
	if acl.ReservedOpsAllowed(forged, "", anon, "") {
		t.Error("a bootstrap without the check-not-exists guard is allowed")
	}
}

func TestReservedReads(t *testing.T) {
	anon := acl.Compile(nil, acl.DefaultAllow, acl.AnonymousAccessorID)
	for key, want := range map[string]bool{
		acl.Prefix + "policy/123":                       true,
		acl.Prefix + "role-name/x":                      true,
		acl.Prefix + "bootstrap":                        true,
		acl.Prefix + "token/abc":                        false,
		acl.Prefix + "token/":                           false,
		acl.Prefix + "secret/abc":                       false,
		acl.Prefix + "token/" + acl.AnonymousAccessorID: true,
	} {
		if got := acl.ReservedReadAllowed(key, "", anon); got != want {
			t.Errorf("anonymous read %s = %v, want %v", key, got, want)
		}
	}
	if !acl.ReservedReadAllowed(acl.Prefix+"token/", "", acl.AllowAll()) {
		t.Error("management may not list tokens")
	}
}
