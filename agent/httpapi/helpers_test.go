package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/kvtest"
	"github.com/hashicorp/consul/api"
)

// testAPI is the handler on a real kv server behind a real HTTP server,
// and the official client pointed at it.
type testAPI struct {
	client *api.Client
	srv    *kv.Server
	url    string
	http   *http.Client
}

// testSelf is what every test agent reports about itself.
func testSelf() httpapi.Self {
	return httpapi.Self{
		NodeName:    "test-node",
		NodeID:      "0d1c8a1e-6a35-4b2c-9f0e-2f4b1c3d5e6f",
		Version:     "0.1.0",
		Revision:    "abc123",
		Server:      true,
		BindAddr:    "127.0.0.1",
		SerfLANPort: 8301,
		HTTPPort:    8500,
		DNSPort:     8600,
		ServerPort:  8300,
	}
}

// newTestAPI starts a kv server and the handler in front of it. observe,
// when not nil, sees every request as it arrives, before it is served.
func newTestAPI(t *testing.T, observe func(*http.Request)) *testAPI {
	t.Helper()
	srv := kvtest.NewServer(t)
	return serve(t, srv, observe)
}

func serve(t *testing.T, store httpapi.Store, observe func(*http.Request)) *testAPI {
	t.Helper()
	return serveConfig(t, httpapi.Config{Store: store, Self: testSelf()}, observe)
}

// serveConfig serves the handler made from cfg.
func serveConfig(t *testing.T, cfg httpapi.Config, observe func(*http.Request)) *testAPI {
	t.Helper()
	h, err := httpapi.NewHandler(cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if observe != nil {
			observe(r)
		}
		h.ServeHTTP(w, r)
	}))
	// Blocking queries still in flight end when their connections do.
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	ccfg := api.DefaultNonPooledConfig()
	ccfg.Address = ts.Listener.Addr().String()
	ccfg.Scheme = "http"
	ccfg.Token = ""
	client, err := api.NewClient(ccfg)
	if err != nil {
		t.Fatalf("api.NewClient: %v", err)
	}
	ta := &testAPI{client: client, url: ts.URL, http: ts.Client()}
	if s, ok := cfg.Store.(*kv.Server); ok {
		ta.srv = s
	}
	return ta
}

// do sends a raw request and returns the response with its body read.
func (ta *testAPI) do(t *testing.T, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ta.url+path, body)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	resp, err := ta.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

// put writes key through the official client.
func (ta *testAPI) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := ta.client.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// get reads key through the official client; nil when missing.
func (ta *testAPI) get(t *testing.T, key string) *api.KVPair {
	t.Helper()
	p, _, err := ta.client.KV().Get(key, nil)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return p
}

// signal returns an observer that sends on the channel each time a
// request matching match arrives (dropping signals nobody waits for).
func signal(match func(*http.Request) bool) (func(*http.Request), <-chan struct{}) {
	ch := make(chan struct{}, 64)
	return func(r *http.Request) {
		if match(r) {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}, ch
}

// blockingRead matches a blocking query (?index=) on path that does not
// ask for consistency: api.Lock and api.Semaphore wait with these, and
// their monitors (which hold the lock) use ?consistent.
func blockingRead(path string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		q := r.URL.Query()
		_, consistent := q["consistent"]
		return r.Method == http.MethodGet && r.URL.Path == path && q.Get("index") != "" && !consistent
	}
}

// waitSignal waits for n signals on ch, failing the test after 10s.
func waitSignal(t *testing.T, ch <-chan struct{}, n int, what string) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after 10s waiting for %s (%d of %d seen)", what, i, n)
		}
	}
}

// headerIndex parses X-Consul-Index, failing the test when it is not a
// positive integer.
func headerIndex(t *testing.T, resp *http.Response) uint64 {
	t.Helper()
	s := resp.Header.Get("X-Consul-Index")
	idx, err := strconv.ParseUint(s, 10, 64)
	if err != nil || idx == 0 {
		t.Fatalf("X-Consul-Index = %q, want a positive integer", s)
	}
	return idx
}

// checkReadHeaders checks the headers every read answer carries.
func checkReadHeaders(t *testing.T, resp *http.Response, consistency string) {
	t.Helper()
	headerIndex(t, resp)
	if got := resp.Header.Get("X-Consul-KnownLeader"); got != "true" {
		t.Errorf("X-Consul-KnownLeader = %q, want true", got)
	}
	if got := resp.Header.Get("X-Consul-LastContact"); got == "" || strings.Trim(got, "0123456789") != "" {
		t.Errorf("X-Consul-LastContact = %q, want integer milliseconds", got)
	}
	if got := resp.Header.Get("X-Consul-Effective-Consistency"); got != consistency {
		t.Errorf("X-Consul-Effective-Consistency = %q, want %q", got, consistency)
	}
}
