package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

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
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/?recurse", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
