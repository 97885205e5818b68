package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// tokenStore records the ACL token each Get's context carries.
type tokenStore struct {
	*kv.Server
	tokens chan string
}

func (s tokenStore) Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error) {
	s.tokens <- kv.Token(ctx)
	return s.Server.Get(ctx, q, key)
}

// TestTokenReachesTheStore: the caller's ACL token, wherever Consul takes
// it from, rides on the context the store (and so any forwarded hop) gets.
func TestTokenReachesTheStore(t *testing.T) {
	t.Parallel()
	st := tokenStore{kvtest.NewServer(t), make(chan string, 1)}
	ta := serve(t, st, nil)
	tests := []struct {
		name   string
		header http.Header
		query  string
		want   string
	}{
		{"none", nil, "", ""},
		{"X-Consul-Token", http.Header{"X-Consul-Token": {"t1"}}, "", "t1"},
		{"Authorization: Bearer", http.Header{"Authorization": {"Bearer t2"}}, "", "t2"},
		{"?token=", nil, "?token=t3", "t3"},
		{"the header wins over ?token=", http.Header{"X-Consul-Token": {"t4"}}, "?token=other", "t4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, ta.url+"/v1/kv/k"+tc.query, nil)
			req.Header = tc.header
			if req.Header == nil {
				req.Header = http.Header{}
			}
			resp, err := ta.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := <-st.tokens; got != tc.want {
				t.Errorf("GET /v1/kv/k%s with %v: the store saw token %q, want %q", tc.query, tc.header, got, tc.want)
			}
		})
	}
	// The official client sends its configured token.
	cfg := api.DefaultNonPooledConfig()
	cfg.Address, cfg.Token = ta.url[len("http://"):], "client-token"
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.KV().Get("k", nil); err != nil {
		t.Fatal(err)
	}
	if got := <-st.tokens; got != "client-token" {
		t.Errorf("the official client's token reached the store as %q, want client-token", got)
	}
}
