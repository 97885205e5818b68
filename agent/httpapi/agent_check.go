package httpapi

import (
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
	for _, ch := range h.catalog.LocalChecks() {
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
	return h.catalog.UpdateTTL(c.arg, in.Status, in.Output)
}

// checkRegistration is a check of /v1/agent/check/register in the
// catalog's form.
func (in *checkDefinitionIn) checkRegistration() (checks.Definition, error) {
	return in.definition("", "")
}
