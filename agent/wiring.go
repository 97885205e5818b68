package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/catalogtxn"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/forward"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/preparedquery"
	"github.com/cairn-dev/cairn/agent/tlsconfig"
	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/cairn-dev/cairn/kv"
)

// wiring is one Run's parts as they are built: each constructor (one
// file per part: store.go, httpserver.go, membership.go, catalog.go,
// dns.go, template.go) opens what its part needs and returns the part;
// build puts them in layers. Everything opened is registered with
// onClose, so a failed start closes it and a stop closes the rest.
type wiring struct {
	agent *Agent
	cfg   Config
	log   *slog.Logger

	dataDir   string
	nodeID    string
	advertise string
	fast      bool // -dev or tests: short timers

	// Filled in by the constructors, in build's order; store and mux
	// are nil on client agents.
	store    *kv.Server
	mux      *forward.Mux
	httpLn   net.Listener // nil when the HTTP API is off
	httpsLn  net.Listener // nil without ports.https
	tls      *tlsconfig.Manager
	httpPort int
	dnsPC    net.PacketConn // nil when DNS is off
	dnsLn    net.Listener
	dnsPort  int
	ml       *membership.Membership
	members  *memberView
	cat      *catalog.Catalog
	gossip   *membership.Channel
	checks   *checks.Runner
	pool     *forward.Pool
	router   *forward.Router
	vips     *vip.VIPs // nil without -vip-cidr
	events   *membership.Events
	queries  *preparedquery.Registry // made by queryRegistry
	txns     *catalogtxn.Coordinator // made by txnCoordinator
	acls     *aclState               // made by aclSystem; nil with ACLs off
	tel      *telemetry              // nil with -disable-metrics

	closers []func() error
}

// onClose registers f to run when Run ends, in reverse order.
func (w *wiring) onClose(f func() error) { w.closers = append(w.closers, f) }

// close runs the closers, last first.
func (w *wiring) close() error {
	var errs []error
	for _, f := range slices.Backward(w.closers) {
		errs = append(errs, f())
	}
	w.closers = nil
	return errors.Join(errs...)
}

// build opens every part in dependency order and returns them in
// layers, bottom first. Adding a part is one constructor and one entry
// here.
func (w *wiring) build() ([]layer, error) {
	if err := w.prepare(); err != nil {
		return nil, err
	}
	if err := w.tlsSetup(); err != nil {
		return nil, err
	}
	store, err := w.storeParts()
	if err != nil {
		return nil, err
	}
	if p, ok := w.tel.raft(w.store); ok {
		store = append(store, p)
	}
	if err := w.listen(); err != nil {
		return nil, err
	}
	if err := w.listenHTTPS(); err != nil {
		return nil, err
	}
	membership, err := w.membershipParts()
	if err != nil {
		return nil, err
	}
	cat, err := w.catalogParts()
	if err != nil {
		return nil, err
	}
	events, err := w.eventsPart()
	if err != nil {
		return nil, err
	}
	cat = append(cat, events)
	// VIPs before the HTTP API and DNS, which answer them.
	vips, withVIPs, err := w.vipPart()
	if err != nil {
		return nil, err
	}
	http, err := w.httpPart()
	if err != nil {
		return nil, err
	}
	var services []part
	if withVIPs {
		services = append(services, vips)
	}
	for _, build := range []func() (part, bool, error){w.dnsPart, w.templatePart, w.registratorPart, w.sessionChecksPart, w.aclPart, w.txnRecoveryPart, w.rexecPart} {
		p, ok, err := build()
		if err != nil {
			return nil, err
		}
		if ok {
			services = append(services, p)
		}
	}
	if err := w.publish(); err != nil {
		return nil, err
	}
	return []layer{
		{"store", store},
		{"http", []part{http}},
		{"membership", membership},
		{"catalog", cat},
		{"services", services},
	}, nil
}

// prepare takes the data dir (the temporary one of -dev), the node ID
// and the address to advertise.
func (w *wiring) prepare() error {
	cfg := w.cfg
	w.fast = cfg.Dev || cfg.Fast
	if !cfg.DisableMetrics {
		w.tel = newTelemetry("")
	}
	w.dataDir = cfg.DataDir
	if cfg.Dev {
		dir, err := os.MkdirTemp("", "cairn-dev-")
		if err != nil {
			return fmt.Errorf("create the -dev data dir: %w", err)
		}
		w.onClose(func() error {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove the -dev data dir: %w", err)
			}
			return nil
		})
		w.dataDir = dir
	}
	unlock, err := prepareDataDir(w.dataDir)
	if err != nil {
		return err
	}
	w.onClose(func() error { unlock(); return nil })
	if w.nodeID, err = loadNodeID(w.dataDir, cfg.NodeID); err != nil {
		return err
	}
	w.advertise, err = advertiseIP(cfg.BindAddr, cfg.AdvertiseAddr)
	return err
}

// publish makes the addresses known (Agent.HTTPAddr and the others) and
// joins the cluster when -join says so: the last step before the parts
// run.
func (w *wiring) publish() error {
	a := w.agent
	a.mu.Lock()
	if w.httpLn != nil {
		a.httpAddr = w.httpLn.Addr()
	}
	if w.dnsPC != nil {
		a.dnsAddr = w.dnsPC.LocalAddr()
	}
	if w.mux != nil {
		a.serverAddr = w.mux.Addr().String()
	}
	a.serfAddr = w.ml.LocalMember().AddrPort().String()
	a.dataDir = w.dataDir
	a.nodeID = w.nodeID
	a.mu.Unlock()
	if len(w.cfg.Join) > 0 {
		n, err := w.ml.Join(w.cfg.Join)
		if err != nil {
			return fmt.Errorf("-join: %w", err)
		}
		w.log.Info("joined cluster", "contacted", n)
	}
	return nil
}

func (w *wiring) logStarted() {
	a := w.agent
	httpAddr, dnsAddr := "off", "off"
	if w.httpLn != nil {
		httpAddr = w.httpLn.Addr().String()
	}
	if w.dnsPC != nil {
		dnsAddr = w.dnsPC.LocalAddr().String()
	}
	a.log.Info("agent started",
		"node", w.cfg.NodeName,
		"node_id", w.nodeID,
		"datacenter", w.cfg.Datacenter,
		"server", w.cfg.Server,
		"dev", w.cfg.Dev,
		"http", httpAddr,
		"dns", dnsAddr,
		"server_rpc", a.ServerAddr(),
		"serf_lan", a.SerfAddr(),
		"data_dir", w.dataDir,
		"version", Version)
}
