package httpapi

import (
	"encoding/json"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/hashicorp/go-memdb"
)

// healthService serves GET /v1/health/service/<name>: every instance
// with its node and checks; ?passing keeps the instances whose checks
// all pass, ?tag= and ?node-meta= filter as in the catalog.
func (h *handler) healthService(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service name: use /v1/health/service/<name>")
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	return h.serviceAnswer(c, "health", f, h.catalog.ServiceHealth, func(insts []catalog.Instance) any {
		out := make([]consuljson.ServiceEntry, 0, len(insts))
		for _, in := range insts {
			out = append(out, consuljson.FromHealth(in))
		}
		sortNear(h, c, out, func(e consuljson.ServiceEntry) string { return e.Node.Node })
		return out
	})
}

// healthChecks serves GET /v1/health/checks/<service>: the checks of
// every instance of the service.
func (h *handler) healthChecks(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service name: use /v1/health/checks/<service>")
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var checks []*catalog.Check
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, cs := h.catalog.ServiceChecks(ws, c.arg, f)
		checks = cs
		return idx
	}); err != nil {
		return err
	}
	checks = filterChecks(c, checks)
	out := consuljson.FromChecks(checks)
	sortNear(h, c, out, func(ch *consuljson.Check) string { return ch.Node })
	return writeFiltered(c, out)
}

// healthNode serves GET /v1/health/node/<node>: the node's checks and its
// services'.
func (h *handler) healthNode(c *call) error {
	if c.arg == "" {
		return badRequest("Missing node name: use /v1/health/node/<node>")
	}
	var checks []*catalog.Check
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, cs := h.catalog.NodeChecks(ws, c.arg)
		checks = cs
		return idx
	}); err != nil {
		return err
	}
	checks = filterChecks(c, checks)
	return writeFiltered(c, consuljson.FromChecks(checks))
}

// healthState serves GET /v1/health/state/<state>: every check in that
// status (any, passing, warning, critical).
func (h *handler) healthState(c *call) error {
	state := c.arg
	if state != "any" && !catalog.ValidStatus(state) {
		return badRequest("Invalid state %q: use /v1/health/state/ with any, passing, warning or critical", state)
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var checks []*catalog.Check
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, cs, _ := h.catalog.ChecksInState(ws, state, f)
		checks = cs
		return idx
	}); err != nil {
		return err
	}
	checks = filterChecks(c, checks)
	out := consuljson.FromChecks(checks)
	sortNear(h, c, out, func(ch *consuljson.Check) string { return ch.Node })
	return writeFiltered(c, out)
}

// connectCapable reads, within a catalog read, the instances that serve
// Connect traffic for service name: connect-proxy instances whose
// Proxy.DestinationServiceName is name, and instances of name registered
// Connect-native. read is ServiceNodes or ServiceHealth.
func (h *handler) connectCapable(ws memdb.WatchSet, name string, f catalog.Filter,
	read func(memdb.WatchSet, string, catalog.Filter) (uint64, []catalog.Instance)) (uint64, []catalog.Instance) {
	idx, names := h.catalog.Services(ws, catalog.Filter{NodeMeta: f.NodeMeta})
	var out []catalog.Instance
	for n := range names {
		i, insts := read(ws, n, f)
		idx = max(idx, i)
		for _, in := range insts {
			if servesConnectFor(in.Service, name) {
				out = append(out, in)
			}
		}
	}
	return idx, out
}

// servesConnectFor is whether s takes Connect traffic for service name.
func servesConnectFor(s *catalog.Service, name string) bool {
	if s.Kind == "connect-proxy" {
		var p struct{ DestinationServiceName string }
		return json.Unmarshal(s.Proxy, &p) == nil && p.DestinationServiceName == name
	}
	if s.Kind != "" || s.Name != name || len(s.Connect) == 0 {
		return false
	}
	var conn struct{ Native bool }
	return json.Unmarshal(s.Connect, &conn) == nil && conn.Native
}

// healthConnect serves GET /v1/health/connect/<service>: the
// Connect-capable instances for the service (its proxies and its native
// instances) with their checks. cairn runs no proxies; it answers what
// was registered.
func (h *handler) healthConnect(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service name: use /v1/health/connect/<service>")
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var insts []catalog.Instance
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, in := h.connectCapable(ws, c.arg, f, h.catalog.ServiceHealth)
		insts = in
		return idx
	}); err != nil {
		return err
	}
	insts = filterInstances(c, insts)
	out := make([]consuljson.ServiceEntry, 0, len(insts))
	for _, in := range insts {
		out = append(out, consuljson.FromHealth(in))
	}
	return writeFiltered(c, out)
}
