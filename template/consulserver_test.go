package template

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// consulServer serves a fakeSource over Consul's HTTP API (the endpoints
// HTTPSource uses, with ?index/&wait blocking and X-Consul-Index), so that
// HTTPSource can be tested against the same data the in-memory Source
// holds. With h2c it also speaks HTTP/2 without TLS, as cairn's agent does.
type consulServer struct {
	URL      string
	accepted atomic.Int64 // TCP connections accepted
	srv      *http.Server
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startConsulServer(t *testing.T, f *fakeSource, h2c bool) *consulServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &consulServer{URL: "http://" + ln.Addr().String()}
	cs.srv = &http.Server{Handler: consulHandler(f), ReadHeaderTimeout: 10 * time.Second}
	cs.srv.Protocols = new(http.Protocols)
	cs.srv.Protocols.SetHTTP1(true)
	if h2c {
		cs.srv.Protocols.SetUnencryptedHTTP2(true)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cs.srv.Serve(countingListener{ln, &cs.accepted})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cs.srv.Shutdown(ctx)
		cs.srv.Close()
		<-done
	})
	return cs
}

func consulHandler(f *fakeSource) http.Handler {
	mux := http.NewServeMux()
	opts := func(r *http.Request) QueryOptions {
		q := r.URL.Query()
		idx, _ := strconv.ParseUint(q.Get("index"), 10, 64)
		wait, _ := time.ParseDuration(q.Get("wait"))
		return QueryOptions{Datacenter: q.Get("dc"), WaitIndex: idx, WaitTime: wait}
	}
	reply := func(w http.ResponseWriter, v any, idx uint64, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode("127.0.0.1:8300")
	})
	mux.HandleFunc("GET /v1/agent/self", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"Config": map[string]any{"NodeName": f.self}})
	})
	mux.HandleFunc("GET /v1/health/service/{name}", func(w http.ResponseWriter, r *http.Request) {
		_, passing := r.URL.Query()["passing"]
		v, idx, err := f.HealthService(r.Context(), r.PathValue("name"), r.URL.Query().Get("tag"), passing, opts(r))
		reply(w, v, idx, err)
	})
	mux.HandleFunc("GET /v1/catalog/services", func(w http.ResponseWriter, r *http.Request) {
		v, idx, err := f.CatalogServices(r.Context(), opts(r))
		reply(w, v, idx, err)
	})
	mux.HandleFunc("GET /v1/catalog/nodes", func(w http.ResponseWriter, r *http.Request) {
		v, idx, err := f.CatalogNodes(r.Context(), opts(r))
		reply(w, v, idx, err)
	})
	mux.HandleFunc("GET /v1/catalog/node/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, idx, err := f.CatalogNode(r.Context(), r.PathValue("name"), opts(r))
		if err == nil && v == nil {
			w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
			w.Write([]byte("null"))
			return
		}
		reply(w, v, idx, err)
	})
	mux.HandleFunc("GET /v1/catalog/datacenters", func(w http.ResponseWriter, r *http.Request) {
		v, _, err := f.Datacenters(r.Context(), QueryOptions{})
		reply(w, v, 0, err)
	})
	mux.HandleFunc("GET /v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		if _, recurse := r.URL.Query()["recurse"]; recurse {
			v, idx, err := f.KVList(r.Context(), key, opts(r))
			if err == nil && len(v) == 0 {
				w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
				http.Error(w, "", http.StatusNotFound)
				return
			}
			reply(w, v, idx, err)
			return
		}
		v, idx, err := f.KVGet(r.Context(), key, opts(r))
		if err == nil && v == nil {
			w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
			http.Error(w, "", http.StatusNotFound)
			return
		}
		reply(w, []any{v}, idx, err)
	})
	return mux
}
