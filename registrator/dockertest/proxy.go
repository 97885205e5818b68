package dockertest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
)

// Proxy stands between a client under test and the engine's socket, so a
// test can make the engine "go away" and "come back" without restarting
// the shared engine (dockerd here is a plain process that other work on
// the machine also uses). Cut closes every open connection (an event
// stream ends as it does when dockerd stops) and refuses new ones until
// Restore; containers keep running meanwhile, and the test can change
// them through its own Engine, which does not go through the proxy.
type Proxy struct {
	// Host is the DOCKER_HOST to give the client under test
	// (unix:///tmp/.../docker.sock).
	Host string

	path   string
	target func(ctx context.Context) (net.Conn, error)
	errs   func(format string, args ...any)

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Proxy starts a proxy to the engine; it is closed when the test ends.
func (e *Engine) Proxy() *Proxy {
	e.t.Helper()
	u, err := url.Parse(e.Host)
	if err != nil {
		e.t.Fatalf("dockertest: proxy: engine address %q: %v", e.Host, err)
	}
	network, addr := u.Scheme, u.Host
	if network == "unix" {
		addr = u.Path
	}
	// A short directory: socket paths are limited to 108 bytes, and
	// t.TempDir's are long.
	dir, err := os.MkdirTemp("", "cdt")
	if err != nil {
		e.t.Fatal(err)
	}
	p := &Proxy{
		path:  filepath.Join(dir, "docker.sock"),
		conns: map[net.Conn]struct{}{},
		errs:  e.t.Logf,
		target: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	p.Host = "unix://" + p.path
	e.t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
		os.RemoveAll(dir)
	})
	p.Restore()
	return p
}

// Restore listens again (a no-op while listening).
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.errs("dockertest: proxy: listen %s: %v", p.path, err)
		return
	}
	p.ln = ln
	p.wg.Go(func() { p.accept(ln) })
}

// Cut closes the listener and every connection through the proxy.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
		os.Remove(p.path)
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		down, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.errs("dockertest: proxy: accept: %v", err)
			}
			return
		}
		p.wg.Go(func() { p.serve(down) })
	}
}

func (p *Proxy) serve(down net.Conn) {
	if !p.track(down) {
		down.Close()
		return
	}
	defer p.untrack(down)
	up, err := p.target(context.Background())
	if err != nil {
		p.errs("dockertest: proxy: dial the engine: %v", err)
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, down)
	go cp(down, up)
	<-done
	<-done
}
