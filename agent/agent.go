package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/template"
)

// Agent is one running cairn agent: a member of the cluster (gossip),
// a Raft server when -server is set, and the Consul-compatible HTTP API
// that answers locally or forwards to the servers.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	tmpl template.Config // templates to render in-process; none without -template
	// dataplanes are the kernel VIP data planes built in (vips.go);
	// tests replace them so that they never touch the host's kernel.
	dataplanes map[string]DataplaneFactory
	// unsignedGossip (benchmarks only) publishes catalog records
	// unsigned and applies them unchecked, to measure what signing costs.
	unsignedGossip bool

	ran     atomic.Bool
	started chan struct{}

	mu         sync.Mutex
	httpAddr   net.Addr // nil when the HTTP API is off
	httpsAddr  net.Addr // nil without ports.https
	dnsAddr    net.Addr // nil when DNS is off
	tmplSource *templateSource
	serverAddr string
	serfAddr   string
	dataDir    string
	stop       context.CancelCauseFunc
	runCtx     context.Context // Run's, ended by stop
	nodeID     string
	reloaders  map[string]reloader // by part, registered while Run builds

	reloadMu sync.Mutex // one Reload at a time
}

// New validates cfg and fills in what depends on the host (node name,
// -dev addresses). It starts nothing. A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if logger == nil {
		// Written nowhere, but /v1/agent/monitor can still stream it.
		logger = logging.New(nil, slog.LevelInfo, false).Logger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, w := range cfg.ConfigWarnings {
		if !seen[w] {
			seen[w] = true
			logger.Warn(w)
		}
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
		cfg.EnableDebug = true // as Consul's -dev
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
	if cfg.VIPCIDR != "" && cfg.VIPDataplane == "" {
		cfg.VIPDataplane = DataplaneAuto
	}
	if cfg.VIPScheduler == "" {
		cfg.VIPScheduler = DefaultConfig().VIPScheduler
	}
	return &Agent{cfg: cfg, log: logger, tmpl: tmpl, started: make(chan struct{}), dataplanes: dataplanes()}, nil
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

// Run starts the agent and blocks until ctx is done or a part fails.
// The parts run in layers (parts.go), started bottom-up and stopped
// top-down: the store; the HTTP API; membership (the leave happens when
// it stops); the catalog and its checks; and what reads the catalog
// (DNS, templates). A -dev data dir is removed last. Run returns nil on a
// clean stop and may be called once.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice; create a new Agent")
	}
	w := &wiring{agent: a, cfg: a.cfg, log: a.log}
	defer func() { err = errors.Join(err, w.close()) }()
	layers, err := w.build()
	if err != nil {
		return err
	}

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a.mu.Lock()
	a.stop, a.runCtx = stop, ctx
	a.mu.Unlock()
	w.logStarted()
	close(a.started)

	err = runLayers(ctx, a.log, layers, func(cause error) {
		a.log.Info("agent stopping", "reason", cause)
	})
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

var errLeaveRequested = errors.New("leave requested")

// stopCause is why Run is stopping (errLeaveRequested for Leave), nil
// while it runs.
func (a *Agent) stopCause() error {
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	if ctx == nil {
		return nil
	}
	return context.Cause(ctx)
}

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
