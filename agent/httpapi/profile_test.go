package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kvtest"
)

// TestTimedProfiles: the CPU profile and the execution trace are served
// only with Ops.Profiling (Consul's enable_debug), for ?seconds=, and the
// one that cannot start says why.
func TestTimedProfiles(t *testing.T) {
	off := serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: testSelf()}, nil)
	on := serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: testSelf(), Ops: httpapi.Ops{Profiling: func() bool { return true }}}, nil)

	for _, path := range []string{"/debug/pprof/profile", "/debug/pprof/trace"} {
		resp, body := off.do(t, http.MethodGet, path+"?seconds=0.05", nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "enable_debug = true") {
			t.Errorf("without profiling, GET %s = %d %q; want 404 naming enable_debug", path, resp.StatusCode, body)
		}
	}

	resp, body := on.do(t, http.MethodGet, "/debug/pprof/profile?seconds=0.05", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET profile = %d %q", resp.StatusCode, body)
	}
	// A CPU profile is a gzipped protocol buffer.
	if _, err := gzip.NewReader(strings.NewReader(body)); err != nil {
		t.Errorf("the profile is not gzip (%v): %q", err, body[:min(len(body), 32)])
	}
	resp, body = on.do(t, http.MethodGet, "/debug/pprof/trace?seconds=0.05", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "go 1.") || !strings.Contains(body[:16], " trace") {
		t.Errorf("GET trace = %d, starting %q; want 200 and a Go execution trace", resp.StatusCode, body[:min(len(body), 16)])
	}

	for _, q := range []string{"seconds=0", "seconds=-1", "seconds=soon", "seconds=301"} {
		resp, body := on.do(t, http.MethodGet, "/debug/pprof/profile?"+q, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "number of seconds") {
			t.Errorf("GET profile?%s = %d %q; want 400 saying what to give", q, resp.StatusCode, body)
		}
	}

	// Go takes one CPU profile at a time.
	var mine bytes.Buffer
	if err := pprof.StartCPUProfile(&mine); err != nil {
		t.Fatal(err)
	}
	resp, body = on.do(t, http.MethodGet, "/debug/pprof/profile?seconds=0.05", nil)
	pprof.StopCPUProfile()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "another one running") {
		t.Errorf("GET profile while one runs = %d %q; want 409", resp.StatusCode, body)
	}
}

// TestProfileEndsWithItsClient: a client that gives up on a long profile
// frees the profiler at once, instead of leaving it taken for the
// seconds it asked for.
func TestProfileEndsWithItsClient(t *testing.T) {
	on := serveConfig(t, httpapi.Config{Store: kvtest.NewServer(t), Self: testSelf(), Ops: httpapi.Ops{Profiling: func() bool { return true }}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, on.url+"/debug/pprof/profile?seconds=300", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := on.http.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Fatalf("a 300 s profile answered within 200 ms: %s", resp.Status)
	}
	// Until the server sees the client gone, a new profile gets 409.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := on.do(t, http.MethodGet, "/debug/pprof/profile?seconds=0.01", nil)
		if resp.StatusCode == http.StatusOK {
			return
		}
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("after the client went away, GET profile = %d %q; want 200 within 10s", resp.StatusCode, body)
		}
	}
}
