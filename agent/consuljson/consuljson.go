// Package consuljson owns the mapping of the catalog's entries to
// Consul's JSON shapes: the field names, their order, which fields are
// omitted when empty, empty collections as [] and {} (never null), and
// durations as text. The HTTP API writes these types as they are, and the
// agent's in-process template source decodes them into the official
// client's types exactly as the client decodes the HTTP API's answers, so
// the two can never disagree.
//
// The Go field names are Consul's, so ?filter= selectors (go-bexpr, which
// walks the Go value) name the JSON fields.
//
// consuljson reads agent/catalog's types and nothing else of cairn's: it
// must not import agent, kv, dns, template or registrator.
package consuljson

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/cairn-dev/cairn/agent/catalog"
)

// Node is Consul's Node (api.Node): /v1/catalog/nodes, a health entry's
// Node.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

// FromNode is n in Consul's JSON shape.
func FromNode(n *catalog.Node) *Node {
	return &Node{
		ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
		TaggedAddresses: emptyMap(n.TaggedAddresses), Meta: emptyMap(n.Meta),
		CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex,
	}
}

// Weights is a service's DNS SRV weights (api.AgentWeights).
type Weights struct {
	Passing int
	Warning int
}

// ServiceAddress is one of a service's tagged addresses
// (api.ServiceAddress).
type ServiceAddress struct {
	Address string
	Port    int
}

// ServicePort is one named port of a multi-port service
// (api.ServicePort).
type ServicePort struct {
	Name    string
	Port    int
	Default bool `json:",omitempty"`
}

// Locality is api.Locality.
type Locality struct {
	Region string
	Zone   string
}

// Service is Consul's NodeService (api.AgentService).
type Service struct {
	Kind              string `json:",omitempty"`
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	Meta              map[string]string
	Port              int
	Ports             []ServicePort `json:",omitempty" bexpr:"-"`
	SocketPath        string        `json:",omitempty"`
	Weights           Weights
	EnableTagOverride bool
	// Proxy and Connect are kept as registered (api's
	// AgentServiceConnectProxyConfig and AgentServiceConnect), as maps so
	// that ?filter= reaches their fields (Proxy.DestinationServiceName).
	Proxy    map[string]any `json:",omitempty"`
	Connect  map[string]any `json:",omitempty"`
	Locality *Locality      `json:",omitempty" bexpr:"-"`
	// ContentHash is set by /v1/agent/service/<id> only (?hash= blocking).
	ContentHash string `json:",omitempty" bexpr:"-"`
	Datacenter  string `json:",omitempty"`
	CreateIndex uint64 `json:",omitempty"`
	ModifyIndex uint64 `json:",omitempty"`
}

// FromService is s in Consul's JSON shape; Datacenter is left for the
// agent endpoints to set.
func FromService(s *catalog.Service) *Service {
	out := &Service{
		ID: s.ID, Service: s.Name, Tags: emptySlice(s.Tags), Address: s.Address,
		Meta: emptyMap(s.Meta), Port: s.Port,
		Weights:           Weights(s.Weights),
		EnableTagOverride: s.EnableTagOverride,
		Kind:              s.Kind, SocketPath: s.SocketPath,
		CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
	out.Proxy, out.Connect = object(s.Proxy), object(s.Connect)
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, ServicePort(p))
	}
	if s.Locality != nil {
		l := Locality(*s.Locality)
		out.Locality = &l
	}
	if len(s.TaggedAddresses) > 0 {
		out.TaggedAddresses = map[string]ServiceAddress{}
		for k, v := range s.TaggedAddresses {
			out.TaggedAddresses[k] = ServiceAddress(v)
		}
	}
	return out
}

// CatalogService is Consul's ServiceNode (api.CatalogService).
type CatalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	ServiceWeights           Weights
	ServiceMeta              map[string]string
	ServicePort              int
	ServicePorts             []ServicePort `json:",omitempty" bexpr:"-"`
	ServiceSocketPath        string        `json:",omitempty"`
	ServiceEnableTagOverride bool
	ServiceProxy             map[string]any `json:",omitempty"`
	ServiceConnect           map[string]any `json:",omitempty"`
	ServiceLocality          *Locality      `json:",omitempty" bexpr:"-"`
	CreateIndex              uint64
	ModifyIndex              uint64
}

// FromInstance is an instance as /v1/catalog/service/<name> answers it.
func FromInstance(in catalog.Instance) CatalogService {
	s := FromService(in.Service)
	n := in.Node
	return CatalogService{
		ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
		TaggedAddresses: emptyMap(n.TaggedAddresses), NodeMeta: emptyMap(n.Meta),
		ServiceID: s.ID, ServiceName: s.Service, ServiceTags: s.Tags, ServiceAddress: s.Address,
		ServiceTaggedAddresses: s.TaggedAddresses, ServiceWeights: s.Weights, ServiceMeta: s.Meta,
		ServicePort: s.Port, ServiceEnableTagOverride: s.EnableTagOverride,
		ServiceKind: s.Kind, ServicePorts: s.Ports, ServiceSocketPath: s.SocketPath,
		ServiceProxy: s.Proxy, ServiceConnect: s.Connect, ServiceLocality: s.Locality,
		CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
}

// Definition is Consul's HealthCheckDefinition, durations as text.
type Definition struct {
	HTTP                           string              `json:",omitempty"`
	Header                         map[string][]string `json:",omitempty"`
	Method                         string              `json:",omitempty"`
	Body                           string              `json:",omitempty"`
	TLSServerName                  string              `json:",omitempty"`
	TLSSkipVerify                  bool                `json:",omitempty"`
	TCP                            string              `json:",omitempty"`
	TCPUseTLS                      bool                `json:",omitempty"`
	UDP                            string              `json:",omitempty"`
	GRPC                           string              `json:",omitempty"`
	GRPCUseTLS                     bool                `json:",omitempty"`
	OSService                      string              `json:",omitempty"`
	ScriptArgs                     []string            `json:",omitempty"`
	Interval                       string              `json:",omitempty"`
	Timeout                        string              `json:",omitempty"`
	TTL                            string              `json:",omitempty"`
	DeregisterCriticalServiceAfter string              `json:",omitempty"`
}

// durationText is a duration as Consul's JSON writes it: "" for none.
func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Check is Consul's HealthCheck (api.HealthCheck, api.AgentCheck).
type Check struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string `json:",omitempty"`
	Timeout     string `json:",omitempty"`
	ExposedPort int
	Definition  Definition
	CreateIndex uint64
	ModifyIndex uint64
}

// FromCheck is c in Consul's JSON shape.
func FromCheck(c *catalog.Check) *Check {
	d := c.Definition
	return &Check{
		Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName,
		ServiceTags: emptySlice(c.ServiceTags), Type: c.Type,
		Interval: durationText(d.Interval), Timeout: durationText(d.Timeout),
		Definition: Definition{
			HTTP: d.HTTP, Header: d.Header, Method: d.Method, Body: d.Body,
			TLSServerName: d.TLSServerName, TLSSkipVerify: d.TLSSkipVerify, TCP: d.TCP,
			TCPUseTLS: d.TCPUseTLS, UDP: d.UDP, GRPC: d.GRPC, GRPCUseTLS: d.GRPCUseTLS, OSService: d.OSService,
			ScriptArgs: d.Args, Interval: durationText(d.Interval), Timeout: durationText(d.Timeout),
			TTL: durationText(d.TTL), DeregisterCriticalServiceAfter: durationText(d.DeregisterCriticalServiceAfter),
		},
		CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex,
	}
}

// FromChecks is cs in Consul's JSON shape, [] for none.
func FromChecks(cs []*catalog.Check) []*Check {
	out := make([]*Check, 0, len(cs))
	for _, c := range cs {
		out = append(out, FromCheck(c))
	}
	return out
}

// object is a JSON object kept as registered, decoded for answers and
// filters; nil for none. Numbers stay json.Number, so they are written
// back as they came.
func object(b json.RawMessage) map[string]any {
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil
	}
	return m
}

// Consul answers empty collections as [] and {}, never null.
func emptyMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

func emptySlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ServiceEntry is Consul's CheckServiceNode (api.ServiceEntry): an
// instance with its node and checks, as /v1/health/service answers it.
type ServiceEntry struct {
	Node    *Node
	Service *Service
	Checks  []*Check
}

// FromHealth is an instance with its checks as /v1/health/service
// answers it.
func FromHealth(in catalog.Instance) ServiceEntry {
	return ServiceEntry{Node: FromNode(in.Node), Service: FromService(in.Service), Checks: FromChecks(in.Checks)}
}

// MarshalJSON writes the entry as Consul does: the service's Proxy and
// Connect are always there, {} when it has none (Consul's NodeService
// holds them as values). The Go value keeps them nil, so that ?filter=
// sees an absent field.
func (e ServiceEntry) MarshalJSON() ([]byte, error) {
	type service struct {
		*Service
		Proxy   map[string]any
		Connect map[string]any
	}
	var svc *service
	if e.Service != nil {
		svc = &service{Service: e.Service, Proxy: e.Service.Proxy, Connect: e.Service.Connect}
		if svc.Proxy == nil {
			svc.Proxy = map[string]any{}
		}
		if svc.Connect == nil {
			svc.Connect = map[string]any{}
		}
	}
	return json.Marshal(struct {
		Node    *Node
		Service *service
		Checks  []*Check
	}{e.Node, svc, e.Checks})
}

// CatalogNode is Consul's NodeServices (api.CatalogNode): a node and its
// services by ID, as /v1/catalog/node/<node> answers it.
type CatalogNode struct {
	Node     *Node
	Services map[string]*Service
}

// FromNodeServices is a node with its services as
// /v1/catalog/node/<node> answers it.
func FromNodeServices(n *catalog.Node, svcs []*catalog.Service) CatalogNode {
	out := CatalogNode{Node: FromNode(n), Services: make(map[string]*Service, len(svcs))}
	for _, s := range svcs {
		out.Services[s.ID] = FromService(s)
	}
	return out
}
