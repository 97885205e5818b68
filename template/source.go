package template

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// Source answers the queries consul-template's functions make, with
// Consul's blocking-query contract. Answers use the types of the official
// client (github.com/hashicorp/consul/api), so an in-process Source and one
// speaking HTTP hand the template the same data; turning them into what
// templates see (HealthService, KeyPair...), filtering and sorting happen in
// this package, once, for every Source.
//
// Every method is called from the goroutine of one view, concurrently with
// the others, and may block: it returns when the data's index is greater
// than q.WaitIndex, or when q.WaitTime has passed (then with the current data
// and index, which may be unchanged), or with ctx's error when ctx ends. A
// zero q.WaitIndex asks for the current data at once. The index returned is
// Consul's X-Consul-Index for that query: it must grow when the answer
// changes, and may grow when it does not.
type Source interface {
	// HealthService is GET /v1/health/service/<service>?tag=<tag>&passing:
	// the instances of service (with tag when tag is not empty), each with
	// its node and checks. passingOnly leaves out instances with a check
	// that is not passing.
	HealthService(ctx context.Context, service, tag string, passingOnly bool, q QueryOptions) ([]*api.ServiceEntry, uint64, error)

	// CatalogServices is GET /v1/catalog/services: every service name with
	// the union of its instances' tags.
	CatalogServices(ctx context.Context, q QueryOptions) (map[string][]string, uint64, error)

	// CatalogNodes is GET /v1/catalog/nodes.
	CatalogNodes(ctx context.Context, q QueryOptions) ([]*api.Node, uint64, error)

	// CatalogNode is GET /v1/catalog/node/<node>: the node and its services,
	// nil when there is no such node. An empty node means the agent's own.
	CatalogNode(ctx context.Context, node string, q QueryOptions) (*api.CatalogNode, uint64, error)

	// KVGet is GET /v1/kv/<key>; nil when the key does not exist.
	KVGet(ctx context.Context, key string, q QueryOptions) (*api.KVPair, uint64, error)

	// KVList is GET /v1/kv/<prefix>?recurse: every pair under prefix,
	// sorted by key.
	KVList(ctx context.Context, prefix string, q QueryOptions) (api.KVPairs, uint64, error)

	// Datacenters is GET /v1/catalog/datacenters. Consul does not block on
	// it; a Source that cannot block waits (a while, or until ctx ends)
	// when q.WaitIndex is not zero, then answers with a new index.
	Datacenters(ctx context.Context, q QueryOptions) ([]string, uint64, error)
}

// QueryOptions are the parameters every Source query takes.
type QueryOptions struct {
	// Datacenter is ?dc=; empty means the agent's own.
	Datacenter string
	// Near is ?near=, a node name to sort the answer by round-trip time
	// from (consul-template's "~node" suffix); empty keeps the order.
	Near string
	// WaitIndex and WaitTime are ?index= and ?wait= of a blocking query.
	WaitIndex uint64
	WaitTime  time.Duration
}
