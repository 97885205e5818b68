package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkKVGet is the server's share of GET /v1/kv/<key> without the
// network: routing, parameters, the store read, headers and JSON.
func BenchmarkKVGet(b *testing.B) {
	store := kvtest.NewServer(b)
	if _, err := store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/key", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkKVList is the server's share of GET /v1/kv/<prefix>?recurse
// of 100 keys without the network.
func BenchmarkKVList(b *testing.B) {
	store := kvtest.NewServer(b)
	for i := range 100 {
		if _, err := store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: fmt.Sprintf("bench/key%03d", i), Value: make([]byte, 48)}); err != nil {
			b.Fatal(err)
		}
	}
	h, err := NewHandler(Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	benchGet(b, h, "/v1/kv/bench/?recurse")
}

// benchGet GETs path from h in a loop, each answer a 200 with a body.
func benchGet(b *testing.B, h http.Handler, path string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n == 0 {
			b.Fatal(w.code, w.n)
		}
	}
}

// benchResolver is a map of tokens to a key_prefix rule, the shape of a
// cached token in the real resolver (agent/acl): what enforcement itself
// costs per request, resolution by the real resolver aside.
type benchResolver map[string]string

type benchAuthz string

func (p benchAuthz) Allowed(r acl.Resource, name string, _ acl.Access) bool {
	return r == acl.Key && strings.HasPrefix(name, string(p))
}
func (p benchAuthz) AllowedUnder(r acl.Resource, name string, want acl.Access) bool {
	return p.Allowed(r, name, want)
}

func (b benchResolver) Authorizer(_ context.Context, secret string) (acl.Authorizer, error) {
	p, ok := b[secret]
	if !ok {
		return nil, acl.ErrNotFound
	}
	return benchAuthz(p), nil
}

// BenchmarkKVACL is KV GET and PUT with ACLs off and on (a token with
// key_prefix "bench/" write), side by side: the cost of enforcement.
func BenchmarkKVACL(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		store := kvtest.NewServer(b)
		if _, err := store.Apply(context.Background(), kv.Op{Verb: kv.VerbSet, Key: "bench/key", Value: make([]byte, 128)}); err != nil {
			b.Fatal(err)
		}
		cfg := Config{Store: store}
		if mode == "on" {
			cfg.ACL = benchResolver{"tok": "bench/"}
		}
		h, err := NewHandler(cfg)
		if err != nil {
			b.Fatal(err)
		}
		for _, op := range []string{"get", "put"} {
			b.Run(op+"/acl-"+mode, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var req *http.Request
					if op == "get" {
						req = httptest.NewRequest(http.MethodGet, "/v1/kv/bench/key", nil)
					} else {
						req = httptest.NewRequest(http.MethodPut, "/v1/kv/bench/key", strings.NewReader("value"))
					}
					req.Header.Set("X-Consul-Token", "tok")
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatal(w.Code, w.Body.String())
					}
				}
			})
		}
	}
}

// BenchmarkServiceReads is the server's share of the catalog and health
// reads of one service of 10 instances (on 10 nodes) without the
// network: the same answers bench/reads.sh loads.
func BenchmarkServiceReads(b *testing.B) {
	cat := NodeOneCatalog(b)
	h, err := NewHandler(Config{Store: kvtest.NewServer(b), Catalog: cat})
	if err != nil {
		b.Fatal(err)
	}
	for n := range 10 {
		body := fmt.Sprintf(`{"Node":"n%d","Address":"10.0.0.%d","Service":{"ID":"web","Service":"web","Port":80,"Tags":["a"]}}`, n, n)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/v1/catalog/register", strings.NewReader(body)))
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
	for _, path := range []string{"/v1/health/service/web?passing", "/v1/catalog/service/web"} {
		b.Run(strings.Split(path, "/")[2], func(b *testing.B) { benchGet(b, h, path) })
	}
}

// discardWriter is a ResponseWriter that keeps only the status and the
// length written: what the handler costs, without a recorder's copy of
// the body (which a server writes to its socket instead).
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) reset() {
	clear(d.h)
	d.code, d.n = 0, 0
}

func (d *discardWriter) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *discardWriter) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

func (d *discardWriter) Write(p []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	d.n += len(p)
	return len(p), nil
}
