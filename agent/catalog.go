package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/membership"
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
	cat, err := catalog.New(catalog.Config{
		NodeName:           cfg.NodeName,
		NodeID:             w.nodeID,
		Datacenter:         cfg.Datacenter,
		Address:            w.advertise,
		DataDir:            catalogDir,
		EnableScriptChecks: cfg.EnableScriptChecks,
		ValidateCheck:      validateCheck(cfg.EnableScriptChecks),
		Members:            catalogMembers{w.ml},
		Fast:               w.fast,
		Logger:             w.log,
	})
	if err != nil {
		return nil, err
	}
	w.cat = cat
	gossip, err := w.ml.Register(gossipKindCatalog, cat.GossipHandler())
	if err != nil {
		return nil, fmt.Errorf("catalog gossip: %w", err)
	}
	w.gossip = gossip
	checksCfg := checks.Config{
		Sink:               checkSink{cat: cat, log: w.log},
		EnableScriptChecks: cfg.EnableScriptChecks,
		DisableStagger:     w.fast,
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
	return []part{
		{"catalog", func(ctx context.Context) error { return cat.Run(ctx, gossip, checkRunner{runner}) }},
		{"checks", runner.Run},
	}, nil
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

// validateCheck judges a check with the runner's rules at registration.
func validateCheck(enableScriptChecks bool) func(checks.Definition) error {
	return func(d checks.Definition) error {
		return d.Validate(enableScriptChecks)
	}
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
