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

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/kv"
)

// Agent is one running cairn agent: in this build a single Raft server
// with the Consul-compatible HTTP API in front of it.
type Agent struct {
	cfg Config
	log *slog.Logger

	ran     atomic.Bool
	started chan struct{}

	mu         sync.Mutex
	httpAddr   net.Addr // nil when the HTTP API is off
	serverAddr string
	dataDir    string
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
	return &Agent{cfg: cfg, log: logger, started: make(chan struct{})}, nil
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

// ServerAddr is the server RPC (Raft) address other servers reach.
func (a *Agent) ServerAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serverAddr
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

	store, err := kv.Open(kv.Config{
		NodeID:        nodeID,
		NodeName:      cfg.NodeName,
		DataDir:       dataDir,
		BindAddr:      net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.Server)),
		AdvertiseAddr: advertiseServerAddr(advertise, cfg.Ports.Server),
		Bootstrap:     cfg.Dev || cfg.BootstrapExpect == 1,
		Fast:          cfg.Dev,
		Logger:        a.log,
	})
	if err != nil {
		return err
	}
	// From here on, the store is shut down on every path: by its own Run,
	// or here when Run never starts.
	runningStore := false
	defer func() {
		if !runningStore {
			store.Shutdown()
		}
	}()

	serverPort := cfg.Ports.Server
	if _, p, err := net.SplitHostPort(store.Addr()); err == nil {
		serverPort, _ = strconv.Atoi(p)
	}

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

	revision, _ := Revision()
	handler, err := httpapi.NewHandler(httpapi.Config{
		Store: store,
		Self: httpapi.Self{
			NodeName:    cfg.NodeName,
			NodeID:      nodeID,
			Datacenter:  cfg.Datacenter,
			Version:     Version,
			Revision:    revision,
			Server:      cfg.Server,
			BindAddr:    advertise,
			SerfLANPort: cfg.Ports.SerfLAN,
			HTTPPort:    httpPort,
			DNSPort:     cfg.Ports.DNS,
			ServerPort:  serverPort,
		},
		Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("build the HTTP API: %w", err)
	}

	a.mu.Lock()
	if ln != nil {
		a.httpAddr = ln.Addr()
	}
	a.serverAddr = store.Addr()
	a.dataDir = dataDir
	a.nodeID = nodeID
	a.mu.Unlock()

	a.warnUnbuilt()
	runningStore = true
	return a.serve(ctx, store, ln, handler)
}

// serve runs the store and the HTTP server in one errgroup until ctx is
// done or one of them fails, then stops them in reverse order.
func (a *Agent) serve(ctx context.Context, store *kv.Server, ln net.Listener, handler http.Handler) error {
	g, gctx := errgroup.WithContext(ctx)

	// The store outlives the HTTP server: it is stopped only after the
	// last request has been answered.
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStore()
	g.Go(func() error {
		err := store.Run(storeCtx)
		if err == nil && storeCtx.Err() == nil {
			err = errors.New("stopped on its own")
		}
		if err != nil {
			return fmt.Errorf("kv server: %w", err)
		}
		return nil
	})

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

	g.Go(func() error {
		<-gctx.Done()
		a.log.Info("agent stopping", "reason", context.Cause(gctx))
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			a.log.Warn("HTTP API: requests still running after the shutdown timeout; closing them", "timeout", a.cfg.ShutdownTimeout)
			srv.Close()
		}
		stopStore()
		return nil
	})

	httpAddr := "off"
	if ln != nil {
		httpAddr = ln.Addr().String()
	}
	a.log.Info("agent started",
		"node", a.cfg.NodeName,
		"node_id", a.NodeID(),
		"datacenter", a.cfg.Datacenter,
		"server", a.cfg.Server,
		"dev", a.cfg.Dev,
		"http", httpAddr,
		"server_rpc", store.Addr(),
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

// warnUnbuilt logs once for settings that are kept for features this
// build does not have yet.
func (a *Agent) warnUnbuilt() {
	var ignored []string
	if len(a.cfg.Join) > 0 {
		ignored = append(ignored, "-join")
	}
	if len(a.cfg.RetryJoin) > 0 {
		ignored = append(ignored, "-retry-join")
	}
	if a.cfg.Encrypt != "" {
		ignored = append(ignored, "-encrypt")
	}
	if len(ignored) > 0 {
		a.log.Warn("cluster membership is not built yet; these settings are kept but have no effect", "settings", strings.Join(ignored, " "))
	}
}

// advertiseServerAddr is the server RPC address to advertise; empty
// lets kv advertise its bound address.
func advertiseServerAddr(ip string, port int) string {
	if ip == "" || port == 0 {
		return ""
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}
