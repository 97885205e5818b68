package dns

import (
	"net/netip"

	"github.com/hashicorp/go-memdb"
)

// Catalog is what dns needs from the service catalog. The agent adapts its
// catalog to it; dns never imports the catalog.
//
// Both methods are called from one goroutine (the one Server.Run owns):
// Snapshot once at the start and whenever Changes cannot answer, Changes
// each time a channel added to ws closes. Neither may block for long.
// dns only reads what they return, and only until the next call; the
// catalog must not modify it in that time.
type Catalog interface {
	// Snapshot returns the catalog's index, every service with all its
	// instances (healthy or not; dns filters), and every node (each node
	// an instance names among them). It adds to ws a channel that
	// closes on the next change.
	Snapshot(ws memdb.WatchSet) (index uint64, services []Service, nodes []Node)
	// Changes returns what changed after since, an index that Snapshot
	// or Changes returned, and adds to ws a channel that closes on the
	// next change. ok is false when it cannot tell (since is too old):
	// dns then calls Snapshot.
	Changes(ws memdb.WatchSet, since uint64) (d Delta, ok bool)
}

// Delta is a change of the catalog: what one service change costs dns is
// the rebuild of that service's answers, not of every service's.
type Delta struct {
	// Index is the catalog's index after the change; Index == since
	// means nothing changed.
	Index uint64
	// Services holds, for every service name whose answers can have
	// changed, all of that name's catalog services (names differing only
	// in case are one DNS name) with all their instances. A name whose
	// services have no instance and no VIP left is removed.
	Services []Service
	// Nodes is every node, when NodesChanged.
	Nodes        []Node
	NodesChanged bool
}

// Service is one service name with its instances on every node.
type Service struct {
	Name string
	// VIP is the service's virtual IP when the service is in VIP mode,
	// and the zero (invalid) Addr when it is not.
	VIP netip.Addr
	// Hold, without a VIP, says that the service is in VIP mode but its
	// VIP is not known yet (not allocated yet, or the allocations not
	// read yet): <svc> then answers SERVFAIL, so that clients retry
	// rather than cache instance addresses that bypass the VIP.
	// tasks.<svc> and Consul's names answer as usual.
	Hold      bool
	Instances []Instance
}

// Instance is one registration of a service.
type Instance struct {
	Node      string
	NodeAddr  netip.Addr
	ServiceID string
	// Address is the service's own address; the zero Addr means the
	// node's (Consul's empty ServiceAddress).
	Address netip.Addr
	Port    int
	Tags    []string
	// Status is the aggregate of the instance's checks and its node's:
	// StatusPassing, StatusWarning or StatusCritical (an instance with no
	// checks is passing, as in Consul). Anything else is not answered.
	Status string
}

// Node is a member of the cluster.
type Node struct {
	Name string
	Addr netip.Addr
}

// Health states, as Consul's API spells them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)
