package catalog

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/agent/checks"
)

// Health statuses, Consul's words.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// ValidStatus reports whether s is one of the three statuses.
func ValidStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// SerfCheckID and SerfCheckName name the node health check every agent's
// node carries, as in Consul.
const (
	SerfCheckID   = "serfHealth"
	SerfCheckName = "Serf Health Status"

	serfAliveOutput  = "Agent alive and reachable"
	serfFailedOutput = "Agent not live or unreachable"
)

// Check types, as Consul reports them in HealthCheck.Type. A check with
// none was registered with a fixed status (through /v1/catalog/register).
const (
	CheckTTL    = "ttl"
	CheckHTTP   = "http"
	CheckTCP    = "tcp"
	CheckScript = "script"
)

// Errors callers branch on with errors.Is; the HTTP API maps them to
// status codes.
var (
	// ErrInvalid: a registration or update was refused; the error says
	// what was wrong and what to do (HTTP 400).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no local service or check has that ID (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrNotOwner: the entry belongs to another agent, which alone may
	// change it (HTTP 403).
	ErrNotOwner = errors.New("owned by another agent")
)

// Node is one node of the catalog: an agent's own node, or an external
// node registered through an agent with /v1/catalog/register.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	// CreateIndex and ModifyIndex are this agent's indexes when it first
	// stored the node and when it last changed.
	CreateIndex, ModifyIndex uint64 `json:"-"`
}

// Weights are a service's DNS SRV weights by health, Consul's.
type Weights struct {
	Passing int
	Warning int
}

// ServiceAddress is one of a service's tagged addresses.
type ServiceAddress struct {
	Address string
	Port    int
}

// ServicePort is one of a multi-port service's named ports (Consul's
// ServicePort).
type ServicePort struct {
	Name    string
	Port    int
	Default bool `json:",omitempty"`
}

// Locality is where a service or node runs (Consul's Locality).
type Locality struct {
	Region string
	Zone   string
}

// Service is one instance of a service on a node.
type Service struct {
	Node              string `json:"-"` // filled in by the catalog
	ID                string
	Name              string // Consul's "Service"
	Tags              []string
	Address           string
	Port              int
	Meta              map[string]string
	TaggedAddresses   map[string]ServiceAddress
	Weights           Weights
	EnableTagOverride bool

	// Consul's Connect and multi-port fields. cairn runs no proxies and
	// issues no certificates: it keeps these as registered and answers
	// them (Proxy and Connect as the JSON they came in, compacted), so
	// that tools reading them back see what they wrote.
	Kind       string        `json:",omitempty"`
	SocketPath string        `json:",omitempty"`
	Ports      []ServicePort `json:",omitempty"`
	Locality   *Locality     `json:",omitempty"`
	// Proxy is Consul's AgentServiceConnectProxyConfig and Connect its
	// AgentServiceConnect, as JSON; nil when absent.
	Proxy   json.RawMessage `json:",omitempty"`
	Connect json.RawMessage `json:",omitempty"`

	CreateIndex, ModifyIndex uint64 `json:"-"`
}

// Check is one health check's current state: a service's (ServiceID set)
// or a whole node's.
type Check struct {
	Node        string `json:"-"` // filled in by the catalog
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Definition  Definition

	CreateIndex, ModifyIndex uint64 `json:"-"`
}

// Definition is how a check runs, as Consul reports it in
// HealthCheck.Definition.
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
	Args                           []string            `json:",omitempty"`
	TTL                            time.Duration       `json:",omitempty"`
	Interval                       time.Duration       `json:",omitempty"`
	Timeout                        time.Duration       `json:",omitempty"`
	DeregisterCriticalServiceAfter time.Duration       `json:",omitempty"`
}

// reportedDefinition is what Check.Definition reports of d.
func reportedDefinition(d checks.Definition) Definition {
	return Definition{
		HTTP: d.HTTP, Header: d.Header, Method: d.Method, Body: d.Body,
		TLSServerName: d.TLSServerName, TLSSkipVerify: d.TLSSkipVerify,
		TCP: d.TCP, Args: d.Args, TTL: d.TTL,
		Interval: d.Interval, Timeout: d.Timeout,
		DeregisterCriticalServiceAfter: d.DeregisterCriticalServiceAfter,
	}
}

// ServiceDefinition is a service this agent registers, with its checks.
type ServiceDefinition struct {
	Service Service
	Checks  []checks.Definition
}

// Instance is one service instance with its node and, in health answers,
// its checks: the node's own checks (serfHealth first) and the service's.
type Instance struct {
	Node    *Node
	Service *Service
	Checks  []*Check
}

// Status is the instance's health: AggregateStatus of its checks, its
// node's included.
func (in Instance) Status() string { return AggregateStatus(in.Checks) }

// AggregateStatus is the health of an instance with these checks, as
// Consul aggregates them (api.HealthChecks.AggregatedStatus): critical
// over warning over passing, and passing with no checks. A status that
// is none of the three counts as critical. This is the one place cairn
// defines an instance's health; its readers (DNS, VIPs) call it.
func AggregateStatus(checks []*Check) string {
	worst := StatusPassing
	for _, c := range checks {
		switch c.Status {
		case StatusPassing:
		case StatusWarning:
			worst = StatusWarning
		default:
			return StatusCritical
		}
	}
	return worst
}

// Filter narrows catalog and health reads, as Consul's query parameters
// do. The zero Filter keeps everything.
type Filter struct {
	// Tags keeps services that carry every one of them (?tag=, repeatable).
	Tags []string
	// NodeMeta keeps nodes whose meta has every one of these pairs
	// (?node-meta=key:value, repeatable).
	NodeMeta map[string]string
	// Passing keeps instances whose checks all pass (?passing).
	Passing bool
}

// Registration is Consul's catalog registration (PUT /v1/catalog/register):
// a node with, optionally, a service and checks. The agent that receives
// it owns what it registers.
type Registration struct {
	Node           Node
	SkipNodeUpdate bool
	Service        *Service
	Checks         []*Check
}

// Deregistration is Consul's catalog deregistration: a whole node, or one
// service or check of it.
type Deregistration struct {
	Node      string
	ServiceID string
	CheckID   string
}

// The clone helpers copy what a caller could otherwise modify in place;
// the catalog hands out pointers that readers share and must not modify.

func (n *Node) clone() *Node {
	c := *n
	c.TaggedAddresses = maps.Clone(n.TaggedAddresses)
	c.Meta = maps.Clone(n.Meta)
	return &c
}

func (s *Service) clone() *Service {
	c := *s
	c.Tags = slices.Clone(s.Tags)
	c.Meta = maps.Clone(s.Meta)
	c.TaggedAddresses = maps.Clone(s.TaggedAddresses)
	c.Ports = slices.Clone(s.Ports)
	if s.Locality != nil {
		l := *s.Locality
		c.Locality = &l
	}
	c.Proxy = slices.Clone(s.Proxy)
	c.Connect = slices.Clone(s.Connect)
	return &c
}

func (c *Check) clone() *Check {
	d := *c
	d.ServiceTags = slices.Clone(c.ServiceTags)
	d.Definition.Header = maps.Clone(c.Definition.Header)
	d.Definition.Args = slices.Clone(c.Definition.Args)
	return &d
}

func cloneDefinition(d checks.Definition) checks.Definition {
	d.Header = maps.Clone(d.Header)
	d.Args = slices.Clone(d.Args)
	return d
}
