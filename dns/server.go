package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"
	"golang.org/x/sync/errgroup"
)

// Server answers DNS queries over UDP and TCP from a Catalog.
type Server struct {
	cfg Config
	st  settings
	cat Catalog
	log *slog.Logger

	zone      atomic.Pointer[zone]
	zb        *zoneBuilder // only the Run goroutine uses zb and lastBuild
	lastBuild time.Duration
	udpc      *mdns.Client
	tcpc      *mdns.Client
	running   atomic.Bool

	mu      sync.Mutex
	udpAddr net.Addr
	tcpAddr net.Addr

	// warned holds what the last build could not answer and the log
	// already said; only the Run goroutine touches it.
	warned map[string]bool
}

// New validates cfg and returns a Server that answers from cat. It starts
// nothing; Run does.
func New(cfg Config, cat Catalog) (*Server, error) {
	if cat == nil {
		return nil, errors.New("dns: no Catalog; the agent must pass the catalog the answers come from")
	}
	st, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("dns config: %w", err)
	}
	s := &Server{
		cfg:  cfg,
		st:   st,
		cat:  cat,
		log:  cfg.Logger,
		udpc: &mdns.Client{Net: "udp", Timeout: st.timeout},
		tcpc: &mdns.Client{Net: "tcp", Timeout: st.timeout},
	}
	s.zone.Store(newZone(&s.st, 0))
	s.zb = newZoneBuilder(&s.st)
	return s, nil
}

// Index returns the catalog index of the answers being served: 0 until
// Run has read the catalog.
func (s *Server) Index() uint64 { return s.zone.Load().index }

// WaitIndex blocks until the answers being served come from a catalog
// index of at least index, or ctx is done.
func (s *Server) WaitIndex(ctx context.Context, index uint64) error {
	for {
		z := s.zone.Load()
		if z.built && z.index >= index {
			return nil
		}
		select {
		case <-z.replaced:
		case <-ctx.Done():
			return fmt.Errorf("dns: wait for catalog index %d (serving %d): %w", index, z.index, ctx.Err())
		}
	}
}

// UDPAddr and TCPAddr return the addresses the servers listen on, once
// Run has bound them (nil before).
func (s *Server) UDPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr
}

// TCPAddr: see UDPAddr.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpAddr
}

// Run reads the catalog, serves UDP and TCP, and rebuilds the answers each
// time the catalog changes, until ctx is done; then it stops the servers,
// waits for the queries in flight and returns nil. It returns an error
// when a server cannot listen or stops on its own. A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("dns: Run called twice; a Server runs once, create another with New")
	}
	// Build the answers before listening, so the first query sees the
	// catalog.
	ws := s.rebuild()

	pc, ln, err := s.listen()
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	type srv struct {
		*mdns.Server
		name    string
		started chan struct{}
		exited  chan struct{}
	}
	handler := mdns.HandlerFunc(s.serveDNS)
	servers := []*srv{
		{Server: &mdns.Server{PacketConn: pc, Handler: handler, UDPSize: ednsSize, MsgAcceptFunc: accept}, name: "udp"},
		{Server: &mdns.Server{Listener: ln, Handler: handler, MsgAcceptFunc: accept}, name: "tcp"},
	}
	for _, x := range servers {
		x.started, x.exited = make(chan struct{}), make(chan struct{})
		x.NotifyStartedFunc = sync.OnceFunc(func() { close(x.started) })
		g.Go(func() error {
			defer close(x.exited)
			err := x.ActivateAndServe()
			if gctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns: %s server stopped: %w", x.name, errOr(err, "no error given"))
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		for _, x := range servers {
			select {
			case <-x.started:
				_ = x.Shutdown() // waits for the queries in flight
			case <-x.exited:
			}
		}
		return nil
	})
	g.Go(func() error {
		for _, x := range servers {
			select {
			case <-x.started:
			case <-gctx.Done():
				return nil
			}
		}
		s.log.Info("dns: serving", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String(),
			"domains", s.st.domains, "recursors", s.st.recursors, "index", s.Index())
		if s.cfg.NotifyStarted != nil {
			s.cfg.NotifyStarted()
		}
		return nil
	})
	g.Go(func() error {
		for ws.WatchCtx(gctx) == nil {
			select {
			case <-time.After(rebuildWait(s.lastBuild)):
			case <-gctx.Done():
				return nil
			}
			ws = s.rebuild()
		}
		return nil
	})
	err = g.Wait()
	s.log.Info("dns: stopped", "err", err)
	return err
}

// errOr returns err, or an error saying def when err is nil.
func errOr(err error, def string) error {
	if err != nil {
		return err
	}
	return errors.New(def)
}

// listen returns the configured connections, or binds Addr.
func (s *Server) listen() (pc net.PacketConn, ln net.Listener, err error) {
	_, port, _ := net.SplitHostPort(s.cfg.Addr)
	for attempt := 1; ; attempt++ {
		pc, ln, err = s.listenOnce()
		// With port 0, TCP takes the port the kernel gave UDP, which
		// another program may hold for TCP: try another.
		if err == nil || port != "0" || s.cfg.PacketConn != nil || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.udpAddr, s.tcpAddr = pc.LocalAddr(), ln.Addr()
	s.mu.Unlock()
	return pc, ln, nil
}

func (s *Server) listenOnce() (net.PacketConn, net.Listener, error) {
	pc, ln := s.cfg.PacketConn, s.cfg.Listener
	if pc == nil {
		var err error
		if pc, err = net.ListenPacket("udp", s.cfg.Addr); err != nil {
			return nil, nil, fmt.Errorf("dns: %w; free the port or pick another (-dns-port)", err)
		}
	}
	if ln == nil {
		addr := s.cfg.Addr
		if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
			if u, ok := pc.LocalAddr().(*net.UDPAddr); ok {
				addr = net.JoinHostPort(host, fmt.Sprint(u.Port))
			}
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			if s.cfg.PacketConn == nil {
				pc.Close()
			}
			return nil, nil, fmt.Errorf("dns: %w; free the port or pick another (-dns-port)", err)
		}
	}
	return pc, ln, nil
}

// maxRebuildWait bounds rebuildWait. A build that took longer than half
// of it was mostly waiting, not working (building every answer of
// 10,000 services takes under one second: BenchmarkBuildZone): the
// agent's first build waits for the ACL token DNS answers with to
// resolve, which takes until a leader is elected, and its answers must
// not then lag by twice that.
const maxRebuildWait = 2 * time.Second

// rebuildWait is how long the answers wait after a change before they
// are built again, given how long the last build took. Under constant
// churn, rebuilding back to back would take a core; waiting twice as
// long as the last build took bounds it to a third, and the changes
// meanwhile coalesce.
func rebuildWait(last time.Duration) time.Duration { return min(2*last, maxRebuildWait) }

// rebuild reads what changed in the catalog and, when something did,
// replaces the zone: from the change alone when the catalog can say what
// changed, else from a full snapshot. It returns the watch set that
// fires on the next change.
func (s *Server) rebuild() memdb.WatchSet {
	cur := s.zone.Load()
	start := time.Now()
	var (
		z   *zone
		res buildResult
		ws  = memdb.NewWatchSet()
	)
	if cur.built {
		d, ok := s.cat.Changes(ws, cur.index)
		switch {
		case ok && d.Index == cur.index:
			return ws // woken without a change
		case ok:
			z, res = s.zb.update(d.Index, d.Services, d.Nodes, d.NodesChanged)
		default:
			ws = memdb.NewWatchSet()
		}
	}
	if z == nil {
		index, services, nodes := s.cat.Snapshot(ws)
		z, res = s.zb.build(index, services, nodes)
	}
	z.built = true
	s.zone.Store(z)
	close(cur.replaced)
	s.lastBuild = time.Since(start)
	s.logBuild(res)
	s.log.Debug("dns: answers rebuilt", "index", z.index, "services", len(z.services), "nodes", len(z.nodes),
		"rebuilt", res.rebuilt, "took", s.lastBuild)
	return ws
}

// logBuild logs, once each, the names a build could not answer.
func (s *Server) logBuild(res buildResult) {
	now := make(map[string]bool)
	say := func(key, msg string, attrs ...any) {
		now[key] = true
		if !s.warned[key] {
			s.log.Warn(msg, attrs...)
		}
	}
	for _, n := range res.badServices {
		say("service "+n, "dns: service not answered: its name is not a DNS label (letters, digits and inner hyphens, at most 63); rename it to be found by DNS", "service", n)
	}
	for _, n := range res.badNodes {
		say("node "+n, "dns: node not answered by name: its name is not a DNS label (letters, digits and inner hyphens, at most 63) or differs from another only in case; its services' SRV records use <hex-ip>.addr targets", "node", n)
	}
	s.warned = now
}
