package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWritesFinishWhenTheHTTPServerStops: the stop cancels blocking reads
// at once, but a store write keeps running and gets its real answer; a
// write whose client went away is cancelled as before.
func TestWritesFinishWhenTheHTTPServerStops(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		disconnect bool // the client goes away instead of the server stopping
		wantCancel bool
	}{
		{"blocking read", http.MethodGet, "/v1/kv/k?index=5", false, true},
		{"kv write", http.MethodPut, "/v1/kv/k?cas=5", false, false},
		{"txn", http.MethodPut, "/v1/txn", false, false},
		{"session create", http.MethodPut, "/v1/session/create", false, false},
		{"agent endpoint", http.MethodPut, "/v1/agent/service/register", false, true},
		{"kv write, client gone", http.MethodPut, "/v1/kv/k", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stopping, stop := context.WithCancel(context.Background())
			defer stop()
			started, release := make(chan struct{}), make(chan struct{})
			cancelled := make(chan bool, 1)
			h := finishWritesOnStop(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body) // as the API's handlers do: net/http notices a client gone only after the body
				close(started)
				select {
				case <-r.Context().Done():
					cancelled <- true
				case <-release:
					cancelled <- false
					io.WriteString(w, "true")
				}
			}), stopping)
			srv := httptest.NewUnstartedServer(h)
			srv.Config.BaseContext = func(net.Listener) context.Context { return stopping }
			srv.Start()
			defer srv.Close()

			ctx, gone := context.WithCancel(context.Background())
			defer gone()
			req, _ := http.NewRequestWithContext(ctx, tc.method, srv.URL+tc.path, strings.NewReader("v"))
			answered := make(chan string, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- "error"
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answered <- string(b)
			}()
			<-started
			if tc.disconnect {
				gone()
			} else {
				stop()
			}
			var got bool
			select {
			case got = <-cancelled:
			case <-time.After(500 * time.Millisecond):
				// Not cancelled within that long (a cancel arrives in
				// microseconds): let the running handler answer.
				close(release)
				got = <-cancelled
			}
			if got != tc.wantCancel {
				t.Errorf("handler cancelled = %v, want %v", got, tc.wantCancel)
			}
			if !tc.wantCancel {
				if a := <-answered; a != "true" {
					t.Errorf("client got %q, want the handler's answer", a)
				}
			}
		})
	}
}
