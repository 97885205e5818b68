package agent

import (
	"errors"
	"log/slog"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/membership"
	"github.com/hashicorp/go-memdb"
)

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
