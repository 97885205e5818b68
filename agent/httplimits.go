package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// bodyReadTimeout bounds how long a client may take to send a request
// body once its headers are in (ReadHeaderTimeout bounds those), so a
// slow sender cannot hold a connection and a handler indefinitely.
const bodyReadTimeout = 30 * time.Second

// tooManyConns is the answer to a connection over the per-client limit,
// written straight on the socket (Consul answers 429 too).
const tooManyConns = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"

// connLimitListener caps the connections one client IP holds open
// (Consul's limits.http_max_conns_per_client): one more is answered 429
// and closed, so one client cannot take every socket of the agent.
type connLimitListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	perIP map[string]int
}

func limitConnsPerClient(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return &connLimitListener{Listener: ln, max: max, perIP: map[string]int{}}
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c)
		l.mu.Lock()
		n := l.perIP[ip]
		if n >= l.max {
			l.mu.Unlock()
			go refuseConn(c, l.max)
			continue
		}
		l.perIP[ip] = n + 1
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *connLimitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func clientIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// refuseConn answers 429 without reading the request, and closes.
func refuseConn(c net.Conn, max int) {
	defer c.Close()
	msg := "this client already holds " + strconv.Itoa(max) + " connections to this agent, the limit (limits.http_max_conns_per_client); reuse connections (keep-alive, HTTP/2) or raise the limit\n"
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, fmt.Sprintf(tooManyConns, len(msg), msg))
}

// countedConn gives its place back once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// withBodyTimeout gives a request that has a body d to send it (the
// agent uses bodyReadTimeout); the deadline is lifted once the body is
// read, so a handler that then waits (a write riding out an election)
// keeps its connection.
func withBodyTimeout(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(d)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { rc.SetReadDeadline(time.Time{}) }}
		}
		next.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
