package vip

import (
	"context"
	"net/netip"
)

// Service is the kernel state one VIP should have: the virtual address
// and, for each port it accepts, the backends connections are balanced
// over. It is what a Dataplane is told; the reconciler derives it from
// the catalog (healthy instances) and the allocations (the VIP).
type Service struct {
	// Name is the catalog service name, for logs and rule comments only;
	// the VIP is the key.
	Name string
	VIP  netip.Addr
	// Ports are sorted by (Proto, Port) and unique on that pair.
	Ports []Port
}

// Port is one VIP:port/proto and where its connections go.
type Port struct {
	Proto Proto
	Port  uint16 // the port the VIP accepts
	// Backends are the healthy instances' Address:Port, sorted, unique.
	// An empty list is not "remove the port": the VIP:port must then
	// refuse connections at once (TCP reset or ICMP unreachable), not
	// leave clients waiting for a SYN timeout.
	Backends []netip.AddrPort
}

// Proto is a transport protocol a VIP port balances.
type Proto string

// The protocols a VIP port can carry.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Dataplane programs one kernel so that connections to each VIP:port are
// balanced over its backends. Implementations: agent/vip/ipvs,
// agent/vip/nft; tests use a recording fake. Every method is called
// from the reconciler's one goroutine (never concurrently), may block
// on the kernel, and must leave alone every rule and address it did not
// create.
type Dataplane interface {
	// Name is the data plane's name as -vip-dataplane spells it.
	Name() string
	// Sync makes the kernel hold exactly desired: it adopts what an
	// earlier run left (established connections keep working), repairs
	// anything changed behind its back, and removes its own rules for
	// VIPs not in desired. Called at start and periodically.
	Sync(ctx context.Context, desired []Service) error
	// Update changes only the VIPs named: each of set replaces the whole
	// state of its VIP (added when new), each of del is removed. It must
	// cost in proportion to the change, not to the number of VIPs.
	Update(ctx context.Context, set []Service, del []netip.Addr) error
	// Flush removes everything this data plane created (the agent runs
	// with -vip-dataplane none, or leaves the cluster).
	Flush(ctx context.Context) error
	// Close releases handles (netlink sockets); the kernel state stays.
	Close() error
}
