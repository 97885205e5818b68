package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConnLimitPerClient: a client IP holding the limit's worth of
// connections gets 429 on one more, with a text that says what to do;
// once it closes one, it may open another.
func TestConnLimitPerClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(limitConnsPerClient(ln, 2))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	get := func(c net.Conn) (int, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	held := []net.Conn{dial(), dial()}
	for _, c := range held {
		if code, _ := get(c); code != 200 {
			t.Fatalf("connection within the limit: %d", code)
		}
	}
	code, body := get(dial())
	if code != http.StatusTooManyRequests || !strings.Contains(body, "http_max_conns_per_client") {
		t.Fatalf("connection over the limit: %d %q; want 429 naming the limit", code, body)
	}
	held[0].Close()
	// The server notices the close when its read fails; poll until a
	// new connection is let in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := get(dial())
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing one connection a new one still gets %d", code)
		}
		time.Sleep(20 * time.Millisecond) // poll: the server's close is not observable from here
	}
}

// TestBodyTimeout: a client that sends its headers but not the body it
// announced is cut off after the body timeout; the deadline applies only
// while the body is read: a handler that then waits longer than it keeps
// its connection and answers.
func TestBodyTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 200 * time.Millisecond
	srv := &http.Server{Handler: withBodyTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), 400)
			return
		}
		// Wait past the body timeout on the same connection.
		wait := time.NewTimer(2 * timeout)
		defer wait.Stop()
		<-wait.C
		w.Write(b)
	}), timeout)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	slow, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	slowBody, _ := io.ReadAll(slow.Body)
	if slow.StatusCode != 400 || !strings.Contains(string(slowBody), "timeout") {
		t.Fatalf("a body that never comes: %d %q; want the read to time out", slow.StatusCode, slowBody)
	}

	resp, err := http.Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("POST = %d %q", resp.StatusCode, b)
	}
}
