package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/cairn-dev/cairn/agent/vip"
	"github.com/hashicorp/go-memdb"
)

// catalogParts opens the catalog (this agent's services and checks, kept
// in the data dir, and every other agent's, replicated over gossip) and
// its check runner, and returns both as parts. The catalog's gossip
// handler is registered before any join, so nothing is missed.
func (w *wiring) catalogParts() ([]part, error) {
	cfg := w.cfg
	catalogDir := w.dataDir
	if cfg.Dev {
		// -dev's data dir is removed on exit: keeping registrations in
		// it (and syncing each) would buy nothing.
		catalogDir = ""
	}
	// Script checks of config files run with enable_local_script_checks
	// too; the HTTP API's only with enable_script_checks. Config files
	// register before the API serves (loadDefinitions), while local is set.
	var local atomic.Bool
	scripts := func() bool { return cfg.EnableScriptChecks || cfg.EnableLocalScriptChecks && local.Load() }
	keys, signer, err := w.gossipIdentity()
	if err != nil {
		return nil, err
	}
	cat, err := catalog.New(catalog.Config{
		NodeName:           cfg.NodeName,
		NodeID:             w.nodeID,
		Datacenter:         cfg.Datacenter,
		Address:            w.advertise,
		NodeMeta:           nodeMeta(cfg),
		ServerService:      w.serverService(),
		DataDir:            catalogDir,
		EnableScriptChecks: cfg.EnableScriptChecks || cfg.EnableLocalScriptChecks,
		ValidateCheck: func(d checks.Definition) error {
			if (d.Type() == catalog.CheckScript || d.Type() == "docker") && !scripts() {
				return fmt.Errorf("check %q: script checks are disabled for the HTTP API on this agent (enable_local_script_checks allows them in config files only); start it with -enable-script-checks, or use an HTTP, TCP or TTL check", d.ID)
			}
			return d.Validate(cfg.EnableScriptChecks || cfg.EnableLocalScriptChecks)
		},
		Members:    catalogMembers{w.ml},
		SigningKey: signer,
		Keys:       catalogKeys(keys, signer),
		Fast:       w.fast,
		Logger:     w.log,
	})
	if err != nil {
		return nil, err
	}
	w.cat = cat
	w.onClose(cat.Close)
	keys.changed = cat.KeysChanged
	gossip, err := w.ml.Register(gossipKindCatalog, cat.GossipHandler())
	if err != nil {
		return nil, fmt.Errorf("catalog gossip: %w", err)
	}
	w.gossip = gossip
	local.Store(true)
	err = loadDefinitions(cat, cfg)
	local.Store(false)
	if err != nil {
		return nil, err
	}
	checksCfg := checks.Config{
		Sink:               w.tel.checkSink(checkSink{cat: cat, log: w.log}),
		EnableScriptChecks: cfg.EnableScriptChecks || cfg.EnableLocalScriptChecks,
		DisableStagger:     w.fast,
		Docker:             w.dockerExec(),
		Logger:             w.log,
	}
	if cfg.Fast {
		// Tests: deregister-critical-after in seconds, not Consul's
		// one-minute floor (which -dev keeps).
		checksCfg.MinDeregisterAfter = time.Second
	}
	runner, err := checks.New(checksCfg)
	if err != nil {
		return nil, err
	}
	w.checks = runner
	w.tel.catalog(cat, w.ml)
	parts := []part{
		{"catalog", func(ctx context.Context) error { return cat.Run(ctx, gossip, checkRunner{runner}) }},
		{"checks", runner.Run},
		{"gossip keys", keys.run},
	}
	if p, ok := w.diskCheckPart(cat); ok {
		parts = append(parts, p)
	}
	if p, ok := w.tel.convergence(cat, w.ml, w.cfg.NodeName); ok {
		parts = append(parts, p)
	}
	return parts, nil
}

// Adapters between the catalog and its neighbours: membership (which
// decides whose entries are shown, and how healthy their nodes are) and
// the check runner.

// Gossip message kinds of the components that share membership's gossip
// (membership.Register). One place, so two components never take the
// same kind.
const gossipKindCatalog = membership.FirstComponentKind

// catalogMembers adapts membership to catalog.Members.
type catalogMembers struct{ ml *membership.Membership }

func (m catalogMembers) Members(ws memdb.WatchSet) (uint64, []catalog.Member) {
	idx, ms := m.ml.Members(ws)
	out := make([]catalog.Member, 0, len(ms))
	for _, mem := range ms {
		out = append(out, catalog.Member{Name: mem.Name, Status: mem.Status})
	}
	return idx, out
}

// ConsulVersion is the Consul release whose API cairn follows, reported
// in the node meta key consul-version (tools read it to decide what the
// agent supports).
const ConsulVersion = "1.20.6"

// nodeMeta is the node's meta: -node-meta / node_meta, and Consul's own
// keys.
func nodeMeta(cfg Config) map[string]string {
	m := map[string]string{"consul-network-segment": "", "consul-version": ConsulVersion}
	maps.Copy(m, cfg.NodeMeta)
	return m
}

// serverService is the "consul" service that Consul's servers register
// for themselves (tools find the servers with it), at the server RPC
// port; nil on client agents.
func (w *wiring) serverService() *catalog.Service {
	if !w.cfg.Server || w.mux == nil {
		return nil
	}
	return &catalog.Service{
		Node: w.cfg.NodeName, ID: "consul", Name: "consul",
		Port:    w.mux.Addr().(*net.TCPAddr).Port,
		Weights: catalog.Weights{Passing: 1, Warning: 1},
		Meta: map[string]string{
			"non_voter": "false", "read_replica": "false", "raft_version": "3",
			"serf_protocol_current": "2", "serf_protocol_min": "1", "serf_protocol_max": "5",
			"version": ConsulVersion,
			// No VIP for the servers: clients reach them at their own
			// addresses, and a cluster's VIP range is for its services.
			vip.MetaEndpointMode: vip.EndpointDNSRR,
		},
	}
}

// loadDefinitions registers the service and check definitions of the
// config files, through the HTTP API's decoder (as at load time).
func loadDefinitions(cat *catalog.Catalog, cfg Config) error {
	for _, b := range cfg.Services {
		def, err := parseServiceDefinition(b)
		if err == nil {
			err = cat.RegisterService(def, false)
		}
		if err != nil {
			return fmt.Errorf("service definition of the config files: %w", err)
		}
	}
	for _, b := range cfg.Checks {
		def, err := parseCheckDefinition(b)
		if err == nil {
			err = cat.RegisterCheck(def)
		}
		if err != nil {
			return fmt.Errorf("check definition of the config files: %w", err)
		}
	}
	return nil
}

// checkRunner adapts *checks.Runner to catalog.Runner. The definition
// passes through as it is: checks.Definition is the catalog's own type,
// so there is no field-by-field copy that could drop one.
type checkRunner struct{ r *checks.Runner }

func (c checkRunner) Add(d checks.Definition) error { return c.r.Add(d) }
func (c checkRunner) Remove(id string)              { c.r.Remove(id) }
func (c checkRunner) TTL(id, status, output string) error {
	return c.r.TTL(id, checks.Status(status), output)
}

// checkSink takes the runner's results to the catalog.
type checkSink struct {
	cat *catalog.Catalog
	log *slog.Logger
}

func (s checkSink) UpdateCheck(id string, status checks.Status, output string) {
	// A check removed while its run was under way may still report:
	// the runner says to ignore it.
	if err := s.cat.UpdateCheck(id, string(status), output); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		s.log.Warn("could not record a check result", "check", id, "status", status, "err", err)
	}
}

func (s checkSink) DeregisterService(serviceID string) {
	err := s.cat.DeregisterService(serviceID)
	switch {
	case err == nil:
		s.log.Info("deregistered a service whose check stayed critical past DeregisterCriticalServiceAfter", "service", serviceID)
	case !errors.Is(err, catalog.ErrNotFound):
		s.log.Warn("could not deregister a service whose check stayed critical", "service", serviceID, "err", err)
	}
}
