package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/kvtest"
)

// BenchmarkKVPut is the server's share of PUT /v1/kv/<key> of a 128-byte
// value without the network: routing, the body, the Raft commit with its
// fsync, the state machine and the answer.
func BenchmarkKVPut(b *testing.B) {
	benchKVPut(b, 1)
}

// BenchmarkKVPutParallel is the same from 64 concurrent writers
// (SetParallelism(32) on 2 CPUs), whose writes Raft groups into one
// append and fsync.
func BenchmarkKVPutParallel(b *testing.B) {
	benchKVPut(b, 32)
}

func benchKVPut(b *testing.B, parallelism int) {
	h, err := NewHandler(Config{Store: kvtest.NewServer(b)})
	if err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 128)
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/v1/kv/bench/key", strings.NewReader(value)))
			if w.Code != http.StatusOK || w.Body.String() != "true" {
				b.Errorf("PUT = %d %q", w.Code, w.Body.String())
				return
			}
		}
	})
}
