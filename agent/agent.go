package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/servers"
	"github.com/cairn-dev/cairn/dns"
	"github.com/cairn-dev/cairn/kv"
	"github.com/cairn-dev/cairn/template"
	"github.com/hashicorp/raft"
)

// Agent is one running cairn agent: a member of the cluster (gossip),
// a Raft server when -server is set, and the Consul-compatible HTTP API
// that answers locally or forwards to the servers.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	tmpl template.Config // templates to render in-process; none without -template

	ran     atomic.Bool
	started chan struct{}

	mu         sync.Mutex
	httpAddr   net.Addr // nil when the HTTP API is off
	dnsAddr    net.Addr // nil when DNS is off
	tmplSource *templateSource
	serverAddr string
	serfAddr   string
	dataDir    string
	stop       context.CancelCauseFunc
	nodeID     string
}

// New validates cfg and fills in what depends on the host (node name,
// -dev addresses). It starts nothing. A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return nil, fmt.Errorf("-node is not set and the host name cannot be read (%v); set -node", err)
		}
		cfg.NodeName = host
	}
	if cfg.Dev {
		cfg.Server = true
		if cfg.BindAddr == "" {
			cfg.BindAddr = "127.0.0.1"
		}
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if !strings.HasSuffix(cfg.Domain, ".") {
		cfg.Domain += "."
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultConfig().ShutdownTimeout
	}
	tmpl, err := cfg.templateConfig(true)
	if err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: logger, tmpl: tmpl, started: make(chan struct{})}, nil
}

// Config returns the agent's configuration with the defaults New filled in.
func (a *Agent) Config() Config { return a.cfg }

// Started is closed once Run has bound its listeners and opened the
// store; HTTPAddr, ServerAddr, DataDir and NodeID are valid from then on.
// It is never closed when Run fails before that.
func (a *Agent) Started() <-chan struct{} { return a.started }

// HTTPAddr is the address the HTTP API listens on (nil when -http-port
// is -1 or before Started).
func (a *Agent) HTTPAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// DNSAddr is the address the DNS server answers on, UDP and TCP alike
// (nil when -dns-port is -1 or before Started).
func (a *Agent) DNSAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dnsAddr
}

// ServerAddr is the server RPC (Raft) address other servers reach.
func (a *Agent) ServerAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serverAddr
}

// SerfAddr is the gossip address other agents join (valid after Started).
func (a *Agent) SerfAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serfAddr
}

// DataDir is the data dir in use: -data-dir, or the temporary one of -dev.
func (a *Agent) DataDir() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dataDir
}

// NodeID is the node's ID, as configured or as kept in the data dir.
func (a *Agent) NodeID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeID
}

// Run starts the agent and blocks until ctx is done or a part fails. It
// then stops the parts in reverse order: the HTTP API (requests in flight
// get ShutdownTimeout; blocking queries are woken at once), then the
// store. A -dev data dir is removed last. Run returns nil on a clean stop
// and may be called once.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice; create a new Agent")
	}
	cfg := a.cfg

	dataDir := cfg.DataDir
	if cfg.Dev {
		dir, err := os.MkdirTemp("", "cairn-dev-")
		if err != nil {
			return fmt.Errorf("create the -dev data dir: %w", err)
		}
		defer func() {
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("remove the -dev data dir: %w", rmErr))
			}
		}()
		dataDir = dir
	}
	unlock, err := prepareDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	nodeID, err := loadNodeID(dataDir, cfg.NodeID)
	if err != nil {
		return err
	}
	advertise, err := advertiseIP(cfg.BindAddr, cfg.AdvertiseAddr)
	if err != nil {
		return err
	}

	var key []byte
	if cfg.Encrypt != "" {
		if key, err = membership.DecodeKey(cfg.Encrypt); err != nil {
			return fmt.Errorf("-encrypt: %w", err)
		}
	}
	fast := cfg.Dev || cfg.Fast

	// Servers: the server port carries Raft and forwarded requests.
	var (
		mux   *forward.Mux
		store *kv.Server
	)
	if cfg.Server {
		mux, err = forward.Listen(net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.Server)), advertise, a.log)
		if err != nil {
			return err
		}
		defer mux.Close()
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  mux.RaftLayer(),
			MaxPool: 3,
			Timeout: 10 * time.Second,
		})
		store, err = kv.Open(kv.Config{
			NodeID:    nodeID,
			NodeName:  cfg.NodeName,
			DataDir:   dataDir,
			Transport: trans,
			Bootstrap: cfg.Dev || cfg.BootstrapExpect == 1,
			Fast:      fast,
			Logger:    a.log,
		})
		if err != nil {
			trans.Close()
			return err
		}
	}
	// From here on, the store is shut down on every path: by its own Run,
	// or here when Run never starts.
	runningStore := false
	defer func() {
		if store != nil && !runningStore {
			store.Shutdown()
		}
	}()

	var (
		ln       net.Listener
		httpPort = cfg.Ports.HTTP
	)
	if cfg.Ports.HTTP >= 0 {
		addr := net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.HTTP))
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for the HTTP API on %s: %w (is another agent using -http-port=%d? move it with -http-port)", addr, err, cfg.Ports.HTTP)
		}
		defer ln.Close()
		httpPort = ln.Addr().(*net.TCPAddr).Port
	}
	var (
		dnsPC   net.PacketConn
		dnsLn   net.Listener
		dnsPort = cfg.Ports.DNS
	)
	if cfg.Ports.DNS >= 0 {
		dnsPC, dnsLn, err = listenDNS(cfg.ClientAddr, cfg.Ports.DNS)
		if err != nil {
			return err
		}
		// dns.Server.Run closes them; these are for the paths that never
		// get there (a second Close is harmless).
		defer dnsPC.Close()
		defer dnsLn.Close()
		dnsPort = dnsPC.LocalAddr().(*net.UDPAddr).Port
	}

	role, serverAddr, serverPort := membership.RoleClient, "", 0
	if mux != nil {
		role, serverAddr = membership.RoleServer, mux.Addr().String()
		serverPort = mux.Addr().(*net.TCPAddr).Port
	}
	ml, err := membership.New(membership.Config{
		NodeName:        cfg.NodeName,
		BindAddr:        cfg.BindAddr,
		BindPort:        cfg.Ports.SerfLAN,
		AdvertiseAddr:   advertise,
		EncryptKey:      key,
		Fast:            fast,
		ReapFailedAfter: cfg.ReconnectTimeout,
		Logger:          a.log,
		Meta: membership.Meta{
			Role:       role,
			Datacenter: cfg.Datacenter,
			RaftAddr:   serverAddr,
			NodeID:     nodeID,
			Proto:      membership.ProtocolVersion,
			HTTPPort:   max(httpPort, 0),
			DNSPort:    max(dnsPort, 0),
		},
	})
	if err != nil {
		return err
	}
	defer ml.Shutdown()
	members := &memberView{ml: ml, dc: cfg.Datacenter}

	// The catalog: this agent's services and checks (kept in the data
	// dir), and every other agent's, replicated over gossip. Its gossip
	// handler is registered before any join, so nothing is missed.
	cat, err := catalog.New(catalog.Config{
		NodeName:           cfg.NodeName,
		NodeID:             nodeID,
		Datacenter:         cfg.Datacenter,
		Address:            advertise,
		DataDir:            dataDir,
		EnableScriptChecks: cfg.EnableScriptChecks,
		ValidateCheck:      validateCheck(cfg.EnableScriptChecks),
		Members:            catalogMembers{ml},
		Fast:               fast,
		Logger:             a.log,
	})
	if err != nil {
		return err
	}
	gossip, err := ml.Register(gossipKindCatalog, cat.GossipHandler())
	if err != nil {
		return fmt.Errorf("catalog gossip: %w", err)
	}
	checksCfg := checks.Config{
		Sink:               checkSink{cat: cat, log: a.log},
		EnableScriptChecks: cfg.EnableScriptChecks,
		DisableStagger:     fast,
		Logger:             a.log,
	}
	if cfg.Fast {
		// Tests: deregister-critical-after in seconds, not Consul's
		// one-minute floor (which -dev keeps).
		checksCfg.MinDeregisterAfter = time.Second
	}
	runner, err := checks.New(checksCfg)
	if err != nil {
		return err
	}

	pool := forward.NewPool(5 * time.Second)
	defer pool.Close()
	router := forward.NewRouter(store, members.serverAddrs, pool)
	c := &cluster{agent: a, ml: ml, router: router}

	revision, _ := Revision()
	handler, err := httpapi.NewHandler(httpapi.Config{
		Store:   router,
		Cluster: c,
		Catalog: cat,
		Self: httpapi.Self{
			NodeName:    cfg.NodeName,
			NodeID:      nodeID,
			Datacenter:  cfg.Datacenter,
			Version:     Version,
			Revision:    revision,
			Server:      cfg.Server,
			BindAddr:    advertise,
			SerfLANPort: ml.LocalMember().Port,
			HTTPPort:    httpPort,
			DNSPort:     dnsPort,
			ServerPort:  serverPort,
		},
		Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("build the HTTP API: %w", err)
	}

	// DNS answers from the catalog through the adapter in dns.go.
	var dnsSrv *dns.Server
	if dnsPC != nil {
		dc := a.dnsConfig()
		dc.PacketConn, dc.Listener = dnsPC, dnsLn
		if dnsSrv, err = dns.New(dc, newDNSCatalog(cat, a.log)); err != nil {
			return err
		}
	}
	// Templates render from this agent's own KV store and catalog, in
	// process (template.go).
	tmplSource := &templateSource{store: router, cat: cat, node: cfg.NodeName, dc: cfg.Datacenter}
	var tmplRunner *template.Runner
	if len(a.tmpl.Templates) > 0 {
		tc := a.tmpl
		tc.Source = tmplSource
		tc.Logger = a.log
		if tmplRunner, err = template.New(tc); err != nil {
			return err
		}
	}

	a.mu.Lock()
	if ln != nil {
		a.httpAddr = ln.Addr()
	}
	if dnsPC != nil {
		a.dnsAddr = dnsPC.LocalAddr()
	}
	a.tmplSource = tmplSource
	a.serverAddr = serverAddr
	a.serfAddr = ml.LocalMember().AddrPort().String()
	a.dataDir = dataDir
	a.nodeID = nodeID
	a.mu.Unlock()

	if len(cfg.Join) > 0 {
		n, err := ml.Join(cfg.Join)
		if err != nil {
			return fmt.Errorf("-join: %w", err)
		}
		a.log.Info("joined cluster", "contacted", n)
	}

	parts := parts{store: store, mux: mux, ml: ml, members: members, pool: pool, router: router,
		catalog: cat, gossip: gossip, checks: runner, dns: dnsSrv, templates: tmplRunner}
	runningStore = true
	return a.serve(ctx, parts, ln, handler)
}

// parts are the running pieces of an agent; store and mux are nil on
// client agents.
type parts struct {
	store   *kv.Server
	mux     *forward.Mux
	ml      *membership.Membership
	members *memberView
	pool    *forward.Pool
	router  *forward.Router
	catalog *catalog.Catalog
	gossip  *membership.Channel
	checks  *checks.Runner
	// dns and templates are nil when DNS is off and when no template is
	// given.
	dns       *dns.Server
	templates *template.Runner
}

// serve runs the parts in one errgroup until ctx is done, Leave is
// requested, or a part fails; then it leaves the cluster and stops them
// in reverse order.
func (a *Agent) serve(ctx context.Context, p parts, ln net.Listener, handler http.Handler) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a.mu.Lock()
	a.stop = stop
	a.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)

	// The store, the server port and the server manager outlive the HTTP
	// server: they stop only after the last request has been answered.
	coreCtx, stopCore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCore()
	if p.store != nil {
		g.Go(func() error {
			err := p.store.Run(coreCtx)
			if err == nil && coreCtx.Err() == nil {
				err = errors.New("stopped on its own")
			}
			if err != nil {
				return fmt.Errorf("kv server: %w", err)
			}
			return nil
		})
		serveRPC, err := forward.ServeConn(p.router)
		if err != nil {
			return err
		}
		g.Go(func() error {
			err := p.mux.Serve(serveRPC)
			if err != nil && coreCtx.Err() == nil {
				return err
			}
			return nil
		})
		mgr, err := servers.New(servers.Config{
			BootstrapExpect:     a.bootstrapExpect(),
			FailedServerTimeout: a.cfg.ReconnectTimeout,
			Logger:              a.log,
		}, p.members, p.store, func(ctx context.Context, addr string) (bool, error) {
			_, voters, err := p.pool.ServerStatus(ctx, addr)
			return len(voters) > 0, err
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return mgr.Run(coreCtx) })
	}
	// The catalog spreads this agent's state and applies the others'; the
	// runner runs this agent's checks. Both stop when shutdown starts,
	// after DNS and the templates, which read the catalog: reads are
	// served from the catalog's memory without them.
	catCtx, stopCatalog := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCatalog()
	g.Go(func() error {
		if err := p.catalog.Run(catCtx, p.gossip, checkRunner{p.checks}); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		return nil
	})
	g.Go(func() error { return p.checks.Run(catCtx) })
	// DNS answers from the catalog; it stops when shutdown starts.
	dnsDone := make(chan struct{})
	if p.dns != nil {
		g.Go(func() error {
			defer close(dnsDone)
			return p.dns.Run(gctx)
		})
	} else {
		close(dnsDone)
	}
	if len(a.cfg.RetryJoin) > 0 {
		g.Go(func() error {
			if err := p.ml.RetryJoin(gctx, a.cfg.RetryJoin); err != nil && gctx.Err() == nil {
				a.log.Warn("retry-join gave up", "err", err)
			}
			return nil
		})
	}

	// Blocking queries (?index=&wait=) hold requests for minutes; their
	// contexts end as soon as shutdown starts, so they answer at once
	// instead of holding up the stop.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	// HTTP/2 without TLS (h2c) besides HTTP/1.1: a watcher with many
	// blocking queries (cairn template) multiplexes them over one
	// connection instead of one socket per query.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.RegisterOnShutdown(cancelRequests)
	if ln != nil {
		g.Go(func() error {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serve the HTTP API on %s: %w", ln.Addr(), err)
		})
	}

	// The templates start once the catalog and the HTTP API run, and stop
	// first.
	tmplDone := make(chan struct{})
	if p.templates != nil {
		g.Go(func() error {
			defer close(tmplDone)
			if err := p.templates.Run(gctx); err != nil {
				return fmt.Errorf("templates: %w", err)
			}
			return nil
		})
	} else {
		close(tmplDone)
	}

	g.Go(func() error {
		<-gctx.Done()
		a.log.Info("agent stopping", "reason", context.Cause(gctx))
		<-tmplDone
		<-dnsDone
		stopCatalog()
		if a.cfg.LeaveOnTerminate || errors.Is(context.Cause(gctx), errLeaveRequested) {
			a.leave(p)
		}
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			a.log.Warn("HTTP API: requests still running after the shutdown timeout; closing them", "timeout", a.cfg.ShutdownTimeout)
			srv.Close()
		}
		stopCore()
		if p.mux != nil {
			// The store stops first (its Run returns after Shutdown);
			// closing the port after that ends forwarded calls.
			go func() {
				<-p.store.Done()
				p.mux.Close()
			}()
		}
		return nil
	})

	httpAddr, dnsAddr := "off", "off"
	if ln != nil {
		httpAddr = ln.Addr().String()
	}
	if d := a.DNSAddr(); d != nil {
		dnsAddr = d.String()
	}
	a.log.Info("agent started",
		"node", a.cfg.NodeName,
		"node_id", a.NodeID(),
		"datacenter", a.cfg.Datacenter,
		"server", a.cfg.Server,
		"dev", a.cfg.Dev,
		"http", httpAddr,
		"dns", dnsAddr,
		"server_rpc", a.ServerAddr(),
		"serf_lan", a.SerfAddr(),
		"data_dir", a.DataDir(),
		"version", Version)
	close(a.started)

	err := g.Wait()
	if err != nil {
		return err
	}
	a.log.Info("agent stopped")
	return nil
}

// bootstrapExpect is how many servers form the first Raft group; kv
// bootstraps a single server itself.
func (a *Agent) bootstrapExpect() int {
	if a.cfg.Dev || a.cfg.BootstrapExpect == 1 {
		return 0
	}
	return a.cfg.BootstrapExpect
}

// leave tells the cluster this agent is going: a leading server first
// hands the Raft group to the others by removing itself, then everyone
// sees the member "left" (not "failed"), and the leader removes a
// departed server from the Raft configuration.
func (a *Agent) leave(p parts) {
	if p.store != nil {
		if err := p.store.Leave(); err != nil {
			a.log.Warn("leave the raft group", "err", err)
		}
	}
	if err := p.ml.Leave(5 * time.Second); err != nil {
		a.log.Warn("leave the cluster", "err", err)
	}
}

var errLeaveRequested = errors.New("leave requested")

// Leave makes a running agent leave the cluster gracefully and stop, as
// /v1/agent/leave and `cairn leave` ask.
func (a *Agent) Leave() {
	a.mu.Lock()
	stop := a.stop
	a.mu.Unlock()
	if stop != nil {
		stop(errLeaveRequested)
	}
}
