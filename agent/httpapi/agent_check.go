package httpapi

import (
	"errors"
	"fmt"
	"github.com/cairn-dev/cairn/agent/acl"
	"net/http"
	"strconv"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/consuljson"
)

// This agent's own checks: Consul's /v1/agent/check* endpoints.

// agentChecks serves GET /v1/agent/checks: this agent's checks by ID, with
// their latest output.
func (h *handler) agentChecks(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	out := map[string]*consuljson.Check{}
	// Consul's agent filter: service read for a service's check, node
	// read on this agent for a node check.
	for _, ch := range filterList(c, h.catalog.LocalChecks(), func(ch *catalog.Check) bool {
		if ch.ServiceID != "" {
			return c.can(acl.Service, ch.ServiceName, acl.Read)
		}
		return c.can(acl.Node, h.self.NodeName, acl.Read)
	}) {
		out[ch.CheckID] = consuljson.FromCheck(ch)
	}
	return writeFiltered(c, out)
}

// agentCheckRegister serves PUT /v1/agent/check/register.
func (h *handler) agentCheckRegister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	var in checkDefinitionIn
	if err := decodeJSONBody(c, &in, "a check registration"); err != nil {
		return err
	}
	d, err := in.checkRegistration()
	if err != nil {
		return err
	}
	// Consul's vetCheckRegister: service write on the check's service,
	// node write on this agent for a node check.
	if d.ServiceID != "" {
		if s := h.catalog.LocalService(d.ServiceID); s != nil {
			if err := c.allow(acl.Service, s.Name, acl.Write); err != nil {
				return err
			}
		} else if err := c.allow(acl.Service, d.ServiceID, acl.Write); err != nil {
			return err
		}
	} else if err := c.allow(acl.Node, h.self.NodeName, acl.Write); err != nil {
		return err
	}
	return h.catalog.RegisterCheck(d)
}

// agentCheckDeregister serves PUT /v1/agent/check/deregister/<id>.
func (h *handler) agentCheckDeregister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing check ID: use /v1/agent/check/deregister/<id>")
	}
	if err := h.checkLocalCheckWrite(c, c.arg); err != nil {
		return err
	}
	return h.catalog.DeregisterCheck(c.arg)
}

// agentCheckStatus serves PUT /v1/agent/check/pass|warn|fail/<id>?note=:
// an application's report on its TTL check.
func (h *handler) agentCheckStatus(status string) func(c *call) error {
	return func(c *call) error {
		if h.catalog == nil {
			return errNoCatalog
		}
		if c.arg == "" {
			return badRequest("Missing check ID: use the check's ID after the last /")
		}
		if err := h.checkLocalCheckWrite(c, c.arg); err != nil {
			return err
		}
		return h.catalog.UpdateTTL(c.arg, status, c.query.Get("note"))
	}
}

// agentCheckUpdate serves PUT /v1/agent/check/update/<id> with a body of
// {"Status": ..., "Output": ...}.
func (h *handler) agentCheckUpdate(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing check ID: use /v1/agent/check/update/<id>")
	}
	var in struct {
		Status string
		Output string
	}
	if err := decodeJSONBody(c, &in, `a check update, {"Status": "passing", "Output": "..."}`); err != nil {
		return err
	}
	if !catalog.ValidStatus(in.Status) {
		return badRequest("Invalid check status: '%s'; use passing, warning or critical", in.Status)
	}
	if err := h.checkLocalCheckWrite(c, c.arg); err != nil {
		return err
	}
	return h.catalog.UpdateTTL(c.arg, in.Status, in.Output)
}

// checkRegistration is a check of /v1/agent/check/register in the
// catalog's form.
func (in *checkDefinitionIn) checkRegistration() (checks.Definition, error) {
	return in.definition("", "")
}

// agentMaintenance serves PUT /v1/agent/maintenance?enable=&reason=:
// node maintenance mode (catalog.SetMaintenance).
func (h *handler) agentMaintenance(c *call) error {
	return h.maintenance(c, "")
}

// agentServiceMaintenance serves PUT
// /v1/agent/service/maintenance/<id>?enable=&reason=.
func (h *handler) agentServiceMaintenance(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service ID: use /v1/agent/service/maintenance/<id>?enable=true")
	}
	return h.maintenance(c, c.arg)
}

func (h *handler) maintenance(c *call, serviceID string) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if !has(c.query, "enable") {
		return badRequest("Missing value for enable")
	}
	enable, err := strconv.ParseBool(c.query.Get("enable"))
	if err != nil {
		return badRequest("Invalid value for enable: %q", c.query.Get("enable"))
	}
	// Consul: node write on this agent for node maintenance, service
	// write on the service (vetServiceUpdate) for a service's.
	if serviceID == "" {
		err = c.allow(acl.Node, h.self.NodeName, acl.Write)
	} else {
		err = h.checkLocalServiceWrite(c, serviceID)
	}
	if err != nil {
		return err
	}
	err = h.catalog.SetMaintenance(serviceID, enable, c.query.Get("reason"))
	if errors.Is(err, catalog.ErrNotFound) {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown service ID %q", serviceID)}
	}
	return err
}

// agentServiceHealth is api.AgentServiceChecksInfo.
type agentServiceHealth struct {
	AggregatedStatus string
	Service          *consuljson.Service
	Checks           []*consuljson.Check
}

// healthCode is the status code Consul's agent health endpoints answer
// for an aggregated status.
func healthCode(status string) int {
	switch status {
	case catalog.StatusPassing:
		return http.StatusOK
	case catalog.StatusWarning:
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// localServiceHealth is one local service with its checks, the node's
// (maintenance included) and its own, as the agent health endpoints
// judge it.
func (h *handler) localServiceHealth(s *catalog.Service, all []*catalog.Check) agentServiceHealth {
	var cs []*catalog.Check
	for _, ch := range all {
		if ch.ServiceID == s.ID || ch.ServiceID == "" && ch.CheckID != catalog.SerfCheckID {
			cs = append(cs, ch)
		}
	}
	j := consuljson.FromService(s)
	j.Datacenter = h.self.Datacenter
	return agentServiceHealth{AggregatedStatus: catalog.AggregateStatus(cs), Service: j, Checks: consuljson.FromChecks(cs)}
}

// agentHealthServiceByID serves GET /v1/agent/health/service/id/<id>:
// 200, 429 or 503 for passing, warning or critical, with the service and
// its checks (?format=text: the status alone).
func (h *handler) agentHealthServiceByID(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing serviceID")
	}
	s := h.catalog.LocalService(c.arg)
	if s == nil {
		return writeHealth(c, http.StatusNotFound, fmt.Sprintf("ServiceId %s not found", c.arg), nil)
	}
	// Consul's AgentHealthServiceByID: service read on the service.
	if err := c.allow(acl.Service, s.Name, acl.Read); err != nil {
		return err
	}
	info := h.localServiceHealth(s, h.catalog.LocalChecks())
	return writeHealth(c, healthCode(info.AggregatedStatus), info.AggregatedStatus, info)
}

// agentHealthServiceByName serves GET /v1/agent/health/service/name/<name>:
// every local instance of the service, the code by the worst of them.
func (h *handler) agentHealthServiceByName(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing service Name")
	}
	// Consul's AgentHealthServiceByName: service read on the name.
	if err := c.allow(acl.Service, c.arg, acl.Read); err != nil {
		return err
	}
	all := h.catalog.LocalChecks()
	out := []agentServiceHealth{}
	worst := catalog.StatusPassing
	for _, s := range h.catalog.LocalServices() {
		if s.Name != c.arg {
			continue
		}
		info := h.localServiceHealth(s, all)
		out = append(out, info)
		switch {
		case info.AggregatedStatus == catalog.StatusCritical:
			worst = catalog.StatusCritical
		case info.AggregatedStatus == catalog.StatusWarning && worst == catalog.StatusPassing:
			worst = catalog.StatusWarning
		}
	}
	if len(out) == 0 {
		return writeHealth(c, http.StatusNotFound, fmt.Sprintf("ServiceName %s Not Found", c.arg), out)
	}
	return writeHealth(c, healthCode(worst), worst, out)
}

// writeHealth answers an agent health endpoint: JSON, or the text with
// ?format=text.
func writeHealth(c *call, code int, text string, v any) error {
	if c.query.Get("format") == "text" {
		c.w.Header().Set("Content-Type", "text/plain")
		c.w.WriteHeader(code)
		_, err := c.w.Write([]byte(text))
		return err
	}
	if v == nil {
		c.w.Header().Set("Content-Type", "text/plain")
		c.w.WriteHeader(code)
		_, err := c.w.Write([]byte(text))
		return err
	}
	return writeJSON(c.w, code, v)
}

// checkLocalCheckWrite is Consul's vetCheckUpdate: service write on the
// service of this agent's check id, or node write on this agent for a
// node check. An unknown id needs nothing: the endpoint answers its own
// 404.
func (h *handler) checkLocalCheckWrite(c *call, id string) error {
	if c.aclOff() {
		return nil
	}
	for _, ch := range h.catalog.LocalChecks() {
		if ch.CheckID != id {
			continue
		}
		if ch.ServiceID != "" {
			return c.allow(acl.Service, ch.ServiceName, acl.Write)
		}
		return c.allow(acl.Node, h.self.NodeName, acl.Write)
	}
	_, err := c.authorizer()
	return err
}
