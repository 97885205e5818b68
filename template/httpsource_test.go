package template

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signal is an io.Writer that reports every write on a channel: a
// command's output tells the test that the runner got that far.
type signal chan string

func (s signal) Write(p []byte) (int, error) {
	s <- string(p)
	return len(p), nil
}

func (s signal) await(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s:
		if strings.TrimSpace(got) != want {
			t.Fatalf("command printed %q, want %q", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q from the command within 20s", want)
	}
}

// manyKeys is a template that reads n keys and one service: n+1
// dependencies, each a blocking query.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{{ keyOrDefault \"k/%d\" \"-\" }}\n", i)
	}
	b.WriteString("{{ range service \"web\" }}{{ .Address }}:{{ .Port }}\n{{ end }}")
	return b.String()
}

// TestHTTPSourceOneConnection: against an agent that speaks h2c, as
// cairn's does, the blocking queries of all of a runner's dependencies
// share one TCP connection; changes still arrive.
func TestHTTPSourceOneConnection(t *testing.T) {
	const n = 100
	src := fixture()
	srv := startConsulServer(t, src, true)
	hs, err := DialHTTP(context.Background(), HTTPConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	if hs.Protocol() != "h2c" {
		t.Fatalf("Protocol() = %q, want h2c", hs.Protocol())
	}
	dest := filepath.Join(t.TempDir(), "out")
	done := make(signal, 4)
	runner(t, hs, Config{
		CommandOutput: done,
		Templates:     []TemplateConfig{{Contents: manyKeys(n), Destination: dest, Command: "echo rendered"}},
	})
	done.await(t, "rendered")
	src.awaitBlocked(t, n+1, 20*time.Second)
	if got := srv.accepted.Load(); got != 1 {
		t.Errorf("%d dependencies used %d connections, want 1", n+1, got)
	}

	src.putKV("k/7", "seven")
	done.await(t, "rendered")
	if got, _ := os.ReadFile(dest); !strings.Contains(string(got), "seven") {
		t.Errorf("after the change the file holds:\n%s", got)
	}
	if got := srv.accepted.Load(); got != 1 {
		t.Errorf("after a change: %d connections, want 1", got)
	}
}

// TestHTTPSourceHTTP1Fallback: against an agent without h2c (Consul),
// the source falls back to HTTP/1.1, one connection per blocking query,
// as consul-template has it.
func TestHTTPSourceHTTP1Fallback(t *testing.T) {
	const n = 10
	src := fixture()
	srv := startConsulServer(t, src, false)
	hs, err := DialHTTP(context.Background(), HTTPConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	if hs.Protocol() != "HTTP/1.1" {
		t.Fatalf("Protocol() = %q, want HTTP/1.1", hs.Protocol())
	}
	dest := filepath.Join(t.TempDir(), "out")
	done := make(signal, 4)
	runner(t, hs, Config{
		CommandOutput: done,
		Templates:     []TemplateConfig{{Contents: manyKeys(n), Destination: dest, Command: "echo rendered"}},
	})
	done.await(t, "rendered")
	src.awaitBlocked(t, n+1, 20*time.Second)
	if got := srv.accepted.Load(); got < n+1 {
		t.Errorf("%d blocking queries over HTTP/1.1 on %d connections; want one each", n+1, got)
	}
	src.putKV("k/3", "three")
	done.await(t, "rendered")
}

func TestDialHTTPUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = DialHTTP(context.Background(), HTTPConfig{Address: addr, ProbeTimeout: time.Second})
	if err == nil {
		t.Fatal("DialHTTP of a closed port succeeded")
	}
	for _, want := range []string{"cannot reach a Consul-compatible agent at " + addr, "connection refused", "start one (cairn agent -dev) or point -consul-addr (CONSUL_HTTP_ADDR) at it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
