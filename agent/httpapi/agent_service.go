package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cairn-dev/cairn/agent/acl"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/hashicorp/go-memdb"
)

// This agent's own services: Consul's /v1/agent/service* endpoints.

// serviceRegistration is the body of PUT /v1/agent/service/register
// (api.AgentServiceRegistration), and a service definition of a config
// file once its keys are translated.
type serviceRegistration struct {
	Kind              string
	ID                string
	Name              string
	Tags              []string
	Port              int
	Ports             []consuljson.ServicePort
	Address           string
	SocketPath        string
	TaggedAddresses   map[string]consuljson.ServiceAddress
	EnableTagOverride bool
	Meta              map[string]string
	Weights           *consuljson.Weights
	Check             *checkDefinitionIn
	Checks            []*checkDefinitionIn
	Proxy             json.RawMessage
	Connect           json.RawMessage
	Locality          *consuljson.Locality

	// Accepted and not kept: cairn has no ACLs yet, one namespace and
	// one partition.
	Token     string
	Namespace string
	Partition string
	AI        json.RawMessage
}

// serviceKinds are Consul's service kinds; cairn keeps the kind and the
// proxy configuration but runs no proxy or gateway.
var serviceKinds = map[string]bool{
	"": true, "connect-proxy": true, "mesh-gateway": true, "terminating-gateway": true,
	"ingress-gateway": true, "api-gateway": true, "destination": true,
}

// definition is the registration in the catalog's form, with the
// sidecar service that Connect.SidecarService asks for (nil without).
func (in *serviceRegistration) definition() (catalog.ServiceDefinition, *catalog.ServiceDefinition, error) {
	if !serviceKinds[in.Kind] {
		return catalog.ServiceDefinition{}, nil, badRequest("Invalid service kind: %q; use connect-proxy, mesh-gateway, terminating-gateway, ingress-gateway, api-gateway, or none", in.Kind)
	}
	for _, f := range []struct{ name, v string }{{"Namespace", in.Namespace}, {"Partition", in.Partition}} {
		if f.v != "" && f.v != "default" {
			return catalog.ServiceDefinition{}, nil, badRequest("service %q: %s %q: cairn has one namespace and one partition, \"default\"; leave %s out", in.Name, f.name, f.v, f.name)
		}
	}
	if in.Kind == "connect-proxy" && in.Port == 0 && in.SocketPath == "" {
		return catalog.ServiceDefinition{}, nil, badRequest("Port or SocketPath must be set for a connect-proxy")
	}
	if in.Port != 0 && len(in.Ports) > 0 {
		return catalog.ServiceDefinition{}, nil, badRequest("service %q: Port and Ports are both set; use one of them", in.Name)
	}
	svc := catalog.Service{
		ID: in.ID, Name: in.Name, Tags: in.Tags, Address: in.Address, Port: in.Port,
		Meta: in.Meta, EnableTagOverride: in.EnableTagOverride,
		Kind: in.Kind, SocketPath: in.SocketPath,
		Proxy: compactJSON(in.Proxy), Connect: compactJSON(in.Connect),
	}
	for _, p := range in.Ports {
		svc.Ports = append(svc.Ports, catalog.ServicePort(p))
	}
	if in.Locality != nil {
		l := catalog.Locality(*in.Locality)
		svc.Locality = &l
	}
	if in.Weights != nil {
		svc.Weights = catalog.Weights(*in.Weights)
		if svc.Weights == (catalog.Weights{}) {
			return catalog.ServiceDefinition{}, nil, badRequest("Passing must be greater than 0: service %q has Weights {Passing: 0, Warning: 0}; use 1 or more, or leave Weights out", in.Name)
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
			return catalog.ServiceDefinition{}, nil, err
		}
		def.Checks = append(def.Checks, d)
	}
	sidecar, err := in.sidecar(id)
	if err != nil {
		return catalog.ServiceDefinition{}, nil, err
	}
	if sidecar != nil {
		// The parent keeps Connect without the sidecar's registration,
		// as Consul stores it.
		var conn map[string]json.RawMessage
		if json.Unmarshal(in.Connect, &conn) == nil {
			delete(conn, "SidecarService")
			if len(conn) == 0 {
				def.Service.Connect = nil
			} else {
				def.Service.Connect, _ = json.Marshal(conn)
			}
		}
	}
	return def, sidecar, nil
}

// sidecarSuffix names a sidecar proxy after its service, as Consul does.
const sidecarSuffix = "-sidecar-proxy"

// sidecar is the connect-proxy that Connect.SidecarService asks Consul to
// register with the service (nil when it does not): "<id>-sidecar-proxy",
// proxying for the service, with what the sidecar registration sets.
// cairn registers it so that it is discoverable; it starts no proxy.
func (in *serviceRegistration) sidecar(id string) (*catalog.ServiceDefinition, error) {
	var conn struct{ SidecarService *serviceRegistration }
	if len(in.Connect) == 0 || json.Unmarshal(in.Connect, &conn) != nil || conn.SidecarService == nil {
		return nil, nil
	}
	sc := *conn.SidecarService
	sc.Kind = "connect-proxy"
	if sc.ID == "" {
		sc.ID = id + sidecarSuffix
	}
	if sc.Name == "" {
		sc.Name = in.Name + sidecarSuffix
	}
	if sc.Address == "" {
		sc.Address = in.Address
	}
	if sc.Port == 0 {
		sc.Port = sidecarPort(id)
	}
	var proxy map[string]any
	if len(sc.Proxy) > 0 {
		if err := json.Unmarshal(sc.Proxy, &proxy); err != nil {
			return nil, badRequest("service %q: Connect.SidecarService.Proxy: %v", in.Name, err)
		}
	}
	if proxy == nil {
		proxy = map[string]any{}
	}
	proxy["DestinationServiceName"] = in.Name
	proxy["DestinationServiceID"] = id
	if in.Port != 0 {
		proxy["LocalServicePort"] = in.Port
	}
	proxy["LocalServiceAddress"] = "127.0.0.1"
	sc.Proxy, _ = json.Marshal(proxy)
	sc.Connect = nil
	def, _, err := sc.definition()
	if err != nil {
		return nil, err
	}
	return &def, nil
}

// sidecarPort is the port of a sidecar registered without one: Consul
// takes the next free one of 21000-21255; cairn, which starts no proxy,
// derives one from the service ID in that range so it stays the same.
func sidecarPort(id string) int {
	h := 0
	for _, r := range id {
		h = (h*31 + int(r)) % 256
	}
	return 21000 + h
}

// compactJSON is b without insignificant space, nil for none or null.
func compactJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return nil
	}
	return buf.Bytes()
}

// ParseServiceRegistration decodes a service definition in the JSON of
// PUT /v1/agent/service/register (the agent loads config-file services
// through it). Unknown fields are an error.
func ParseServiceRegistration(b []byte) (catalog.ServiceDefinition, error) {
	var in serviceRegistration
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return catalog.ServiceDefinition{}, err
	}
	def, sidecar, err := in.definition()
	if err != nil {
		return catalog.ServiceDefinition{}, err
	}
	if sidecar != nil {
		return catalog.ServiceDefinition{}, errors.New("Connect.SidecarService: register the sidecar proxy as a service of its own in config files")
	}
	return def, nil
}

// ParseCheckRegistration decodes a check definition in the JSON of PUT
// /v1/agent/check/register. Unknown fields are an error.
func ParseCheckRegistration(b []byte) (checks.Definition, error) {
	var in checkDefinitionIn
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return checks.Definition{}, err
	}
	return in.checkRegistration()
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
			return 0, badRequest("check %q: %s=%q: invalid duration; give one with a unit, such as \"10s\" or \"1m30s\"", check, field, s)
		}
		return v, nil
	}
	var n float64
	if err := json.Unmarshal(d.raw, &n); err == nil {
		return time.Duration(n), nil
	}
	return 0, badRequest("check %q: %s=%s: invalid duration; give one with a unit, such as \"10s\"", check, field, d.raw)
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
	def, sidecar, err := in.definition()
	if err != nil {
		return err
	}
	replace, err := boolParam(c, "replace-existing-checks")
	if err != nil {
		return err
	}
	// Consul's vetServiceRegister: service write on the service, and on
	// its sidecar's.
	if err := c.allow(acl.Service, def.Service.Name, acl.Write); err != nil {
		return err
	}
	if sidecar != nil {
		if err := c.allow(acl.Service, sidecar.Service.Name, acl.Write); err != nil {
			return err
		}
	}
	if err := h.catalog.RegisterService(def, replace); err != nil {
		return err
	}
	if sidecar != nil {
		return h.catalog.RegisterService(*sidecar, replace)
	}
	return nil
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
	if err := h.checkLocalServiceWrite(c, c.arg); err != nil {
		return err
	}
	// A sidecar registered with the service goes with it, as in Consul.
	if sc := h.catalog.LocalService(c.arg + sidecarSuffix); sc != nil && sc.Kind == "connect-proxy" {
		var p struct{ DestinationServiceID string }
		if json.Unmarshal(sc.Proxy, &p) == nil && p.DestinationServiceID == c.arg {
			if err := h.catalog.DeregisterService(sc.ID); err != nil {
				return err
			}
		}
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
	// Consul's agent filter: service read on each.
	for _, s := range filterList(c, h.catalog.LocalServices(), func(s *catalog.Service) bool { return c.can(acl.Service, s.Name, acl.Read) }) {
		j := consuljson.FromService(s)
		j.Datacenter = h.self.Datacenter
		out[s.ID] = j
	}
	return writeFiltered(c, out)
}

// agentService serves GET /v1/agent/service/<id>, with its ContentHash
// (also in X-Consul-ContentHash). ?hash= makes it a hash-based blocking
// query, as in Consul: while the service's hash is the one given, the
// answer waits (up to ?wait=, 5 minutes by default) for it to change.
func (h *handler) agentService(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	if c.arg == "" {
		return badRequest("Missing service ID: use /v1/agent/service/<id>")
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	read := func() (*consuljson.Service, string) {
		s := h.catalog.LocalService(c.arg)
		if s == nil {
			return nil, ""
		}
		j := consuljson.FromService(s)
		j.Datacenter = h.self.Datacenter
		j.CreateIndex, j.ModifyIndex = 0, 0 // Consul's agent answer has none
		return j, contentHash(j)
	}
	j, hash := read()
	// Consul's AgentService: service read on the service.
	if j != nil {
		if err := c.allow(acl.Service, j.Service, acl.Read); err != nil {
			return err
		}
	}
	if want := c.query.Get("hash"); want != "" && j != nil && hash == want {
		wait := o.MaxWait
		if wait <= 0 {
			wait = 5 * time.Minute
		}
		wait = min(wait, 10*time.Minute)
		ctx, cancel := context.WithTimeout(c.ctx, wait)
		defer cancel()
		for j != nil && hash == want && ctx.Err() == nil {
			idx, _, _ := h.catalog.Node(nil, h.self.NodeName)
			if _, err := h.catalog.Block(ctx, idx, wait, func(ws memdb.WatchSet) uint64 {
				i, _, _ := h.catalog.Node(ws, h.self.NodeName)
				return i
			}); err != nil && ctx.Err() == nil {
				return err
			}
			j, hash = read()
		}
	}
	if j == nil {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("unknown service ID: %s", c.arg)}
	}
	j.ContentHash = hash
	c.w.Header().Set("X-Consul-ContentHash", hash)
	return writeJSON(c.w, http.StatusOK, j)
}

// contentHash is a service's hash for hash-based blocking: 16 hex digits
// of FNV-64a over its JSON, ContentHash left out. It changes whenever any
// field does; it is not Consul's value (Consul hashes its own internal
// struct), which clients only ever compare with the hashes the same agent
// gave.
func contentHash(j *consuljson.Service) string {
	c := *j
	c.ContentHash = ""
	b, _ := json.Marshal(&c)
	f := fnv.New64a()
	f.Write(b)
	return fmt.Sprintf("%016x", f.Sum64())
}

// checkLocalServiceWrite is Consul's vetServiceUpdate: service write on
// the name of this agent's service id. An unknown id needs nothing: the
// endpoint answers its own 404.
func (h *handler) checkLocalServiceWrite(c *call, id string) error {
	if c.aclOff() {
		return nil
	}
	s := h.catalog.LocalService(id)
	if s == nil {
		_, err := c.authorizer()
		return err
	}
	return c.allow(acl.Service, s.Name, acl.Write)
}
