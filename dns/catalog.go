package dns

import (
	"net/netip"

	"github.com/hashicorp/go-memdb"
)

// Catalog is what dns needs from the service catalog. The agent adapts its
// catalog to it; dns never imports the catalog.
//
// Snapshot is called from one goroutine (the one Server.Run owns) each time
// a channel it added to ws closes, and once at the start; it must not
// block for long. It returns the catalog's index, which must change
// whenever anything returned changes, every service with all its
// instances (healthy or not; dns filters), and every node. It adds to ws
// a channel that closes on the next change (one table-level channel is
// enough: dns re-reads everything when woken). dns only reads the
// returned slices, and only until the next call; the catalog must not
// modify them in that time.
type Catalog interface {
	Snapshot(ws memdb.WatchSet) (index uint64, services []Service, nodes []Node)
}

// Service is one service name with its instances on every node.
type Service struct {
	Name string
	// VIP is the service's virtual IP when the service is in VIP mode,
	// and the zero (invalid) Addr when it is not.
	VIP       netip.Addr
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
