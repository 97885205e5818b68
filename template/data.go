package template

import (
	"github.com/hashicorp/consul/api"
)

// The types below are what template functions return. Their field names,
// order and types are consul-template's (package dependency), because
// templates print them ({{ . }}, toJSON) and must get the same bytes.

// ServiceTags is a list of tags of a service, sorted.
type ServiceTags []string

// HealthService is one instance of a service, as `service` returns it
// (consul-template dependency.HealthService). Address is the service's
// address, or its node's when the service has none.
type HealthService struct {
	Node                   string
	NodeID                 string
	NodeAddress            string
	NodeTaggedAddresses    map[string]string
	NodeMeta               map[string]string
	ServiceMeta            map[string]string
	Address                string
	ServiceTaggedAddresses map[string]api.ServiceAddress
	ID                     string
	Name                   string
	Tags                   ServiceTags
	Checks                 api.HealthChecks
	Status                 string
	Port                   int
	Weights                api.AgentWeights
}

// CatalogSnippet is one service of `services`: its name and the union of
// its instances' tags (consul-template dependency.CatalogSnippet).
type CatalogSnippet struct {
	Name string
	Tags ServiceTags
}

// Node is a node of the catalog (consul-template dependency.Node).
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// CatalogNode is a node with its services, as `node` returns it
// (consul-template dependency.CatalogNode).
type CatalogNode struct {
	Node     *Node
	Services []*CatalogNodeService
}

// CatalogNodeService is one service of a CatalogNode.
type CatalogNodeService struct {
	ID                string
	Service           string
	Tags              ServiceTags
	Meta              map[string]string
	Port              int
	Address           string
	EnableTagOverride bool
}

// KeyPair is one key of `ls` and `tree` (consul-template
// dependency.KeyPair): Path is the full key, Key the part after the
// prefix that was listed.
type KeyPair struct {
	Path  string
	Key   string
	Value string

	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Session     string
}
