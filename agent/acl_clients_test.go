package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/template"
)

// tokenTable is a Resolver whose known tokens may do everything and
// whose anonymous token may do nothing (default deny).
type tokenTable map[string]bool

func (t tokenTable) Authorizer(_ context.Context, secret string) (acl.Authorizer, error) {
	if secret == "" {
		return denyAll{}, nil
	}
	if !t[secret] {
		return nil, acl.ErrNotFound
	}
	return acl.AllowAll(), nil
}

// TestACLClientsUseConsulHTTPToken: the registrator's consul:// backend
// and `cairn template`'s standalone client send CONSUL_HTTP_TOKEN, as the
// originals do (both build on api.DefaultConfig): against an agent that
// denies the anonymous token they work with it and are refused without.
func TestACLClientsUseConsulHTTPToken(t *testing.T) {
	store := kvtest.NewServer(t)
	if _, err := store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: "app/x", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	ccfg := catalog.DefaultConfig()
	ccfg.NodeName, ccfg.NodeID, ccfg.Address = "node-1", "0d1c8a1e-6a35-4b2c-9f0e-2f4b1c3d5e6f", "10.0.0.1"
	cat, err := catalog.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.NewHandler(httpapi.Config{Store: store, Catalog: cat, Self: httpapi.Self{NodeName: "node-1"}, ACL: tokenTable{"s3cret": true}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "http://")
	t.Setenv("CONSUL_HTTP_ADDR", addr)

	for _, tc := range []struct {
		token string
		ok    bool
	}{{"s3cret", true}, {"", false}} {
		t.Setenv("CONSUL_HTTP_TOKEN", tc.token)
		ctx := context.Background()

		src, err := template.DialHTTP(ctx, template.HTTPConfig{Address: addr})
		if err != nil {
			t.Fatalf("template.DialHTTP: %v", err)
		}
		pair, _, err := src.KVGet(ctx, "app/x", template.QueryOptions{})
		src.Close()
		if tc.ok && (err != nil || pair == nil || string(pair.Value) != "1") {
			t.Errorf("template KVGet(app/x) with CONSUL_HTTP_TOKEN=%q = %v, %v; want the value", tc.token, pair, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "Permission denied")) {
			t.Errorf("template KVGet(app/x) with no token = %v, %v; want Permission denied", pair, err)
		}

		u, _ := url.Parse("consul://" + addr)
		reg, err := registrator.NewConsul(u)
		if err != nil {
			t.Fatal(err)
		}
		err = reg.Register(ctx, &registrator.Service{ID: "host:web:80", Name: "web", Port: 80})
		if tc.ok && err != nil {
			t.Errorf("registrator Register with CONSUL_HTTP_TOKEN=%q = %v, want it registered", tc.token, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "Permission denied")) {
			t.Errorf("registrator Register with no token = %v, want Permission denied", err)
		}
	}
	if cat.LocalService("host:web:80") == nil {
		t.Error("the registrator's service is not in the catalog")
	}
	if resp, err := http.Get(ts.URL + "/v1/agent/services"); err != nil || resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Errorf("anonymous GET /v1/agent/services: %v, want it filtered", err)
	}
}
