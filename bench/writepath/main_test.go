package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"sync"
	"testing"
	"time"
)

// traced records an execution trace while clients each send n PUTs, one
// after another, to a server whose handler syncs a file before it
// answers, as a durable write does.
func traced(t *testing.T, clients, n int) *bytes.Buffer {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		f.Write(b)
		err := f.Sync()
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "true")
	}))
	defer srv.Close()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}}
			for range n {
				req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/kv/k", strings.NewReader("value"))
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			c.CloseIdleConnections()
		})
	}
	wg.Wait()
	trace.Stop()
	return &buf
}

// TestSplitOneClient: every request of one client is counted, the round
// trips add up to the window, and the handler's sync is charged to the
// connection's goroutine in a system call.
func TestSplitOneClient(t *testing.T) {
	s, err := split(traced(t, 1, 60))
	if err != nil {
		t.Fatal(err)
	}
	// The first answer opens the window; 59 round trips follow it.
	if s.requests != 59 {
		t.Errorf("requests = %d, want 59", s.requests)
	}
	var sum time.Duration
	for _, d := range s.by {
		sum += d
	}
	if sum != s.window {
		t.Errorf("the parts add up to %v, the window is %v", sum, s.window)
	}
	if s.by["HTTP connection: sync to disk"] <= 0 {
		t.Errorf("no time charged to the handler's sync: %v", s.by)
	}
	if s.by[client] <= 0 {
		t.Errorf("no time charged to the client: %v", s.by)
	}
}

func TestSplitRefusesSeveralClients(t *testing.T) {
	_, err := split(traced(t, 2, 40))
	if err == nil || !strings.Contains(err.Error(), "exactly one client") {
		t.Errorf("split of two clients' trace = %v, want an error asking for one client", err)
	}
}
