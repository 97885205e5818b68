package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/consuljson"
)

// This agent's own services: Consul's /v1/agent/service* endpoints.

// serviceRegistration is the body of PUT /v1/agent/service/register
// (api.AgentServiceRegistration).
type serviceRegistration struct {
	ID                string
	Name              string
	Tags              []string
	Port              int
	Address           string
	TaggedAddresses   map[string]consuljson.ServiceAddress
	EnableTagOverride bool
	Meta              map[string]string
	Weights           *consuljson.Weights
	Check             *checkDefinitionIn
	Checks            []*checkDefinitionIn

	Kind       string
	SocketPath string
	Connect    json.RawMessage
	Proxy      json.RawMessage
}

// checkDefinitionIn is a check as the agent API takes it: a service's
// Check or Checks (api.AgentServiceCheck), or the body of PUT
// /v1/agent/check/register (api.AgentCheckRegistration).
type checkDefinitionIn struct {
	ID        string
	CheckID   string
	Name      string
	ServiceID string
	Notes     string
	Status    string

	HTTP          string
	Method        string
	Header        map[string][]string
	Body          string
	TLSServerName string
	TLSSkipVerify bool
	TCP           string
	TTL           durationIn
	ScriptArgs    []string
	Args          []string

	Interval                       durationIn
	Timeout                        durationIn
	DeregisterCriticalServiceAfter durationIn

	SuccessBeforePassing   int
	FailuresBeforeWarning  int
	FailuresBeforeCritical int

	// gRPC health checks and Docker (exec) checks.
	GRPC              string
	GRPCUseTLS        bool
	DockerContainerID string
	Shell             string

	// Consul's other check types, refused with a reason.
	H2PING       string
	UDP          string
	OSService    string
	AliasNode    string
	AliasService string
	TCPUseTLS    bool
}

// durationIn is a duration as Consul takes it: text ("10s") or a number
// of nanoseconds. It is parsed where the field's name is known, for the
// error.
type durationIn struct{ raw json.RawMessage }

func (d *durationIn) UnmarshalJSON(b []byte) error {
	d.raw = bytes.Clone(b)
	return nil
}

func (d durationIn) get(check, field string) (time.Duration, error) {
	if len(d.raw) == 0 || string(d.raw) == "null" {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(d.raw, &s); err == nil {
		if s == "" {
			return 0, nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, badRequest("check %q: %s=%q is not a duration; give one with a unit, such as \"10s\" or \"1m30s\"", check, field, s)
		}
		return v, nil
	}
	var n float64
	if err := json.Unmarshal(d.raw, &n); err == nil {
		return time.Duration(n), nil
	}
	return 0, badRequest("check %q: %s=%s is not a duration; give one with a unit, such as \"10s\"", check, field, d.raw)
}

// definition turns the check into the catalog's form; serviceID is the
// service it comes with ("" for /v1/agent/check/register), and shownID
// the ID that errors name when the check has none (the catalog gives it
// one later).
func (in *checkDefinitionIn) definition(serviceID, shownID string) (checks.Definition, error) {
	id := in.ID
	if id == "" {
		id = in.CheckID
	}
	name := id
	if name == "" {
		name = in.Name
	}
	if name == "" {
		name = shownID
	}
	for _, u := range []struct{ field, value string }{
		{"H2PING", in.H2PING},
		{"UDP", in.UDP}, {"OSService", in.OSService}, {"AliasNode", in.AliasNode}, {"AliasService", in.AliasService},
	} {
		if u.value != "" {
			return checks.Definition{}, badRequest("check %q: %s checks are not supported by cairn; use an HTTP, TCP, TTL or script (ScriptArgs) check", name, u.field)
		}
	}
	if in.TCPUseTLS {
		return checks.Definition{}, badRequest("check %q: TCPUseTLS is not supported by cairn; use an HTTP check with an https:// URL", name)
	}
	d := checks.Definition{
		ID: id, Name: in.Name, ServiceID: in.ServiceID, Notes: in.Notes, Status: checks.Status(in.Status),
		HTTP: in.HTTP, Method: in.Method, Header: in.Header, Body: in.Body,
		TLSServerName: in.TLSServerName, TLSSkipVerify: in.TLSSkipVerify, TCP: in.TCP,
		GRPC: in.GRPC, GRPCUseTLS: in.GRPCUseTLS, DockerContainerID: in.DockerContainerID, Shell: in.Shell,
		Args:                   in.ScriptArgs,
		SuccessBeforePassing:   in.SuccessBeforePassing,
		FailuresBeforeWarning:  in.FailuresBeforeWarning,
		FailuresBeforeCritical: in.FailuresBeforeCritical,
	}
	if len(d.Args) == 0 {
		d.Args = in.Args
	}
	if serviceID != "" {
		d.ServiceID = serviceID
	}
	var err error
	for _, f := range []struct {
		name string
		in   durationIn
		out  *time.Duration
	}{
		{"TTL", in.TTL, &d.TTL},
		{"Interval", in.Interval, &d.Interval},
		{"Timeout", in.Timeout, &d.Timeout},
		{"DeregisterCriticalServiceAfter", in.DeregisterCriticalServiceAfter, &d.DeregisterCriticalServiceAfter},
	} {
		if *f.out, err = f.in.get(name, f.name); err != nil {
			return checks.Definition{}, err
		}
	}
	return d, nil
}

// agentServiceRegister serves PUT /v1/agent/service/register
// (?replace-existing-checks drops the service's checks that the body does
// not name).
func (h *handler) agentServiceRegister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	var in serviceRegistration
	if err := decodeJSONBody(c, &in, "a service registration"); err != nil {
		return err
	}
	if in.Kind != "" || in.SocketPath != "" || len(in.Connect) > 0 && string(in.Connect) != "null" || len(in.Proxy) > 0 && string(in.Proxy) != "null" {
		return badRequest("service %q: Connect, proxies, socket paths and service kinds are not supported by cairn; register a plain service", in.Name)
	}
	svc := catalog.Service{
		ID: in.ID, Name: in.Name, Tags: in.Tags, Address: in.Address, Port: in.Port,
		Meta: in.Meta, EnableTagOverride: in.EnableTagOverride,
	}
	if in.Weights != nil {
		svc.Weights = catalog.Weights(*in.Weights)
		if svc.Weights == (catalog.Weights{}) {
			return badRequest("Passing must be greater than 0: service %q has Weights {Passing: 0, Warning: 0}; use 1 or more, or leave Weights out", in.Name)
		}
	}
	if len(in.TaggedAddresses) > 0 {
		svc.TaggedAddresses = map[string]catalog.ServiceAddress{}
		for k, v := range in.TaggedAddresses {
			svc.TaggedAddresses[k] = catalog.ServiceAddress(v)
		}
	}
	id := in.ID
	if id == "" {
		id = in.Name
	}
	def := catalog.ServiceDefinition{Service: svc}
	checks := in.Checks
	if in.Check != nil {
		checks = append([]*checkDefinitionIn{in.Check}, checks...)
	}
	for i, ch := range checks {
		if ch == nil {
			continue
		}
		shown := "service:" + id // the catalog's default check IDs
		if len(checks) > 1 {
			shown += fmt.Sprintf(":%d", i+1)
		}
		d, err := ch.definition(id, shown)
		if err != nil {
			return err
		}
		def.Checks = append(def.Checks, d)
	}
	replace, err := boolParam(c, "replace-existing-checks")
	if err != nil {
		return err
	}
	return h.catalog.RegisterService(def, replace)
}

// boolParam reads a flag that Consul parses as a boolean: absent is
// false, present without a value is true.
func boolParam(c *call, name string) (bool, error) {
	if !has(c.query, name) {
		return false, nil
	}
	v := c.query.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("Invalid ?%s=%q: use true or false", name, v)
	}
	return b, nil
}

// agentServiceDeregister serves PUT /v1/agent/service/deregister/<id>.
func (h *handler) agentServiceDeregister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing service ID: use /v1/agent/service/deregister/<id>")
	}
	return h.catalog.DeregisterService(c.arg)
}

// agentServices serves GET /v1/agent/services: this agent's services by
// ID.
func (h *handler) agentServices(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	out := map[string]*consuljson.Service{}
	for _, s := range h.catalog.LocalServices() {
		j := consuljson.FromService(s)
		j.Datacenter = h.self.Datacenter
		out[s.ID] = j
	}
	return writeFiltered(c, out)
}

// agentService serves GET /v1/agent/service/<id>.
func (h *handler) agentService(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing service ID: use /v1/agent/service/<id>")
	}
	s := h.catalog.LocalService(c.arg)
	if s == nil {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("unknown service ID: %s", c.arg)}
	}
	j := consuljson.FromService(s)
	j.Datacenter = h.self.Datacenter
	return writeJSON(c.w, http.StatusOK, j)
}
