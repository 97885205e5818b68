package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kvtest"
)

// FuzzHandler feeds arbitrary requests to the handler on a real store:
// whatever comes in, it answers without panicking.
func FuzzHandler(f *testing.F) {
	seeds := []struct{ method, path, query, body string }{
		{"GET", "/v1/kv/a", "index=1&wait=10ms", ""},
		{"GET", "/v1/kv/", "recurse&stale", ""},
		{"GET", "/v1/kv/a/", "keys&separator=/", ""},
		{"GET", "/v1/kv/a", "raw", ""},
		{"PUT", "/v1/kv/a", "cas=x", "v"},
		{"PUT", "/v1/kv/a", "flags=1&acquire=s", "v"},
		{"DELETE", "/v1/kv/", "recurse", ""},
		{"PUT", "/v1/txn", "", `[{"KV":{"Verb":"set","Key":"k","Value":"dg=="}}]`},
		{"PUT", "/v1/txn", "", `[{"KV":{"Verb":"get-tree","Key":""}}]`},
		{"PUT", "/v1/txn", "", `[{"Node":{}},{}]`},
		{"PUT", "/v1/session/create", "", `{"LockDelay":5,"Checks":[]}`},
		{"PUT", "/v1/session/create", "", `{"LockDelay":1e300}`},
		{"PUT", "/v1/session/renew/x", "", ""},
		{"GET", "/v1/session/info/x", "index=1&wait=1ms", ""},
		{"GET", "/v1/session/node/", "", ""},
		{"GET", "/v1/status/peers", "", ""},
		{"GET", "/v1/agent/self", "dc=x", ""},
		{"GET", "/v1/agent/members", "wan=1&segment=x", ""},
		{"PUT", "/v1/agent/join/10.0.0.3:8301", "", ""},
		{"PUT", "/v1/agent/join/", "wan", ""},
		{"PUT", "/v1/agent/leave", "", ""},
		{"PUT", "/v1/agent/force-leave/web-1", "prune", ""},
		{"GET", "/v1/operator/raft/configuration", "stale&index=3", ""},
		{"BREW", "/v1/kv/a", "%zz", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.body)
	}
	fc := &fakeCluster{members: testMembers(), quiet: true}
	h, err := httpapi.NewHandler(httpapi.Config{Store: kvtest.NewServer(f), Cluster: fc})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		// Blocking queries may wait; the request's own deadline ends them.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := (&http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Body:   http.NoBody,
		}).WithContext(ctx)
		if body != "" {
			req.Body = httpBody(body)
			req.ContentLength = int64(len(body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "internal error serving this request") {
			t.Fatalf("%s %s?%s with body %q panicked", method, path, query, body)
		}
	})
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func httpBody(s string) stringBody { return stringBody{strings.NewReader(s)} }
